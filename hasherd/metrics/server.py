"""The metrics endpoint: one registry, the collector, the generation histogram, HTTP.

``Metrics`` owns a ``CollectorRegistry`` of its own (never prometheus_client's global
one, so tests and several daemons in one process do not collide) holding the snapshot
collector, the process and platform collectors, and the one metric that is observed
rather than read: how long each generation takes. ``serve()`` starts
prometheus_client's HTTP server on a daemon thread; ``close()`` stops it.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import math
import socket
import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
    start_http_server,
)

from hasherd import __version__
from hasherd.errors import ConfigError, HasherError
from hasherd.metrics.collector import HasherCollector, MetricsSource

LOGGER = logging.getLogger(__name__)

ADDRESS_KEY = "metrics.address"
DEFAULT_ADDRESS = "127.0.0.1:9464"
# A generation takes from under a millisecond (small population, GPU) to seconds
# (large population on a slow CPU); 1-2.5-5 steps from 0.5 ms to 10 s.
GENERATION_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class MetricsServerError(HasherError):
    """The metrics HTTP server could not start on ``address``."""

    def __init__(self, address: str, problem: str) -> None:
        self.address = address
        self.problem = problem
        super().__init__(f"metrics server on {address}: {problem}")


class AddressInUseError(MetricsServerError):
    """Another socket already listens on the metrics address."""

    def __init__(self, address: str) -> None:
        super().__init__(address, "address already in use")


def parse_address(address: str) -> tuple[str, int]:
    """``host:port`` or ``[ipv6]:port`` into (host, port); ConfigError if malformed."""
    if address.startswith("["):
        host, bracket, rest = address[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise ConfigError(ADDRESS_KEY, f"{address!r}: expected [IPv6 address]:port")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigError(
                ADDRESS_KEY, f"{address!r}: {host!r} is not an IPv6 address"
            ) from None
        port_text = rest[1:]
    else:
        host, colon, port_text = address.rpartition(":")
        if not colon:
            raise ConfigError(ADDRESS_KEY, f"{address!r}: expected host:port")
        if ":" in host:
            raise ConfigError(ADDRESS_KEY, f"{address!r}: write IPv6 addresses as [::1]:9464")
        if not host:
            raise ConfigError(ADDRESS_KEY, f"{address!r}: no host (0.0.0.0 listens on all)")
    return host, _port(address, port_text)


def _port(address: str, text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) > 65535:
        raise ConfigError(ADDRESS_KEY, f"{address!r}: the port must be 0 to 65535")
    return int(text)


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Metrics:
    """The daemon's metrics: build one in the composition root and pass it down."""

    def __init__(self, source: MetricsSource, *, version: str = __version__) -> None:
        self.registry = CollectorRegistry()
        self.collector = HasherCollector(source, version)
        self.registry.register(self.collector)
        self.generation_seconds = Histogram(
            "hasherd_generation_duration_seconds",
            "Wall time of one training generation, by job.",
            ["job_id"],
            buckets=GENERATION_BUCKETS,
            registry=self.registry,
        )
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.address: str | None = None  # where it listens, the real port included

    def observe_generation(self, seconds: float, job_id: int) -> None:
        """Record one generation's duration; the scheduler calls this after each."""
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"a generation duration must be finite and >= 0, not {seconds}")
        self.generation_seconds.labels(str(job_id)).observe(seconds)

    def forget_job(self, job_id: int) -> None:
        """Drop a deleted job's histogram series (no-op if it has none)."""
        self.generation_seconds.remove(str(job_id))

    def exposition(self) -> bytes:
        """The text a scrape would return (for the control socket and tests)."""
        return generate_latest(self.registry)

    def serve(self, address: str = DEFAULT_ADDRESS) -> str:
        """Listen on ``address`` (port 0: any free port); returns the address bound.

        ConfigError for a malformed or unresolvable address, AddressInUseError when the
        port is taken, MetricsServerError for any other bind failure.
        """
        if self._server is not None:
            raise RuntimeError(f"metrics are already served on {self.address}")
        host, port = parse_address(address)
        try:
            server, thread = start_http_server(port, host, registry=self.registry)
        except socket.gaierror as exc:
            raise ConfigError(ADDRESS_KEY, f"{address!r}: {exc.strerror}") from exc
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise AddressInUseError(address) from exc
            raise MetricsServerError(address, exc.strerror or str(exc)) from exc
        self._server, self._thread = server, thread
        self.address = format_address(host, server.server_address[1])
        LOGGER.info("metrics on http://%s/metrics", self.address)
        return self.address

    def close(self) -> None:
        """Stop serving and join the server thread. Idempotent; blocks up to about half a
        second (the server's poll interval): from async code, run it in a thread."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        self.address = None
        if server is None or thread is None:
            return
        server.shutdown()
        server.server_close()
        thread.join(timeout=5.0)
