"""The seeded fuzz slice CI runs: Hypothesis (derandomized, bounded examples) over every
parser; each may raise only the error types its module declares.  The long campaign is
``benchmarks/fuzz_campaign.py``."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

from hypothesis import HealthCheck, given, settings

from tests.fuzz import strategies
from tests.fuzz.targets import targets

SLICE = settings(derandomize=True, max_examples=150, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TARGETS = targets()


def check(name: str, data: bytes) -> None:
    target = TARGETS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cryptography's deprecation warnings on odd DER
        try:
            target.run(data)
        except target.expected:
            pass


@SLICE
@given(strategies.packets())
def test_fuzz_wire_parser(data):
    """ntpauto.wire.packet.parse: a Packet or MalformedPacket."""
    check("packet", data)


@SLICE
@given(strategies.packets())
def test_fuzz_autokey_fields_and_values(data):
    """Field decoder and value decoders: FieldError / CertificateError / DER ValueError."""
    check("fields", data)


@SLICE
@given(strategies.packets())
def test_fuzz_autokey_state_machines(data):
    """Responder and association state machines: only FieldError/MalformedPacket escape
    (protocol errors are failed verdicts the harness answers with a reset)."""
    check("autokey", data)


@SLICE
@given(strategies.certificates())
def test_fuzz_certificates(data):
    """parse_certificate / check_cert_response: CertificateError only."""
    check("cert", data)


@settings(SLICE, max_examples=60)
@given(strategies.key_files())
def test_fuzz_key_files(data):
    """read_key_file and the IFF/GQ/MV readers: KeyFileError only."""
    check("keyfile", data)


@SLICE
@given(strategies.configs())
def test_fuzz_config(data):
    """parse_config: ConfigError only."""
    check("config", data)


@SLICE
@given(strategies.packets())
def test_fuzz_engine_receive(data):
    """Engine.receive never raises: bad packets are dropped and counted."""
    check("engine", data)


@SLICE
@given(strategies.packets())
def test_fuzz_mode6(data):
    """ntpauto.mode6 raises nothing; the mode6_client parsers only ControlError."""
    check("mode6", data)


@SLICE
@given(strategies.ke_messages())
def test_fuzz_nts_ke_records(data):
    """NTS-KE reading, the server's answer, the client's reading: KeError only."""
    check("nts_ke", data)


@SLICE
@given(strategies.nts_packets())
def test_fuzz_nts_fields(data):
    """NTS fields: the readers raise only NtsFieldError (MalformedPacket from the parser);
    the session's check and both engines raise nothing."""
    check("nts", data)


def test_keyfile_scratch_directory_is_removed_at_exit(tmp_path: Path) -> None:
    """The keyfile target writes its inputs into one temporary directory per process, which
    is gone once the process exits (a campaign or test run leaves nothing in /tmp)."""
    code = ("from tests.fuzz.targets import _scratch, targets\n"
            "targets()['keyfile'].run(b'-----BEGIN PRIVATE KEY-----')\n"
            "print(_scratch())\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[2], check=True,
                            env={**os.environ, "TMPDIR": str(tmp_path)})
    used = Path(result.stdout.strip())
    assert used.parent == tmp_path and used.name.startswith("ntpauto-fuzz-")
    assert list(tmp_path.iterdir()) == []


def test_campaign_smoke():
    """The campaign runs every target and counts outcomes (a few hundred inputs)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from benchmarks.fuzz_campaign import campaign

    done, seconds, counts, findings = campaign(350, 7, list(TARGETS), report_every=1e9)
    assert done == 350 and not findings
    assert {key.split(":")[0] for key in counts} == set(TARGETS)
