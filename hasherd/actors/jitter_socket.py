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
import stat
import struct
from collections.abc import Mapping
from pathlib import Path

import anyio
import anyio.lowlevel

from hasherd.control.server import (
    AlreadyRunning,
    ControlServerError,
    peer_allowed,
    read_peer_credentials,
)
from hasherd.errors import HasherError

LOGGER = logging.getLogger(__name__)

SYSTEM_SOCKET = Path("/run/hasherd/jitter.sock")
SOCKET_ENV = "HASHERD_JITTER_SOCKET"
SOCKET_NAME = "jitter.sock"
_BACKLOG = 128
_CHUNK = 65536
_PROBE_TIMEOUT = 1.0
Identity = tuple[int, int]  # (st_dev, st_ino) of the socket file this process bound


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
    env = os.environ if environ is None else environ
    uid = os.geteuid() if uid is None else uid
    if env.get(SOCKET_ENV):
        return Path(env[SOCKET_ENV])
    runtime = env.get("RUNTIME_DIRECTORY", "").split(":")[0]
    if runtime:
        return Path(runtime) / SOCKET_NAME
    if uid == 0:
        return SYSTEM_SOCKET
    if env.get("XDG_RUNTIME_DIR"):
        return Path(env["XDG_RUNTIME_DIR"]) / "hasherd" / SOCKET_NAME
    return Path(f"/tmp/hasherd-{uid}") / SOCKET_NAME


def open_listener(path: Path, mode: int, gid: int | None) -> tuple[socket.socket, Identity]:
    """The bound, listening, non-blocking socket at ``path`` and the file's identity."""
    _prepare_path(path, gid)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.bind(str(path))
        try:
            os.chmod(path, mode)
            if gid is not None:
                os.chown(path, -1, gid)
            st = os.stat(path)
            sock.listen(_BACKLOG)
        except OSError:
            remove_socket(path, None)
            raise
    except OSError as exc:
        sock.close()
        raise JitterSocketError(path, f"cannot set it up: {exc}") from exc
    return sock, (st.st_dev, st.st_ino)


def _prepare_path(path: Path, gid: int | None) -> None:
    """Create the directory; replace a stale socket, refuse a live one or a non-socket."""
    parent = path.parent
    if not parent.exists():
        try:
            parent.mkdir(mode=0o750, parents=True, exist_ok=True)
            if gid is not None:
                os.chown(parent, -1, gid)
        except OSError as exc:
            raise JitterSocketError(path, f"cannot create {parent}: {exc}") from exc
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise JitterSocketError(path, "exists and is not a socket; not replacing it")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(_PROBE_TIMEOUT)
        try:
            probe.connect(str(path))
        except ConnectionRefusedError:
            LOGGER.info("removing stale jitter socket %s", path)
            remove_socket(path, None)
            return
        except FileNotFoundError:
            return
        except (TimeoutError, BlockingIOError):
            raise JitterAlreadyRunning(path) from None  # a full backlog: alive but busy
        except OSError as exc:
            raise JitterSocketError(path, f"cannot probe it: {exc}") from exc
    raise JitterAlreadyRunning(path)


def remove_socket(path: Path, identity: Identity | None) -> None:
    """Unlink the socket file, unless it is no longer the one this process bound."""
    try:
        st = os.lstat(path)
        if identity is None or (st.st_dev, st.st_ino) == identity:
            os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        LOGGER.warning("cannot remove jitter socket %s: %s", path, exc)


def admit(conn: socket.socket, own_uid: int, group_gid: int | None) -> bool:
    """Whether the peer is root, the service's user or in its group (logged when not)."""
    try:
        peer = read_peer_credentials(conn)
    except (OSError, struct.error) as exc:
        LOGGER.warning("jitter connection refused: no peer credentials (%s)", exc)
        return False
    if peer_allowed(peer, own_uid=own_uid, group_gid=group_gid):
        return True
    LOGGER.warning("jitter connection refused: pid %d uid %d gid %d is not root, the "
                   "service's user or in its group", peer.pid, peer.uid, peer.gid)  # fmt: skip
    return False


async def recv_chunk(conn: socket.socket) -> bytes:
    """The next bytes of a non-blocking socket (``b""`` at EOF or reset)."""
    yielded = False
    while True:
        try:
            data = conn.recv(_CHUNK)
        except BlockingIOError:
            await anyio.wait_readable(conn)
            yielded = True
            continue
        except ConnectionResetError:
            data = b""
        if not yielded:  # a peer that never pauses cannot hog the loop
            await anyio.lowlevel.checkpoint()
        return data


async def send_all(conn: socket.socket, data: bytes, timeout: float) -> bool | None:
    """Send all of ``data``: True; False when the peer has gone; None when it did not read
    within ``timeout``. The cancel scope is entered only when the first send falls short:
    it costs more than a small lookup."""
    view = memoryview(data)
    try:
        view = view[conn.send(view, socket.MSG_NOSIGNAL) :]
    except BlockingIOError:
        pass
    except OSError as exc:  # EPIPE, ECONNRESET: the peer has gone
        LOGGER.debug("jitter send failed: %s", exc)
        return False
    if not view:
        return True
    with anyio.move_on_after(timeout):
        try:
            while view:
                try:
                    view = view[conn.send(view, socket.MSG_NOSIGNAL) :]
                except BlockingIOError:
                    await anyio.wait_writable(conn)
            return True
        except OSError as exc:
            LOGGER.debug("jitter send failed: %s", exc)
            return False
    return None
