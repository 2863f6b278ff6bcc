"""Identity responses computed by a worker (ntpauto.autokey.offload, ntpauto.autokey.worker):
the frames, the job table, the worker loop (in memory and as a real child process), and the
engine's stateless server answering through it, down to complete dances."""

from __future__ import annotations

import io
import pickle
import subprocess
import sys
from pathlib import Path

import attrs
import pytest

from ntpauto.auth.autokey import mac, server_reply_key, session_key, verify_mac
from ntpauto.autokey.budget import PrivateKeyBudget
from ntpauto.autokey.fields import GQ, IFF, MV, Field, decode
from ntpauto.autokey.offload import (
    FAILED,
    LOST,
    OK,
    REFUSED,
    FrameError,
    FrameReader,
    IdentityOffload,
    answer,
    decode_job,
    decode_result,
    encode_init,
    encode_job,
    encode_result,
    offloadable_schemes,
)
from ntpauto.autokey.responder import Responder
from ntpauto.autokey.serving import AutokeyNode
from ntpauto.autokey.status import Flag
from ntpauto.autokey.worker import serve
from ntpauto.config import parse_config
from ntpauto.engine import Engine
from ntpauto.ntp.clocks import SimulatedClock
from ntpauto.testing import SimulatedNetwork
from ntpauto.wire.packet import Header, parse
from ntpauto.wire.timestamps import unix_to_ntp
from tests.autokey_groups import EPOCH, GroupKeys, make_group

REPO = Path(__file__).resolve().parents[1]
CODES = {"iff": IFF, "gq": GQ, "mv": MV}
CLIENT = ("10.0.0.2", 123)
SERVER = "10.0.0.1"
CAROL = "10.0.0.3"
T0 = 1000.0
KEYID = 0x2345_6789


@pytest.fixture(scope="module")
def groups(tmp_path_factory: pytest.TempPathFactory):
    made: dict[str, GroupKeys] = {}

    def get(scheme: str) -> GroupKeys:
        if scheme not in made:
            made[scheme] = make_group(tmp_path_factory.mktemp(scheme), scheme,
                                      ("alice", "brenda", "carol"),
                                      trusted=("alice", "carol"), servers=("alice", "carol"))
        return made[scheme]

    return get


def client_of(keys: GroupKeys, scheme: str):
    """Brenda's client side of ``scheme`` (GQ: with the group key v of alice's
    certificate)."""
    client = keys.credentials("brenda").client_scheme(scheme, keys.group)
    return client.with_peer_key(keys.params.v) if scheme == "gq" else client


def challenge_of(keys: GroupKeys, scheme: str) -> bytes:
    return client_of(keys, scheme).make_challenge()


# --- frames and the job table --------------------------------------------------------------


def test_frames_round_trip_through_a_split_stream():
    """Jobs and results survive being cut anywhere in the byte stream."""
    stream = encode_job(7, IFF, b"\x01" * 64) + encode_result(7, OK, 0.25, b"value")
    reader = FrameReader()
    frames = [f for i in range(0, len(stream), 5) for f in reader.feed(stream[i:i + 5])]
    assert decode_job(frames[0]) == (7, IFF, b"\x01" * 64)
    assert decode_result(frames[1]) == (7, OK, 0.25, b"value")


def test_bad_frames_are_errors_not_crashes():
    with pytest.raises(FrameError):
        FrameReader(limit=10).feed((11).to_bytes(4, "big") + bytes(11))
    with pytest.raises(FrameError):
        decode_job(b"\x00\x00")
    with pytest.raises(FrameError):
        decode_result(b"\x00" * 12)


def test_job_table_is_bounded_in_number_and_age():
    """Beyond the capacity a job is refused; a job older than the timeout is forgotten
    (its late result is then dropped) and makes room."""
    offload = IdentityOffload(capacity=2, timeout=5.0)
    context = dict(request=Field(code=IFF, value=b"x"), source=CLIENT, server=SERVER,
                   keyid=KEYID, version_bits=0x20, poll=6, origin=bytes(8), rx=0,
                   request_size=100, limit=False)
    first = offload.submit(0.0, **context)
    second = offload.submit(1.0, **context)
    assert first is not None and second is not None and first.job_id != second.job_id
    assert offload.submit(2.0, **context) is None
    assert [j.job_id for j in offload.take()] == [first.job_id, second.job_id]
    assert offload.outbox == []
    third = offload.submit(5.5, **context)  # the first has expired
    assert third is not None and len(offload) == 2
    assert offload.complete(first.job_id, 5.5) is None
    assert offload.complete(second.job_id, 5.5) == second
    with pytest.raises(ValueError):
        IdentityOffload(capacity=0)


class Refusing:
    server_filestamp = 1

    def respond(self, challenge: bytes) -> bytes:
        raise ValueError("challenge too long")


class Broken(Refusing):
    def respond(self, challenge: bytes) -> bytes:
        raise RuntimeError("plugin bug")


class Unpicklable(Refusing):
    def __reduce__(self):
        raise TypeError("not picklable")


def test_answer_reports_refusals_and_failures():
    assert answer(Refusing(), b"x")[0::2] == (REFUSED, b"challenge too long")
    assert answer(Broken(), b"x")[0::2] == (FAILED, b"RuntimeError: plugin bug")


def test_only_picklable_schemes_go_to_the_worker(groups):
    scheme = groups("iff").credentials("alice").server_scheme(IFF)
    assert offloadable_schemes({IFF: scheme, 64: Unpicklable()}) == {IFF: scheme}


# --- the worker ---------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["iff", "gq", "mv"])
def test_worker_answers_what_the_client_verifies(groups, scheme):
    """The worker loop, given the server schemes and a job, writes a result whose value the
    client's scheme accepts as the answer to its challenge; a bad challenge is REFUSED."""
    keys = groups(scheme)
    code = CODES[scheme]
    server = keys.credentials("alice").server_scheme(code)
    challenge = challenge_of(keys, scheme)
    stdin = io.BytesIO(encode_init({code: server}) + encode_job(1, code, challenge)
                       + encode_job(2, code, b"\xff" * 4096) + encode_job(3, 99, b"x"))
    stdout, stderr = io.BytesIO(), io.StringIO()
    assert serve(stdin, stdout, stderr) == 0
    results = [decode_result(f) for f in FrameReader().feed(stdout.getvalue())]
    assert [(r[0], r[1]) for r in results] == [(1, OK), (2, REFUSED), (3, FAILED)]
    assert client_of(keys, scheme).verify_response(challenge, results[0][3])
    assert "code 99" in stderr.getvalue()


def test_worker_child_process_round_trip(groups):
    """``python -m ntpauto.autokey.worker`` as a real child: the same answers over pipes."""
    keys = groups("gq")
    server = keys.credentials("alice").server_scheme(GQ)
    challenge = challenge_of(keys, "gq")
    child = subprocess.run(
        [sys.executable, "-m", "ntpauto.autokey.worker"],
        input=encode_init({GQ: server}) + encode_job(41, GQ, challenge),
        capture_output=True, timeout=60, cwd=REPO)
    assert child.returncode == 0, child.stderr
    [(job_id, status, seconds, value)] = [decode_result(f)
                                          for f in FrameReader().feed(child.stdout)]
    assert (job_id, status) == (41, OK) and seconds >= 0
    assert client_of(keys, "gq").verify_response(challenge, value)


def test_worker_stops_on_a_broken_stream():
    assert serve(io.BytesIO(b"\xff\xff\xff\xff"), io.BytesIO(), io.StringIO()) == 1
    init = encode_init({})
    assert serve(io.BytesIO(init + (1).to_bytes(4, "big") + b"\x00"), io.BytesIO(),
                 io.StringIO()) == 1


# --- the engine ---------------------------------------------------------------------------


def offload_engine(keys: GroupKeys, budget: PrivateKeyBudget | None = None) -> Engine:
    host = keys.credentials("alice")
    clock = SimulatedClock(lambda: T0, epoch=EPOCH)
    engine = Engine(parse_config("localclock stratum 1\namplification allow\n"), clock,
                    autokey=AutokeyNode(host, Responder(host, budget=budget)),
                    local_address=SERVER)
    engine.start(T0)
    engine.sys = attrs.evolve(engine.sys, leap=0, stratum=1, refid=b"LOCL")
    host.signature_update(engine.crypto_now())
    engine.enable_offload()
    return engine


def identity_request(code: int, challenge: bytes) -> bytes:
    head = Header(0, 4, 3, 0, 6, -20, 0, 0, b"\0\0\0\0", 0, 0, 0,
                  0xEEAE_0000_0000_1000).encode()
    data = head + Field(code=code, associd=5, value=challenge).encode()
    return data + mac(session_key(CLIENT[0], SERVER, KEYID, 0), KEYID, data)


def receive(engine: Engine, data: bytes):
    return engine.receive(data, CLIENT, unix_to_ntp(engine.clock.now()), T0,
                          (SERVER, 123))


def test_engine_answers_through_the_worker(groups):
    """An identity request queues a job and gets no reply yet; the result becomes a reply
    whose MAC (cookie 0) and signed response the client accepts."""
    keys = groups("iff")
    engine = offload_engine(keys)
    challenge = challenge_of(keys, "iff")
    assert receive(engine, identity_request(IFF, challenge)) == []
    [job] = engine.offload.take()
    assert (job.code, job.challenge, job.source) == (IFF, challenge, CLIENT)
    assert engine.counters["autokey_offloaded"] == 1
    scheme = keys.credentials("alice").server_scheme(IFF)
    status, seconds, value = answer(scheme, job.challenge)
    [reply] = engine.finish_identity(job.job_id, status, seconds, value, T0 + 0.1)
    packet = parse(reply.data)
    key = server_reply_key(SERVER, CLIENT[0], KEYID, 0, has_fields=True)
    assert verify_mac(key, packet.authenticated_part, packet.digest)
    assert packet.header.origin == 0xEEAE_0000_0000_1000
    [f] = [decode(e.data) for e in packet.fields]
    assert (f.code, f.response, f.error) == (IFF, True, False) and f.signature
    assert client_of(keys, "iff").verify_response(challenge, f.value)
    assert engine.autokey.responder.key_operations["identity_response"] == 1
    # The same job again (a duplicate result) is unknown: nothing is sent twice.
    assert engine.finish_identity(job.job_id, status, seconds, value, T0 + 0.2) == []


def test_engine_worker_refusal_lost_and_expiry(groups):
    """A REFUSED or FAILED result is the error response; a LOST one (worker gone) and a
    result after the timeout are nothing."""
    keys = groups("iff")
    engine = offload_engine(keys)
    challenge = challenge_of(keys, "iff")
    for status, expect_reply in ((REFUSED, True), (FAILED, True), (LOST, False)):
        receive(engine, identity_request(IFF, challenge))
        [job] = engine.offload.take()
        out = engine.finish_identity(job.job_id, status, 0.0, b"why", T0)
        assert bool(out) == expect_reply
        if out:
            [f] = [decode(e.data) for e in parse(out[0].data).fields]
            assert f.error and f.short and f.code == IFF
    receive(engine, identity_request(IFF, challenge))
    [job] = engine.offload.take()
    assert engine.finish_identity(job.job_id, OK, 0.0, b"late", T0 + 60.0) == []
    assert engine.counters["autokey_offload_lost"] == 1
    assert engine.counters["autokey_offload_expired"] == 1


def test_engine_checks_before_it_queues(groups):
    """A bad MAC gets the crypto-NAK, a malformed field is dropped, a spent budget and a
    full job table get no reply: none of them reaches the worker; the budget is charged
    with the worker's CPU seconds."""
    keys = groups("iff")
    times = [0.0]
    budget = PrivateKeyBudget(share=0.2, burst=0.5, timer=lambda: times[0])
    engine = offload_engine(keys, budget)
    challenge = challenge_of(keys, "iff")
    good = identity_request(IFF, challenge)
    forged = good[:-1] + bytes([good[-1] ^ 1])  # a random MAC may end in any octet
    [nak] = receive(engine, forged)
    assert nak.data.endswith(b"\0\0\0\0") and engine.counters["badauth"] == 1
    assert receive(engine, identity_request(IFF, b"")) == []  # malformed: dropped
    assert engine.counters["autokey_badfield"] == 1 and engine.offload.outbox == []
    receive(engine, identity_request(IFF, challenge))
    [job] = engine.offload.take()
    status, _seconds, value = answer(keys.credentials("alice").server_scheme(IFF), challenge)
    [reply] = engine.finish_identity(job.job_id, status, 2.0, value, T0)  # 2 s of worker CPU
    assert not decode(parse(reply.data).fields[0].data).error
    assert budget.spent >= 2.0
    assert receive(engine, identity_request(IFF, challenge)) == []
    assert engine.offload.outbox == [] and engine.counters["autokey_budget"] == 1
    engine.offload = IdentityOffload(capacity=1)
    budget.balance = 10.0
    receive(engine, identity_request(IFF, challenge))
    assert receive(engine, identity_request(IFF, challenge)) == []
    assert engine.counters["autokey_offload_busy"] == 1


@pytest.mark.parametrize("scheme", ["iff", "gq", "mv"])
def test_dance_completes_with_offloaded_identity(groups, scheme):
    """The client dance against a server whose identity responses come from the worker a
    quarter of a second late: every flag lights, the server answered through the
    offload, and the client's time comes from it."""
    keys = groups(scheme)
    net = SimulatedNetwork(seed=11, latency=0.01, jitter=0.002, epoch=EPOCH)
    alice = net.add_host(SERVER, "localclock stratum 1\n",
                         autokey=keys.credentials("alice"), offload=0.25)
    brenda = net.add_host(CLIENT[0], keys.server_line(SERVER),
                          autokey=keys.credentials("brenda"), offset=0.03)
    net.run(400)
    [assoc] = brenda.engine.associations.values()
    state = assoc.autokey.state
    assert state.proventic and state.status & Flag.LEAP and state.status & Flag.VRFY
    assert brenda.engine.sys.peer == assoc.associd
    assert alice.engine.counters["autokey_offloaded"] >= 1
    assert alice.engine.autokey.responder.key_operations["identity_response"] >= 1
    assert len(alice.engine.offload) == 0



def symmetric_pair(keys: GroupKeys, offload: float, seed: int):
    """Carol peering with alice (symmetric active, alice passive), both answering identity
    challenges through a worker ``offload`` seconds late; alice's in-process identity
    answers are recorded."""
    net = SimulatedNetwork(seed=seed, latency=0.01, jitter=0.002, epoch=EPOCH)
    alice = net.add_host(SERVER, "localclock stratum 1\n", autokey=keys.credentials("alice"),
                         offload=offload)
    carol = net.add_host(CAROL, f"peer {SERVER} autokey ident {keys.group} iburst minpoll 4 "
                                  "maxpoll 5\n",
                         autokey=keys.credentials("carol"), offset=0.05, offload=offload)
    responder = alice.engine.autokey.responder
    in_process: list[int] = []
    identity = responder._identity

    def recorded(request, scheme, now):
        in_process.append(request.code)
        return identity(request, scheme, now)

    responder._identity = recorded
    return net, alice, carol, in_process


def lit(status: int) -> bool:
    return status & (Flag.CERT | Flag.VRFY | Flag.PROV | Flag.COOK | Flag.AUTO | Flag.SIGN) \
        == Flag.CERT | Flag.VRFY | Flag.PROV | Flag.COOK | Flag.AUTO | Flag.SIGN


@pytest.mark.parametrize("scheme", ["iff", "gq", "mv"])
def test_symmetric_peer_identity_responses_come_from_the_worker(groups, scheme):
    """A symmetric peer's identity request waits in its association for our next packet;
    the worker answers it meanwhile and that packet carries the worker's value: both peers
    verify each other, and alice computed no identity response in process."""
    keys = groups(scheme)
    net, alice, carol, in_process = symmetric_pair(keys, offload=0.05, seed=21)
    net.run(600)
    [active] = carol.engine.associations.values()
    [passive] = [a for a in alice.engine.associations.values() if a.autokey is not None]
    assert lit(active.autokey.state.status) and lit(passive.autokey.state.status)
    assert carol.engine.sys.peer == active.associd
    counters = alice.engine.counters
    assert counters["autokey_offloaded"] >= 1 and counters["autokey_offload_expired"] == 0
    assert alice.engine.autokey.responder.key_operations["identity_response"] >= 1
    assert in_process == [] and len(alice.engine.offload) == 0
    assert passive.autokey.state.offloading is None


def test_symmetric_peer_identity_late_worker_answers_in_process(groups):
    """A worker slower than our next packet: that packet's response is computed in
    process (as without a worker), the late result is dropped, the dance completes."""
    keys = groups("iff")
    net, alice, carol, in_process = symmetric_pair(keys, offload=9.0, seed=22)
    net.run(600)
    [active] = carol.engine.associations.values()
    assert lit(active.autokey.state.status) and carol.engine.sys.peer == active.associd
    assert in_process and alice.engine.counters["autokey_offload_expired"] >= 1


def test_symmetric_peer_identity_over_budget_gets_no_response(groups):
    """Over the private-key budget, the peer's identity request is refused once, when it
    arrives: our next packet carries no response (no error response that would reset the
    peer's dance) and nothing goes to the worker."""
    keys = groups("iff")
    net, alice, carol, in_process = symmetric_pair(keys, offload=0.05, seed=23)
    budget = PrivateKeyBudget(share=0.01, burst=0.001)
    alice.engine.autokey.responder.budget = budget
    budget.balance = -1000.0  # spent for a long while
    net.run(200)
    counters = alice.engine.counters
    assert counters["autokey_offloaded"] == 0 and budget.refused >= 1 and in_process == []
    identity_responses = [f for d in net.capture if d.source[0] == SERVER
                          for f in fields_of(d.data) if f.code == IFF and f.response]
    assert identity_responses == []
    [active] = carol.engine.associations.values()
    assert not active.autokey.state.status & Flag.VRFY


def fields_of(data: bytes) -> list[Field]:
    return [decode(f.data) for f in parse(data).fields]

def test_schemes_pickle_with_their_keys(groups):
    """What the worker's first frame carries: the server schemes, keys included."""
    server = groups("mv").credentials("alice").server_scheme(MV)
    copy = pickle.loads(pickle.dumps(server))
    assert copy.server == server.server


class Worker:
    """A stand-in IdentityWorker: takes jobs when ``running``, answers when told."""

    def __init__(self, running: bool) -> None:
        self.running = running
        self.jobs: list = []

    def submit(self, job, done) -> bool:
        if self.running:
            self.jobs.append((job, done))
        return self.running


def protocol_for(engine: Engine, worker: Worker):
    from twisted.internet.task import Clock

    from ntpauto.protocol import NTPDatagramProtocol
    from tests.test_protocol import FakeUDPTransport

    reactor = Clock()
    reactor.advance(T0)
    protocol = NTPDatagramProtocol(engine, engine.clock, reactor)
    protocol.worker = worker
    protocol.makeConnection(FakeUDPTransport(SERVER, 123))
    return protocol


def test_protocol_sends_jobs_to_the_worker_and_its_results_out(groups):
    """The transport hands the engine's job to the worker and sends the reply when the
    result comes back, from the same port; with no worker running it answers at once."""
    keys = groups("iff")
    engine = offload_engine(keys)
    worker = Worker(running=True)
    protocol = protocol_for(engine, worker)
    challenge = challenge_of(keys, "iff")
    protocol.datagramReceived(identity_request(IFF, challenge), CLIENT)
    assert protocol.transport.written == []
    [(job, done)] = worker.jobs
    done(job.job_id, *answer(keys.credentials("alice").server_scheme(IFF), challenge))
    [(data, address)] = protocol.transport.written
    assert address == CLIENT
    [f] = [decode(e.data) for e in parse(data).fields]
    assert client_of(keys, "iff").verify_response(challenge, f.value)

    worker.running = False  # between restarts: answered in process
    protocol.datagramReceived(identity_request(IFF, challenge), CLIENT)
    assert len(protocol.transport.written) == 2 and len(worker.jobs) == 1


class EchoScheme:
    """A plugin's scheme without prepare() (module level: the worker's init is pickled)."""

    def respond(self, challenge: bytes) -> bytes:
        return b"ok:" + challenge


def test_worker_builds_the_response_tables_before_the_first_job(groups):
    """The worker prepares each scheme it is given (fixed-base tables), so no job pays for
    them; a scheme without prepare() (a plugin's) is served all the same."""
    from ntpauto.identity import fixedbase

    keys = groups("gq")
    server = keys.credentials("alice").server_scheme(GQ)
    fixedbase.fixed_base.cache_clear()
    assert serve(io.BytesIO(encode_init({GQ: server})), io.BytesIO(), io.StringIO()) == 0
    assert fixedbase.fixed_base.cache_info().currsize == 1

    stdout = io.BytesIO()
    assert serve(io.BytesIO(encode_init({GQ: EchoScheme()}) + encode_job(1, GQ, b"c")), stdout,
                 io.StringIO()) == 0
    assert decode_result(FrameReader().feed(stdout.getvalue())[0])[3] == b"ok:c"


def test_service_prepares_the_schemes_it_answers_in_process(groups, tmp_path):
    """Without a worker the daemon builds the identity response tables at start-up, not in
    the first response; the schemes a worker takes are prepared there, not here."""
    from ntpauto.identity import fixedbase
    from ntpauto.service import NTPAutokeyService
    from tests.autokey_groups import password

    keys = groups("mv")
    config = parse_config(f"keysdir {keys.keysdir('alice')}\n"
                          f"crypto host alice pw {password('alice')} ident {keys.group}\n"
                          "interface listen 127.0.0.1\n", str(tmp_path / "ntp.conf"))
    service = NTPAutokeyService(attrs.evolve(config, port=0), identity_worker=False)
    fixedbase.fixed_base.cache_clear()
    service._prepare_in_process({MV: object()})
    assert fixedbase.fixed_base.cache_info().currsize == 0
    service.startService()
    try:
        assert service.worker is None
        assert fixedbase.fixed_base.cache_info().currsize == 3  # MV: e, gbar, ghat
    finally:
        for port in service.ports:
            port.stopListening()
