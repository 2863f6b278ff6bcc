"""What an NTS association shows: Engine.status(), mode 6 (its nts_* variables in ntpq's
default peer output) and ``ntpauto status``; the NTS outcomes in the metrics."""

from __future__ import annotations

import io

from ntpauto.cli import status as status_cli
from ntpauto.metrics import collect, mode6_variables
from tests.test_cli_status import EngineQuery
from tests.test_nts_engine import SERVER, association, network


def synced():
    net, server, client = network()
    net.run(200)
    return net, server, client


def test_engine_status() -> None:
    net, server, client = synced()
    [entry] = client.engine.status()["associations"]
    assert entry["nts"]["host"] == SERVER and entry["nts"]["cookies"] == 8
    assert entry["nts"]["aead"] == 15 and entry["nts"]["ke_exchanges"] == 1
    assert entry["autokey"] is None
    assert server.engine.status()["system"]["nts"]["rotate"] == 86400


def test_mode6_and_status_cli() -> None:
    net, _, client = synced()
    query = EngineQuery(client.engine, net.reactor.seconds())
    assoc = association(client)
    variables = dict(query.variables(assoc.associd))
    assert variables["nts_host"] == f"{SERVER} 4460"
    assert variables["nts_cookies"] == "8" and variables["nts_aead"] == "AEAD_AES_SIV_CMAC_256"
    assert 0 <= int(variables["nts_ke"]) <= 200 and "nts_error" not in variables
    document = status_cli.document(status_cli.gather(query))
    [entry] = document["associations"]
    assert entry["nts"]["cookies"] == 8 and entry["nts"]["aead"] == "AEAD_AES_SIV_CMAC_256"
    out = io.StringIO()
    status_cli.render(document, out)
    text = out.getvalue()
    assert "  NTS\n" in text
    assert f"nts-ke {SERVER} port 4460  aead AEAD_AES_SIV_CMAC_256  cookies 8" in text


def test_failed_exchange_shows_its_reason() -> None:
    net, _, client = synced()
    net2, _, failing = network()
    net2.ke_reachable = lambda a, b: False
    net2.run(1)
    query = EngineQuery(failing.engine, net2.reactor.seconds())
    variables = dict(query.variables(association(failing).associd))
    assert variables["nts_error"] == "connection refused" and "nts_ke" not in variables
    out = io.StringIO()
    status_cli.render(status_cli.document(status_cli.gather(query)), out)
    assert "exchange never  last error: connection refused" in out.getvalue()


def test_plain_associations_show_no_nts_variables() -> None:
    net, server, client = synced()
    from ntpauto.testing import SimulatedNetwork

    plain = SimulatedNetwork(seed=1).add_host("10.0.0.9", f"server {SERVER}\n")
    plain.engine.start(0.0)
    query = EngineQuery(plain.engine, 0.0)
    variables = dict(query.variables(association(plain).associd))
    assert not any(name.startswith("nts_") for name in variables)


def test_metrics_count_nts_outcomes() -> None:
    net, server, client = synced()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in collect(server.engine) for s in family.samples}
    served = samples[("ntpauto_nts_total", (("outcome", "nts_served"),))]
    assert served == server.engine.counters["nts_served"] > 3
    client_samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                      for family in collect(client.engine) for s in family.samples}
    assert client_samples[("ntpauto_nts_total", (("outcome", "nts_ke_done"),))] == 1
    assert ("ntpauto_nts_cookies", ()) in client_samples
    flat = dict(mode6_variables(server.engine))
    assert any(name.startswith("nts") for name in flat)
