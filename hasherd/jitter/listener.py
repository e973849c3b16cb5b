"""The jitter service's socket: where its file lives, binding it as the control socket is
bound (``hasherd.control.server``): the directory is created, a stale socket replaced, a
live one refused (``JitterAlreadyRunning``, an ``AlreadyRunning``), a file that is not a
socket never touched, mode and group set before it listens; admitting peers by
SO_PEERCRED; and the non-blocking reads and writes of a connection.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
from collections.abc import Mapping
from pathlib import Path

from hasherd.control.server import (
    AlreadyRunning,
    ControlServerError,
    peer_allowed,
    read_peer_credentials,
)
from hasherd.errors import HasherError
from hasherd.transport import unix

LOGGER = logging.getLogger(__name__)

SYSTEM_SOCKET = Path("/run/hasherd/jitter.sock")
SOCKET_ENV = "HASHERD_JITTER_SOCKET"
SOCKET_NAME = "jitter.sock"
Identity = unix.Identity


class JitterSocketError(ControlServerError):
    """The jitter socket cannot be set up at ``path``."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        HasherError.__init__(self, f"jitter socket {self.path}: {problem}")


class JitterAlreadyRunning(JitterSocketError, AlreadyRunning):
    """Another live process answers on the jitter socket path."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(path, "already running: another process is listening on it")


def default_jitter_socket_path(
    environ: Mapping[str, str] | None = None, uid: int | None = None
) -> Path:
    """``$HASHERD_JITTER_SOCKET``; ``$RUNTIME_DIRECTORY/jitter.sock`` under systemd;
    ``/run/hasherd/jitter.sock`` for root; else ``$XDG_RUNTIME_DIR/hasherd/jitter.sock``,
    or ``/tmp/hasherd-<uid>/jitter.sock`` (the control socket's rules)."""
    return unix.runtime_socket_path(SOCKET_NAME, SOCKET_ENV, environ, uid)


def open_listener(path: Path, mode: int, gid: int | None) -> tuple[socket.socket, Identity]:
    """The bound, listening, non-blocking socket at ``path`` and the file's identity."""
    return unix.open_listener(
        path, mode, gid, label="jitter", error=JitterSocketError, in_use=JitterAlreadyRunning
    )


def remove_socket(path: Path, identity: Identity | None) -> None:
    """Unlink the socket file, unless it is no longer the one this process bound."""
    unix.remove_socket(path, identity, label="jitter")


def admit(conn: socket.socket, own_uid: int, group_gid: int | None) -> bool:
    """Whether the peer is root, the service's user or in its group (logged when not)."""
    try:
        peer = read_peer_credentials(conn)
    except (OSError, struct.error) as exc:
        LOGGER.warning("jitter connection refused: no peer credentials (%s)", exc)
        return False
    if peer_allowed(peer, own_uid=own_uid, group_gid=group_gid):
        return True
    LOGGER.warning(
        "jitter connection refused: pid %d uid %d gid %d is not root, the "
        "service's user or in its group",
        peer.pid,
        peer.uid,
        peer.gid,
    )
    return False


recv_chunk = unix.recv_chunk


async def send_all(conn: socket.socket, data: bytes, timeout: float) -> bool | None:
    """Send all of ``data``: True; False when the peer has gone; None on a timeout."""
    return await unix.send_all(conn, data, timeout, label="jitter")
