"""The control-socket server: JSON lines over a Unix stream socket, a handler registry.

``ControlServer`` is a ``hasherd.transport.unix_server.UnixServer``: the socket file,
the lifecycle, the cap on connections and the SO_PEERCRED check are the core's. Here is
only the protocol: every line is bounded (its length, a deadline for a partial line),
answered in order, and a handler's failure is a typed error reply, never a crash.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any, Unpack

import anyio

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
from hasherd.transport.unix import AlreadyRunning, SocketSetupError
from hasherd.transport.unix_server import ServerEvent, ServerOptions, UnixServer

LOGGER = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[Any]]
_COUNTED = {
    ServerEvent.ACCEPTED: "accepted",
    ServerEvent.BUSY: "busy",
    ServerEvent.FORBIDDEN: "forbidden",
    ServerEvent.TIMEOUT: "timeouts",
}


class ControlServerError(SocketSetupError):
    """The control socket cannot be set up at ``path``."""

    label = "control"


class ControlAlreadyRunning(ControlServerError, AlreadyRunning):
    """Another live process answers on the control socket path (another hasherd, most
    likely); an ``AlreadyRunning``, like the jitter service's."""


class ControlServer(UnixServer):
    """Serves the registered methods on a Unix stream socket at ``path``.

    The socket, its peers and timeouts as in ``UnixServer`` (``options``); a peer past
    ``max_connections`` gets ``busy``, a line longer than ``max_line_bytes`` ``too_large``
    (both then closed).
    """

    setup_error = ControlServerError
    in_use_error = ControlAlreadyRunning

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_line_bytes: int = MAX_LINE_BYTES,
        **options: Unpack[ServerOptions],
    ) -> None:
        super().__init__(path, **options)
        if max_line_bytes < 1:
            raise ValueError("max_line_bytes must be positive")
        self.max_line_bytes = max_line_bytes
        self._handlers: dict[str, Handler] = {"ping": self._ping}
        self._counts = dict.fromkeys(
            ("accepted", "busy", "forbidden", "requests", "errors", "timeouts"), 0
        )

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

    async def _ping(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"pong": True, "version": __version__, "protocol": PROTOCOL_VERSION}

    # -- the core's hooks ------------------------------------------------------------------

    def note(self, event: ServerEvent) -> None:
        key = _COUNTED.get(event)
        if key is not None:
            self._counts[key] += 1

    async def refuse_busy(self, conn: socket.socket) -> None:
        message = f"too many connections (limit {self.max_connections})"
        await self._send(conn, Response.failure(None, ErrorCode.BUSY, message))

    async def refuse_forbidden(self, conn: socket.socket) -> None:
        message = "not allowed: the peer is not root, the daemon's user or in its group"
        await self._send(conn, Response.failure(None, ErrorCode.FORBIDDEN, message))

    async def converse(self, conn: socket.socket) -> None:
        """Answer lines in order until EOF, a limit, or a timeout closes the connection."""
        buffer = bytearray()
        line_since = 0.0  # when the first byte of the line in ``buffer`` arrived
        while True:
            newline = buffer.find(b"\n", 0, self.max_line_bytes + 1)
            if newline >= 0:
                line = bytes(buffer[:newline])
                del buffer[: newline + 1]
                if not await self._send(conn, await self._answer(line)):
                    return
                line_since = anyio.current_time()
                continue
            if len(buffer) > self.max_line_bytes:
                message = f"line exceeds {self.max_line_bytes} bytes; closing"
                await self._send(conn, Response.failure(None, ErrorCode.TOO_LARGE, message))
                return
            chunk = await self.receive(conn, line_since if buffer else None)
            if chunk is None:
                if buffer:
                    message = f"no complete line within {self.read_timeout:g} s; closing"
                    await self._send(conn, Response.failure(None, ErrorCode.TIMEOUT, message))
                return
            if not chunk:  # EOF: a last line without its newline is still answered
                if buffer.strip():
                    await self._send(conn, await self._answer(bytes(buffer)))
                return
            if not buffer:  # a new line starts: its deadline runs from its first byte
                line_since = anyio.current_time()
            buffer += chunk

    # -- the protocol ----------------------------------------------------------------------

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
        return await self.send(conn, data)
