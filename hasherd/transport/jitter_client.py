"""The blocking client of the jitter RPC service: ``JitterSession`` over a blocking
socket (for threads, such as an evaluator actor's); see ``hasherd.transport.jitter_session``
for the protocol, the retries and the timeouts, ``jitter_async`` for the event-loop twin.
"""

from __future__ import annotations

import socket
import threading
import time
from os import PathLike
from typing import Unpack

import numpy as np

from hasherd.kernel.memory import JitterMemory
from hasherd.protocol.jitter import Event, Frame, Hello, InfoReply
from hasherd.transport.jitter_session import (
    CHUNK,
    DEFAULT_TIMEOUT,
    ClientOptions,
    ClientShell,
    JitterRpcError,
    Steps,
    T,
)

__all__ = ["DEFAULT_TIMEOUT", "JitterRpcError", "SyncJitterClient"]


class SyncJitterClient(ClientShell):
    """A blocking batch-mode client, safe to share between threads (calls serialise)."""

    def __init__(self, path: str | PathLike[str], **options: Unpack[ClientOptions]) -> None:
        super().__init__(path, **options)
        self._lock = threading.Lock()

    def __enter__(self) -> SyncJitterClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._close()

    def __del__(self) -> None:  # evaluators have no close(): never leak the socket
        sock = getattr(self, "_sock", None)
        if sock is not None:
            sock.close()

    def lookup(
        self, records: np.ndarray, memory: JitterMemory | str | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """See ``JitterSession.lookup``."""
        return self._run(self._s.lookup(records, memory))

    def upload(self, memory: JitterMemory) -> str:
        return self._run(self._s.upload(memory))

    def info(self) -> InfoReply:
        return self._run(self._s.info())

    def _run(self, steps: Steps[T]) -> T:
        """Drive one call: connected first (its frames depend on the server's limits)."""
        self._call(None)
        try:
            frame = next(steps)
            while True:
                frame = steps.send(self._call(frame))
        except StopIteration as done:
            result: T = done.value
            return result

    def _call(self, frame: Frame | None) -> Event:
        """Send ``frame`` (None: only connect) and read its reply, reconnecting as needed."""
        with self._lock:
            attempt = 0
            while True:
                try:
                    return self._exchange(frame)
                except BaseException as exc:
                    self.close()
                    delay = self._s.retry_delay(exc, attempt)
                    if delay is None:
                        raise
                time.sleep(delay)
                self._s.reconnects += 1
                attempt += 1

    def _exchange(self, frame: Frame | None) -> Event:
        sock = self._sock or self._connect()
        if frame is None:
            return Hello()
        sock.sendall(frame.to_bytes())
        return self._read(sock)

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock = sock
        sock.settimeout(self._s.timeout)
        sock.connect(str(self._s.path))
        sock.sendall(self._s.opening())
        hello = self._read(sock)
        self._s.opened(hello, self._read(sock))
        return sock

    def _read(self, sock: socket.socket) -> Event:
        event = self._s.pending_event()
        while event is None:
            event = self._s.take(sock.recv(CHUNK))
        return event
