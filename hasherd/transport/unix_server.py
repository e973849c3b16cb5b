"""One Unix-socket server core for the daemon's servers (the control socket, the jitter
service); each subclass speaks only its own protocol over the connections it is handed.

The core owns what they share: the lifecycle (``serve()`` runs inside the caller's task
group, ``await tg.start(server.serve)`` returns once the socket is bound, ``stop()`` closes
every connection and removes the socket file), the socket file set-up (``hasherd.
transport.unix``), a cap on concurrent connections, admission by SO_PEERCRED before a
connection's first byte is read (``hasherd.transport.peers``), and reads and writes
bounded in time. A peer can make a server log, answer an error or close the connection,
never crash.

Connections are plain non-blocking sockets driven by ``anyio.wait_readable()`` and
``wait_writable()``, not anyio's UNIX socket streams: on the asyncio backend those
resolve a cancelled read's future from a selector callback (anyio 4.16), which logs
``InvalidStateError`` whenever a connection is cancelled (a timeout, ``stop()``) in the
loop iteration where its peer's bytes arrive.
"""

from __future__ import annotations

import logging
import os
import socket
from enum import StrEnum
from pathlib import Path
from typing import ClassVar, TypedDict

import anyio
import anyio.abc
import anyio.to_thread

from hasherd.transport import peers, unix

LOGGER = logging.getLogger(__name__)
DEFAULT_MODE = 0o660
DEFAULT_READ_TIMEOUT = 30.0
DEFAULT_MAX_CONNECTIONS = 256


class ServerOptions(TypedDict, total=False):
    """The keywords of ``UnixServer`` that a server passes on as they are."""

    group: str | int | None
    mode: int
    read_timeout: float
    idle_timeout: float | None
    max_connections: int


class ServerState(StrEnum):
    """Where a server is in its lifecycle (the values of ``ActorState`` it can take)."""

    STARTING = "starting"
    READY = "ready"
    FAILED = "failed"
    STOPPED = "stopped"


class ServerEvent(StrEnum):
    """What a server counts; each subclass files them under its own statistics."""

    ACCEPTED = "accepted"
    BUSY = "busy"  # past max_connections
    FORBIDDEN = "forbidden"  # refused by its peer credentials
    TIMEOUT = "timeout"  # a partial message, an idle connection or a reply not read in time
    DISCONNECT = "disconnect"  # the peer went away mid-conversation
    INTERNAL = "internal"  # the server failed on a connection (logged with its traceback)


class UnixServer:
    """Serves connections on a Unix stream socket at ``path`` (see the module docstring).

    ``group`` (a name or gid) is given the socket file and admitted with root and the
    server's own user; ``read_timeout`` bounds how long a partial message (and a reply
    the peer does not read) may wait; ``idle_timeout`` (None: no limit) closes connections
    silent between requests; past ``max_connections`` new peers are refused.

    A subclass sets ``setup_error`` and ``in_use_error`` (its typed socket errors, whose
    ``label`` names it in log lines) and implements ``converse`` and ``note``.
    """

    setup_error: ClassVar[type[unix.SocketSetupError]] = unix.SocketSetupError
    in_use_error: ClassVar[type[unix.AlreadyRunning]] = unix.AlreadyRunning

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        group: str | int | None = None,
        mode: int = DEFAULT_MODE,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        idle_timeout: float | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        if read_timeout <= 0 or (idle_timeout is not None and idle_timeout <= 0):
            raise ValueError("timeouts must be positive")
        if max_connections < 1:
            raise ValueError("max_connections must be positive")
        self.path = Path(path)
        self.group = group
        self.mode = mode
        self.read_timeout = read_timeout
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.state = ServerState.STOPPED
        self._own_uid = os.geteuid()
        self._group_gid: int | None = None
        self._scope: anyio.CancelScope | None = None
        self._stop_requested = False
        self._active = 0

    @property
    def label(self) -> str:
        return self.setup_error.label

    # -- what a subclass supplies ----------------------------------------------------------

    async def converse(self, conn: socket.socket) -> None:
        """Speak the protocol on an admitted connection until it should close."""
        raise NotImplementedError

    def note(self, event: ServerEvent) -> None:
        """Count ``event`` in the subclass's statistics."""
        raise NotImplementedError

    async def refuse_busy(self, conn: socket.socket) -> None:
        """Tell a peer past ``max_connections`` why it is closed (default: close only)."""

    async def refuse_forbidden(self, conn: socket.socket) -> None:
        """Tell a peer its credentials refuse it (default: close only)."""

    def listening(self) -> None:
        """Log that the socket is up (a subclass may say more)."""
        LOGGER.info("%s socket listening on %s", self.label, self.path)

    # -- lifecycle -------------------------------------------------------------------------

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
            raise RuntimeError(f"this {type(self).__name__} is already serving")
        self.state = ServerState.STARTING
        try:
            listener, identity = await self._bind()
        except BaseException:
            self.state = ServerState.FAILED
            raise
        try:
            async with anyio.create_task_group() as tg:
                self._scope = tg.cancel_scope
                if self._stop_requested:
                    tg.cancel_scope.cancel()
                self.state = ServerState.READY
                task_status.started(self.path)
                self.listening()
                await unix.accept_loop(
                    listener, tg, self._connection, self._accepted, label=self.label
                )
        finally:
            self._scope = None
            self._stop_requested = False
            self.state = ServerState.STOPPED
            listener.close()
            unix.remove_socket(self.path, identity, label=self.label)

    async def _bind(self) -> tuple[socket.socket, unix.Identity]:
        """The listening socket, its group resolved first (a typed error if it is not)."""
        if self.group is not None:
            try:
                self._group_gid = peers.resolve_group(self.group)
            except KeyError:
                raise self.setup_error(self.path, f"group {self.group!r} does not exist") from None
        return await anyio.to_thread.run_sync(self._open_listener)

    def _open_listener(self) -> tuple[socket.socket, unix.Identity]:
        return unix.open_listener(
            self.path, self.mode, self._group_gid, error=self.setup_error, in_use=self.in_use_error
        )

    def _accepted(self) -> None:
        self.note(ServerEvent.ACCEPTED)

    # -- connections -----------------------------------------------------------------------

    async def _connection(self, conn: socket.socket) -> None:
        try:
            with conn:
                if self._active >= self.max_connections:
                    self.note(ServerEvent.BUSY)
                    await self.refuse_busy(conn)
                    return
                self._active += 1
                try:
                    await self._admitted(conn)
                finally:
                    self._active -= 1
        except OSError as exc:
            self.note(ServerEvent.DISCONNECT)
            LOGGER.debug("%s connection dropped: %s", self.label, exc)
        except Exception:
            self.note(ServerEvent.INTERNAL)
            LOGGER.exception("%s connection failed", self.label)

    async def _admitted(self, conn: socket.socket) -> None:
        peer = peers.admit(conn, own_uid=self._own_uid, group_gid=self._group_gid, label=self.label)
        if peer is not None:
            peers.CURRENT_PEER.set(peer)  # this connection's task (and its handlers) only
            await self.converse(conn)
            return
        self.note(ServerEvent.FORBIDDEN)
        await self.refuse_forbidden(conn)

    async def receive(self, conn: socket.socket, partial_since: float | None) -> bytes | None:
        """The next chunk, ``b""`` at EOF, or None when the connection timed out: a partial
        message (its first byte arrived at ``partial_since``) may wait ``read_timeout``,
        a silent connection ``idle_timeout``."""
        if partial_since is not None:
            deadline = partial_since + self.read_timeout
        elif self.idle_timeout is not None:
            deadline = anyio.current_time() + self.idle_timeout
        else:
            return await unix.recv_chunk(conn)  # no cancel scope: it costs more than a lookup
        with anyio.CancelScope(deadline=deadline):
            return await unix.recv_chunk(conn)
        self.note(ServerEvent.TIMEOUT)
        return None

    async def send(self, conn: socket.socket, data: bytes) -> bool:
        """Send all of ``data``; False when the peer is gone or does not read in time."""
        sent = await unix.send_all(conn, data, self.read_timeout, label=self.label)
        if sent is None:
            self.note(ServerEvent.TIMEOUT)
        return bool(sent)
