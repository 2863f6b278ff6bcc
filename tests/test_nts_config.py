"""The NTS directives and server options (ntpauto.config), with chrony's names."""

from __future__ import annotations

import pytest

from ntpauto.config import ConfigError, parse_config


def test_nts_directives() -> None:
    config = parse_config(
        "ntsservercert cert.pem\nntsserverkey key.pem\nntsport 4461\nntsdumpdir state\n"
        "ntsrotate 3600\nntstrustedcerts ca.pem\n"
        "server ntp.example.org nts ntsport 4470 iburst\nserver 192.0.2.1 nts\n",
        "/etc/ntpauto/ntp.conf")
    assert config.nts_server_cert == "/etc/ntpauto/cert.pem"
    assert config.nts_server_key == "/etc/ntpauto/key.pem"
    assert config.nts_dump_dir == "/etc/ntpauto/state"
    assert config.nts_trusted_certs == "/etc/ntpauto/ca.pem"
    assert (config.nts_port, config.nts_rotate) == (4461, 3600)
    first, second = config.associations
    assert first.nts and first.ntsport == 4470 and first.iburst
    assert second.nts and second.ntsport == 4460


def test_defaults() -> None:
    config = parse_config("")
    assert (config.nts_server_cert, config.nts_port, config.nts_rotate) == (None, 4460, 86400)
    assert not parse_config("server 192.0.2.1\n").associations[0].nts


@pytest.mark.parametrize("text, message", [
    ("ntsserverkey key.pem\n", "ntsserverkey needs ntsservercert"),
    ("ntsport 65536\n", "out of range"),
    ("ntsport x\n", "must be an integer"),
    ("ntsrotate -1\n", "out of range"),
    ("ntsdumpdir\n", "needs an argument"),
    ("server 192.0.2.1 nts ntsport 0\n", "out of range"),
    ("server 192.0.2.1 ntsport 4460\n", "'ntsport' needs 'nts'"),
    ("peer 192.0.2.1 nts\n", "for 'server' associations"),
])
def test_errors_name_file_and_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_config("# NTS\n" + text, "/etc/ntp.conf")
    assert str(info.value).startswith("/etc/ntp.conf:2:")
