"""The Prometheus endpoint: HTTP ``GET /metrics`` with the engine's metrics (twisted.web).

Only ``/metrics`` exists (everything else is 404) and only GET and HEAD are allowed (405
otherwise).  The text is ``prometheus_client``'s exposition of a registry holding the
engine's :class:`~ntpauto.metrics.EngineCollector`, so a scrape costs one pass over the
counters and the associations and nothing is computed between scrapes.
:class:`~ntpauto.service.NTPAutokeyService` listens on the ``statsaddress`` of the
configuration (loopback unless told otherwise).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prometheus_client.exposition import generate_latest
from twisted.web.pages import notFound
from twisted.web.resource import IResource, Resource
from twisted.web.server import Site

from ntpauto.metrics import CONTENT_TYPE, registry

if TYPE_CHECKING:
    from ntpauto.engine import Engine

__all__ = ["MetricsResource", "listen_stats", "stats_resource", "stats_site"]


def _plain(request: Any, code: int, text: str) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    return text.encode("utf-8")


class MetricsResource(Resource):
    """``/metrics``: the engine's metrics in the Prometheus text format 0.0.4."""

    isLeaf = True

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine
        self.registry = registry(engine)

    def render(self, request: Any) -> bytes:
        """GET and HEAD only (405 with ``Allow`` otherwise); 404 below ``/metrics``."""
        if request.method not in (b"GET", b"HEAD"):
            request.setHeader(b"allow", b"GET, HEAD")
            return _plain(request, 405, "Method not allowed: GET /metrics\n")
        if request.postpath:
            return _plain(request, 404, "Not found: GET /metrics\n")
        request.setHeader(b"content-type", CONTENT_TYPE.encode("ascii"))
        return generate_latest(self.registry)


class _Root(Resource):
    """``metrics`` is the only child; the root and every other path are 404."""

    def getChild(self, path: bytes, request: Any) -> IResource:
        return notFound("Not found", "GET /metrics")


def stats_resource(engine: Engine) -> Resource:
    """The site's root resource for ``engine``."""
    root = _Root()
    root.putChild(b"metrics", MetricsResource(engine))
    return root


def stats_site(engine: Engine) -> Site:
    """An HTTP site serving ``/metrics`` for ``engine`` (no access log, no tracebacks)."""
    site = Site(stats_resource(engine))
    site.displayTracebacks = False
    site.noisy = False
    return site


def listen_stats(reactor: Any, engine: Engine, address: tuple[str, int]) -> Any:
    """Listen on TCP ``address`` (host, port; port 0 picks one) and return the
    ``IListeningPort``; raises ``CannotListenError`` when the address cannot be bound."""
    host, port = address
    return reactor.listenTCP(port, stats_site(engine), interface=host)
