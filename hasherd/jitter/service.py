"""The jitter RPC service: ``lookup(S, key, p)`` for other processes, on a Unix socket.

Upstream trainers ask for one jitter per 56-byte frame (docs/upstream.md); batch clients
(``hasherd.backends.rpc``) send a hello and then frames of up to 65,536 records
(docs/jitter-rpc.md, ``hasherd.protocol.jitter``). The service holds one or more
``JitterMemory`` by ``memory_id``: the default one, which legacy requests use, memories
given at start (pinned) and memories clients upload (kept least-recently-used first).

The service is a ``hasherd.transport.unix_server.UnixServer``, like the control socket:
a stale socket file is replaced, a live one refused (``JitterAlreadyRunning``), mode and
group are set before it listens, and each peer is admitted by SO_PEERCRED (root, the
service's user, members of the group). Here is only the protocol: a peer that sends
garbage gets an error frame (batch mode) and is closed; a short or abandoned frame only
ends its own connection. Large batches and uploads run on a worker thread.
"""

from __future__ import annotations

import bisect
import logging
import os
import socket
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Unpack

import anyio
import anyio.abc
import anyio.from_thread
import numpy as np

from hasherd.jitter.endpoint import (
    JitterAlreadyRunning,
    JitterSocketError,
    default_jitter_socket_path,
)
from hasherd.jitter.memories import JitterMemories, prepare_upload
from hasherd.kernel.jitter_batch import lookup_many
from hasherd.kernel.memory import JitterMemory, as_memory
from hasherd.protocol.jitter import (
    DEFAULT_MAX_UPLOAD_FRAMES,
    MAX_RECORDS,
    ErrorCode,
    ErrorReply,
    Hello,
    InfoReply,
    InfoRequest,
    LegacyBlock,
    Limits,
    LookupReply,
    LookupRequest,
    Mode,
    ServerDecoder,
    UploadReply,
    UploadRequest,
    error_name,
)
from hasherd.transport.unix_server import ServerEvent, ServerOptions, UnixServer

LOGGER = logging.getLogger(__name__)

DEFAULT_MAX_UPLOADS = 16
LATENCY_BUCKETS = (1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 0.1)
_SCALAR_MAX = 4  # up to this many legacy requests at once: JitterMemory.lookup per record
_THREAD_MIN = 8192  # batches of at least this many records run on a worker thread
_U32 = struct.Struct("<I")

MemorySource = JitterMemory | np.ndarray | Callable[[], Any] | None
__all__ = [
    "JitterAlreadyRunning",
    "JitterService",
    "JitterSocketError",
    "Latency",
    "default_jitter_socket_path",
    "run_jitter_service",
    "serving_in_thread",
]


class Latency:
    """A small histogram of per-request service times (seconds)."""

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, seconds: float, times: int = 1) -> None:
        self.counts[bisect.bisect_left(self.bounds, seconds)] += times
        self.total += seconds * times

    def snapshot(self) -> dict[str, Any]:
        cumulative, running = [], 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            cumulative.append((bound, running))
        return {"count": running, "sum": self.total, "buckets": cumulative}


class JitterService(UnixServer):
    """Serves jitter lookups on ``path`` (see the module docstring).

    ``memory`` is the default memory (legacy clients, batch requests naming none);
    ``memories`` more pinned ones. ``allow_upload`` lets batch clients add memories, at
    most ``max_upload_frames`` frames each; beyond ``max_uploads`` uploaded memories the
    least recently used is dropped. The socket, its peers and timeouts as in
    ``UnixServer`` (``options``); a peer past ``max_connections`` is closed unanswered.
    """

    setup_error = JitterSocketError
    in_use_error = JitterAlreadyRunning

    def __init__(
        self,
        path: str | os.PathLike[str],
        memory: JitterMemory | None = None,
        *,
        memories: tuple[JitterMemory, ...] = (),
        max_records: int = MAX_RECORDS,
        allow_upload: bool = True,
        max_upload_frames: int = DEFAULT_MAX_UPLOAD_FRAMES,
        max_uploads: int = DEFAULT_MAX_UPLOADS,
        **options: Unpack[ServerOptions],
    ) -> None:
        super().__init__(path, **options)
        self.allow_upload = allow_upload
        self.limits = Limits(max_records, max_upload_frames if allow_upload else 0)
        self.memories = JitterMemories(max_uploads)
        for m in (*memories, *((memory,) if memory is not None else ())):
            self.add_memory(m, default=m is memory)
        self._counts = dict.fromkeys(
            (
                "connections_total",
                "requests",
                "legacy_requests",
                "batches",
                "lookups",
                "uploads",
                "infos",
            ),
            0,
        )
        self._errors: dict[str, int] = {}
        self.latency = Latency()
        self._handlers: dict[type, Callable[[Any], Any]] = {
            LegacyBlock: self._legacy,
            Hello: self._hello,
            LookupRequest: self._lookup,
            UploadRequest: self._upload,
            InfoRequest: self._info,
        }

    # -- memories -------------------------------------------------------------------------

    def add_memory(self, memory: JitterMemory, *, default: bool = False) -> str:
        """Serve ``memory`` (pinned); see ``JitterMemories.add``."""
        return self.memories.add(memory, default=default)

    async def set_default(self, memory: JitterMemory) -> str:
        """Make ``memory`` the default, indexed off the loop (the daemon, at a job's start)."""
        return await self.memories.set_default(memory)

    @property
    def default_memory(self) -> JitterMemory | None:
        d = self.memories.default
        return d.memory if d is not None else None

    @property
    def memory_ids(self) -> tuple[str, ...]:
        return self.memories.ids

    # -- statistics -----------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """A snapshot of the counters (cheap, synchronous)."""
        default = self.default_memory.memory_id if self.default_memory is not None else None
        return {
            "state": str(self.state),
            "path": str(self.path),
            "connections": self._active,
            **self._counts,
            "errors": dict(self._errors),
            "errors_total": sum(self._errors.values()),
            "latency": self.latency.snapshot(),
            "memories": len(self.memories),
            "default_memory_id": default,
        }

    snapshot = stats

    def _error(self, kind: str) -> None:
        self._errors[kind] = self._errors.get(kind, 0) + 1

    # -- the core's hooks -----------------------------------------------------------------

    def note(self, event: ServerEvent) -> None:
        if event == ServerEvent.ACCEPTED:
            self._counts["connections_total"] += 1
        else:
            self._error(str(event))

    def listening(self) -> None:
        LOGGER.info("jitter service listening on %s (%d memories)", self.path, len(self.memories))

    async def converse(self, conn: socket.socket) -> None:
        """Answer requests in order until EOF, an error, or a timeout ends the connection."""
        decoder = ServerDecoder(self.limits)
        partial_since: float | None = None
        while True:
            if decoder.pending and partial_since is None:
                partial_since = anyio.current_time()
            elif not decoder.pending:
                partial_since = None
            chunk = await self.receive(conn, partial_since)
            if chunk is None:
                if decoder.mode == Mode.BATCH:
                    message = f"no complete frame within {self.read_timeout:g} s; closing"
                    await self.send(conn, ErrorReply(0, ErrorCode.TIMEOUT, message).to_bytes())
                return
            if not chunk:
                if decoder.pending:
                    self._error("short_frame")
                return
            if not await self._answer(conn, decoder, chunk):
                return

    async def _answer(self, conn: socket.socket, decoder: ServerDecoder, chunk: bytes) -> bool:
        """Send the replies to the requests ``chunk`` completes; False closes."""
        out = bytearray()
        for event in decoder.feed(chunk):
            reply = await self._dispatch(event)
            if reply is None:
                await self.send(conn, bytes(out))
                return False
            out += reply
        if decoder.error is not None:
            self._error(error_name(decoder.error.code))
            LOGGER.debug("jitter request rejected: %s (%r)", decoder.error, decoder.error.raw)
            await self.send(conn, bytes(out) + ErrorReply.for_error(decoder.error).to_bytes())
            return False
        return not out or await self.send(conn, bytes(out))

    # -- requests -------------------------------------------------------------------------

    async def _dispatch(self, event: Any) -> bytes | None:
        """The reply to one request; None closes the connection (legacy has no errors)."""
        try:
            reply: bytes | None = await self._handlers[type(event)](event)
        except Exception:
            self._error("internal")
            LOGGER.exception("jitter request %s failed", type(event).__name__)
            if isinstance(event, LegacyBlock):
                return None
            message = "the jitter service failed on this request (see its log)"
            return ErrorReply(event.request_id, ErrorCode.INTERNAL, message).to_bytes()
        return reply

    async def _legacy(self, block: LegacyBlock) -> bytes | None:
        """One jitter per 56-byte request (``found`` is not part of the legacy reply)."""
        served = self.memories.default
        if served is None:
            self._error("no_default_memory")
            LOGGER.warning("legacy jitter request, but the service has no default memory")
            return None
        t0 = time.perf_counter()
        n = block.count
        if n <= _SCALAR_MAX:
            out = b"".join(_U32.pack(j) for j, _ in served.each(block.data))
        else:
            out = lookup_many(served.index, block.array())[0].astype("<u4").tobytes()
        self.latency.observe((time.perf_counter() - t0) / n, n)
        self._counts["requests"] += n
        self._counts["legacy_requests"] += n
        self._counts["lookups"] += n
        return out

    async def _hello(self, hello: Hello) -> bytes:
        return Hello().to_bytes()

    async def _lookup(self, req: LookupRequest) -> bytes:
        self._counts["requests"] += 1
        served = self.memories.resolve(req.memory_id)
        if served is None:
            self._error("unknown_memory")
            which = req.memory_id or "(default: this service has none)"
            message = f"no memory {which}; upload it first"
            return ErrorReply(req.request_id, ErrorCode.UNKNOWN_MEMORY, message).to_bytes()
        t0 = time.perf_counter()
        if 1 <= req.count <= _SCALAR_MAX and served.scalar:
            pairs = served.each(req.records)
            jit = np.array([j for j, _ in pairs], dtype=np.uint32)
            found = np.array([f for _, f in pairs], dtype=bool)
        elif req.count >= _THREAD_MIN:
            jit, found = await anyio.to_thread.run_sync(lookup_many, served.index, req.array())
        else:
            jit, found = lookup_many(served.index, req.array())
        reply = LookupReply.of(req.request_id, jit, found).to_bytes()
        self.latency.observe(time.perf_counter() - t0)
        self._counts["batches"] += 1
        self._counts["lookups"] += req.count
        return reply

    async def _upload(self, req: UploadRequest) -> bytes:
        self._counts["requests"] += 1
        if not self.allow_upload:
            self._error("upload_refused")
            message = "this jitter service takes no uploads"
            return ErrorReply(req.request_id, ErrorCode.UPLOAD_REFUSED, message).to_bytes()
        t0 = time.perf_counter()
        memory_id = req.memory_id()
        if self.memories.resolve(memory_id) is None:
            self.memories.keep_upload(await anyio.to_thread.run_sync(prepare_upload, req.array()))
            LOGGER.info("jitter memory %s uploaded (%d frames)", memory_id[:12], req.count)
        self.latency.observe(time.perf_counter() - t0)
        self._counts["uploads"] += 1
        return UploadReply(req.request_id, memory_id, req.count).to_bytes()

    async def _info(self, req: InfoRequest) -> bytes:
        self._counts["requests"] += 1
        self._counts["infos"] += 1
        default = self.default_memory
        return InfoReply(
            req.request_id,
            default.memory_id if default is not None else None,
            len(default) if default is not None else 0,
            len(self.memories),
            self.limits.max_records,
            self.limits.max_upload_frames,
        ).to_bytes()


# -- integration --------------------------------------------------------------------------


def resolve_memory(source: MemorySource) -> JitterMemory | None:
    """A memory from a JitterMemory, frames, a callable returning one (a dataset loader:
    ``lambda: load_dataset(path).memory``), or None (no default memory)."""
    value = source() if callable(source) else source
    return None if value is None else as_memory(value)


async def run_jitter_service(
    memory_source: MemorySource,
    path: str | os.PathLike[str] | None = None,
    *,
    task_status: anyio.abc.TaskStatus[JitterService] = anyio.TASK_STATUS_IGNORED,
    **options: Any,
) -> None:
    """For the daemon: load and index the memory off the loop, serve it at ``path``
    (default ``default_jitter_socket_path()``) with ``options`` (``JitterService``'s
    keywords: group, mode, allow_upload, ...); ``task_status`` gets the bound service."""
    where = path if path is not None else default_jitter_socket_path()

    def build() -> JitterService:
        return JitterService(where, resolve_memory(memory_source), **options)

    service = await anyio.to_thread.run_sync(build)
    async with anyio.create_task_group() as tg:
        await tg.start(service.serve)
        task_status.started(service)


@contextmanager
def serving_in_thread(service: JitterService) -> Iterator[Path]:
    """Run ``service`` on an event loop of its own thread (tests, benchmarks, scripts)."""
    with anyio.from_thread.start_blocking_portal() as portal:
        future, path = portal.start_task(service.serve)
        try:
            yield path
        finally:
            portal.call(service.stop)
            future.result()
