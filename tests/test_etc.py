"""The sample files in etc/: every configuration loads as written, and the systemd unit runs
the daemon unprivileged with only the capability to bind port 123."""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

from ntpauto.config import load_config

ETC = Path(__file__).resolve().parents[1] / "etc"
CONFIGS = sorted(ETC.glob("*.conf"))


def test_there_is_a_sample_for_every_role():
    """Trusted host, secondary server, client, symmetric pair, broadcast server and client."""
    assert {p.stem for p in CONFIGS} == {
        "trusted-host", "secondary-server", "client", "symmetric-peer", "broadcast-server",
        "broadcast-client"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_sample_config_loads_without_warnings(path):
    """Each sample parses with no error and uses no unsupported directive; every one runs
    Autokey (a crypto line) and listens on a specific address (session keys need it)."""
    config = load_config(path)
    assert config.warnings == ()
    assert config.crypto is not None and config.crypto.host
    assert config.listen and config.listen[0].address not in ("0.0.0.0", "::")
    assert not config.discipline_enabled  # samples never take over the host clock


def test_roles_configure_what_they_claim():
    """The samples' associations match their roles."""
    def load(name):
        return load_config(ETC / f"{name}.conf")

    assert load("trusted-host").refclocks
    assert [a.autokey for a in load("secondary-server").associations] == [True, True]
    assert [a.kind for a in load("symmetric-peer").associations] == ["peer"]
    assert [a.kind for a in load("broadcast-server").associations] == ["broadcast"]
    client = load("broadcast-client")
    assert client.broadcast_client
    assert [item.address for item in client.listen][1].endswith(".255")


def test_systemd_unit():
    """twist runs the plugin as a dedicated user with CAP_NET_BIND_SERVICE only."""
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(ETC / "ntpautokey.service")
    service = unit["Service"]
    assert service["ExecStart"].split()[1:3] == ["ntpautokey", "--config"]
    assert Path(service["ExecStart"].split()[0]).name == "twist"
    assert service["User"] == "ntpauto"
    assert service["AmbientCapabilities"] == "CAP_NET_BIND_SERVICE"
    assert service["CapabilityBoundingSet"] == "CAP_NET_BIND_SERVICE"
