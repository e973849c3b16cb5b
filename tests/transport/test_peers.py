"""Peer credentials of the daemon's Unix sockets: who is admitted, and SO_PEERCRED read
from a real socket pair (a refused uid over a real server: tests/control, tests/jitter)."""

from __future__ import annotations

import os
import socket

import pytest

from hasherd.transport.peers import (
    PeerCredentials,
    peer_allowed,
    read_peer_credentials,
    supplementary_groups,
)


@pytest.mark.parametrize(
    ("peer", "group", "allowed"),
    [
        (PeerCredentials(1, 0, 0), None, True),
        (PeerCredentials(1, 1000, 1000), None, True),  # the daemon's own uid
        (PeerCredentials(1, 1001, 1001), None, False),
        (PeerCredentials(1, 1001, 1001, frozenset({0, 27})), None, False),
        (PeerCredentials(1, 1001, 27), 27, True),
        (PeerCredentials(1, 1001, 1001, frozenset({4, 27})), 27, True),
        (PeerCredentials(1, 1001, 1001, frozenset({4, 28})), 27, False),
        (PeerCredentials(1, 1001, 0), 27, False),
    ],
)
def test_peer_allowed(peer: PeerCredentials, group: int | None, allowed: bool) -> None:
    assert peer_allowed(peer, own_uid=1000, group_gid=group) is allowed


def test_real_peer_credentials_are_this_process() -> None:
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        peer = read_peer_credentials(left)
    assert (peer.pid, peer.uid, peer.gid) == (os.getpid(), os.geteuid(), os.getegid())
    assert peer.groups == frozenset(os.getgroups())
    assert supplementary_groups(0) == frozenset()
    assert supplementary_groups(2**22 + 1) == frozenset()  # beyond pid_max: unreadable
