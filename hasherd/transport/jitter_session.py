"""What the jitter RPC clients share (docs/jitter-rpc.md), batch mode, without any I/O.

``JitterSession`` builds the requests, frames and parses the replies, checks them, and
says what a failed exchange means; each call is a ``Steps`` generator that yields the
frames to send and is sent their replies. Two thin shells drive it:
``hasherd.transport.jitter_client.SyncJitterClient`` over blocking sockets (for threads,
such as an evaluator actor's) and ``hasherd.transport.jitter_async.JitterClient`` on the
event loop. Both keep one persistent connection, reconnect with exponential backoff when
it is lost, and bound every call with a timeout. A timeout is not retried (the service
may be overloaded); a closed connection is (every request is idempotent).
"""

from __future__ import annotations

import itertools
import socket
from collections import deque
from collections.abc import Generator
from os import PathLike
from pathlib import Path
from typing import TypedDict, TypeVar, Unpack

import numpy as np

from hasherd.errors import HasherError
from hasherd.kernel.memory import JitterMemory
from hasherd.protocol.jitter import (
    MAX_RECORDS,
    ClientDecoder,
    ErrorReply,
    Event,
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
CHUNK = 65536
F = TypeVar("F", bound=Frame)
T = TypeVar("T")
Steps = Generator[Frame, Event, T]  # yields a request, is sent its reply, returns the result


class JitterRpcError(HasherError):
    """A jitter call failed: ``code`` is the server's error name (``unknown_memory``, ...)
    or the client's own: ``unavailable``, ``timeout``, ``bad_reply``, ``too_large``."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"jitter service: {message} [{code}]")


class ClientOptions(TypedDict, total=False):
    """A client's timeout (seconds, each call), retries of a lost connection and their
    exponential backoff (seconds, doubling from ``backoff`` up to ``max_backoff``)."""

    timeout: float
    retries: int
    backoff: float
    max_backoff: float


class ConnectionClosed(Exception):
    """The connection ended (retried with a new one)."""


def memory_id_of(memory: JitterMemory | str | None) -> str | None:
    return memory.memory_id if isinstance(memory, JitterMemory) else memory


class JitterSession:
    """One client's protocol state: request ids, the server's limits, reply checks, and
    the retry policy; the shell owns the socket and calls ``opening``/``opened`` on each
    new connection, ``take`` on each received chunk."""

    def __init__(
        self,
        path: str | PathLike[str],
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = 3,
        backoff: float = 0.05,
        max_backoff: float = 1.0,
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
        self._events: deque[Event] = deque()

    def next_id(self) -> int:
        return next(self._ids) & 0xFFFFFFFF

    # -- the connection ------------------------------------------------------------------

    def opening(self) -> bytes:
        """Hello and an info request in one write: one round trip learns the limits."""
        self._decoder = ClientDecoder()
        self._events.clear()
        return Hello().to_bytes() + InfoRequest(0).to_bytes()

    def opened(self, hello: Event, info: Event) -> None:
        if not isinstance(hello, Hello) or not isinstance(info, InfoReply):
            raise JitterRpcError("bad_reply", f"unexpected opening {hello!r}, {info!r}")
        self.max_records = info.max_records
        self.max_upload_frames = info.max_upload_frames

    def take(self, data: bytes) -> Event | None:
        """Feed received bytes (``b""``: the peer closed); the next event once complete."""
        if not data:
            raise ConnectionClosed()
        self._events.extend(self._decoder.feed(data))
        if self._decoder.error is not None:
            raise JitterRpcError("bad_reply", str(self._decoder.error))
        return self.pending_event()

    def pending_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def retry_delay(self, exc: BaseException, attempt: int) -> float | None:
        """The pause before attempt ``attempt + 1`` after ``exc`` ended the connection, or
        the ``JitterRpcError`` the caller gets; None: ``exc`` is not the link's (re-raise
        it)."""
        if isinstance(exc, TimeoutError):
            raise JitterRpcError("timeout", f"no reply within {self.timeout:g} s") from None
        if not isinstance(exc, ConnectionClosed | OSError):
            return None
        if attempt >= self.retries:
            raise JitterRpcError("unavailable", f"{self.path}: {exc!r}") from exc
        return float(min(self.max_backoff, self.backoff * 2**attempt))

    # -- the calls -----------------------------------------------------------------------

    def lookup(
        self, records: np.ndarray, memory: JitterMemory | str | None
    ) -> Steps[tuple[np.ndarray, np.ndarray]]:
        """(jitter, found) per (N, 14) record against ``memory`` (its memory_id, or None for
        the service's default); a JitterMemory the service lacks is uploaded once."""
        try:
            return (yield from self._lookup(records, memory_id_of(memory)))
        except JitterRpcError as exc:
            if exc.code != "unknown_memory" or not isinstance(memory, JitterMemory):
                raise
        yield from self.upload(memory)
        return (yield from self._lookup(records, memory.memory_id))

    def _lookup(
        self, records: np.ndarray, memory_id: str | None
    ) -> Steps[tuple[np.ndarray, np.ndarray]]:
        """One frame per ``max_records`` records (the server's limit), merged in order."""
        parts = []
        n = max(1, self.max_records)
        for i in range(0, max(len(records), 1), n):
            req = LookupRequest.of(self.next_id(), memory_id, records[i : i + n])
            parts.append(self.expect((yield req), req.request_id, LookupReply))
        jit = np.concatenate([p.jitter_array() for p in parts])
        found = np.concatenate([p.found_array() for p in parts])
        return jit, found

    def upload(self, memory: JitterMemory) -> Steps[str]:
        """Send ``memory`` to the service; its memory_id, as the service computed it."""
        if len(memory) > self.max_upload_frames:
            raise JitterRpcError(
                "too_large",
                f"memory of {len(memory)} frames exceeds the "
                f"service's upload limit ({self.max_upload_frames})",
            )
        req = UploadRequest.of(self.next_id(), memory.frames)
        reply = self.expect((yield req), req.request_id, UploadReply)
        if reply.memory_id != memory.memory_id:
            raise JitterRpcError(
                "bad_reply",
                f"uploaded memory {memory.memory_id[:12]} came back as {reply.memory_id[:12]}",
            )
        return reply.memory_id

    def info(self) -> Steps[InfoReply]:
        req = InfoRequest(self.next_id())
        return self.expect((yield req), req.request_id, InfoReply)

    @staticmethod
    def expect(reply: Event, request_id: int, kind: type[F]) -> F:
        """``reply`` if it answers ``request_id`` with a ``kind``; else the typed error."""
        if isinstance(reply, ErrorReply):
            raise JitterRpcError(reply.name, reply.message)
        if not isinstance(reply, kind) or reply.request_id != request_id:
            raise JitterRpcError(
                "bad_reply", f"expected {kind.__name__} {request_id}, got {reply!r}"[:300]
            )
        return reply


class ClientShell:
    """What both clients hold: the session, and the socket of its connection (None until
    the first call, and after a failure)."""

    def __init__(self, path: str | PathLike[str], **options: Unpack[ClientOptions]) -> None:
        self._s = JitterSession(path, **options)
        self._sock: socket.socket | None = None

    @property
    def session(self) -> JitterSession:
        return self._s

    def _close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
