"""Serial links to mining chips: a tty (``/dev/tty*``), a pty path, or ``socket://host:port``.

One ``open_serial`` for all three, over pyserial-asyncio (``serial_for_url`` underneath,
so pyserial's URL handlers work). A ``SerialLink`` reads with a timeout, writes and drains,
changes the host baud rate (section 2.4 of asic-protocols.md: write the chip's new rate at
the old one, drain, then switch the host), and closes. Failures are typed
(``SerialLinkError`` and its subclasses; pyserial's ``SerialException`` is an ``OSError``);
nothing is retried here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from typing import Any

import serial_asyncio

from hasherd.errors import HasherError

__all__ = [
    "DEFAULT_BAUD",
    "SerialClosedError",
    "SerialLink",
    "SerialLinkError",
    "SerialTimeoutError",
    "open_serial",
]

DEFAULT_BAUD = 115200  # the BM13xx reset rate 115,740 is within 0.5 %
_SOCKET_URL = re.compile(r"socket://[^:/]+:\d{1,5}/?(\?.*)?")
_CLOSE_TIMEOUT = 2.0


class SerialLinkError(HasherError):
    """A serial link could not be opened, configured, read or written."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"serial {path}: {problem}")


class SerialTimeoutError(SerialLinkError):
    """Nothing (or not enough) arrived in time."""


class SerialClosedError(SerialLinkError):
    """The link is closed, or the far end went away."""


def _check_path(path: str) -> None:
    if not isinstance(path, str) or not path:
        raise SerialLinkError(str(path), "expected a device path or socket://host:port")
    if path.startswith("socket://"):
        if not _SOCKET_URL.fullmatch(path):
            raise SerialLinkError(path, "expected socket://host:port")
        return
    if "://" in path:
        raise SerialLinkError(path, "only device paths and socket://host:port are supported")
    if not os.path.exists(path):
        raise SerialLinkError(path, "no such device")


class SerialLink:
    """An open link; build it with ``open_serial``."""

    def __init__(
        self, path: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, baud: int
    ) -> None:
        self.path = path
        self._reader = reader
        self._writer = writer
        self._baud = baud
        self._closed = False

    @property
    def baud(self) -> int:
        return self._baud

    @property
    def closed(self) -> bool:
        return self._closed

    def _serial(self) -> Any:
        return self._writer.transport.serial  # type: ignore[attr-defined]

    def _check_open(self) -> None:
        if self._closed or self._writer.is_closing():
            raise SerialClosedError(self.path, "the link is closed")

    async def write(self, data: bytes) -> None:
        """Queue ``data`` and wait until the transport's buffer has drained."""
        self._check_open()
        try:
            self._writer.write(data)
            await self._writer.drain()
        except OSError as exc:
            raise SerialLinkError(self.path, f"write failed: {exc}") from exc

    async def flush(self) -> None:
        """Wait until every written byte has left the host (tcdrain), off the loop thread."""
        self._check_open()
        await self._writer.drain()
        port = self._serial()
        try:
            await asyncio.get_running_loop().run_in_executor(None, port.flush)
        except OSError as exc:
            raise SerialLinkError(self.path, f"flush failed: {exc}") from exc

    async def read(self, timeout: float, size: int = 4096) -> bytes:
        """Whatever arrives first (1..``size`` bytes), or ``SerialTimeoutError``."""
        self._check_open()
        try:
            data = await asyncio.wait_for(self._reader.read(size), timeout)
        except TimeoutError:
            raise SerialTimeoutError(self.path, f"nothing within {timeout:g} s") from None
        except OSError as exc:
            raise SerialLinkError(self.path, f"read failed: {exc}") from exc
        if not data:
            raise SerialClosedError(self.path, "end of stream")
        return data

    async def read_exactly(self, size: int, timeout: float) -> bytes:
        self._check_open()
        try:
            return await asyncio.wait_for(self._reader.readexactly(size), timeout)
        except TimeoutError:
            raise SerialTimeoutError(self.path, f"{size} bytes not within {timeout:g} s") from None
        except asyncio.IncompleteReadError as exc:
            raise SerialClosedError(self.path, "end of stream") from exc

    async def set_baud(self, baud: int) -> None:
        """Switch the host side to ``baud`` after every written byte went out at the old
        rate. A ``socket://`` link ignores the rate (pyserial's socket handler does)."""
        if isinstance(baud, bool) or not isinstance(baud, int) or baud <= 0:
            raise SerialLinkError(self.path, f"{baud!r} is not a baud rate")
        await self.flush()
        try:
            self._serial().baudrate = baud
        except (OSError, ValueError) as exc:
            raise SerialLinkError(self.path, f"cannot set {baud} baud: {exc}") from exc
        self._baud = baud

    async def close(self) -> None:
        """Close; idempotent, never raises."""
        if self._closed:
            return
        self._closed = True
        self._writer.close()
        with contextlib.suppress(TimeoutError, OSError):
            await asyncio.wait_for(self._writer.wait_closed(), _CLOSE_TIMEOUT)

    async def __aenter__(self) -> SerialLink:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def open_serial(path: str, baud: int = DEFAULT_BAUD, **options: Any) -> SerialLink:
    """Open ``path`` (a tty or pty path, or ``socket://host:port``) at ``baud``, 8N1, raw.

    ``options`` go to pyserial (e.g. ``rtscts``). Raises ``SerialLinkError``.
    """
    _check_path(path)
    if isinstance(baud, bool) or not isinstance(baud, int) or baud <= 0:
        raise SerialLinkError(path, f"{baud!r} is not a baud rate")
    try:
        reader, writer = await serial_asyncio.open_serial_connection(
            url=path, baudrate=baud, **options
        )
    except (OSError, ValueError) as exc:
        raise SerialLinkError(path, f"cannot open: {exc}") from exc
    return SerialLink(path, reader, writer, baud)
