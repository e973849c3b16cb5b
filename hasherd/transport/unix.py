"""Unix stream sockets for the daemon's servers (the control socket, the jitter service).

Plain non-blocking sockets driven by ``anyio.wait_readable()``/``wait_writable()`` (see
``hasherd.transport.unix_server`` for why not anyio's UNIX streams). What every server
needs: bind with its file mode and group, replace a stale socket file but refuse a live
one or a non-socket, remove the file at stop unless another process has replaced it,
accept without dying of EMFILE, and send and receive with the peer's pace bounded.
"""

from __future__ import annotations

import logging
import os
import socket
import stat
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, ClassVar

import anyio
import anyio.abc
import anyio.lowlevel

from hasherd.errors import HasherError

LOGGER = logging.getLogger(__name__)
BACKLOG = 128
CHUNK = 65536
PROBE_TIMEOUT = 1.0
Identity = tuple[int, int]  # (st_dev, st_ino) of the socket file this process bound


class SocketSetupError(HasherError):
    """A server's socket cannot be set up at ``path``; each server names its socket with
    ``label`` ("control socket ...", "jitter socket ...")."""

    label: ClassVar[str] = "unix"

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.label} socket {self.path}: {problem}")


class AlreadyRunning(SocketSetupError):
    """Another live process answers on the socket path (another hasherd, most likely)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(path, "already running: another process is listening on it")


def runtime_socket_path(
    name: str, env_var: str, environ: Mapping[str, str] | None = None, uid: int | None = None
) -> Path:
    """Where a daemon socket called ``name`` lives unless configured: ``$<env_var>`` if
    set; ``$RUNTIME_DIRECTORY/<name>`` under systemd (RuntimeDirectory=hasherd);
    ``/run/hasherd/<name>`` for root; else ``$XDG_RUNTIME_DIR/hasherd/<name>``, or
    ``/tmp/hasherd-<uid>/<name>``."""
    env = os.environ if environ is None else environ
    uid = os.geteuid() if uid is None else uid
    if env.get(env_var):
        return Path(env[env_var])
    runtime = env.get("RUNTIME_DIRECTORY", "").split(":")[0]
    if runtime:
        return Path(runtime) / name
    if uid == 0:
        return Path("/run/hasherd") / name
    if env.get("XDG_RUNTIME_DIR"):
        return Path(env["XDG_RUNTIME_DIR"]) / "hasherd" / name
    return Path(f"/tmp/hasherd-{uid}") / name


def open_listener(
    path: Path,
    mode: int,
    gid: int | None,
    *,
    error: type[SocketSetupError],
    in_use: type[AlreadyRunning],
) -> tuple[socket.socket, Identity]:
    """The bound, listening, non-blocking socket at ``path`` (mode and group set before it
    listens) and the file's identity; failures are the server's own ``error``/``in_use``."""
    label = error.label
    prepare_path(path, gid, error=error, in_use=in_use)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.bind(str(path))
        try:
            os.chmod(path, mode)
            if gid is not None:
                os.chown(path, -1, gid)
            st = os.stat(path)
            sock.listen(BACKLOG)
        except OSError:
            remove_socket(path, None, label=label)
            raise
    except OSError as exc:
        sock.close()
        raise error(path, f"cannot set it up: {exc}") from exc
    return sock, (st.st_dev, st.st_ino)


def prepare_path(
    path: Path, gid: int | None, *, error: type[SocketSetupError], in_use: type[AlreadyRunning]
) -> None:
    """Create the directory; replace a stale socket, refuse a live one or a non-socket."""
    parent = path.parent
    if not parent.exists():
        try:
            parent.mkdir(mode=0o750, parents=True, exist_ok=True)
            if gid is not None:
                os.chown(parent, -1, gid)
        except OSError as exc:
            raise error(path, f"cannot create {parent}: {exc}") from exc
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise error(path, "exists and is not a socket; not replacing it")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(PROBE_TIMEOUT)
        try:
            probe.connect(str(path))
        except ConnectionRefusedError:
            LOGGER.info("removing stale %s socket %s", error.label, path)
            remove_socket(path, None, label=error.label)
            return
        except FileNotFoundError:
            return
        except (TimeoutError, BlockingIOError):
            raise in_use(path) from None  # a full backlog: alive but busy
        except OSError as exc:
            raise error(path, f"cannot probe it: {exc}") from exc
    raise in_use(path)


def remove_socket(path: Path, identity: Identity | None, *, label: str) -> None:
    """Unlink the socket file, unless it is no longer the one this process bound."""
    try:
        st = os.lstat(path)
        if identity is None or (st.st_dev, st.st_ino) == identity:
            os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        LOGGER.warning("cannot remove %s socket %s: %s", label, path, exc)


async def accept_loop(
    listener: socket.socket,
    tg: anyio.abc.TaskGroup,
    handle: Callable[[socket.socket], Coroutine[Any, Any, None]],
    on_accept: Callable[[], None],
    *,
    label: str,
) -> None:
    """Accept connections for ever, each served by ``handle`` in ``tg``."""
    while True:
        await anyio.wait_readable(listener)
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            continue
        except OSError as exc:  # EMFILE and kin: wait for descriptors to free up
            LOGGER.warning("%s socket accept failed: %s", label, exc)
            await anyio.sleep(0.1)
            continue
        conn.setblocking(False)
        on_accept()
        tg.start_soon(handle, conn)


async def recv_chunk(conn: socket.socket) -> bytes:
    """The next bytes of a non-blocking socket (``b""`` at EOF or reset)."""
    yielded = False
    while True:
        try:
            data = conn.recv(CHUNK)
        except BlockingIOError:
            await anyio.wait_readable(conn)
            yielded = True
            continue
        except ConnectionResetError:
            data = b""
        if not yielded:  # a peer that never pauses cannot hog the loop
            await anyio.lowlevel.checkpoint()
        return data


async def send_all(conn: socket.socket, data: bytes, timeout: float, *, label: str) -> bool | None:
    """Send all of ``data``: True; False when the peer has gone; None when it did not read
    within ``timeout``. The cancel scope is entered only when the first send falls short
    (it costs more than a small reply)."""
    view = memoryview(data)
    try:
        view = view[conn.send(view, socket.MSG_NOSIGNAL) :]
    except BlockingIOError:
        pass
    except OSError as exc:  # EPIPE, ECONNRESET: the peer has gone
        LOGGER.debug("%s send failed: %s", label, exc)
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
            LOGGER.debug("%s send failed: %s", label, exc)
            return False
    return None
