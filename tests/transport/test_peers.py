"""Peer credentials of the daemon's Unix sockets: who is admitted, and SO_PEERCRED read
from a real socket pair (a refused uid over a real server: tests/control, tests/jitter)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from hasherd.transport import peers
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


def _connect_in_group_and_exit(path: str, groups: list[int]) -> int:
    """A child process in ``groups`` that connects to ``path`` and exits at once."""
    pid = os.fork()
    if pid == 0:  # the child: only system calls, then _exit
        code = 1
        try:
            os.setgroups(groups)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.connect(path)
            code = 0
        finally:
            os._exit(code)
    return pid


def test_groups_come_from_the_socket_even_when_proc_cannot_show_them(tmp_path: Path) -> None:
    """SO_PEERGROUPS: the groups the peer had when it connected, although its /proc entry
    is gone (as it is hidden under ProtectProc=invisible or hidepid=)."""
    path = str(tmp_path / "s")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen(1)
        pid = _connect_in_group_and_exit(path, [4242, 4343])
        conn, _ = listener.accept()
        with conn:
            assert os.waitpid(pid, 0)[1] == 0
            assert supplementary_groups(pid) == frozenset()  # no /proc/<pid> any more
            peer = read_peer_credentials(conn)
    assert (peer.pid, peer.groups) == (pid, frozenset({4242, 4343}))
    assert peer_allowed(peer, own_uid=1000, group_gid=4343)


def test_a_kernel_without_so_peergroups_falls_back_to_proc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peers, "SO_PEERGROUPS", 0x7FFF)  # an option no kernel knows: ENOPROTOOPT
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with left, right:
        assert peers.socket_groups(left) is None
        peer = read_peer_credentials(left)
    assert peer.groups == frozenset(os.getgroups())
