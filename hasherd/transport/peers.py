"""Who may talk to the daemon's Unix sockets: SO_PEERCRED, the peer's groups, the verdict.

The control socket and the jitter service admit the same peers: root, the server's own
user, and members (primary or supplementary) of the socket's group. The kernel vouches
for the peer's pid, uid and gid (SO_PEERCRED) and for its supplementary groups
(SO_PEERGROUPS, Linux 4.13), both taken when the peer connected: nothing depends on
reading ``/proc/<pid>``, which ``ProtectProc=invisible`` or ``hidepid=`` hide. Only a
kernel without SO_PEERGROUPS (ENOPROTOOPT) falls back to ``/proc/<pid>/status``.

The credentials of the connection being served are in ``CURRENT_PEER`` (a context
variable the server core sets in each connection's task), for the handlers that decide
by who asks (``jobs.submit`` reads only what the peer may read).
"""

from __future__ import annotations

import errno
import grp
import logging
import socket
import struct
from contextvars import ContextVar
from dataclasses import dataclass

LOGGER = logging.getLogger(__name__)

_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
# Python's socket module does not export it: include/uapi/asm-generic/socket.h (Linux 4.13)
SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)
# CPython's getsockopt() takes at most 1024 bytes: 256 gids; a peer in more groups gets
# ERANGE, and its groups are read from /proc as on an older kernel.
_PEERGROUPS_BYTES = 1024


@dataclass(frozen=True)
class PeerCredentials:
    """Who is on the other end of a connection (from SO_PEERCRED and SO_PEERGROUPS)."""

    pid: int
    uid: int
    gid: int
    groups: frozenset[int] = frozenset()

    def in_group(self, gid: int) -> bool:
        """Whether ``gid`` is the peer's primary or one of its supplementary groups."""
        return self.gid == gid or gid in self.groups


CURRENT_PEER: ContextVar[PeerCredentials | None] = ContextVar("CURRENT_PEER", default=None)


def peer_allowed(peer: PeerCredentials, *, own_uid: int, group_gid: int | None) -> bool:
    """Root, the server's own user, and members (primary or supplementary) of the group."""
    if peer.uid in (0, own_uid):
        return True
    return group_gid is not None and peer.in_group(group_gid)


def supplementary_groups(pid: int) -> frozenset[int]:
    """The ``Groups:`` of ``/proc/<pid>/status``; empty when the process cannot be read."""
    if pid <= 0:
        return frozenset()
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Groups:"):
                    return frozenset(int(g) for g in line.split()[1:] if g.isdigit())
    except OSError:
        pass
    return frozenset()


def socket_groups(sock: socket.socket) -> frozenset[int] | None:
    """The peer's supplementary groups from SO_PEERGROUPS; None where the kernel lacks it
    (ENOPROTOOPT) or the peer has more groups than one read holds (ERANGE)."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, _PEERGROUPS_BYTES)
    except OSError as exc:
        if exc.errno in (errno.ENOPROTOOPT, errno.ERANGE):
            return None
        raise
    usable = len(raw) - len(raw) % 4
    return frozenset(struct.unpack(f"={usable // 4}I", raw[:usable]))


def read_peer_credentials(sock: socket.socket) -> PeerCredentials:
    """SO_PEERCRED of a connected Unix socket, with the peer's supplementary groups."""
    pid, uid, gid = _PEERCRED.unpack(
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    )
    groups = socket_groups(sock)
    if groups is None:
        groups = supplementary_groups(pid)
    return PeerCredentials(pid, uid, gid, groups)


def resolve_group(group: str | int) -> int:
    """A group's gid from its name (or a gid, returned as is). KeyError names it."""
    if isinstance(group, int):
        return group
    return grp.getgrnam(group).gr_gid


def admit(
    conn: socket.socket, *, own_uid: int, group_gid: int | None, label: str
) -> PeerCredentials | None:
    """The credentials of the peer of ``conn`` if it may talk to this server, else None
    (logged). ``label`` names the socket in the log line."""
    try:
        peer = read_peer_credentials(conn)
    except (OSError, struct.error) as exc:
        LOGGER.warning("%s connection refused: no peer credentials (%s)", label, exc)
        return None
    if peer_allowed(peer, own_uid=own_uid, group_gid=group_gid):
        return peer
    LOGGER.warning(
        "%s connection refused: pid %d uid %d gid %d is not root, the server's user or in "
        "its group",
        label,
        peer.pid,
        peer.uid,
        peer.gid,
    )
    return None
