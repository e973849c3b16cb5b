"""Clients of the jitter RPC service (docs/jitter-rpc.md), batch mode.

Each client keeps one persistent connection, reconnects with exponential backoff when it
is lost, and bounds every call with a timeout. ``SyncJitterClient`` uses blocking sockets
(for threads, such as an evaluator actor's); ``hasherd.transport.jitter_async`` has the
event-loop client. A timeout is not retried (the service may be overloaded); a closed
connection is (every request is idempotent).
"""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections import deque
from os import PathLike
from pathlib import Path
from typing import TypeVar

import numpy as np

from hasherd.errors import HasherError
from hasherd.kernel.memory import JitterMemory
from hasherd.protocol.jitter import (
    MAX_RECORDS,
    ClientDecoder,
    ErrorReply,
    Frame,
    Hello,
    InfoReply,
    InfoRequest,
    LookupReply,
    LookupRequest,
    UploadReply,
    UploadRequest,
)

DEFAULT_TIMEOUT = 30.0
_CHUNK = 65536
F = TypeVar("F", bound=Frame)


class JitterRpcError(HasherError):
    """A jitter call failed: ``code`` is the server's error name (``unknown_memory``, ...)
    or the client's own: ``unavailable``, ``timeout``, ``bad_reply``, ``too_large``."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"jitter service: {message} [{code}]")


class _Closed(Exception):
    """The connection ended (retried with a new one)."""


class _Session:
    """What both clients share: request ids, the server's limits, reply checks."""

    def __init__(
        self,
        path: str | PathLike[str],
        timeout: float,
        retries: int,
        backoff: float,
        max_backoff: float,
    ) -> None:
        if timeout <= 0 or retries < 0 or backoff < 0:
            raise ValueError("timeout must be positive, retries and backoff not negative")
        self.path = Path(path)
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_records = MAX_RECORDS
        self.max_upload_frames = 0
        self.reconnects = 0
        self._ids = itertools.count(1)
        self._decoder = ClientDecoder()
        self._events: deque[Hello | Frame] = deque()

    def next_id(self) -> int:
        return next(self._ids) & 0xFFFFFFFF

    def delay(self, attempt: int) -> float:
        return float(min(self.max_backoff, self.backoff * 2**attempt))

    def opening(self) -> bytes:
        """Hello and an info request in one write: one round trip learns the limits."""
        self._decoder = ClientDecoder()
        self._events.clear()
        return Hello().to_bytes() + InfoRequest(0).to_bytes()

    def opened(self, hello: Hello | Frame, info: Hello | Frame) -> None:
        if not isinstance(hello, Hello) or not isinstance(info, InfoReply):
            raise JitterRpcError("bad_reply", f"unexpected opening {hello!r}, {info!r}")
        self.max_records = info.max_records
        self.max_upload_frames = info.max_upload_frames

    def take(self, data: bytes) -> Hello | Frame | None:
        """Feed received bytes; the next event once one is complete."""
        if not data:
            raise _Closed()
        self._events.extend(self._decoder.feed(data))
        if self._decoder.error is not None:
            raise JitterRpcError("bad_reply", str(self._decoder.error))
        return self._events.popleft() if self._events else None

    def pending_event(self) -> Hello | Frame | None:
        return self._events.popleft() if self._events else None

    @staticmethod
    def expect(reply: Hello | Frame, request_id: int, kind: type[F]) -> F:
        if isinstance(reply, ErrorReply):
            raise JitterRpcError(reply.name, reply.message)
        if not isinstance(reply, kind) or reply.request_id != request_id:
            raise JitterRpcError(
                "bad_reply", f"expected {kind.__name__} {request_id}, got {reply!r}"[:300]
            )
        return reply

    def chunks(self, records: np.ndarray) -> list[np.ndarray]:
        n = max(1, self.max_records)
        return [records[i : i + n] for i in range(0, max(len(records), 1), n)]

    def upload_frame(self, memory: JitterMemory) -> UploadRequest:
        if len(memory) > self.max_upload_frames:
            raise JitterRpcError(
                "too_large",
                f"memory of {len(memory)} frames exceeds the "
                f"service's upload limit ({self.max_upload_frames})",
            )
        return UploadRequest.of(self.next_id(), memory.frames)

    @staticmethod
    def uploaded(reply: UploadReply, memory: JitterMemory) -> str:
        if reply.memory_id != memory.memory_id:
            raise JitterRpcError(
                "bad_reply",
                f"uploaded memory {memory.memory_id[:12]} came back as {reply.memory_id[:12]}",
            )
        return reply.memory_id


def _merge(parts: list[LookupReply]) -> tuple[np.ndarray, np.ndarray]:
    jit = np.concatenate([p.jitter_array() for p in parts])
    found = np.concatenate([p.found_array() for p in parts])
    return jit, found


def _memory_id(memory: JitterMemory | str | None) -> str | None:
    return memory.memory_id if isinstance(memory, JitterMemory) else memory


class SyncJitterClient:
    """A blocking batch-mode client, safe to share between threads (calls serialise)."""

    def __init__(
        self,
        path: str | PathLike[str],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = 3,
        backoff: float = 0.05,
        max_backoff: float = 1.0,
    ) -> None:
        self._s = _Session(path, timeout, retries, backoff, max_backoff)
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    @property
    def session(self) -> _Session:
        return self._s

    def __enter__(self) -> SyncJitterClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __del__(self) -> None:  # evaluators have no close(): never leak the socket
        sock = getattr(self, "_sock", None)
        if sock is not None:
            sock.close()

    def lookup(
        self, records: np.ndarray, memory: JitterMemory | str | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(jitter, found) per (N, 14) record against ``memory`` (its memory_id, or None for
        the service's default); a JitterMemory the service lacks is uploaded once."""
        try:
            return self._lookup(records, _memory_id(memory))
        except JitterRpcError as exc:
            if exc.code != "unknown_memory" or not isinstance(memory, JitterMemory):
                raise
        self.upload(memory)
        return self._lookup(records, memory.memory_id)

    def _lookup(self, records: np.ndarray, memory_id: str | None) -> tuple[np.ndarray, np.ndarray]:
        self._ensure()
        parts = []
        for chunk in self._s.chunks(records):
            req = LookupRequest.of(self._s.next_id(), memory_id, chunk)
            parts.append(self._s.expect(self._call(req), req.request_id, LookupReply))
        return _merge(parts)

    def upload(self, memory: JitterMemory) -> str:
        self._ensure()
        req = self._s.upload_frame(memory)
        reply = self._s.expect(self._call(req), req.request_id, UploadReply)
        return self._s.uploaded(reply, memory)

    def info(self) -> InfoReply:
        req = InfoRequest(self._s.next_id())
        return self._s.expect(self._call(req), req.request_id, InfoReply)

    def _ensure(self) -> None:
        if self._sock is None:
            self._call(None)

    def _call(self, frame: Frame | None) -> Hello | Frame:
        """Send ``frame`` (None: only connect) and read its reply, reconnecting as needed."""
        with self._lock:
            for attempt in itertools.count():
                try:
                    if self._sock is None:
                        self._connect()
                    if frame is None:
                        return Hello()
                    assert self._sock is not None
                    self._sock.sendall(frame.to_bytes())
                    return self._read()
                except TimeoutError:
                    self.close()
                    raise JitterRpcError(
                        "timeout", f"no reply within {self._s.timeout:g} s"
                    ) from None
                except (_Closed, OSError) as exc:
                    self.close()
                    if attempt >= self._s.retries:
                        raise JitterRpcError("unavailable", f"{self._s.path}: {exc!r}") from exc
                    time.sleep(self._s.delay(attempt))
                    self._s.reconnects += 1
                except JitterRpcError:
                    self.close()
                    raise
            raise AssertionError("unreachable")  # pragma: no cover

    def _connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock = sock
        sock.settimeout(self._s.timeout)
        sock.connect(str(self._s.path))
        sock.sendall(self._s.opening())
        hello = self._read()
        self._s.opened(hello, self._read())

    def _read(self) -> Hello | Frame:
        event = self._s.pending_event()
        while event is None:
            assert self._sock is not None
            event = self._s.take(self._sock.recv(_CHUNK))
        return event
