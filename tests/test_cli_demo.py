"""``ntpauto demo`` end to end: three real daemons on loopback complete the Autokey dances,
and nothing (daemon or directory) is left behind, also on timeout and Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ntpauto.cli import demo

REPO = Path(__file__).resolve().parents[1]


def environment(tmp_path: Path) -> dict[str, str]:
    """Our environment with the temporary directory (where the demo makes its own) moved
    into ``tmp_path``, and the checkout importable."""
    variables = dict(os.environ)
    variables["TMPDIR"] = str(tmp_path)
    variables["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO),
                                                           variables.get("PYTHONPATH")]))
    return variables


def command(*argv: str) -> list[str]:
    return [sys.executable, "-m", "ntpauto.cli", "demo", *argv]


def workdir(text: str) -> Path:
    """The demo's working directory, named in its first line (or in the --keep line)."""
    match = re.search(r"(?:in|kept) (\S*ntpauto-demo-\S+?)[ :\n]", text)
    assert match, text
    return Path(match.group(1))


def processes_mentioning(text: str) -> list[int]:
    """PIDs of running processes whose command line contains ``text`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


def assert_nothing_left(output: str, tmp_path: Path) -> None:
    """No daemon of the run is alive and the demo's directory is gone."""
    directory = workdir(output)
    assert directory.parent == tmp_path
    assert not directory.exists(), f"{directory} was not removed"
    assert not list(tmp_path.glob("ntpauto-demo-*"))
    for pid in map(int, re.findall(r"pid (\d+)", output)):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue  # gone
        assert str(directory).encode() not in cmdline, f"daemon {pid} still running"
    if Path("/proc/self").exists():
        assert processes_mentioning(str(directory)) == []


def test_config_text_for_each_role():
    """Each host's ntp.conf listens on its own loopback address and port, bob and carol poll
    their server with Autokey every 8 s (ident only for challenge-response schemes), and in
    PC every host runs as alice."""
    ports = {"alice": 40001, "bob": 40002, "carol": 40003}
    alice, bob, carol = demo.HOSTS
    text = demo.config_text(alice, "iff", ports)
    assert "interface listen 127.0.0.1\nport 40001\nlocalclock stratum 1\n" in text
    assert "crypto host alice ident demo pw" in text and "keysdir .\n" in text
    text = demo.config_text(carol, "iff", ports)
    assert "interface listen 127.0.0.3\n" in text
    assert "server 127.0.0.2 port 40002 autokey ident demo iburst" in text
    assert "minpoll 3 maxpoll 3" in text
    assert "ident demo" not in demo.config_text(bob, "tc", ports).split("server")[1].split(
        "\n")[0]
    assert f"crypto host alice pw {alice.password}" in demo.config_text(carol, "pc", ports)


def test_missing_names_each_unfinished_step():
    """``missing`` reports an unproven association, a wrong trail and no system peer, and
    nothing once bob and carol are done."""
    def document(peer, proventic, trail, associd=9):
        return {"system": {"peer": peer}, "associations": [{
            "associd": associd, "address": "127.0.0.2", "autokey": {
                "flags": ["ENAB", "IFF", "CERT"], "proventic": proventic, "trail": trail}}]}

    done_trail = [["bob@demo", "alice@demo"], ["alice@demo", "alice@demo"]]
    bob = document(9, True, [["alice@demo", "alice@demo"]])
    bob["associations"][0]["address"] = "127.0.0.1"
    assert demo.missing({"bob": bob, "carol": document(9, True, done_trail)}, "iff") == []
    lacking = demo.missing({"bob": bob, "carol": document(None, False, [
        ["bob@demo", "bob@demo"]])}, "iff")
    assert any("carol -> bob: not proventic (flags so far: IFF CERT)" in line
               for line in lacking)
    assert any("certificate trail is bob@demo (issuer bob@demo)" in line for line in lacking)
    assert "carol: no system peer" in lacking
    assert demo.missing({"bob": bob, "carol": None}, "iff") == [
        "carol: no status from its daemon"]
    assert demo.missing({"bob": bob}, "iff") == [
        "carol: not started (waiting for bob to be synchronised)"]
    # PC has no trail to wait for.
    assert demo.missing({"bob": bob, "carol": document(9, True, [])}, "pc") == []


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["iff", "tc"])
def test_demo_completes_and_cleans_up(tmp_path, scheme):
    """The demo (IFF by default, and TC) exits 0: the flags light up for bob -> alice (up to
    SIGN) and carol -> bob, carol's trail runs through bob's certificate signed by alice to
    alice's trusted root, and afterwards no daemon runs and the directory is gone."""
    argv = [] if scheme == "iff" else ["--ident", scheme]
    # A generous timeout: the dances take under a minute, but a loaded CI machine is slower.
    result = subprocess.run(command("--timeout", "140", *argv), capture_output=True, text=True,
                            timeout=200, env=environment(tmp_path))
    output = result.stdout
    assert result.returncode == 0, output + result.stderr
    assert f"identity scheme {scheme.upper()}" in output
    assert "-m 1024" in output  # the small sizes are announced
    assert re.search(r"bob -> alice: .*CERT VRFY PROV COOK .*SIGN", output), output
    assert re.search(r"carol -> bob: .*CERT VRFY PROV COOK", output), output
    assert re.search(r"1\. bob@demo +signed by alice@demo", output), output
    assert re.search(r"2\. alice@demo +self-signed, the trusted root", output), output
    assert f"identity scheme: {scheme.upper()}" in output
    assert re.search(r"carol -> bob +offset [+-]\d+\.\d{6} s .*\(system peer\)", output)
    assert "every association is proventic and both clients have a system peer" in output
    assert_nothing_left(output, tmp_path)


@pytest.mark.slow
def test_timeout_reports_what_is_missing(tmp_path):
    """With a timeout too short for the dances the demo exits 1, says what is missing, and
    still stops the daemons and removes its directory."""
    result = subprocess.run(command("--timeout", "2"), capture_output=True, text=True,
                            timeout=60, env=environment(tmp_path))
    assert result.returncode == 1
    assert "not done after" in result.stderr and "missing:" in result.stderr
    assert "carol" in result.stderr
    assert_nothing_left(result.stdout, tmp_path)


@pytest.mark.slow
def test_keep_keeps_the_directory(tmp_path):
    """--keep leaves the keys, configurations and logs and says where (the daemons still
    stop)."""
    result = subprocess.run(command("--timeout", "2", "--quiet", "--keep"),
                            capture_output=True, text=True, timeout=60,
                            env=environment(tmp_path))
    assert result.returncode == 1
    directory = workdir(result.stdout)
    assert (directory / "alice" / "ntp.conf").is_file()
    assert (directory / "carol" / "ntpkey_iffpar_demo").exists()
    assert (directory / "alice.log").is_file()
    assert processes_mentioning(str(directory)) == []


@pytest.mark.slow
def test_ctrl_c_stops_the_daemons(tmp_path):
    """Ctrl-C (SIGINT) while the dances run: exit 130, daemons terminated, directory gone."""
    process = subprocess.Popen(command(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=environment(tmp_path))
    lines = []
    try:
        deadline = time.monotonic() + 60
        assert process.stdout is not None
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "bob -> alice:" in line:  # the daemons are up and talking
                break
        assert any("bob -> alice:" in line for line in lines), "".join(lines)
        process.send_signal(signal.SIGINT)
        rest, errors = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = "".join(lines) + rest
    assert process.returncode == 130, output + errors
    assert "interrupted" in errors
    assert_nothing_left(output, tmp_path)


class GonePipe:
    """An output stream whose reader has gone away: every write fails as on a closed pipe."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")


def test_closed_output_ends_quietly(tmp_path, monkeypatch, capsys):
    """Output into a pipe nobody reads: no message, the SIGPIPE exit status, and the
    clean-up still done (the directory removed)."""
    from argparse import Namespace

    from ntpauto.cli import BROKEN_PIPE_STATUS

    monkeypatch.setattr(demo.tempfile, "tempdir", str(tmp_path))
    args = Namespace(ident="tc", timeout=5.0, keep=False, quiet=False)
    assert demo.run(args, out=GonePipe()) == BROKEN_PIPE_STATUS
    assert capsys.readouterr().err == ""
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_head_leaving_stops_the_daemons(tmp_path):
    """``ntpauto demo | head`` with head gone while the dances run: the daemons are stopped
    and the directory removed, without a message, exit status of SIGPIPE."""
    from ntpauto.cli import BROKEN_PIPE_STATUS

    process = subprocess.Popen(command(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=environment(tmp_path))
    lines = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if "bob -> alice:" in line:  # the daemons are up and talking
                break
        process.stdout.close()
        errors = process.stderr.read() if process.stderr else ""
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == BROKEN_PIPE_STATUS, errors
    assert errors == ""
    assert_nothing_left("".join(lines), tmp_path)
