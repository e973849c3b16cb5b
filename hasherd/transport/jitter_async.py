"""The event-loop client of the jitter RPC service (anyio); see ``jitter_client``."""

from __future__ import annotations

import itertools
import socket
from os import PathLike
from typing import TypeVar

import anyio
import numpy as np

from hasherd.kernel import spec
from hasherd.kernel.memory import JitterMemory
from hasherd.protocol.jitter import (
    Frame,
    Hello,
    InfoReply,
    InfoRequest,
    LookupReply,
    LookupRequest,
    UploadReply,
)
from hasherd.transport.jitter_client import (
    JitterRpcError,
    _Closed,
    _memory_id,
    _merge,
    _Session,
)

DEFAULT_TIMEOUT = 30.0
_CHUNK = 65536
F = TypeVar("F", bound=Frame)


class JitterClient:
    """The same client for event-loop code (anyio); calls on one client serialise."""

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
        self._lock = anyio.Lock()

    @property
    def session(self) -> _Session:
        return self._s

    async def __aenter__(self) -> JitterClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def lookup(
        self, records: np.ndarray, memory: JitterMemory | str | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """As ``SyncJitterClient.lookup``."""
        try:
            return await self._lookup(records, _memory_id(memory))
        except JitterRpcError as exc:
            if exc.code != "unknown_memory" or not isinstance(memory, JitterMemory):
                raise
        await self.upload(memory)
        return await self._lookup(records, memory.memory_id)

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

    async def _lookup(
        self, records: np.ndarray, memory_id: str | None
    ) -> tuple[np.ndarray, np.ndarray]:
        await self._call(None)
        parts = []
        for chunk in self._s.chunks(records):
            req = LookupRequest.of(self._s.next_id(), memory_id, chunk)
            parts.append(self._s.expect(await self._call(req), req.request_id, LookupReply))
        return _merge(parts)

    async def upload(self, memory: JitterMemory) -> str:
        await self._call(None)
        req = self._s.upload_frame(memory)
        reply = self._s.expect(await self._call(req), req.request_id, UploadReply)
        return self._s.uploaded(reply, memory)

    async def info(self) -> InfoReply:
        req = InfoRequest(self._s.next_id())
        return self._s.expect(await self._call(req), req.request_id, InfoReply)

    async def _call(self, frame: Frame | None) -> Hello | Frame:
        async with self._lock:
            for attempt in itertools.count():
                try:
                    with anyio.fail_after(self._s.timeout):
                        if self._sock is None:
                            await self._connect()
                        if frame is None:
                            return Hello()
                        await self._send(frame.to_bytes())
                        return await self._read()
                except TimeoutError:
                    await self.aclose()
                    raise JitterRpcError(
                        "timeout", f"no reply within {self._s.timeout:g} s"
                    ) from None
                except (_Closed, OSError) as exc:
                    await self.aclose()
                    if attempt >= self._s.retries:
                        raise JitterRpcError("unavailable", f"{self._s.path}: {exc!r}") from exc
                    await anyio.sleep(self._s.delay(attempt))
                    self._s.reconnects += 1
                except BaseException:
                    await self.aclose()  # a cancelled call leaves the stream mid-reply
                    raise
            raise AssertionError("unreachable")  # pragma: no cover

    async def _connect(self) -> None:
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
        await self._send(self._s.opening())
        hello = await self._read()
        self._s.opened(hello, await self._read())

    async def _send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            assert self._sock is not None
            try:
                view = view[self._sock.send(view, socket.MSG_NOSIGNAL) :]
            except BlockingIOError:
                await anyio.wait_writable(self._sock)

    async def _read(self) -> Hello | Frame:
        event = self._s.pending_event()
        while event is None:
            assert self._sock is not None
            try:
                data = self._sock.recv(_CHUNK)
            except BlockingIOError:
                await anyio.wait_readable(self._sock)
                continue
            except ConnectionResetError:
                data = b""
            event = self._s.take(data)
        return event


# -- the evaluator ---------------------------------------------------------------------------
