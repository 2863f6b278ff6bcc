"""The seeded fuzz slice CI runs: Hypothesis (derandomized, bounded examples) over every
parser; each may raise only the error types its module declares.  The long campaign is
``benchmarks/fuzz_campaign.py``."""

from __future__ import annotations

import warnings

import pytest
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


@pytest.mark.skipif("mode6" not in TARGETS, reason="ntpauto.mode6 is not there yet")
@SLICE
@given(strategies.packets())
def test_fuzz_mode6(data):
    """ntpauto.mode6 (when present): its declared errors only."""
    check("mode6", data)


def test_campaign_smoke():
    """The campaign runs every target and counts outcomes (a few hundred inputs)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from benchmarks.fuzz_campaign import campaign

    done, seconds, counts, findings = campaign(350, 7, list(TARGETS), report_every=1e9)
    assert done == 350 and not findings
    assert {key.split(":")[0] for key in counts} == set(TARGETS)
