"""The event-loop client of the jitter RPC service (anyio): ``JitterSession`` over a
non-blocking socket; see ``hasherd.transport.jitter_session`` for the protocol, the
retries and the timeouts, ``jitter_client`` for the blocking twin."""

from __future__ import annotations

import socket
from os import PathLike
from typing import Unpack

import anyio
import numpy as np

from hasherd.kernel import spec
from hasherd.kernel.memory import JitterMemory
from hasherd.protocol.jitter import Event, Frame, Hello, InfoReply
from hasherd.transport.jitter_session import ClientOptions, ClientShell, Steps, T
from hasherd.transport.unix import recv_chunk

__all__ = ["JitterClient"]


class JitterClient(ClientShell):
    """The same client for event-loop code (anyio); calls on one client serialise."""

    def __init__(self, path: str | PathLike[str], **options: Unpack[ClientOptions]) -> None:
        super().__init__(path, **options)
        self._lock = anyio.Lock()

    async def __aenter__(self) -> JitterClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._close()

    async def lookup(
        self, records: np.ndarray, memory: JitterMemory | str | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """See ``JitterSession.lookup``."""
        return await self._run(self._s.lookup(records, memory))

    async def lookup_one(
        self,
        slots: tuple[int, ...],
        key: int,
        pass_no: int,
        memory: JitterMemory | str | None = None,
    ) -> tuple[int, bool]:
        record = np.array([[*spec.check_slots(slots), key, pass_no]], dtype=np.int64)
        jit, found = await self.lookup(record, memory)
        return int(jit[0]), bool(found[0])

    async def upload(self, memory: JitterMemory) -> str:
        return await self._run(self._s.upload(memory))

    async def info(self) -> InfoReply:
        return await self._run(self._s.info())

    async def _run(self, steps: Steps[T]) -> T:
        """Drive one call: connected first (its frames depend on the server's limits)."""
        await self._call(None)
        try:
            frame = next(steps)
            while True:
                frame = steps.send(await self._call(frame))
        except StopIteration as done:
            result: T = done.value
            return result

    async def _call(self, frame: Frame | None) -> Event:
        """Send ``frame`` (None: only connect) and read its reply, reconnecting as needed.
        Any failure closes the connection: a cancelled call leaves it mid-reply."""
        async with self._lock:
            attempt = 0
            while True:
                try:
                    with anyio.fail_after(self._s.timeout):
                        return await self._exchange(frame)
                except BaseException as exc:
                    self._close()
                    delay = self._s.retry_delay(exc, attempt)
                    if delay is None:
                        raise
                await anyio.sleep(delay)
                self._s.reconnects += 1
                attempt += 1

    async def _exchange(self, frame: Frame | None) -> Event:
        sock = self._sock or await self._connect()
        if frame is None:
            return Hello()
        await self._send(sock, frame.to_bytes())
        return await self._read(sock)

    async def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock = sock
        sock.setblocking(False)
        try:
            sock.connect(str(self._s.path))
        except BlockingIOError:  # a full backlog: wait for the server to accept
            await anyio.wait_writable(sock)
            error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if error:
                raise OSError(error, "connect failed") from None
        await self._send(sock, self._s.opening())
        hello = await self._read(sock)
        self._s.opened(hello, await self._read(sock))
        return sock

    @staticmethod
    async def _send(sock: socket.socket, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[sock.send(view, socket.MSG_NOSIGNAL) :]
            except BlockingIOError:
                await anyio.wait_writable(sock)

    async def _read(self, sock: socket.socket) -> Event:
        event = self._s.pending_event()
        while event is None:
            event = self._s.take(await recv_chunk(sock))
        return event
