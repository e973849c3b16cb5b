"""Where the jitter service's socket lives, and its typed set-up errors.

The socket is set up as the control socket is (``hasherd.transport.unix``): the directory
is created, a stale socket replaced, a live one refused (``JitterAlreadyRunning``, an
``AlreadyRunning``), a file that is not a socket never touched, mode and group set before
it listens.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from hasherd.transport import unix

SYSTEM_SOCKET = Path("/run/hasherd/jitter.sock")
SOCKET_ENV = "HASHERD_JITTER_SOCKET"
SOCKET_NAME = "jitter.sock"


class JitterSocketError(unix.SocketSetupError):
    """The jitter socket cannot be set up at ``path``."""

    label = "jitter"


class JitterAlreadyRunning(JitterSocketError, unix.AlreadyRunning):
    """Another live process answers on the jitter socket path."""


def default_jitter_socket_path(
    environ: Mapping[str, str] | None = None, uid: int | None = None
) -> Path:
    """``$HASHERD_JITTER_SOCKET``; ``$RUNTIME_DIRECTORY/jitter.sock`` under systemd;
    ``/run/hasherd/jitter.sock`` for root; else ``$XDG_RUNTIME_DIR/hasherd/jitter.sock``,
    or ``/tmp/hasherd-<uid>/jitter.sock`` (the control socket's rules)."""
    return unix.runtime_socket_path(SOCKET_NAME, SOCKET_ENV, environ, uid)
