"""Tests for ntpauto.tap and the twistd plugin, including a real ``twistd -n ntpautokey``."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import attrs
import pytest
from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from twisted.python import usage

from ntpauto import tap
from ntpauto.cli import main as cli_main
from ntpauto.cli.query import QueryError, query
from ntpauto.config import CryptoConfig, ListenConfig, default_config
from ntpauto.service import NTPAutokeyService

REPO = Path(__file__).resolve().parents[1]
TWISTD = [sys.executable, "-c",
          "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"]


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that nothing is bound to right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def subprocess_env() -> dict[str, str]:
    """The environment for a child Python that must import this checkout and its plugin."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def ntpauto_frames(output: str) -> list[str]:
    """Traceback lines pointing into ntpauto (what a clean run must not show; other noise,
    such as Twisted's own plugins failing in an incomplete environment, is not ours)."""
    return re.findall(r'File "[^"]*ntpauto[^"]*", line \d+', output)


def parse(*argv: str) -> tap.Options:
    options = tap.Options()
    options.parseOptions(list(argv))
    return options


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default configuration makes ./ntpkeys: never in the checkout."""
    monkeypatch.chdir(tmp_path)


def test_defaults(tmp_path: Path) -> None:
    """No options: the default stratum-1 configuration on 127.0.0.1:12300, with Autokey
    keys generated into ./ntpkeys on first run (the key 0600) and loaded afterwards."""
    options = parse()
    host = socket.gethostname()
    keys = tmp_path / "ntpkeys"
    assert options.config == attrs.evolve(default_config(), keysdir=str(keys),
                                          crypto=CryptoConfig(host=host))
    key_file = (keys / f"ntpkey_host_{host}").resolve()
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert b"ENCRYPTED" in key_file.read_bytes()
    service = tap.makeService(options)
    assert isinstance(service, NTPAutokeyService)
    assert service.config.port == 12300
    assert service.engine.autokey is not None and service.engine.autokey.host.name == host
    certificate = (keys / f"ntpkey_cert_{host}").resolve().read_bytes()
    again = parse()  # second run: the same keys, nothing generated
    assert again.config == options.config
    assert (keys / f"ntpkey_cert_{host}").resolve().read_bytes() == certificate
    assert len(list(keys.iterdir())) == 4  # host key and certificate, each with its link


def test_keysdir_and_no_autokey(tmp_path: Path) -> None:
    """``--keysdir`` moves the generated keys; ``--no-autokey`` makes none."""
    options = parse("--keysdir", str(tmp_path / "elsewhere"))
    assert options.config.keysdir == str(tmp_path / "elsewhere")
    assert parse("--no-autokey").config == default_config()
    assert not (tmp_path / "ntpkeys").exists()


def test_broken_default_keys_are_a_usage_error_and_kept(tmp_path: Path) -> None:
    """A host key the default configuration cannot read is reported by name and left as
    it is (never replaced by new keys)."""
    keys = tmp_path / "ntpkeys"
    keys.mkdir()
    broken = keys / f"ntpkey_host_{socket.gethostname()}"
    broken.write_text("not a key\n")
    with pytest.raises(usage.UsageError, match="ntpkeys"):
        parse()
    assert broken.read_text() == "not a key\n"
    assert sorted(p.name for p in keys.iterdir()) == [broken.name]


def test_port_and_interface_override() -> None:
    """``--port`` and ``--interface`` replace what the config says."""
    options = parse("--port", "0", "--interface", "127.0.0.2")
    assert options.config.port == 0
    assert options.config.listen == (ListenConfig("127.0.0.2"),)


def test_config_file(tmp_path: Path) -> None:
    """``--config`` loads the file; ``--port`` still overrides it."""
    conf = tmp_path / "ntp.conf"
    conf.write_text("server 127.127.1.0\nfudge 127.127.1.0 stratum 2\n"
                    "interface listen 127.0.0.1\nport 12301\n")
    options = parse("--config", str(conf))
    assert options.config.port == 12301
    assert options.config.path == str(conf)
    assert parse("--config", str(conf), "-p", "0").config.port == 0


def test_bad_config_is_a_usage_error(tmp_path: Path) -> None:
    """A config error becomes a ``UsageError`` reading ``file:line: message``."""
    conf = tmp_path / "ntp.conf"
    conf.write_text("driftfile /tmp/x\nserver 127.0.0.1 minpoll banana\n")
    with pytest.raises(usage.UsageError) as caught:
        parse("--config", str(conf))
    assert str(caught.value).startswith(f"{conf}:2: ")


def test_missing_config_is_a_usage_error(tmp_path: Path) -> None:
    """A config file that does not exist is reported by name."""
    with pytest.raises(usage.UsageError, match="nonexistent.conf"):
        parse("--config", str(tmp_path / "nonexistent.conf"))


def test_missing_keys_file_is_a_usage_error(tmp_path: Path) -> None:
    """A keys file named by the config but absent is reported by name, not a traceback."""
    conf = tmp_path / "ntp.conf"
    conf.write_text(f"keys {tmp_path / 'absent.keys'}\ntrustedkey 1\n")
    with pytest.raises(usage.UsageError, match="absent.keys"):
        parse("--config", str(conf))



def test_unusable_autokey_keys_are_a_usage_error(tmp_path: Path) -> None:
    """A config whose ``crypto`` host files are missing or broken is reported by file name,
    not a traceback."""
    (tmp_path / "ntpkey_host_h").write_text("not a key\n")
    conf = tmp_path / "ntp.conf"
    conf.write_text(f"crypto host h\nkeysdir {tmp_path}\n")
    with pytest.raises(usage.UsageError, match="ntpkey_"):
        parse("--config", str(conf))

def test_rcvbuf_overrides_the_config() -> None:
    assert parse("--no-autokey", "--rcvbuf", "65536").config.rcvbuf == 65536
    assert parse("--no-autokey", "--rcvbuf", "0").config.receive_buffer == 0


@pytest.mark.parametrize("size", ["x", "100", "-1"])
def test_bad_rcvbuf(size: str) -> None:
    with pytest.raises(usage.UsageError, match="--rcvbuf"):
        parse("--no-autokey", "--rcvbuf", size)


@pytest.mark.parametrize("port", ["x", "-1", "65536"])
def test_bad_port(port: str) -> None:
    """A port that is not 0-65535 is a usage error."""
    with pytest.raises(usage.UsageError, match="--port"):
        parse("--port", port)


def test_plugin_is_discoverable() -> None:
    """twistd finds the ``ntpautokey`` service maker, and it points at this module."""
    makers = {maker.tapname: maker for maker in getPlugins(IServiceMaker)}
    assert "ntpautokey" in makers
    maker = makers["ntpautokey"]
    assert IServiceMaker.providedBy(maker)
    assert maker.options is tap.Options
    assert maker.makeService is tap.makeService


def test_plugin_directory_has_no_init() -> None:
    """``twisted/plugins`` must stay a namespace drop-in (no ``__init__.py`` anywhere)."""
    assert not (REPO / "twisted" / "__init__.py").exists()
    assert not (REPO / "twisted" / "plugins" / "__init__.py").exists()


def _retry_query(port: int, process: subprocess.Popen, deadline: float) -> dict:
    """Query until the daemon answers (it needs a moment to start), bounded by deadline."""
    while True:
        assert process.poll() is None, process.communicate()[0]
        try:
            return query("127.0.0.1", port, timeout=0.5)
        except QueryError:
            if time.monotonic() > deadline:
                raise


@pytest.mark.slow
def test_twistd_serves_time(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``twistd -n ntpautokey --port P`` answers ``ntpauto query 127.0.0.1 --port P`` and
    logs where it listens."""
    port = free_udp_port()
    process = subprocess.Popen(
        [*TWISTD, "-n", "--pidfile", str(tmp_path / "twistd.pid"), "--logfile", "-",
         "ntpautokey", "--port", str(port)],
        cwd=tmp_path, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    try:
        result = _retry_query(port, process, time.monotonic() + 20)
        assert result["stratum"] == 1
        assert abs(result["offset"]) < 0.05
        capsys.readouterr()
        assert cli_main(["query", "127.0.0.1", "--port", str(port), "--timeout", "2"]) == 0
        printed = capsys.readouterr().out
        assert "stratum     1" in printed and "refid       LOCL" in printed
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=20)
    assert f"NTP listening on UDP 127.0.0.1:{port}" in output
    assert ntpauto_frames(output) == [], output


@pytest.mark.slow
def test_twistd_rejects_bad_config(tmp_path: Path) -> None:
    """A malformed config stops twistd with ``file:line: message`` and a failure status."""
    conf = tmp_path / "bad.conf"
    conf.write_text("# comment\n\nserver 127.0.0.1 minpoll banana\n")
    result = subprocess.run(
        [*TWISTD, "-n", "--pidfile", str(tmp_path / "twistd.pid"), "--logfile", "-",
         "ntpautokey", "--config", str(conf)],
        cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"{conf}:3: " in output
    assert ntpauto_frames(output) == [], output


def test_ident_option_gives_the_host_a_scheme(tmp_path):
    """--ident iff:KEYSDIR:GROUP:PW loads the IFF server key: the host then advertises IFF
    and answers its challenges; without crypto the option is a usage error."""
    from ntpauto.cli import main as cli

    keysdir = tmp_path / "keys"
    keysdir.mkdir()
    assert cli(["keygen", "--keysdir", str(keysdir), "-T", "-I", "-b", "256", "-m", "1024",
                "-s", "alice@alice", "-p", "apw"]) == 0
    config = tmp_path / "ntp.conf"
    config.write_text(f"crypto host alice pw apw\nkeysdir {tmp_path / 'empty'}\n")
    (tmp_path / "empty").mkdir()
    for name in keysdir.iterdir():  # host key and certificate only: no identity keys
        if "host" in name.name or "cert" in name.name:
            (tmp_path / "empty" / name.name).symlink_to(name)
    options = tap.Options()
    options.parseOptions(["--config", str(config)])
    assert not options.service.engine.autokey.host.scheme_bits
    options = tap.Options()
    options.parseOptions(["--config", str(config), "--ident", f"iff:{keysdir}:alice:apw"])
    host = options.service.engine.autokey.host
    assert host.scheme_bits == 0x20 and host.server_scheme(7) is not None
    bare = tmp_path / "bare.conf"
    bare.write_text("localclock stratum 1\n")
    with pytest.raises(usage.UsageError, match="--ident needs Autokey"):
        tap.Options().parseOptions(["--config", str(bare), "--ident",
                                    f"iff:{keysdir}:alice:apw"])


def test_help_ident_lists_every_scheme(capsys):
    """--help-ident lists the built-in schemes and exits."""
    options = tap.Options()
    options.identOutput = __import__("io").StringIO()
    with pytest.raises(SystemExit):
        options.parseOptions(["--help-ident"])
    text = options.identOutput.getvalue()
    for name in ("tc", "pc", "iff", "gq", "mv"):
        assert f"  {name}" in text
