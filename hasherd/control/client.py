"""A small blocking client of the control socket, for ``hasherctl`` and scripts.

    with ControlClient(discover_socket_path(), timeout=5) as client:
        client.call("ping")

One connection is opened on the first call and reused; every failure is a
``ControlError`` (``DaemonUnavailable`` when nothing listens at the path).
"""

from __future__ import annotations

import itertools
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from hasherd.control.protocol import ErrorCode, ProtocolError, Request, Response
from hasherd.errors import HasherError
from hasherd.transport.unix import runtime_socket_path

SYSTEM_SOCKET = Path("/run/hasherd/control.sock")
SOCKET_ENV = "HASHERD_CONTROL_SOCKET"
SOCKET_NAME = "control.sock"
MAX_RESPONSE_BYTES = 16 * 1024 * 1024


class ControlError(HasherError):
    """A control request failed: ``code`` is the server's error code (or the client's own:
    ``unavailable``, ``forbidden``, ``timeout``, ``closed``, ``bad_response``)."""

    def __init__(self, code: str, message: str, *, method: str | None = None) -> None:
        self.code = code
        self.message = message
        self.method = method
        prefix = f"{method}: " if method else ""
        super().__init__(f"{prefix}{message} [{code}]")


class DaemonUnavailable(ControlError):
    """No daemon listens at ``path`` (the socket is missing, or stale)."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = str(path)
        message = (
            f"cannot reach hasherd at {self.path}: {reason}; is it running? "
            "(try `systemctl status hasherd`)"
        )
        super().__init__("unavailable", message)


def default_socket_path(environ: Mapping[str, str] | None = None, uid: int | None = None) -> Path:
    """Where the daemon binds its socket unless configured otherwise.

    ``$HASHERD_CONTROL_SOCKET`` if set; ``$RUNTIME_DIRECTORY/control.sock`` under systemd
    (RuntimeDirectory=hasherd); ``/run/hasherd/control.sock`` for root; else
    ``$XDG_RUNTIME_DIR/hasherd/control.sock``, or ``/tmp/hasherd-<uid>/control.sock``.
    """
    return runtime_socket_path(SOCKET_NAME, SOCKET_ENV, environ, uid)


def discover_socket_path(environ: Mapping[str, str] | None = None, uid: int | None = None) -> Path:
    """The socket a client should use: the user's default if it exists, else the system
    daemon's (an administrator in the hasherd group runs hasherctl as themselves)."""
    own = default_socket_path(environ, uid)
    if not _present(own) and _present(SYSTEM_SOCKET) is not False:
        return SYSTEM_SOCKET
    return own


def _present(path: Path) -> bool | None:
    """Whether ``path`` exists; None when a directory on the way may not be searched (a
    user outside the daemon's group: connecting then says so as ``forbidden``)."""
    try:
        path.lstat()
    except PermissionError:
        return None
    except OSError:
        return False
    return True


class ControlClient:
    """Calls methods on the daemon at ``path``; ``timeout``: seconds that connecting,
    sending, or waiting for the next bytes of a reply may take."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        timeout: float = 10.0,
        *,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        self.path = Path(path) if path is not None else discover_socket_path()
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self._sock: socket.socket | None = None
        self._buffer = bytearray()
        self._ids = itertools.count(1)

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._buffer.clear()

    def call(self, method: str, /, **params: Any) -> Any:
        """The result of ``method(**params)``; raises ControlError with the server's code."""
        request = Request(id=next(self._ids), method=method, params=params)
        try:
            line = request.to_line()
        except ProtocolError as exc:
            raise ControlError(exc.code, exc.message, method=method) from None
        sock = self._connect()
        try:
            sock.sendall(line)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may have explained why it closed: read that below
        except TimeoutError:
            self.close()
            message = f"no reply within {self.timeout:g} s"
            raise ControlError("timeout", message, method=method) from None
        except OSError as exc:
            self.close()
            raise ControlError("closed", f"sending failed: {exc}", method=method) from exc
        response = self._read_response(sock, method)
        if response.id is not None and response.id != request.id:
            self.close()
            raise ControlError("bad_response", f"reply to id {response.id!r}", method=method)
        if not response.ok:
            info = response.error
            if response.id is None:  # a connection-level refusal: it is closed now
                self.close()
            raise ControlError(
                info.code if info else ErrorCode.INTERNAL,
                info.message if info else "unspecified error",
                method=method,
            )
        return response.result

    def _connect(self) -> socket.socket:
        if self._sock is not None:
            return self._sock
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.path))
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError) as exc:
            sock.close()
            raise DaemonUnavailable(self.path, exc.strerror or str(exc)) from None
        except PermissionError:
            sock.close()
            message = (
                f"permission denied on {self.path}: run as root or as a member of the "
                "daemon's control group"
            )
            raise ControlError(ErrorCode.FORBIDDEN, message) from None
        except OSError as exc:
            sock.close()
            raise DaemonUnavailable(self.path, str(exc)) from None
        self._sock = sock
        return sock

    def _read_response(self, sock: socket.socket, method: str) -> Response:
        while (newline := self._buffer.find(b"\n")) < 0:
            if len(self._buffer) > self.max_response_bytes:
                self.close()
                raise ControlError("bad_response", "reply exceeds the size limit", method=method)
            chunk = self._receive(sock, method)
            if not chunk:
                self.close()
                raise ControlError("closed", "the daemon closed the connection", method=method)
            self._buffer += chunk
        line = bytes(self._buffer[:newline])
        del self._buffer[: newline + 1]
        try:
            return Response.from_line(line, self.max_response_bytes)
        except ProtocolError as exc:
            self.close()
            raise ControlError("bad_response", exc.message, method=method) from None

    def _receive(self, sock: socket.socket, method: str) -> bytes:
        try:
            return sock.recv(65536)
        except TimeoutError:
            self.close()
            raise ControlError(
                "timeout", f"no reply within {self.timeout:g} s", method=method
            ) from None
        except ConnectionResetError:
            return b""
        except OSError as exc:
            self.close()
            raise ControlError("closed", f"receiving failed: {exc}", method=method) from exc
