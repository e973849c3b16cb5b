"""systemd's notification protocol (sd_notify(3)), spoken directly: no libsystemd.

The service manager passes ``NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract
namespace); each notification is one datagram of ``KEY=VALUE`` lines. Without
``NOTIFY_SOCKET`` (not started by systemd, or Type=simple) every call is a no-op. A failed
send is logged and reported as False: telling systemd is never worth crashing the daemon.
``WATCHDOG_USEC``/``WATCHDOG_PID`` give the watchdog timeout (sd_watchdog_enabled(3)).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

import anyio

LOGGER = logging.getLogger(__name__)


def _address(value: str) -> str | None:
    """The socket address for a NOTIFY_SOCKET value; None for one we cannot use."""
    if value.startswith("@"):
        return "\0" + value[1:]  # the abstract namespace (sd_notify(3))
    if value.startswith("/"):
        return value
    return None  # vsock: (systemd >= 254) and relative paths are not supported


class Notifier:
    """Sends notifications to the service manager at ``address`` (NOTIFY_SOCKET syntax)."""

    def __init__(self, address: str | None) -> None:
        self.address = address or None
        self._target = _address(address) if address else None
        if address and self._target is None:
            LOGGER.warning("NOTIFY_SOCKET=%r is not supported; systemd will not be told", address)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, unset: bool = False) -> Notifier:
        """A notifier for ``$NOTIFY_SOCKET``; ``unset`` hides it from child processes."""
        env = os.environ if environ is None else environ
        notifier = cls(env.get("NOTIFY_SOCKET"))
        if unset and environ is None:
            os.environ.pop("NOTIFY_SOCKET", None)
        return notifier

    @property
    def enabled(self) -> bool:
        return self._target is not None

    def send(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` lines as one datagram; True when it was sent."""
        if self._target is None:
            return False
        datagram = "\n".join(assignments).encode("utf-8", "replace")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)  # a full queue must not stall the event loop
                sock.sendto(datagram, self._target)
        except OSError as exc:
            LOGGER.warning("cannot notify systemd at %s: %s", self.address, exc)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Startup is finished (Type=notify waits for this)."""
        return self.send("READY=1", *_status(status))

    def status(self, text: str) -> bool:
        """A one-line status shown by ``systemctl status``."""
        return self.send(*_status(text))

    def watchdog(self) -> bool:
        """Keep-alive for WatchdogSec=."""
        return self.send("WATCHDOG=1")

    def reloading(self, status: str | None = None) -> bool:
        """A reload begins; send ``ready()`` when it is done.

        MONOTONIC_USEC is what Type=notify-reload (systemd >= 253) requires with
        RELOADING=1; older managers ignore it.
        """
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", *_status(status))

    def stopping(self, status: str | None = None) -> bool:
        """Shutdown begins."""
        return self.send("STOPPING=1", *_status(status))


def _status(text: str | None) -> tuple[str, ...]:
    if text is None:
        return ()
    return ("STATUS=" + " ".join(text.splitlines()),)  # one line: newlines separate keys


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between keep-alives (half the watchdog timeout), None when not asked.

    None when WATCHDOG_USEC is unset, not a positive integer, or WATCHDOG_PID names another
    process (the variables were inherited from a parent, sd_watchdog_enabled(3)).
    """
    env = os.environ if environ is None else environ
    usec_text = env.get("WATCHDOG_USEC")
    if not usec_text:
        return None
    pid_text = env.get("WATCHDOG_PID")
    if pid_text and (not pid_text.isdigit() or int(pid_text) != os.getpid()):
        return None
    if not usec_text.isdigit() or int(usec_text) <= 0:
        LOGGER.warning("WATCHDOG_USEC=%r is not a positive integer; no watchdog", usec_text)
        return None
    return int(usec_text) / 2 / 1_000_000


async def watchdog_loop(notifier: Notifier, interval: float) -> None:
    """Send WATCHDOG=1 every ``interval`` seconds until cancelled.

    Run it in the daemon's task group: the pings come from the event loop, so a loop that
    stalls stops them and systemd restarts the daemon, which is the point.
    """
    if interval <= 0:
        raise ValueError("the watchdog interval must be positive")
    while True:
        notifier.watchdog()
        await anyio.sleep(interval)
