"""Who may talk to the daemon's Unix sockets: SO_PEERCRED, the peer's groups, the verdict.

The control socket and the jitter service admit the same peers: root, the server's own
user, and members (primary or supplementary) of the socket's group. The kernel vouches
for the peer's pid, uid and gid (SO_PEERCRED); its supplementary groups come from
``/proc/<pid>/status``, since SO_PEERCRED carries only the primary one.
"""

from __future__ import annotations

import grp
import logging
import socket
import struct
from dataclasses import dataclass

LOGGER = logging.getLogger(__name__)

_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


@dataclass(frozen=True)
class PeerCredentials:
    """Who is on the other end of a connection (from SO_PEERCRED and /proc)."""

    pid: int
    uid: int
    gid: int
    groups: frozenset[int] = frozenset()


def peer_allowed(peer: PeerCredentials, *, own_uid: int, group_gid: int | None) -> bool:
    """Root, the server's own user, and members (primary or supplementary) of the group."""
    if peer.uid in (0, own_uid):
        return True
    return group_gid is not None and (peer.gid == group_gid or group_gid in peer.groups)


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


def read_peer_credentials(sock: socket.socket) -> PeerCredentials:
    """SO_PEERCRED of a connected Unix socket, with the peer's supplementary groups."""
    pid, uid, gid = _PEERCRED.unpack(
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    )
    return PeerCredentials(pid, uid, gid, supplementary_groups(pid))


def resolve_group(group: str | int) -> int:
    """A group's gid from its name (or a gid, returned as is). KeyError names it."""
    if isinstance(group, int):
        return group
    return grp.getgrnam(group).gr_gid


def admit(conn: socket.socket, *, own_uid: int, group_gid: int | None, label: str) -> bool:
    """Whether the peer of ``conn`` may talk to this server (logged when it may not).
    ``label`` names the socket in the log line."""
    try:
        peer = read_peer_credentials(conn)
    except (OSError, struct.error) as exc:
        LOGGER.warning("%s connection refused: no peer credentials (%s)", label, exc)
        return False
    if peer_allowed(peer, own_uid=own_uid, group_gid=group_gid):
        return True
    LOGGER.warning(
        "%s connection refused: pid %d uid %d gid %d is not root, the server's user or in "
        "its group",
        label,
        peer.pid,
        peer.uid,
        peer.gid,
    )
    return False
