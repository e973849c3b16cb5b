"""The pty and thread every emulator runs behind (asic-protocols.md, section 5).

``PtyEmulator`` owns a pty pair and one thread running a ``select`` loop on the master
side. ``start()`` opens the pty (raw mode; the slave stays open here, so a host may close
and reopen it) and starts the thread, or undoes itself; ``stop()`` joins the thread and
closes both ends. A subclass says what the loop does: ``_tick`` before each wait,
``_next_due`` to wait less, ``_received`` with the host's bytes, ``_has_output`` and
``_write_some`` to answer (``_try_write`` writes what the master takes now).
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
import tty
from types import TracebackType
from typing import Self

__all__ = ["PtyEmulator"]

_POLL = 0.02  # the loop's longest wait: how soon ``stop()`` is seen


class PtyEmulator:
    """A device on a pty; ``slave_path`` is the host's serial port (module docstring).

    Use it as a context manager. ``_name`` names the thread, ``_label`` the device in the
    log line if the thread fails; the subclass's module logger writes it.
    """

    _name = "pty-emulator"
    _label = "pty"

    def __init__(self) -> None:
        self._master = -1
        self._slave = -1
        self._path = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def slave_path(self) -> str:
        if not self._path:
            raise RuntimeError("the emulator is not started")
        return self._path

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the emulator is already started")
        self._prepare()
        self._master, self._slave = os.openpty()
        try:
            tty.setraw(self._slave)  # section 5: without raw mode the host sees nothing
            os.set_blocking(self._master, False)
            self._path = os.ttyname(self._slave)
            self._opened()
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()
        except BaseException:
            self._close_fds()
            raise

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._close_fds()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _close_fds(self) -> None:
        for fd in (self._master, self._slave):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    self._logger.debug("closing pty fd %d failed", fd)
        self._master = self._slave = -1

    @property
    def _logger(self) -> logging.Logger:
        return logging.getLogger(type(self).__module__)

    # -- the I/O loop ----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._tick()
                self._pump()
        except Exception:  # the thread must not die silently: log, then stop answering
            self._logger.exception("%s emulator failed", self._label)

    def _pump(self) -> None:
        timeout = _POLL
        due = self._next_due()
        if due is not None:
            timeout = min(timeout, max(0.0, due - time.monotonic()))
        writing = [self._master] if self._has_output() else []
        readable, writable, _ = select.select([self._master], writing, [], timeout)
        if readable:
            try:
                data = os.read(self._master, 4096)
            except (BlockingIOError, InterruptedError):
                data = b""
            self._received(data)
        if writable:
            self._write_some()

    def _try_write(self, data: bytes | bytearray) -> int:
        """Write what the master takes now; how many bytes went (0 when it is full)."""
        try:
            return os.write(self._master, data)
        except BlockingIOError:
            return 0

    # -- what a subclass does --------------------------------------------------------------

    def _prepare(self) -> None:
        """Before the pty opens (a slow load belongs here)."""

    def _opened(self) -> None:
        """After the pty opens in raw mode, before the thread starts."""

    def _tick(self) -> None:
        """At the top of every loop turn (release held output)."""

    def _next_due(self) -> float | None:
        """When (monotonic) held output falls due, to wait no longer than that."""
        return None

    def _received(self, data: bytes) -> None:
        raise NotImplementedError

    def _has_output(self) -> bool:
        raise NotImplementedError

    def _write_some(self) -> None:
        raise NotImplementedError
