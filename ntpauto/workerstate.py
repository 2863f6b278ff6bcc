"""What a server's first process gives its worker processes, and what they give back.

With ``workers N`` (docs/scaling.md) the daemon runs N processes on each address and port it
listens on, one socket each in a ``SO_REUSEPORT`` group whose steering program
(:func:`ntpauto.udpsocket.steering_program`) hands the client requests a worker answers by
itself (at most 72 octets: plain, under a symmetric key, under an Autokey session key; and
NTS requests) to a socket chosen by their source address, and everything else to the first
process's socket.  The first process owns the associations, the clock, mode 6, the metrics,
the Autokey credentials and the private-key budget, and NTS-KE; each worker process runs a
*serving engine*:

* built from :class:`WorkerInit`: the configuration with nothing but serving in it (no
  associations, reference clocks, drift file, metrics endpoint or Autokey credentials:
  :func:`serving_config`), the symmetric keys, for Autokey the shared seed's secret and
  interval and the digest, from which its :class:`~ntpauto.autokey.serving.SessionKeys`
  issue the same cookies and echo tags as the first process (no private key leaves it), and
  for NTS the cookie keys (NTS-KE, with its TLS key, stays in the first process);
* kept current with the system variables the first process publishes whenever they change
  (:func:`system_state`, :func:`apply_system_state`): the leap indicator, stratum, reference
  ID and time, root delay and dispersion (and how long ago the clock was last updated, from
  which the dispersion grows), so its replies say what the first process's would;
* reporting what it counted since its last report, once a second (:func:`encode_counters`):
  the first process adds it to its own counters, so mode 6 and the metrics show the whole
  server.

Frames (:func:`ntpauto.autokey.offload.frame`: a 4-octet length, then the body) go both
ways over the worker's standard input and output.  The first process writes pickles (it
is trusted: the same program, the pipe theirs alone); a worker writes JSON, which the first
process checks, so that a worker taken over by a packet it parsed cannot run code in the
process that holds the private keys.  Sans-I/O.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Mapping
from typing import Any

import attrs
from attrs import frozen

from ntpauto.auth.keys import KeyStore
from ntpauto.autokey.cookie import SharedSeed
from ntpauto.autokey.offload import FrameError, frame
from ntpauto.autokey.serving import SessionKeys
from ntpauto.config import Config
from ntpauto.engine import Engine
from ntpauto.interfaces import IClock
from ntpauto.nts.serving import NtsServer
from ntpauto.system import SystemVariables

__all__ = [
    "MAX_COUNTER_NAME", "WorkerInit", "apply_system_state", "counter_delta", "decode_counters",
    "decode_init", "decode_system", "encode_counters", "encode_init", "encode_system",
    "serving_config", "serving_engine", "system_state",
]

MAX_COUNTER_NAME = 64
"""The longest counter name a worker's report may carry."""
_MAX_COUNTERS = 512
"""The most counters one report may carry."""


@frozen
class WorkerInit:
    """What a worker process starts from (the first frame it reads)."""

    index: int
    """Its number, 1..N-1 (the first process is 0)."""
    config: Config
    """:func:`serving_config` of the daemon's configuration."""
    keys: KeyStore
    seed_secret: bytes | None
    """The Autokey seed's secret (:class:`~ntpauto.autokey.cookie.SharedSeed`); None: no
    Autokey."""
    revoke: int
    digest: str
    precision: int
    local_address: str | None
    nts_cookies: Any
    """The NTS cookie keys (:class:`~ntpauto.nts.cookies.CookieKeys`; None: no NTS)."""
    system: dict[str, Any]
    """The system variables at start (:func:`system_state`)."""


def serving_config(config: Config) -> Config:
    """``config`` with nothing in it but what answering client requests needs: no
    associations, reference clocks, broadcast client, drift file, metrics endpoint, clock
    discipline or Autokey credentials."""
    return attrs.evolve(config, associations=(), refclocks=(), broadcast_client=False,
                        driftfile=None, statsaddress=None, crypto=None,
                        enabled=config.enabled - {"ntp"}, warnings=())


def system_state(engine: Engine, now: float) -> dict[str, Any]:
    """The system variables a worker answers with, at reactor time ``now``."""
    sys = engine.sys
    return {"leap": sys.leap, "stratum": sys.stratum, "refid": sys.refid,
            "reftime": sys.reftime, "root_delay": sys.root_delay,
            "root_dispersion": sys.root_dispersion, "age": now - sys.epoch}


def apply_system_state(engine: Engine, state: Mapping[str, Any], now: float) -> None:
    """Answer with the published ``state`` from reactor time ``now`` on."""
    engine.sys = SystemVariables(
        leap=int(state["leap"]), stratum=int(state["stratum"]), refid=bytes(state["refid"]),
        reftime=int(state["reftime"]), root_delay=float(state["root_delay"]),
        root_dispersion=float(state["root_dispersion"]), epoch=now - float(state["age"]))


def serving_engine(init: WorkerInit, clock: IClock) -> Engine:
    """A worker's engine (see the module docstring); its system variables are those of
    ``init`` once :func:`apply_system_state` has been called with the reactor's time."""
    sessions = None
    if init.seed_secret is not None:
        sessions = SessionKeys(SharedSeed(init.seed_secret, init.revoke), init.digest)
    nts = NtsServer(init.nts_cookies, clock.now) if init.nts_cookies is not None else None
    return Engine(init.config, clock, keys=init.keys, session_keys=sessions,
                  precision=init.precision, local_address=init.local_address, nts_server=nts)


# -- frames --------------------------------------------------------------------------------


def encode_init(init: WorkerInit) -> bytes:
    return frame(pickle.dumps(init))


def decode_init(body: bytes) -> WorkerInit:
    init = pickle.loads(body)  # noqa: S301 - our own parent, our own pipe
    if not isinstance(init, WorkerInit):
        raise FrameError("the first frame is not a worker's start")
    return init


def encode_system(state: Mapping[str, Any]) -> bytes:
    return frame(pickle.dumps(dict(state)))


def decode_system(body: bytes) -> dict[str, Any]:
    state = pickle.loads(body)  # noqa: S301 - our own parent, our own pipe
    if not isinstance(state, dict):
        raise FrameError("a system frame is not a mapping")
    return state


def counter_delta(counters: Mapping[str, int], reported: dict[str, int]) -> dict[str, int]:
    """What ``counters`` grew by since ``reported`` (which is brought up to date)."""
    delta = {}
    for name, value in counters.items():
        grown = value - reported.get(name, 0)
        if grown:
            delta[name] = grown
            reported[name] = value
    return delta


def encode_counters(delta: Mapping[str, int]) -> bytes:
    return frame(json.dumps(delta, separators=(",", ":")).encode("ascii"))


def decode_counters(body: bytes) -> dict[str, int]:
    """A worker's report, checked: a JSON object of at most 512 names (of at most 64
    characters, letters, digits and ``_``) to positive integers; FrameError otherwise."""
    try:
        delta = json.loads(body.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise FrameError("a counter report is not JSON") from None
    if not isinstance(delta, dict) or len(delta) > _MAX_COUNTERS:
        raise FrameError("a counter report is not a mapping of counters")
    for name, value in delta.items():
        if not (len(name) <= MAX_COUNTER_NAME and name.replace("_", "a").isalnum()
                and name.isascii()) or type(value) is not int or value <= 0:
            raise FrameError(f"bad counter in a report: {name[:MAX_COUNTER_NAME]!r}")
    return delta
