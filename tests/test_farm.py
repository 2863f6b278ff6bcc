"""A farm (docs/scaling.md): instances behind one address that share their Autokey server
values (``farm``: the server seed's secret file, signatures dated on a daily grid, the key
files and the leap file), so that a client's dance survives being moved from one instance
to another at any step.  On the simulated network, with a balancer that hands the client's
requests to two instances in turn."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from ntpauto.autokey.host import SIGNATURE_GRID, load_host
from ntpauto.autokey.seedfile import load_seed_secret
from ntpauto.autokey.status import Flag
from ntpauto.config import ConfigError, parse_config
from ntpauto.engine import load_autokey
from ntpauto.pki.keyfiles import KeyFileError
from ntpauto.testing import SimulatedNetwork
from ntpauto.wire.timestamps import unix_to_ntp

EPOCH = 1_795_460_000.0
FARM, CLIENT = "10.0.0.1", "10.0.0.2"


def keysdir(tmp_path: Path, vectors: Path, scenario: str) -> Path:
    """A copy of alice's keys directory of ``scenario``: the files every instance holds."""
    folder = tmp_path / "keys"
    shutil.copytree(vectors / "keys" / scenario / "alice", folder, symlinks=True)
    return folder


def instance_config(folder: Path, farm: bool = True, ident: bool = False):
    text = (f"localclock stratum 1\nkeysdir {folder}\ncrypto host alice pw alicepw"
            f"{' ident alice' if ident else ''}\n{'farm' if farm else ''}\n")
    return parse_config(text, str(folder / "ntp.conf"))


def farm_of_two(folder: Path, *, farm: bool = True, ident: bool = False,
                client_scheme: str = "tc-rsa-md5", vectors: Path | None = None,
                second_after: float = 0.0):
    """Instances ``a`` and ``b`` at :data:`FARM` behind a balancer that alternates, each
    loaded on its own from ``folder`` (``b`` joining ``second_after`` seconds later), and
    brenda's client association with the farm's address."""
    net = SimulatedNetwork(seed=3, latency=0.01, jitter=0.002, epoch=EPOCH)
    config = instance_config(folder, farm, ident)
    a = net.add_host(FARM, config, autokey=load_autokey(config), name="a")
    net.balance(FARM, ["a"])
    if second_after:
        net.run(second_after)
    b = net.add_host(FARM, config, autokey=load_autokey(config), name="b")
    net.balance(FARM, ["a", "b"])
    credentials = load_host(vectors / "keys" / client_scheme / "brenda", host="brenda",
                            password="brendapw")
    brenda = net.add_host(CLIENT, f"server {FARM} autokey ident alice iburst minpoll 4\n",
                          autokey=credentials, offset=0.03)
    return net, a, b, brenda


@pytest.mark.parametrize("scenario, ident", [("tc-rsa-md5", False), ("iff-trad", True)])
def test_a_dance_moved_between_instances_at_every_step_completes(tmp_path, vectors,
                                                                 scenario, ident):
    """Every request of brenda's goes to the other instance than the one before: ASSOC,
    CERT, [IFF], COOK, SIGN, LEAP and the time requests under the cookie are answered alike
    by both (the same cookie, the same signatures and stamps, echoes of one instance's
    replies proving the source to the other), and brenda synchronises to the farm."""
    folder = keysdir(tmp_path, vectors, scenario)
    net, a, b, brenda = farm_of_two(folder, ident=ident, client_scheme=scenario,
                                    vectors=vectors, second_after=30.0)
    net.run(240)
    [assoc] = brenda.engine.associations.values()
    state = assoc.autokey.state
    assert state.status & Flag.ALL == Flag.ALL
    assert brenda.engine.sys.peer == assoc.associd
    assert brenda.engine.sys.offset == pytest.approx(-0.03, abs=0.003)
    for instance in (a, b):
        requests = instance.engine.autokey.responder.requests
        assert sum(requests.values()) >= 2 and instance.engine.counters["served"] >= 5
    cut = a.engine.counters["autokey_amplification"] + b.engine.counters[
        "autokey_amplification"]
    assert cut <= 1  # at most brenda's first request, which echoes nothing
    assert brenda.engine.counters["cryptonak"] == 0
    assert brenda.engine.counters["autokey_tsp"] == 0


def test_instances_that_synchronised_apart_sign_the_same_octets(tmp_path, vectors):
    """``b`` joins 300 s after ``a``: with ``farm`` both date their signatures to the same
    moment (the last midnight, or the key files' filestamp when later) and so sign the same
    octets; without it each dates them to its own first synchronisation."""
    for farm in (True, False):
        folder = keysdir(tmp_path / str(farm), vectors, "tc-rsa-md5")
        net, a, b, _ = farm_of_two(folder, farm=farm, vectors=vectors, second_after=300.0)
        net.run(10)
        fields = [i.engine.autokey.host.certificate_field(i.engine.autokey.host.own_entry(), 0)
                  for i in (a, b)]
        leaps = [i.engine.autokey.host.leap_field(0) for i in (a, b)]
        if farm:
            assert fields[0] == fields[1] and leaps[0] == leaps[1]
            host = a.engine.autokey.host
            now = unix_to_ntp(a.clock.now()) >> 32
            assert host.update == max(now - now % SIGNATURE_GRID, host.cert_filestamp,
                                      host.host_filestamp)
        else:
            assert fields[0].timestamp < fields[1].timestamp


def test_a_farm_signs_again_at_midnight_on_every_instance(tmp_path, vectors):
    folder = keysdir(tmp_path, vectors, "tc-rsa-md5")
    net, a, b, _ = farm_of_two(folder, vectors=vectors)
    net.run(10)
    hosts = [i.engine.autokey.host for i in (a, b)]
    first = hosts[0].update
    now = unix_to_ntp(a.clock.now()) >> 32
    net.run(SIGNATURE_GRID - now % SIGNATURE_GRID + 5.0)  # past the next midnight
    for instance in (a, b):
        instance.engine.crypto_now()
    assert hosts[0].update == hosts[1].update > first
    assert hosts[0].update % SIGNATURE_GRID == 0


def test_the_seed_secret_is_made_once_private_and_read_back(tmp_path):
    path = tmp_path / "ntpkey_seed_alice"
    secret = load_seed_secret(path)
    assert len(secret) == 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_seed_secret(path) == secret
    assert path.read_text().startswith("# ntpkey_seed_alice")
    path.write_text("not hex\n")
    with pytest.raises(KeyFileError, match=str(path)):
        load_seed_secret(path)


def test_the_farm_reads_the_seed_file_of_its_keys_directory(tmp_path, vectors):
    folder = keysdir(tmp_path, vectors, "tc-rsa-md5")
    config = instance_config(folder)
    node = load_autokey(config)
    assert os.path.exists(folder / "ntpkey_seed_alice")
    assert node.responder.seed.secret == load_seed_secret(folder / "ntpkey_seed_alice")
    elsewhere = tmp_path / "seed"
    text = (f"keysdir {folder}\ncrypto host alice pw alicepw\nfarm seedfile {elsewhere}\n")
    other = load_autokey(parse_config(text, str(tmp_path / "ntp.conf")))
    assert other.responder.seed.secret == load_seed_secret(elsewhere) != \
        node.responder.seed.secret


@pytest.mark.parametrize("text, message", [
    ("farm\n", "farm shares Autokey server values: it needs the crypto directive"),
    ("crypto host a\nfarm sharing\n", "unknown farm option 'sharing'"),
    ("crypto host a\nfarm seedfile\n", "seedfile"),
])
def test_farm_directive_errors_name_the_line(text, message):
    with pytest.raises(ConfigError, match=message) as caught:
        parse_config(text)
    assert str(caught.value).startswith("<string>:")


def test_a_farm_needs_an_rsa_sign_key(tmp_path, vectors):
    folder = keysdir(tmp_path, vectors, "tc-dsa-sha1")
    with pytest.raises(ConfigError, match="RSA sign key"):
        load_autokey(instance_config(folder))
