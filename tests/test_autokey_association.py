"""Tests for ntpauto.autokey.association: the per-association Autokey state machine, its
request rules and every receive check (interop.md 5, 8 and 10)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import attrs
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from ntpauto.autokey.association import (
    NTP_REFRESH,
    AutokeyAssociation,
    group_gate,
)
from ntpauto.autokey.fields import ASSOC, AUTO, CERT, COOK, GQ, LEAP, NULL, SIGN, Field
from ntpauto.autokey.host import HostCredentials, load_host
from ntpauto.autokey.responder import Responder
from ntpauto.autokey.status import Flag
from ntpauto.autokey.values import AutoValue, LeapValue
from ntpauto.events import Event
from ntpauto.identity import gq
from ntpauto.identity.common import random_prime
from ntpauto.pki.certificates import build_self_signed, sign_request
from ntpauto.pki.profiles import RSA_MD5
from ntpauto.verdict import Verdict
from ntpauto.wire.packet import (
    MODE_ACTIVE,
    MODE_CLIENT,
    MODE_PASSIVE,
    MODE_SERVER,
)

T_ALICE = 4004438821
"""alice's signature update in the tc-rsa-md5 capture."""
NOW = 4004438858
CLIENT, SERVER = "127.0.0.3", "127.0.0.1"
ASSOCID = 3695
LEAP_VALUES = LeapValue(37, 3692217600, 3694377600)


def load(vectors: Path, scenario: str, who: str, **kwargs: Any) -> HostCredentials:
    """A host of a capture scenario (password = '<host>pw')."""
    return load_host(vectors / "pcap" / scenario / "keys" / who, host=who,
                     password=f"{who}pw", **kwargs)


class Dance:
    """brenda's client association against alice's responder (alice synchronised)."""

    def __init__(self, vectors: Path, scenario: str = "tc-rsa-md5",
                 ident: str | None = None) -> None:
        self.alice = load(vectors, scenario, "alice", leap=LEAP_VALUES)
        self.alice.signature_update(T_ALICE)
        self.brenda = load(vectors, scenario, "brenda")
        self.responder = Responder(self.alice)
        self.assoc = AutokeyAssociation(self.brenda, associd=ASSOCID, ident=ident,
                                        rng=random.Random(7))
        self.b_now = 0

    def request(self) -> Field:
        """brenda's next request (exactly one)."""
        (field,) = self.assoc.next_fields(self.b_now, synchronized=bool(self.b_now))
        return field

    def answer(self, request: Field) -> Field:
        """alice's response to ``request``."""
        response = self.responder.respond(request, packet_mode=MODE_CLIENT, now=NOW,
                                          client=CLIENT, server=SERVER)
        assert response is not None
        return response

    def feed(self, *fields: Field) -> list[Event]:
        """brenda receives ``fields`` in a server-mode packet answering her request: the
        event of each field's verdict (``Event.OK`` when it did not fail)."""
        return events(self.assoc.receive(list(fields), packet_mode=MODE_SERVER,
                                          now=self.b_now, proven=True))

    def step(self) -> tuple[Field, Field, list[Event]]:
        """One poll: request, response, events."""
        request = self.request()
        response = self.answer(request)
        return request, response, self.feed(response)

    def until(self, flag: int, limit: int = 10) -> None:
        """Poll until ``flag`` is lit."""
        for _ in range(limit):
            if self.assoc.status & flag:
                return
            self.step()
        raise AssertionError(f"{flag!r} never lit: {self.assoc.flags}")

    def cook_response(self) -> Field:
        """A valid COOK response for a COOK request brenda has just sent."""
        request = self.request()
        assert request.code == COOK
        return self.answer(request)


def events(verdicts: list[Verdict]) -> list[Event]:
    """The events of field verdicts, as the state machine logs them."""
    return [v.event for v in verdicts]


def rsa512(rng: random.Random) -> rsa.RSAPrivateKey:
    """A 512-bit RSA key, the size of the vectors' keys (``cryptography`` makes no keys
    below 1024 bits, so the primes are found here)."""
    e = 65537
    while True:
        p = random_prime(256, rng.getrandbits, top_two=True)
        q = random_prime(256, rng.getrandbits, top_two=True)
        phi = (p - 1) * (q - 1)
        if p != q and phi % e:
            break
    d = pow(e, -1, phi)
    numbers = rsa.RSAPrivateNumbers(p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q),
                                    rsa.rsa_crt_iqmp(p, q), rsa.RSAPublicNumbers(e, p * q))
    return numbers.private_key(unsafe_skip_rsa_key_validation=True)


@pytest.fixture
def dance(vectors: Path) -> Dance:
    """The tc-rsa-md5 dance, before the first request."""
    return Dance(vectors)


@pytest.fixture
def certified(dance: Dance) -> Dance:
    """The tc-rsa-md5 dance with CERT (and VRFY) lit."""
    dance.until(Flag.CERT)
    return dance


# --- request rules --------------------------------------------------------------------


def test_first_request_is_assoc(dance: Dance) -> None:
    """Status 0: an ASSOC request with our name, update and status word."""
    request = dance.request()
    assert (request.code, request.response, request.associd) == (ASSOC, False, ASSOCID)
    assert request.value == b"brenda@alice"
    assert request.filestamp == dance.brenda.status == 0x80001


def test_assoc_response_sets_status_and_peer(dance: Dance) -> None:
    """The server's ASSOC response gives the association its word (AUTO pre-lit in
    client/server), the peer name, issuer and association ID."""
    _, response, events = dance.step()
    assert events == [Event.OK]
    assert dance.assoc.status == 0x80003 | Flag.AUTO
    assert dance.assoc.peer_name == dance.assoc.issuer == "alice@alice"
    assert dance.assoc.peer_associd == response.associd
    assert dance.assoc.hcookie is not None


def test_tc_lights_cert_and_vrfy_together(certified: Dance) -> None:
    """A trusted self-signed certificate lights CERT and VRFY (TC), not PROV."""
    status = certified.assoc.status
    assert status & Flag.CERT and status & Flag.VRFY and not status & Flag.PROV
    assert certified.assoc.scheme_name == "tc"
    assert certified.assoc.trail == [("alice@alice", "alice@alice")]


def test_prov_lights_on_the_cook_signature(certified: Dance) -> None:
    """The first verified signature after VRFY (the COOK response) lights PROV."""
    _, _, events = certified.step()
    assert events == [Event.OK]
    assert certified.assoc.proventic and certified.assoc.status & Flag.COOK


def test_unsynchronised_client_stops_after_cook(certified: Dance) -> None:
    """Unsynchronised, nothing follows COOK (no SIGN, no LEAP, no AUTO in client mode)."""
    certified.until(Flag.COOK)
    assert certified.assoc.next_fields(0, synchronized=False) == []


def test_sign_then_leap_once_synchronised(certified: Dance) -> None:
    """Synchronised, SIGN then LEAP are requested and the dance completes."""
    certified.until(Flag.COOK)
    certified.brenda.signature_update(NOW - 10)
    certified.b_now = NOW
    codes = [certified.step()[0].code for _ in range(2)]
    assert codes == [SIGN, LEAP]
    assert certified.assoc.status == 0x87F03
    assert certified.assoc.next_fields(NOW, synchronized=True) == []


def test_sign_response_installs_our_certificate(certified: Dance) -> None:
    """The signed certificate goes into our cache (served for our name) and we re-sign."""
    certified.until(Flag.COOK)
    certified.brenda.signature_update(NOW - 10)
    certified.b_now = NOW
    request, _, events = certified.step()
    assert request.code == SIGN and events == [Event.OK]
    entry = certified.brenda.cache.lookup("brenda@alice")
    assert entry is not None and entry.issuer == "alice@alice"
    assert certified.brenda.update == NOW


def test_leap_response_installs_leap_values(certified: Dance) -> None:
    """An accepted LEAP response gives us the server's leap values, signed anew."""
    certified.until(Flag.COOK)
    certified.brenda.signature_update(NOW - 10)
    certified.b_now = NOW
    certified.until(Flag.LEAP)
    assert certified.brenda.leap_values == LEAP_VALUES
    assert certified.brenda.leap_field(1).timestamp == NOW


def test_keylist_generation_moves_on_cookie(certified: Dance) -> None:
    """Accepting a cookie asks for a new key list."""
    before = certified.assoc.keylist_generation
    certified.step()
    assert certified.assoc.keylist_generation == before + 1


# --- protocol errors --------------------------------------------------------------------


def test_error_bit_is_protocol_error(certified: Dance) -> None:
    """A response with the E bit is a protocol error (a failed verdict with ERR) and
    changes nothing."""
    status = certified.assoc.status
    error = Field.short_form(COOK, ASSOCID, response=True, error=True)
    assert certified.feed(error) == [Event.ERR]
    assert certified.assoc.status == status


def test_wrong_association_id_is_protocol_error(certified: Dance) -> None:
    """A signed response for another association ID is a protocol error."""
    response = attrs.evolve(certified.cook_response(), associd=ASSOCID + 1)
    assert certified.feed(response)[-1] is Event.ERR
    assert not certified.assoc.status & Flag.COOK


def test_unsigned_response_with_timestamp_is_protocol_error(certified: Dance) -> None:
    """S = 0 with T != 0 is a protocol error (reset)."""
    response = attrs.evolve(certified.cook_response(), signature=b"")
    assert response.timestamp
    assert certified.feed(response)[-1] is Event.ERR


def test_unknown_response_code_is_protocol_error(certified: Dance) -> None:
    """A response with a code we do not know (0x820A) is a protocol error."""
    assert certified.feed(Field(code=10, response=True, associd=ASSOCID, timestamp=NOW,
                                value=b"x" * 4)) == [Event.ERR]


def test_null_response_is_protocol_error(certified: Dance) -> None:
    """An answer to a NULL request is a protocol error."""
    assert certified.feed(Field.short_form(NULL, ASSOCID, response=True))[-1] is Event.ERR


def test_signed_response_before_peer_key_is_protocol_error(dance: Dance) -> None:
    """A signed response arriving before any certificate (no peer key) is a protocol
    error; an unsolicited COOK response is refused before any signature work (CKY)."""
    dance.step()
    leap = dance.alice.leap_field(ASSOCID)
    assert leap.signature
    assert dance.feed(leap) == [Event.ERR]
    cook = dance.responder.respond(dance.brenda.cook_request(ASSOCID),
                                   packet_mode=MODE_CLIENT, now=NOW, client=CLIENT,
                                   server=SERVER)
    assert cook is not None
    assert dance.feed(cook) == [Event.CKY]


def test_assoc_response_with_new_id_is_protocol_error(certified: Dance) -> None:
    """An ASSOC response with a changed association ID resets; the same ID is ignored."""
    again = certified.alice.assoc_field(certified.assoc.peer_associd + 1, response=True)
    assert certified.feed(again)[-1] is Event.ERR
    same = certified.alice.assoc_field(certified.assoc.peer_associd, response=True)
    status = certified.assoc.status
    assert certified.feed(same) == [Event.OK]
    assert certified.assoc.status == status


def test_protocol_error_comes_after_earlier_verdicts(certified: Dance) -> None:
    """The verdicts of the fields before the failing one come first; processing stops at
    the failure."""
    ok = certified.alice.assoc_field(certified.assoc.peer_associd, response=True)
    bad = Field.short_form(CERT, ASSOCID, response=True, error=True)
    assert certified.feed(ok, bad, ok) == [Event.OK, Event.ERR]


# --- discarded responses ----------------------------------------------------------------


def test_bad_signature_length_is_sgl_without_state_change(certified: Dance) -> None:
    """A signature longer than the key allows is refused as SGL before any verification;
    one octet short simply does not verify (SIG: any valid length is accepted, as DSA
    needs); no bit, no cookie either way."""
    response = certified.cook_response()
    status = certified.assoc.status
    assert certified.feed(attrs.evolve(response, signature=response.signature + b"\0")) == \
        [Event.SGL]
    assert certified.feed(attrs.evolve(response, signature=response.signature[:-1])) == \
        [Event.SIG]
    assert certified.assoc.status == status and certified.assoc.cookie == 0


def test_garbage_signature_is_sig(certified: Dance) -> None:
    """A signature of the right length that does not verify is refused as SIG."""
    response = certified.cook_response()
    garbage = bytes(random.Random(3).getrandbits(8) for _ in response.signature)
    assert certified.feed(attrs.evolve(response, signature=garbage)) == [Event.SIG]
    assert not certified.assoc.status & (Flag.COOK | Flag.PROV)


def test_zero_timestamp_is_tsp(certified: Dance) -> None:
    """An unsigned COOK response from an unsynchronised server (T = 0) is refused (TSP)."""
    request = certified.request()
    response = certified.responder.respond(request, packet_mode=MODE_CLIENT, now=0,
                                           client=CLIENT, server=SERVER)
    assert response is not None and response.timestamp == 0
    assert certified.feed(response) == [Event.TSP]


def test_timestamp_before_filestamp_is_tsp(certified: Dance) -> None:
    """T < F is refused (TSP)."""
    response = certified.cook_response()
    forged = certified.alice.sign_field(attrs.evolve(response, filestamp=NOW + 1))
    assert certified.feed(forged) == [Event.TSP]


def test_wrong_ciphertext_length_is_cky(certified: Dance) -> None:
    """A properly signed COOK response whose value is not modulus-sized is refused (CKY)."""
    certified.cook_response()
    forged = certified.alice.sign_field(Field(code=COOK, response=True, associd=ASSOCID,
                                              timestamp=NOW, filestamp=T_ALICE,
                                              value=bytes(63)))
    assert certified.feed(forged) == [Event.CKY]
    assert certified.assoc.cookie == 0 and not certified.assoc.status & Flag.COOK


def test_replayed_cook_response_is_refused(certified: Dance) -> None:
    """A COOK response with no COOK request outstanding (a replay) is refused (CKY)."""
    response = certified.cook_response()
    assert certified.feed(response) == [Event.OK]
    cookie = certified.assoc.cookie
    assert certified.feed(response) == [Event.CKY]
    assert certified.assoc.cookie == cookie


def test_replayed_old_auto_response_is_refused(certified: Dance) -> None:
    """An AUTO response older than the last accepted one is refused (TSP)."""
    peer = certified.assoc.peer_associd
    new = certified.alice.autokey_field(AutoValue(0x11111111, 50), timestamp=NOW,
                                        associd=peer)
    old = certified.alice.autokey_field(AutoValue(0x22222222, 99), timestamp=NOW - 60,
                                        associd=peer)
    assert certified.feed(new) == [Event.OK]
    assert certified.feed(old) == [Event.TSP]
    assert certified.assoc.autokey == AutoValue(0x11111111, 50)
    assert certified.assoc.pkeyid == 0x11111111


def test_auto_value_of_wrong_length_is_len(certified: Dance) -> None:
    """An AUTO value that is not 8 octets is refused (LEN)."""
    forged = certified.alice.sign_field(Field(code=AUTO, response=True,
                                              associd=certified.assoc.peer_associd,
                                              timestamp=NOW, filestamp=T_ALICE,
                                              value=bytes(12)))
    assert certified.feed(forged) == [Event.LEN]
    assert certified.assoc.autokey is None


def test_leap_value_not_12_octets_is_ignored(certified: Dance) -> None:
    """A LEAP value of another length is ignored (LEN): LEAP stays dark."""
    forged = certified.alice.sign_field(Field(code=LEAP, response=True, associd=ASSOCID,
                                              timestamp=T_ALICE, filestamp=T_ALICE,
                                              value=bytes(8)))
    assert certified.feed(forged) == [Event.LEN]
    assert not certified.assoc.status & Flag.LEAP


def test_empty_cert_response_is_ignored(dance: Dance) -> None:
    """The 8-octet "nothing" CERT response changes nothing."""
    dance.step()
    status = dance.assoc.status
    assert dance.feed(Field.short_form(CERT, ASSOCID, response=True)) == [Event.CRT]
    assert dance.assoc.status == status


def test_cert_trail_loop_is_refused(dance: Dance) -> None:
    """A certificate issued by our own name (a trail loop) is refused (CRT)."""
    dance.step()
    looped = sign_request(dance.alice.certificate.der, "brenda@alice",
                          dance.brenda.sign_key, dance.brenda.profile, NOW,
                          allow_trust_root=True)
    field = Field(code=CERT, response=True, associd=ASSOCID, timestamp=NOW,
                  filestamp=dance.alice.cert_filestamp, value=looped)
    assert dance.feed(field) == [Event.CRT]
    assert not dance.assoc.status & Flag.CERT and dance.assoc.trail == []


def test_cert_for_another_name_is_refused(dance: Dance) -> None:
    """A CERT response for a name we did not ask for is refused (CRT)."""
    dance.step()
    other = Field(code=CERT, response=True, associd=ASSOCID, timestamp=NOW,
                  filestamp=dance.brenda.cert_filestamp, value=dance.brenda.certificate.der)
    assert dance.feed(other) == [Event.CRT]
    assert dance.assoc.trail == []


def test_tampered_certificate_is_refused(dance: Dance) -> None:
    """A self-signed certificate whose signature was altered is refused (CRT)."""
    dance.step()
    response = dance.answer(dance.request())
    der = bytearray(response.value)
    der[-1] ^= 0x01
    assert dance.feed(attrs.evolve(response, value=bytes(der))) == [Event.CRT]
    assert not dance.assoc.status & Flag.CERT


def test_swapped_certificate_fails_the_next_signature(dance: Dance) -> None:
    """A man in the middle swapping in his own trusted certificate for alice's gets the
    association to trust his key, so alice's real signatures then fail (SIG) and no
    cookie is ever taken."""
    dance.step()
    mallory = rsa512(random.Random(5))
    forged = build_self_signed("alice@alice", mallory, RSA_MD5,
                               dance.alice.cert_filestamp, trusted=True)
    real = dance.answer(dance.request())
    assert dance.feed(attrs.evolve(real, value=forged, signature=b"")) == [Event.OK]
    request, response, events = dance.step()
    assert request.code == COOK and events == [Event.SIG]
    assert dance.assoc.cookie == 0 and not dance.assoc.proventic


def test_second_certificate_must_verify_the_first(vectors: Path) -> None:
    """On a trail, a certificate that does not sign the previous one is refused (VFY)."""
    d = Dance(vectors)
    d.step()
    # alice answers with a certificate for herself issued by "carol@alice" ...
    carol = load(vectors, "sym", "carol")
    issued = sign_request(d.alice.certificate.der, "carol@alice", carol.sign_key,
                          carol.profile, NOW, allow_trust_root=True)
    first = Field(code=CERT, response=True, associd=ASSOCID, timestamp=NOW,
                  filestamp=d.alice.cert_filestamp, value=issued)
    assert d.feed(first) == [Event.OK] and d.assoc.issuer == "carol@alice"
    # ... then a carol@alice certificate with another key: the link does not verify.
    impostor = rsa.generate_private_key(65537, 1024)
    fake = build_self_signed("carol@alice", impostor, RSA_MD5, d.alice.cert_filestamp,
                             trusted=True)
    second = Field(code=CERT, response=True, associd=ASSOCID, timestamp=NOW,
                   filestamp=d.alice.cert_filestamp, value=fake)
    assert d.feed(second) == [Event.VFY]
    assert not d.assoc.status & Flag.CERT and d.assoc.issuer == "carol@alice"
    real = Field(code=CERT, response=True, associd=ASSOCID, timestamp=NOW,
                 filestamp=carol.cert_filestamp, value=carol.certificate.der)
    assert d.feed(real) == [Event.OK]
    assert d.assoc.status & Flag.CERT
    assert d.assoc.trail == [("alice@alice", "carol@alice"), ("carol@alice", "carol@alice")]


def test_assoc_with_unknown_digest_is_md(dance: Dance) -> None:
    """A peer word whose NID maps to no digest is refused (MD) and nothing is stored."""
    word = (0xFFFF << 16) | 0x0003
    field = Field(code=ASSOC, response=True, associd=1, filestamp=word, value=b"x@alice")
    assert dance.feed(field) == [Event.MD]
    assert dance.assoc.status == 0


def test_assoc_with_bad_name_length_is_len(dance: Dance) -> None:
    """An ASSOC name of 513 octets is refused (LEN)."""
    field = Field(code=ASSOC, response=True, associd=1, filestamp=0x80003,
                  value=b"a" * 513)
    assert dance.feed(field) == [Event.LEN]
    assert dance.assoc.status == 0


def test_pc_host_refuses_non_pc_peer(vectors: Path) -> None:
    """A PC host refuses a peer without the PRIV bit (KEY)."""
    host = load_host(vectors / "pcap" / "pc" / "keys" / "brenda", host="alice",
                     password="alicepw")
    assoc = AutokeyAssociation(host, associd=1)
    field = Field(code=ASSOC, response=True, associd=2, filestamp=0x80003,
                  value=b"alice@alice")
    assert events(assoc.receive([field], packet_mode=MODE_SERVER, now=0, proven=True)) == \
        [Event.KEY]


def test_pc_lights_cert_vrfy_sign_at_assoc(vectors: Path) -> None:
    """PC: the ASSOC exchange lights CERT, VRFY and SIGN; COOK follows and its signature
    verifies with our own key."""
    d = Dance.__new__(Dance)
    d.alice = load_host(vectors / "pcap" / "pc" / "keys" / "alice", host="alice",
                        password="alicepw")
    d.alice.signature_update(T_ALICE)
    d.brenda = load_host(vectors / "pcap" / "pc" / "keys" / "brenda", host="alice",
                         password="alicepw")
    d.responder = Responder(d.alice)
    d.assoc = AutokeyAssociation(d.brenda, associd=ASSOCID)
    d.b_now = 0
    d.step()
    assert d.assoc.status & (Flag.CERT | Flag.VRFY | Flag.SIGN) == \
        Flag.CERT | Flag.VRFY | Flag.SIGN
    assert d.assoc.scheme_name == "pc"
    request, _, events = d.step()
    assert request.code == COOK and events == [Event.OK] and d.assoc.proventic
    assert d.assoc.peer_key is None


# --- identity schemes -----------------------------------------------------------------


@pytest.fixture
def gq_dance(vectors: Path) -> Dance:
    """The gq scenario dance (ident alice) with CERT lit."""
    d = Dance(vectors, "gq", ident="alice")
    d.until(Flag.CERT)
    return d


def test_ident_with_scheme_bits_waits_for_identity(gq_dance: Dance) -> None:
    """With an ident group and a peer advertising GQ, CERT does not light VRFY; the next
    request is the GQ challenge, which verifies."""
    assert not gq_dance.assoc.status & Flag.VRFY
    request, _, events = gq_dance.step()
    assert request.code == GQ and events == [Event.OK]
    assert gq_dance.assoc.status & Flag.VRFY and gq_dance.assoc.scheme_name == "gq"


def test_identity_response_without_challenge_is_refused(gq_dance: Dance) -> None:
    """An identity response with no challenge outstanding is refused (ID)."""
    challenge = gq_dance.request()
    response = gq_dance.answer(challenge)
    gq_dance.assoc.reset()
    gq_dance.until(Flag.CERT)
    assert not gq_dance.assoc.challenge_outstanding
    assert gq_dance.feed(response) == [Event.ID]
    assert not gq_dance.assoc.status & Flag.VRFY


def test_replayed_identity_response_is_refused(gq_dance: Dance) -> None:
    """The challenge is consumed by one attempt: the same response again is refused."""
    challenge = gq_dance.request()
    response = gq_dance.answer(challenge)
    tampered = gq_dance.alice.sign_field(attrs.evolve(response, value=response.value[:-1]
                                                      + bytes([response.value[-1] ^ 1])))
    assert gq_dance.feed(tampered) == [Event.ID]
    assert gq_dance.feed(response) == [Event.ID]
    assert not gq_dance.assoc.status & Flag.VRFY


def test_wrong_group_key_never_lights_vrfy(vectors: Path) -> None:
    """With a wrong group key b (same modulus), no GQ response ever verifies."""
    d = Dance(vectors, "gq", ident="alice")
    real = d.brenda.client_scheme("gq", "alice")
    wrong = gq.GQClientParameters(n=real.client.n, b=real.client.b + 2)
    d.brenda.add_client_scheme(gq.GQScheme(client=wrong,
                                           client_filestamp=real.client_filestamp), "alice")
    d.until(Flag.CERT)
    events = [d.step()[2][0] for _ in range(3)]
    assert events == [Event.ID] * 3
    assert not d.assoc.status & Flag.VRFY


def test_missing_parameters_send_null_request(vectors: Path) -> None:
    """Without the client parameters of the group, a NULL request is sent."""
    d = Dance(vectors, "gq", ident="nosuchgroup")
    d.until(Flag.CERT)
    request = d.request()
    assert (request.code, request.short) == (NULL, True)


def test_identity_filestamp_mismatch_is_fsp(gq_dance: Dance) -> None:
    """A GQ response whose Filestamp precedes our parameters' is refused (FSP)."""
    response = gq_dance.answer(gq_dance.request())
    forged = gq_dance.alice.sign_field(attrs.evolve(response, filestamp=1))
    assert gq_dance.feed(forged) == [Event.FSP]


# --- symmetric specifics ------------------------------------------------------------------


def sym_pair(vectors: Path) -> tuple[AutokeyAssociation, AutokeyAssociation]:
    """carol (active) and alice (passive) associations of the sym keys, synchronised."""
    folder = vectors / "pcap" / "sym" / "keys"
    a = load_host(folder / "alice", host="alice", password="alicepw")
    c = load_host(folder / "carol", host="carol", password="carolpw")
    a.signature_update(NOW)
    c.signature_update(NOW)
    carol = AutokeyAssociation(c, associd=100, hmode=MODE_ACTIVE, responder=Responder(c))
    alice = AutokeyAssociation(a, associd=200, hmode=MODE_PASSIVE, responder=Responder(a))
    return carol, alice


def exchange(carol: AutokeyAssociation, alice: AutokeyAssociation, rounds: int) -> None:
    """``rounds`` packets each way, carol first, every one answering the other's."""
    for _ in range(rounds):
        alice.receive(carol.next_fields(NOW, synchronized=True), packet_mode=MODE_ACTIVE,
                      now=NOW, proven=True)
        carol.receive(alice.next_fields(NOW, synchronized=True), packet_mode=MODE_PASSIVE,
                      now=NOW, proven=True)


def test_symmetric_assoc_request_is_queued_and_answered(vectors: Path) -> None:
    """A symmetric ASSOC request sets our word and is answered first, with our own ID."""
    carol, alice = sym_pair(vectors)
    fields = carol.next_fields(NOW, synchronized=True)
    assert events(alice.receive(fields, packet_mode=MODE_ACTIVE, now=NOW, proven=False)) \
        == [Event.OK]
    assert alice.status and alice.queued_request is not None
    out = alice.next_fields(NOW, synchronized=True)
    assert [(f.code, f.response, f.associd) for f in out] == [(ASSOC, True, 200),
                                                              (CERT, False, 200)]


def test_second_queued_request_is_dropped(vectors: Path) -> None:
    """Only one peer request is queued; a second before our answer is dropped."""
    carol, alice = sym_pair(vectors)
    alice.receive(carol.next_fields(NOW, synchronized=True), packet_mode=MODE_ACTIVE,
                  now=NOW, proven=False)
    alice.next_fields(NOW, synchronized=True)
    first = Field(code=CERT, associd=100, timestamp=NOW, value=b"alice@alice")
    second = Field.short_form(LEAP, 100)
    assert events(alice.receive([first, second], packet_mode=MODE_ACTIVE, now=NOW,
                                proven=True)) == [Event.OK, Event.OK]
    assert alice.queued_request == first


def test_symmetric_assoc_request_after_cert_is_protocol_error(vectors: Path) -> None:
    """An ASSOC request once CERT is lit means the peer restarted: protocol error."""
    carol, alice = sym_pair(vectors)
    exchange(carol, alice, 3)
    assert alice.status & Flag.CERT
    status = alice.status
    verdicts = alice.receive([carol.host.assoc_field(100, response=False)],
                             packet_mode=MODE_ACTIVE, now=NOW, proven=True)
    assert events(verdicts) == [Event.ERR] and verdicts[0].protocol_error
    assert alice.status == status


def test_symmetric_scheme_mismatch_is_key(vectors: Path) -> None:
    """In symmetric modes a peer advertising an identity scheme we lack is refused (KEY)."""
    carol, _ = sym_pair(vectors)
    field = Field(code=ASSOC, associd=5, filestamp=0x80023, value=b"alice@alice")
    assert events(carol.receive([field], packet_mode=MODE_PASSIVE, now=NOW,
                                proven=False)) == [Event.KEY]
    assert carol.status == 0


def test_requests_in_server_packets_are_ignored(dance: Dance) -> None:
    """A client association never queues requests (they only come in symmetric modes)."""
    dance.step()
    assert dance.feed(Field.short_form(LEAP, 1)) == [Event.OK]
    assert dance.assoc.queued_request is None


# --- broadcast ----------------------------------------------------------------------------


def test_broadcast_client_volley_and_auto_id(vectors: Path) -> None:
    """Mobilised by a broadcast ASSOC response: no ASSOC request, AUTO not pre-lit and asked
    of the server's broadcast association; an AUTO response for another ID resets."""
    d = Dance(vectors)
    d.assoc = AutokeyAssociation(d.brenda, associd=ASSOCID, broadcast=True)
    assert d.assoc.mobilised_by(d.alice.assoc_field(53797, response=True)).verified
    assert not d.assoc.status & Flag.AUTO
    d.until(Flag.COOK)
    request = d.request()
    assert (request.code, request.associd) == (AUTO, 53797)
    wrong = d.alice.autokey_field(AutoValue(0x10101010, 9), timestamp=NOW, associd=ASSOCID)
    assert d.feed(wrong)[-1] is Event.ERR
    right = d.alice.autokey_field(AutoValue(0x10101010, 9), timestamp=NOW, associd=53797)
    assert d.feed(right) == [Event.OK]
    assert d.assoc.status & Flag.AUTO


# --- resets, refresh, gate ----------------------------------------------------------------


def test_reset_restarts_with_assoc(certified: Dance) -> None:
    """reset() clears all crypto state and asks for a new key list."""
    certified.step()
    generation = certified.assoc.keylist_generation
    certified.assoc.reset(at=50)
    assert certified.assoc.status == 0 and certified.assoc.cookie == 0
    assert certified.assoc.peer_key is None and certified.assoc.trail == []
    assert certified.assoc.keylist_generation == generation + 1
    assert certified.assoc.reset_at == 50
    assert certified.request().code == ASSOC


def test_refresh_after_2_19_seconds(dance: Dance) -> None:
    """The refresh timer fires 2**19 s after the last reset, not before."""
    assert not dance.assoc.refresh_due(1000)
    assert not dance.assoc.refresh_due(1000 + NTP_REFRESH - 1)
    assert dance.assoc.refresh_due(1000 + NTP_REFRESH)
    dance.assoc.reset(at=1000 + NTP_REFRESH)
    assert not dance.assoc.refresh_due(1000 + NTP_REFRESH + 1)


@pytest.mark.parametrize(("own", "name", "ident", "accepted"), [
    ("alice", b"anything", None, True),
    ("brenda@alice", b"alice@alice", None, True),
    ("brenda@alice", b"alice", None, False),
    ("brenda@alice", b"mallory@evil", None, False),
    ("brenda@alice", b"mallory@evil", "evil", True),
    ("brenda@alice", b"x@alice" + b"a" * 250, None, False),
])
def test_group_gate(own: str, name: bytes, ident: str | None, accepted: bool) -> None:
    """The ASSOC group gate: a grouped host takes ASSOC only from its group or ident."""
    field = Field(code=ASSOC, associd=1, filestamp=0x80003, value=name)
    assert group_gate(own, field, ident) is accepted


def test_group_gate_passes_other_fields() -> None:
    """Only ASSOC fields are gated."""
    assert group_gate("brenda@alice", Field.short_form(LEAP, 1), None)


def test_flags_and_names(certified: Dance) -> None:
    """flags lists the bit names of the status word."""
    assert certified.assoc.flags == ["ENAB", "TAI", "CERT", "VRFY", "AUTO"]
    assert MODE_CLIENT == certified.assoc.hmode


def test_cert_for_our_own_name_is_refused(vectors: Path) -> None:
    """A peer calling itself by our name cannot slip a certificate for our name into our
    cache (CRT; our own certificate stays the one served)."""
    d = Dance(vectors)
    impostor = d.alice.assoc_field(77, response=True)
    impostor = attrs.evolve(impostor, value=b"brenda@alice")
    assert d.feed(impostor) == [Event.OK]
    fake = build_self_signed("brenda@alice", rsa512(random.Random(9)), RSA_MD5,
                             d.brenda.cert_filestamp + 1, trusted=True)
    field = Field(code=CERT, response=True, associd=ASSOCID, timestamp=NOW,
                  filestamp=d.brenda.cert_filestamp + 1, value=fake)
    assert d.feed(field) == [Event.CRT]
    assert d.brenda.own_entry().cert.der == d.brenda.certificate.der
    assert len(d.brenda.cache) == 1


def test_tc_without_ident_ignores_peer_scheme_bits(vectors: Path) -> None:
    """Without an ident group the association is TC even against a GQ server: VRFY lights
    with CERT (interop.md 5.3)."""
    d = Dance(vectors, "gq")
    d.until(Flag.CERT)
    assert d.assoc.status & Flag.VRFY and d.assoc.status & Flag.GQ
    assert d.assoc.scheme_name == "tc"


def test_refetch_auto_keeps_the_values_and_the_nid(certified: Dance) -> None:
    """Asking for the autokey values again darkens AUTO only: the status word keeps its
    high half (the peer's NID) and the values and chain state stay; the same values sent
    again light AUTO without touching the chain state."""
    peer = certified.assoc.peer_associd
    value = certified.alice.autokey_field(AutoValue(0x11111111, 50), timestamp=NOW,
                                          associd=peer)
    certified.feed(value)
    assert (certified.assoc.pkeyid, certified.assoc.seq) == (0x11111111, 50)
    certified.assoc.pkeyid, certified.assoc.seq = 0x22222222, 47  # packets accepted since
    status = certified.assoc.status
    assert certified.assoc.refetch_auto()
    assert certified.assoc.status == status & ~int(Flag.AUTO)
    assert certified.assoc.status >> 16 == status >> 16
    assert certified.feed(value) == [Event.OK]
    assert certified.assoc.status == status
    assert (certified.assoc.pkeyid, certified.assoc.seq) == (0x22222222, 47)
