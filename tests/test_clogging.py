"""The clogging defence (RFC 5906 section 12.2): the private-key budget, the caps on what a
COOK request may make us compute, and ``limited`` for requests carrying extension fields.
Time is a fake monotonic timer; private-key work is made to "cost" fake seconds."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from ntpauto.auth.autokey import mac, session_key
from ntpauto.auth.keys import KeyStore, parse_keys
from ntpauto.autokey.budget import BudgetExceeded, PrivateKeyBudget
from ntpauto.autokey.fields import ASSOC, CERT, COOK, GQ, LEAP, Field
from ntpauto.autokey.host import HostCredentials, load_host
from ntpauto.autokey.responder import Responder
from ntpauto.autokey.serving import AutokeyNode
from ntpauto.autokey.values import encode_public_key
from ntpauto.config import parse_config
from ntpauto.engine import Engine
from ntpauto.events import Event
from ntpauto.ntp.clocks import SimulatedClock
from ntpauto.wire.packet import Header, parse
from ntpauto.wire.timestamps import unix_to_ntp

CLIENT = ("192.0.2.10", 40000)
SERVER = ("192.0.2.1", 123)
T0 = 1000.0
EPOCH = 1_795_460_000.0  # inside the vectors' certificate validity
NOW = 4_004_448_800  # NTP seconds of EPOCH
KEYS = "1 MD5 cloggingsecret\n"
PASSWORDS = {"alice": "alicepw", "brenda": "brendapw"}


class FakeTimer:
    """A monotonic timer the test moves."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def creds(vectors: Path, scenario: str, name: str) -> HostCredentials:
    return load_host(vectors / "keys" / scenario / name, host=name, password=PASSWORDS[name])


def costly_signatures(host: HostCredentials, timer: FakeTimer, cost: float) -> list[int]:
    """Make every signature by ``host`` take ``cost`` fake seconds; returns the call log."""
    calls: list[int] = []
    sign = host.sign

    def slow_sign(data: bytes) -> bytes:
        calls.append(1)
        timer.t += cost
        return sign(data)

    host.sign = slow_sign  # type: ignore[method-assign]
    return calls


# --- the budget itself ------------------------------------------------------------------


def test_budget_refuses_beyond_the_limit():
    timer = FakeTimer()
    budget = PrivateKeyBudget(share=0.2, burst=0.5, timer=timer)
    assert budget.allow()
    budget.charge(0.6)  # one operation may overdraw: its cost is known only afterwards
    assert not budget.allow()
    timer.t += 0.4  # repays 0.08 of the 0.1 debt
    assert not budget.allow()
    timer.t += 0.2
    assert budget.allow()
    assert (budget.granted, budget.refused) == (2, 2)
    with pytest.raises(BudgetExceeded):
        budget.charge(1.0)
        budget.admit("COOK")


def test_budget_bounds_the_long_run_share():
    """Requests every millisecond for 100 s, each 40 ms of work (a GQ-2048 response): the
    work done is at most burst + share * 100 s + one operation, and not much less."""
    timer = FakeTimer()
    budget = PrivateKeyBudget(share=0.2, burst=0.5, timer=timer)
    end = timer.t + 100.0
    done = 0
    while timer.t < end:
        if budget.allow():
            with budget.measure():
                timer.t += 0.040
            done += 1
        timer.t += 0.001
    assert budget.spent == pytest.approx(done * 0.040)
    assert 0.2 * 100 - 0.1 <= budget.spent <= 0.5 + 0.2 * 100 + 0.040
    assert budget.longest == pytest.approx(0.040)
    assert budget.refused > 10 * done



def test_fresh_sources_keep_the_reserve_under_a_flood_of_real_sources():
    """200 real-address sources each asking for a 30 ms operation every 4 s (inside any
    ``discard`` rate) keep the bucket empty; a new client asking for one operation every
    16 s (its poll) is refused without the reserve, and admitted at once with it: its whole
    dance (3 operations) is done in three polls.  The flooders together still get the
    budget's share, no more."""

    def run(fresh_ops: int) -> tuple[list[bool], PrivateKeyBudget]:
        timer = FakeTimer()
        budget = PrivateKeyBudget(share=0.2, burst=0.5, timer=timer, fresh_ops=fresh_ops)
        flooders = [f"198.51.100.{i % 250}" if i < 250 else f"203.0.113.{i - 250}"
                    for i in range(200)]
        client: list[bool] = []
        start = timer.t
        step = 4.0 / len(flooders)  # every flooder once per 4 s
        i = 0
        while timer.t < start + 400.0:
            if budget.allow(flooders[i % len(flooders)]):
                budget.charge(0.030)
            i += 1
            timer.t += step
            if timer.t - start >= 100.0 and len(client) < 3 and \
                    (timer.t - start - 100.0) >= 16.0 * len(client):
                granted = budget.allow("192.0.2.99")
                if granted:
                    budget.charge(0.030)
                client.append(granted)
        return client, budget

    client, budget = run(fresh_ops=3)
    assert client == [True, True, True]
    assert budget.refused_reserve > 0
    assert budget.spent <= 0.5 + 0.2 * 400 + 0.030 and budget.spent >= 0.2 * 400 - 1.0
    # The same flood with an allowance no flooder ever uses up (the reserve open to all):
    # the client's first requests are refused.
    starved, _ = run(fresh_ops=10**6)
    assert starved.count(False) >= 2


def test_reserve_counts_grants_per_source_in_a_window_and_is_bounded():
    timer = FakeTimer()
    budget = PrivateKeyBudget(share=0.2, burst=0.5, timer=timer, fresh_ops=2,
                              fresh_window=60.0, sources=3)
    budget.balance = 0.1  # at or below the reserve (0.25): fresh sources only
    assert budget.allow("a") and budget.allow("a")
    assert not budget.allow("a") and budget.refused_reserve == 1
    assert budget.allow(None)  # no source: a symmetric peer's request, always fresh
    timer.t += 61.0  # the grants age out
    budget.balance = 0.1
    assert budget.allow("a")
    for name in ("b", "c", "d"):  # a fourth source evicts the least recently granted
        assert budget.allow(name)
    assert budget.stats()["sources"] == 3
    budget.balance = 0.4  # above the reserve: anyone
    assert budget.allow("a") and budget.allow("a") and budget.allow("a")
    budget.balance = 0.0
    assert not budget.allow("zzz")  # empty: nobody
    with pytest.raises(ValueError):
        PrivateKeyBudget(fresh_ops=0)

def test_unlimited_budget_measures_only():
    timer = FakeTimer()
    budget = PrivateKeyBudget(share=None, timer=timer)
    budget.charge(1000.0)
    assert budget.allow()
    assert budget.stats()["spent"] == 1000.0


@pytest.mark.parametrize("share, burst", [(0.0, 1.0), (1.5, 1.0), (0.2, 0.0), (-1, 1)])
def test_budget_settings_checked(share, burst):
    with pytest.raises(ValueError):
        PrivateKeyBudget(share=share, burst=burst)


# --- the responder through the budget -----------------------------------------------------


@pytest.fixture
def gq_pair(vectors):
    """(alice's responder with a fake-timed budget, the timer, signature log, brenda)."""
    alice = creds(vectors, "gq", "alice")
    brenda = creds(vectors, "gq", "brenda")
    alice.signature_update(NOW)
    brenda.signature_update(NOW)
    timer = FakeTimer()
    calls = costly_signatures(alice, timer, 0.05)
    budget = PrivateKeyBudget(share=0.2, burst=0.2, timer=timer)
    return Responder(alice, budget=budget), timer, calls, brenda


def expensive_requests(brenda: HostCredentials) -> list[Field]:
    scheme = brenda.client_scheme("gq", "alice")
    challenge = Field(code=GQ, associd=5, value=scheme.make_challenge())
    return [brenda.cook_request(5), brenda.sign_request(5),
            Field(code=CERT, associd=5, value=b"alice@alice"), challenge]


def test_over_budget_requests_get_no_response(gq_pair):
    """Once the budget is spent, COOK, SIGN and GQ get no response at all (the requester asks
    again next poll instead of restarting its dance on an error response) and the private
    key is not used; CERT (signed once per update, then cached) and the cheap requests are
    still answered."""
    responder, timer, calls, brenda = gq_pair
    answered = 0
    for _ in range(4):
        for request in expensive_requests(brenda):
            response = responder.respond(request, packet_mode=3, now=NOW,
                                         client=CLIENT[0], server=SERVER[0])
            if response is None:
                assert isinstance(responder.last_error, BudgetExceeded)
                assert request.code != CERT
            else:
                assert not response.error
                answered += 1
    assert 4 < answered < 16  # every CERT, and what the burst allowed
    # Nothing but the 0.2 s burst (plus the one operation that overdrew it) was spent.
    assert responder.budget.spent == pytest.approx(0.05 * len(calls))
    assert responder.budget.spent <= 0.2 + 0.05 + 1e-9
    signatures = len(calls)
    refused = responder.budget.refused
    for request in expensive_requests(brenda):
        response = responder.respond(request, packet_mode=3, now=NOW, client=CLIENT[0],
                                     server=SERVER[0])
        assert (response is None) == (request.code != CERT)
    assert len(calls) == signatures  # never signs while over (CERT's signature is cached)
    assert responder.budget.refused == refused + 3
    for code in (ASSOC, LEAP):
        ok = responder.respond(Field.short_form(code, 5), packet_mode=3, now=NOW)
        assert not ok.error
    timer.t += 10.0  # the budget refills: served again
    response = responder.respond(brenda.cook_request(5), packet_mode=3, now=NOW,
                                 client=CLIENT[0], server=SERVER[0])
    assert response is not None and not response.error


def test_cheap_answers_do_not_spend_the_budget(gq_pair):
    responder, timer, calls, brenda = gq_pair
    for _ in range(50):
        responder.respond(Field.short_form(ASSOC, 5), packet_mode=3, now=NOW)
        responder.respond(Field.short_form(LEAP, 5), packet_mode=3, now=NOW)
    assert responder.budget.granted == 0 and responder.budget.spent == 0


def test_cookie_key_with_a_huge_exponent_is_refused(gq_pair):
    """OpenSSL accepts an exponent as large as a 3072-bit modulus, which would make one
    encryption cost as much as a private-key operation: refused before any work."""
    responder, timer, calls, brenda = gq_pair
    n = brenda.host_key.public_key().public_numbers().n
    for e in ((1 << 40) + 1, n - 2):
        key = rsa.RSAPublicNumbers(e, n).public_key()
        request = Field(code=COOK, associd=5, value=encode_public_key(key))
        response = responder.respond(request, packet_mode=3, now=NOW, client=CLIENT[0],
                                     server=SERVER[0])
        assert response.error and responder.last_error.event is Event.PUB
    assert calls == []


# --- the engine: plain time service is never starved; limited ------------------------------


def autokey_engine(vectors: Path, text: str, budget: PrivateKeyBudget | None = None
                   ) -> Engine:
    host = creds(vectors, "tc-rsa-md5", "alice")
    engine = Engine(parse_config(text), SimulatedClock(lambda: T0, epoch=EPOCH),
                    keys=KeyStore(parse_keys(KEYS), [1]),
                    autokey=AutokeyNode(host, Responder(host, budget=budget)))
    engine.start(T0)
    engine.sys = attrs.evolve(engine.sys, leap=0, stratum=1, refid=b"LOCL")
    host.signature_update(engine.crypto_now())
    return engine


def header(origin: int = 0) -> bytes:
    return Header(3, 4, 3, 0, 6, -20, 0, 0, b"\0\0\0\0", 0, origin, 0,
                  0xEEAE_0000_1234_5678).encode()


def with_field(f: Field, source=CLIENT, keyid: int = 0x1234_5678) -> bytes:
    data = header() + f.encode()
    return data + mac(session_key(source[0], SERVER[0], keyid, 0), keyid, data)


def serve(engine: Engine, data: bytes, source=CLIENT, now: float = T0):
    return engine.receive(data, source, unix_to_ntp(engine.clock.now()), now, SERVER)


def test_plain_service_is_never_starved(vectors):
    """With the budget spent, plain, symmetric-key and Autokey no-field requests are all
    served; a COOK request gets no reply, counted."""
    budget = PrivateKeyBudget(share=0.2, burst=0.5, timer=FakeTimer())
    engine = autokey_engine(vectors, "localclock stratum 1\namplification allow\n", budget)
    calls = costly_signatures(engine.autokey.host, budget.timer, 0.05)
    budget.charge(1000.0)
    brenda = creds(vectors, "tc-rsa-md5", "brenda")
    assert serve(engine, with_field(brenda.cook_request(9))) == []
    assert engine.counters["autokey_budget"] == 1 and calls == []
    assert engine.counters["served"] == 0 and engine.counters["autokey_error_response"] == 0

    plain = header()
    [reply] = serve(engine, plain)
    assert len(reply.data) == 48
    keyed = plain + KeyStore(parse_keys(KEYS), [1]).sign(1, plain)
    [reply] = serve(engine, keyed)
    assert len(reply.data) == 68 and not reply.data.endswith(b"\0\0\0\0")
    cookie = engine.autokey.responder.server_cookie(CLIENT[0], SERVER[0], engine.crypto_now())
    no_field = plain + mac(session_key(CLIENT[0], SERVER[0], 0x1234_5678, cookie),
                           0x1234_5678, plain)
    [reply] = serve(engine, no_field)
    assert len(reply.data) == 68 and not reply.data.endswith(b"\0\0\0\0")
    assert engine.counters["served"] >= 3 and engine.counters["badauth"] == 0


def test_limited_applies_to_requests_with_fields(vectors):
    """``restrict default limited kod``: a source asking for CERT twice a second is served
    its first burst, then dropped (counted autokey_limited); another source is served; plain
    requests keep their own ``limited`` handling (KoD)."""
    engine = autokey_engine(vectors, "localclock stratum 1\nrestrict default limited kod\n"
                                     "amplification allow\n")
    cert = Field(code=CERT, associd=3, value=engine.autokey.host.name.encode())
    flooder = ("192.0.2.66", 123)
    answered = 0
    for i in range(40):
        answered += len(serve(engine, with_field(cert, flooder), flooder, now=T0 + i * 0.5))
    assert 1 <= answered <= 9
    assert engine.counters["autokey_limited"] == 40 - answered
    [reply] = serve(engine, with_field(cert), CLIENT, now=T0 + 20)
    assert len(reply.data) > 400  # the certificate
    # Plain requests from the flooding address share its bucket, which the CERT flood keeps
    # over the limit: limited as ntpd does, without a kiss (one per average interval, and
    # the source had its chance while flooding).
    replies = [serve(engine, header(), flooder, now=T0 + 20 + i * 0.1) for i in range(3)]
    assert replies == [[], [], []]
    assert engine.counters["limited"] == engine.counters["kod_withheld"] == 3
    [kiss] = serve(engine, header(), CLIENT, now=T0 + 20.5)  # 0.5 s after its CERT
    assert parse(kiss.data).header.refid == b"RATE"


def test_unlimited_source_is_not_rate_limited(vectors):
    engine = autokey_engine(vectors, "localclock stratum 1\namplification allow\n")
    cert = Field(code=CERT, associd=3, value=engine.autokey.host.name.encode())
    for i in range(40):
        assert len(serve(engine, with_field(cert), now=T0 + i * 0.5)) == 1
    assert engine.counters["autokey_limited"] == 0


def test_default_daemon_budget_from_config(vectors, tmp_path):
    """The daemon's responder has the configured budget (default a fifth of one core)."""
    from ntpauto.engine import load_autokey

    keys = vectors / "keys" / "tc-rsa-md5" / "alice"
    base = f"keysdir {keys}\ncrypto host alice pw alicepw\n"
    node = load_autokey(parse_config(base, str(tmp_path / "ntp.conf")))
    assert (node.responder.budget.share, node.responder.budget.burst) == (0.2, 0.5)
    node = load_autokey(parse_config(base + "autokeybudget 0.05 burst 2\n",
                                     str(tmp_path / "ntp.conf")))
    assert (node.responder.budget.share, node.responder.budget.burst) == (0.05, 2.0)
    node = load_autokey(parse_config(base + "autokeybudget unlimited\n",
                                     str(tmp_path / "ntp.conf")))
    assert node.responder.budget.share is None
