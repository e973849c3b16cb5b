"""What a control peer may have the daemon read (``control/access.py``), on real files:
links refused wherever they are, permission bits by the peer's uid and groups, and the
messages each refusal gives (over a real socket, with a real hasherctl run as another
user: tests/daemon/test_access.py)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hasherd.control.access import check_path, check_readable, permits
from hasherd.errors import InputError
from hasherd.transport.peers import PeerCredentials

NOBODY = PeerCredentials(1, 65534, 65534)
MEMBER = PeerCredentials(1, 65534, 65534, frozenset({4242}))


@pytest.fixture
def tree() -> Iterator[Path]:
    """An open directory (0755) the test's files live in (pytest's own are under a 0700
    directory that another user could not enter)."""
    root = Path(tempfile.mkdtemp(prefix="hasherd-access-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root)


def _refused(path: Path | str, peer: PeerCredentials | None = NOBODY) -> str:
    with pytest.raises(InputError) as err:
        check_readable(str(path), peer)
    assert err.value.field == "data"
    return str(err.value)


def test_a_root_only_file_is_refused_to_another_user_but_not_to_root(tree: Path) -> None:
    secret = tree / "vault.txt"
    secret.write_text("the vault password is 1234")
    secret.chmod(0o600)
    assert _refused(secret) == (
        f"data: {secret}: uid 65534 may not read it; the daemon reads only what the "
        "submitting user can read"
    )
    check_readable(str(secret), PeerCredentials(1, 0, 0))
    check_readable(str(secret), None)  # in-process: the daemon's own credentials (root)


def test_group_and_other_bits_are_read_for_the_peer(tree: Path) -> None:
    shared = tree / "shared.txt"
    shared.write_text("x")
    os.chown(shared, 0, 4242)
    shared.chmod(0o640)
    check_readable(str(shared), MEMBER)  # a supplementary group of the peer
    assert "may not read it" in _refused(shared)
    shared.chmod(0o604)
    check_readable(str(shared), NOBODY)
    assert not permits(os.stat(shared), MEMBER, 4)  # the group class decides, not other


def test_a_directory_on_the_way_must_be_searchable(tree: Path) -> None:
    private = tree / "private"
    private.mkdir(mode=0o700)
    (private / "a.txt").write_text("x")
    (private / "a.txt").chmod(0o644)
    assert _refused(private / "a.txt") == (
        f"data: {private}: uid 65534 may not search it; the daemon reads only what the "
        "submitting user can read"
    )


def test_links_are_refused_wherever_they_are(tree: Path) -> None:
    target = tree / "vault.txt"
    target.write_text("x")
    target.chmod(0o644)
    link = tree / "innocent.txt"
    link.symlink_to(target)
    message = f"data: {link} is a symbolic link; submit the path of the file it points to"
    assert _refused(link) == message
    assert _refused(link, PeerCredentials(1, 0, 0)) == message  # root too: no link followed
    linked_dir = tree / "via"
    linked_dir.symlink_to(tree)
    assert "via is a symbolic link" in _refused(linked_dir / "vault.txt")
    with pytest.raises(InputError, match="is a symbolic link"):
        check_path(str(link))
    assert "must not contain '..'" in _refused(f"{tree}/sub/../vault.txt")


def test_a_directory_dataset_is_checked_file_by_file(tree: Path) -> None:
    corpus = tree / "corpus"
    corpus.mkdir(mode=0o755)
    (corpus / "a.md").write_text("x")
    (corpus / "a.md").chmod(0o644)
    (corpus / "notes.bin").write_text("x")
    (corpus / "notes.bin").chmod(0o600)  # not a dataset file: never read, not checked
    check_readable(str(corpus), NOBODY)
    secret = tree / "secret"
    secret.write_text("x")
    secret.chmod(0o600)
    (corpus / "b.txt").symlink_to(secret)
    assert "b.txt is a symbolic link" in _refused(corpus)
    (corpus / "b.txt").unlink()
    (corpus / "c.txt").write_text("x")
    (corpus / "c.txt").chmod(0o600)
    assert _refused(corpus).startswith(f"data: {corpus / 'c.txt'}: uid 65534 may not read it")
    corpus.chmod(0o711)
    assert "uid 65534 may not list it" in _refused(corpus)


def test_what_the_daemon_cannot_see(tree: Path) -> None:
    missing = tree / "nothing.json"
    assert _refused(missing) == f"data: {missing} does not exist (as seen by the daemon)"
    fifo = tree / "fifo.txt"
    os.mkfifo(fifo)
    assert _refused(fifo) == f"data: {fifo} is not a regular file or a directory"
    hidden = "/root/definitely-not-here-hasherd/data.txt"
    message = _refused(hidden, None)  # the daemon itself (root here) finds nothing there
    assert (
        f"data: {Path(hidden).parent}: the daemon cannot see it: the unit's ProtectHome= "
        in message
    )
    assert "hides /home, /root, /run/user from the service" in message
