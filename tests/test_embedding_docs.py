"""Every Python example of docs/embedding.md, run (the first, the five lines, is run by
tests/test_service.py).  Examples name /etc/ntpauto paths and a public server; the tests
run them against files and loopback servers of their own, changing nothing else."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import attrs
import pytest
from twisted.internet import reactor
from twisted.internet.task import Clock

from ntpauto.config import load_config
from ntpauto.ntp.clocks import SimulatedClock
from ntpauto.service import NTPAutokeyService
from tests.autokey_groups import make_group, password
from tests.test_client import autokey_server, result
from tests.test_service import spin, stop

DOCS = Path(__file__).resolve().parents[1] / "docs"
BLOCKS = re.findall(r"```python\n(.*?)```", (DOCS / "embedding.md").read_text(), re.S)
CONFIG = "interface listen 127.0.0.1\nlocalclock stratum 1\n"


def block(marker: str) -> str:
    """The one example containing ``marker``."""
    [found] = [code for code in BLOCKS if marker in code]
    return found


class PortZero(NTPAutokeyService):
    """The service, bound to port 0 whatever the configuration file says."""

    @classmethod
    def from_file(cls, path: Any, **kwargs: Any) -> NTPAutokeyService:
        return cls(attrs.evolve(load_config(path), port=0), **kwargs)


def test_every_example_is_run() -> None:
    """The examples this module runs, and test_service.py's five lines: all of them."""
    markers = ["app.privilegedStartService", "from_file(\"/etc/ntpauto/ntp.conf\")   #",
               "attrs.evolve(load_config", "reactor=my_reactor", "SimulatedNetwork(",
               "task.react(main)", "ntp.synchronised(", "ntp.observe(",
               "task.react(nts_main)"]
    assert sorted(block(marker) for marker in markers) == sorted(BLOCKS)


def test_from_file_and_evolve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A service from a configuration file; a configuration changed with attrs.evolve."""
    path = tmp_path / "ntp.conf"
    path.write_text(CONFIG)
    namespace: dict[str, Any] = {"NTPAutokeyService": NTPAutokeyService}
    code = block('from_file("/etc/ntpauto/ntp.conf")   #')
    exec(code.replace("/etc/ntpauto/ntp.conf", str(path)), namespace)
    assert namespace["ntp"].config.refclocks
    monkeypatch.chdir(tmp_path)
    exec(block("attrs.evolve(load_config"), namespace)
    assert namespace["config"].port == 0 and namespace["config"].listen[0].address == \
        "127.0.0.1"


def test_injecting_reactor_and_clock(tmp_path: Path) -> None:
    my_reactor = Clock()
    namespace = {"NTPAutokeyService": NTPAutokeyService, "config": load_config_text(tmp_path),
                 "my_reactor": my_reactor, "my_clock": SimulatedClock(my_reactor.seconds)}
    exec(block("reactor=my_reactor"), namespace)


def load_config_text(directory: Path) -> Any:
    path = directory / "ntp.conf"
    path.write_text(CONFIG)
    return load_config(path)


def test_simulated_network(capsys: pytest.CaptureFixture[str]) -> None:
    exec(block("SimulatedNetwork("), {})
    assert "'reach'" in capsys.readouterr().out


def test_getting_proven_time(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The ten lines: a proven sample from an IFF server, as the group member brenda."""
    keys = make_group(tmp_path, "iff", ("alice", "brenda"), trusted=("alice",),
                      servers=("alice",))
    server = autokey_server(keys)
    code = block("task.react(main)")
    assert len([line for line in code.splitlines() if line.strip()]) <= 10
    code = code.replace("/etc/ntpauto", str(keys.keysdir("brenda")))
    code = code.replace('"brendapw"', repr(password("brenda")))
    code = code.replace('"ntp.example.org", 123', f'"127.0.0.1", {server.address[1]}')
    code = code.replace("task.react(main)", "")
    namespace: dict[str, Any] = {}
    exec(code, namespace)
    try:
        result(namespace["main"](reactor))
    finally:
        stop(server)
    assert re.fullmatch(r"[-+]\d+\.\d{6} s, proven by alice@alice\n", capsys.readouterr().out)


def test_getting_time_with_nts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The NTS lines: a sample from an ntpauto NTS server (a private CA instead of the
    system's trust store)."""
    from ntpauto.nts import certs
    from tests.test_nts_service import free_tcp_port
    from tests.test_nts_service import service as nts_service

    pki = certs.write_test_pki(tmp_path, ["127.0.0.1"])
    ke_port = free_tcp_port()
    server = nts_service(f"localclock stratum 1\nntsservercert {pki.cert}\n"
                         f"ntsserverkey {pki.key}\nntsport {ke_port}\n", tmp_path / "ntp.conf")
    code = block("task.react(nts_main)").replace(
        '"nts.example.org", nts=True',
        f'"127.0.0.1", nts=True, ntsport={ke_port}, ntstrustedcerts={str(pki.ca)!r}')
    namespace: dict[str, Any] = {}
    exec(code.replace("task.react(nts_main)", ""), namespace)
    try:
        result(namespace["nts_main"](reactor))
    finally:
        stop(server)
    assert re.fullmatch(r"[-+]\d+\.\d{6} s, NTS-KE with 127\.0\.0\.1\n",
                        capsys.readouterr().out)


def test_service_time_and_changes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """synchronised() and now() on a stratum-1 node (a reference clock is proventic), then
    the observer prints the association it loses."""
    path = tmp_path / "ntp.conf"
    path.write_text(CONFIG)
    namespace: dict[str, Any] = {"NTPAutokeyService": PortZero}
    exec(block("ntp.synchronised(").replace("/etc/ntpauto/ntp.conf", str(path)), namespace)
    ntp = namespace["ntp"]
    try:
        spin(lambda: namespace["d"].called)
        estimate = namespace["estimate"]
        assert estimate.synchronised and estimate.proventic
        exec(block("ntp.observe("), namespace)
        [assoc] = ntp.engine.associations.values()
        ntp.engine.demobilise(assoc, "shown to the observer")
    finally:
        stop(ntp)
    out = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"\d+\.\d{6} ± \d\.\d{6} s", out[0])
    assert out[1] == f"association.lost {assoc.associd} demobilised: shown to the observer"
