"""The control-socket server: JSON lines over a Unix stream socket, a handler registry.

``ControlServer.serve()`` runs inside the caller's task group (``await tg.start(server.
serve)`` returns once the socket is bound) and removes its socket file when it stops. A
client can make it log, answer an error or close the connection, never crash: every
connection is bounded (line length, a deadline for a partial line, a cap on concurrent
connections) and each peer is checked with SO_PEERCRED before its first line is read.

Connections are plain non-blocking sockets driven by ``anyio.wait_readable()`` and
``wait_writable()``, not anyio's UNIX socket streams: on the asyncio backend those
resolve a cancelled read's future from a selector callback (anyio 4.16), which logs
``InvalidStateError`` whenever a connection is cancelled (a timeout, ``stop()``) in the
loop iteration where its peer's bytes arrive.
"""

from __future__ import annotations

import grp
import logging
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel

from hasherd import __version__
from hasherd.control.protocol import (
    MAX_LINE_BYTES,
    PROTOCOL_VERSION,
    ErrorCode,
    ProtocolError,
    Request,
    Response,
)
from hasherd.errors import HasherError
from hasherd.transport import unix

LOGGER = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[Any]]
DEFAULT_MODE = 0o660
DEFAULT_READ_TIMEOUT = 30.0
DEFAULT_MAX_CONNECTIONS = 256
_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


class ControlServerError(HasherError):
    """The control socket cannot be set up at ``path``."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"control socket {self.path}: {problem}")


class AlreadyRunning(ControlServerError):
    """Another live process answers on the socket path (another hasherd, most likely)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(path, "already running: another process is listening on it")


@dataclass(frozen=True)
class PeerCredentials:
    """Who is on the other end of a connection (from SO_PEERCRED and /proc)."""

    pid: int
    uid: int
    gid: int
    groups: frozenset[int] = frozenset()


def peer_allowed(peer: PeerCredentials, *, own_uid: int, group_gid: int | None) -> bool:
    """Root, the daemon's own user, and members (primary or supplementary) of the group."""
    if peer.uid in (0, own_uid):
        return True
    return group_gid is not None and (peer.gid == group_gid or group_gid in peer.groups)


def supplementary_groups(pid: int) -> frozenset[int]:
    """The ``Groups:`` of ``/proc/<pid>/status``; empty when the process cannot be read."""
    if pid <= 0:
        return frozenset()
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Groups:"):
                    return frozenset(int(g) for g in line.split()[1:] if g.isdigit())
    except OSError:
        pass
    return frozenset()


def read_peer_credentials(sock: socket.socket) -> PeerCredentials:
    """SO_PEERCRED of a connected Unix socket, with the peer's supplementary groups."""
    pid, uid, gid = _PEERCRED.unpack(
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    )
    return PeerCredentials(pid, uid, gid, supplementary_groups(pid))


def resolve_group(group: str | int) -> int:
    """A group's gid from its name (or a gid, returned as is). KeyError names it."""
    if isinstance(group, int):
        return group
    return grp.getgrnam(group).gr_gid


class ControlServer:
    """Serves the registered methods on a Unix stream socket at ``path``.

    ``group`` (a name or gid) is given the socket file and admitted with root and the
    daemon's own user; ``read_timeout`` bounds how long a partial line (and a reply the
    peer does not read) may wait; ``idle_timeout`` (None: no limit) closes connections
    silent between requests; past ``max_connections`` new peers get ``busy`` and close.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        group: str | int | None = None,
        mode: int = DEFAULT_MODE,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        idle_timeout: float | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_line_bytes: int = MAX_LINE_BYTES,
    ) -> None:
        if read_timeout <= 0 or (idle_timeout is not None and idle_timeout <= 0):
            raise ValueError("timeouts must be positive")
        if max_connections < 1 or max_line_bytes < 1:
            raise ValueError("max_connections and max_line_bytes must be positive")
        self.path = Path(path)
        self.group = group
        self.mode = mode
        self.read_timeout = read_timeout
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.max_line_bytes = max_line_bytes
        self._own_uid = os.geteuid()
        self._group_gid: int | None = None
        self._handlers: dict[str, Handler] = {"ping": self._ping}
        self._scope: anyio.CancelScope | None = None
        self._stop_requested = False
        self._counts = dict.fromkeys(
            ("accepted", "busy", "forbidden", "requests", "errors", "timeouts"), 0
        )
        self._active = 0

    def register(self, method: str, handler: Handler) -> None:
        """Serve ``method`` with ``handler(params) -> JSON-able result``."""
        if not method or method in self._handlers:
            raise ValueError(f"method {method!r} is empty or already registered")
        self._handlers[method] = handler

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(sorted(self._handlers))

    def stats(self) -> dict[str, int]:
        """A snapshot of the counters (cheap, synchronous)."""
        return {**self._counts, "active": self._active}

    def stop(self) -> None:
        """Make ``serve()`` return (closing every connection and removing the socket)."""
        self._stop_requested = True
        if self._scope is not None:
            self._scope.cancel()

    async def serve(
        self, *, task_status: anyio.abc.TaskStatus[Path] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Bind, report the path through ``task_status``, serve until stopped or cancelled."""
        if self._scope is not None:
            raise RuntimeError("this ControlServer is already serving")
        if self.group is not None:
            try:
                self._group_gid = resolve_group(self.group)
            except KeyError:
                raise ControlServerError(
                    self.path, f"group {self.group!r} does not exist"
                ) from None
        listener, identity = await anyio.to_thread.run_sync(self._open_listener)
        try:
            async with anyio.create_task_group() as tg:
                self._scope = tg.cancel_scope
                if self._stop_requested:
                    tg.cancel_scope.cancel()
                task_status.started(self.path)
                LOGGER.info("control socket listening on %s", self.path)
                await self._accept_loop(listener, tg)
        finally:
            self._scope = None
            self._stop_requested = False
            listener.close()
            self._remove_socket(identity)

    async def _ping(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"pong": True, "version": __version__, "protocol": PROTOCOL_VERSION}

    def _open_listener(self) -> tuple[socket.socket, unix.Identity]:
        """The bound, listening socket (mode and group set before it listens)."""
        return unix.open_listener(
            self.path,
            self.mode,
            self._group_gid,
            label="control",
            error=ControlServerError,
            in_use=AlreadyRunning,
        )

    def _remove_socket(self, identity: unix.Identity | None) -> None:
        unix.remove_socket(self.path, identity, label="control")

    async def _accept_loop(self, listener: socket.socket, tg: anyio.abc.TaskGroup) -> None:
        def count() -> None:
            self._counts["accepted"] += 1

        await unix.accept_loop(listener, tg, self._connection, count, label="control")

    async def _connection(self, conn: socket.socket) -> None:
        try:
            with conn:
                if self._active >= self.max_connections:
                    self._counts["busy"] += 1
                    message = f"too many connections (limit {self.max_connections})"
                    await self._send(conn, Response.failure(None, ErrorCode.BUSY, message))
                    return
                self._active += 1
                try:
                    await self._converse(conn)
                finally:
                    self._active -= 1
        except OSError as exc:
            LOGGER.debug("control connection dropped: %s", exc)
        except Exception:
            LOGGER.exception("control connection failed")

    def _admit(self, conn: socket.socket) -> PeerCredentials | None:
        try:
            peer = read_peer_credentials(conn)
        except (OSError, struct.error) as exc:
            LOGGER.warning("control connection refused: no peer credentials (%s)", exc)
            return None
        if peer_allowed(peer, own_uid=self._own_uid, group_gid=self._group_gid):
            return peer
        LOGGER.warning(
            "control connection refused: pid %d uid %d gid %d is not root, the daemon's "
            "user or in its group",
            peer.pid,
            peer.uid,
            peer.gid,
        )
        return None

    async def _converse(self, conn: socket.socket) -> None:
        """Answer lines in order until EOF, a limit, or a timeout closes the connection."""
        if self._admit(conn) is None:
            self._counts["forbidden"] += 1
            message = "not allowed: the peer is not root, the daemon's user or in its group"
            await self._send(conn, Response.failure(None, ErrorCode.FORBIDDEN, message))
            return
        buffer = bytearray()
        line_deadline = 0.0
        while True:
            newline = buffer.find(b"\n", 0, self.max_line_bytes + 1)
            if newline >= 0:
                line = bytes(buffer[:newline])
                del buffer[: newline + 1]
                if not await self._send(conn, await self._answer(line)):
                    return
                line_deadline = anyio.current_time() + self.read_timeout
                continue
            if len(buffer) > self.max_line_bytes:
                message = f"line exceeds {self.max_line_bytes} bytes; closing"
                await self._send(conn, Response.failure(None, ErrorCode.TOO_LARGE, message))
                return
            chunk = await self._receive(conn, buffer, line_deadline)
            if chunk is None:
                return
            if not chunk:  # EOF: a last line without its newline is still answered
                if buffer.strip():
                    await self._send(conn, await self._answer(bytes(buffer)))
                return
            if not buffer:  # a new line starts: its deadline runs from its first byte
                line_deadline = anyio.current_time() + self.read_timeout
            buffer += chunk

    async def _receive(
        self, conn: socket.socket, buffer: bytearray, line_deadline: float
    ) -> bytes | None:
        """The next chunk, ``b""`` at EOF, or None when the connection timed out."""
        if buffer:
            deadline = line_deadline
        elif self.idle_timeout is not None:
            deadline = anyio.current_time() + self.idle_timeout
        else:
            deadline = float("inf")
        with anyio.CancelScope(deadline=deadline):
            return await unix.recv_chunk(conn)
        self._counts["timeouts"] += 1
        if buffer:
            message = f"no complete line within {self.read_timeout:g} s; closing"
            await self._send(conn, Response.failure(None, ErrorCode.TIMEOUT, message))
        return None

    async def _answer(self, line: bytes) -> Response:
        self._counts["requests"] += 1
        try:
            request = Request.from_line(line, self.max_line_bytes)
        except ProtocolError as exc:
            self._counts["errors"] += 1
            LOGGER.debug("control request rejected: %s (%r)", exc, exc.raw)
            return Response.for_error(exc)
        handler = self._handlers.get(request.method)
        if handler is None:
            self._counts["errors"] += 1
            message = f"unknown method {request.method[:64]!r}; known: {', '.join(self.methods)}"
            return Response.failure(request.id, ErrorCode.UNKNOWN_METHOD, message)
        try:
            return Response.success(request.id, await handler(dict(request.params)))
        except HasherError as exc:
            self._counts["errors"] += 1
            return Response.for_error(exc, request.id)
        except Exception as exc:
            self._counts["errors"] += 1
            LOGGER.exception("control method %r failed", request.method)
            message = f"{request.method} failed: {type(exc).__name__} (see the daemon log)"
            return Response.failure(request.id, ErrorCode.INTERNAL, message)

    async def _send(self, conn: socket.socket, response: Response) -> bool:
        """Send one response; False when the peer is gone or did not read it in time."""
        try:
            data = response.to_line()
        except ProtocolError as exc:
            LOGGER.error("control response for id %r is not JSON: %s", response.id, exc)
            message = "the result could not be encoded as JSON (see the daemon log)"
            data = Response.failure(response.id, ErrorCode.INTERNAL, message).to_line()
        sent = await unix.send_all(conn, data, self.read_timeout, label="control")
        if sent is not None:
            return sent
        self._counts["timeouts"] += 1
        return False
