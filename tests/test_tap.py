"""Tests for ntpauto.tap and the twistd plugin, including a real ``twistd -n ntpautokey``."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from twisted.python import usage

from ntpauto import __version__, tap
from ntpauto.cli import main as cli_main
from ntpauto.cli.query import query
from ntpauto.config import CryptoConfig, ListenConfig, default_config
from ntpauto.service import NTPAutokeyService, listen_addresses

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


@pytest.fixture
def probes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """The (first listen address, port) of every :func:`tap.check_listen` call, which is
    not carried out: tests of the default port must not depend on 12300 being free here (a
    quick-start daemon may be running)."""
    calls: list[tuple[str, int]] = []
    monkeypatch.setattr(tap, "check_listen",
                        lambda config: calls.append((listen_addresses(config)[0], config.port)))
    return calls


def test_defaults(tmp_path: Path, probes: list[tuple[str, int]]) -> None:
    """No options: the default stratum-1 configuration on 127.0.0.1:12300, with Autokey
    keys generated into ./ntpkeys on first run (the key 0600, after the port was found
    free) and loaded afterwards."""
    options = parse()
    assert probes == [("127.0.0.1", 12300)]
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
    assert probes == [("127.0.0.1", 12300)] * 2  # makeService tries the port again
    again = parse()  # second run: the same keys, nothing generated, no probe
    assert again.config == options.config
    assert (keys / f"ntpkey_cert_{host}").resolve().read_bytes() == certificate
    assert len(probes) == 2
    assert len(list(keys.iterdir())) == 4  # host key and certificate, each with its link


def test_keysdir_and_no_autokey(tmp_path: Path, probes: list[tuple[str, int]]) -> None:
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


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """``twistd ntpautokey --version``: ntpauto's version (and Twisted's), exit 0."""
    with pytest.raises(SystemExit) as exited:
        parse("--version")
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith(f"ntpauto {__version__} (Twisted ")


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A UDP port on 127.0.0.1 that this test holds bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_port_in_use_on_first_run_makes_no_keys(tmp_path: Path, busy_port: int) -> None:
    """The first run with its port taken: one line naming address and port, and no key
    files made for a daemon that cannot start."""
    with pytest.raises(SystemExit) as exited:
        parse("--port", str(busy_port))
    assert exited.value.code == (f"ntpauto: cannot listen on UDP 127.0.0.1 port {busy_port}: "
                                 "Address already in use")
    assert not (tmp_path / "ntpkeys").exists()


def test_make_service_stops_on_a_port_in_use(busy_port: int) -> None:
    """Existing keys or none, ``makeService`` (which twistd calls before it daemonises,
    writes its pid file or logs) tries the ports first: one line, exit status 1."""
    options = parse("--no-autokey", "--interface", "127.0.0.1", "--port", str(busy_port))
    with pytest.raises(SystemExit) as exited:
        tap.makeService(options)
    assert exited.value.code == (f"ntpauto: cannot listen on UDP 127.0.0.1 port {busy_port}: "
                                 "Address already in use")
    assert tap.makeService(parse("--no-autokey", "--port", "0")) is not None


def test_twistd_port_in_use(tmp_path: Path, busy_port: int) -> None:
    """A real ``twistd -n ntpautokey`` on a port this test holds: exit status 1, one line on
    stderr, no traceback, no key file, no pid file."""
    result = subprocess.run(
        [*TWISTD, "-n", "--pidfile", str(tmp_path / "twistd.pid"), "ntpautokey", "--port",
         str(busy_port)],
        cwd=tmp_path, env=subprocess_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (f"ntpauto: cannot listen on UDP 127.0.0.1 port {busy_port}: "
                             "Address already in use\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


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


def _wait_listening(process: subprocess.Popen, port: int) -> list[str]:
    """The daemon's output up to the line saying it listens on ``port`` (not a loop of
    queries: each would take an ephemeral port, which might be the daemon's own); a daemon
    silent for 30 s is killed."""
    lines: list[str] = []
    assert process.stdout is not None
    watchdog = threading.Timer(30, process.kill)
    watchdog.start()
    try:
        for line in process.stdout:
            lines.append(line)
            if f"NTP listening on UDP 127.0.0.1:{port}" in line:
                return lines
    finally:
        watchdog.cancel()
    raise AssertionError("".join(lines))


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
        started = _wait_listening(process, port)
        result = query("127.0.0.1", port, timeout=5)
        assert result["stratum"] == 1
        assert abs(result["offset"]) < 0.05
        capsys.readouterr()
        assert cli_main(["query", "127.0.0.1", "--port", str(port), "--timeout", "2"]) == 0
        printed = capsys.readouterr().out
        assert "stratum     1" in printed and "refid       LOCL" in printed
    finally:
        process.terminate()
        rest, _ = process.communicate(timeout=20)
    output = "".join(started) + rest
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


def test_help_is_plain_and_wrapped() -> None:
    """``twistd ntpautokey --help`` and ``--help-ident-scheme``: no markup, no line wider
    than a terminal, and no ":(no arguments)" for schemes that take none."""
    text = str(tap.Options())
    assert "``" not in text and "--version" in text and "ntpauto" in text
    for scheme in ("tc", "iff"):
        options = tap.Options()
        options.identOutput = __import__("io").StringIO()
        with pytest.raises(SystemExit):
            options.parseOptions(["--help-ident-scheme", scheme])
        shown = options.identOutput.getvalue()
        assert max(len(line) for line in shown.splitlines()) <= 80, shown
        assert "(no arguments)" not in shown
    assert shown.startswith("Usage: --ident iff:KEYSDIR:GROUP[:PASSWORD]\n")
    options = tap.Options()
    options.identOutput = __import__("io").StringIO()
    with pytest.raises(SystemExit):
        options.parseOptions(["--help-ident-scheme", "tc"])
    assert options.identOutput.getvalue().startswith("Usage: --ident tc\n")
