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

from hasherd.control.access import (
    check_readable,
    permits,
    pinned,
    restore,
    restore_error,
)
from hasherd.data import DataError, load_dataset
from hasherd.errors import InputError
from hasherd.transport.peers import PeerCredentials
from tests.helpers import write_frames

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
    with pytest.raises(InputError, match="is a symbolic link"), pinned(str(link)):
        pass
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
    assert _refused("/") == "data: the root directory is not a dataset"
    hidden = "/root/definitely-not-here-hasherd/data.txt"
    message = _refused(hidden, None)  # the daemon itself (root here) finds nothing there
    assert (
        f"data: {Path(hidden).parent}: the daemon cannot see it: the unit's ProtectHome= "
        in message
    )
    assert "hides /home, /root, /run/user from the service" in message


def test_a_pinned_file_is_the_one_checked_even_once_swapped_for_a_link(tree: Path) -> None:
    data = write_frames(tree / "frames.json", 3, seed=1)
    secret = write_frames(tree / "secret.json", 5, seed=2)
    with pinned(str(data)) as view:
        data.unlink()
        data.symlink_to(secret)  # the owner's swap, after the check and before the read
        ds = restore(load_dataset(view), view, str(data))
    assert (len(ds), ds.name, ds.source, ds.report.files) == (
        3,
        "frames.json",
        str(data),
        (str(data),),
    )
    with pytest.raises(InputError, match=r"frames\.json is a symbolic link"), pinned(str(data)):
        pass


def test_a_pinned_directory_reads_its_files_as_checked(tree: Path) -> None:
    corpus = tree / "corpus"
    corpus.mkdir()
    write_frames(corpus / "a.json", 2, seed=1)
    write_frames(corpus / "b.json", 4, seed=3)
    secret = write_frames(tree / "secret.json", 7, seed=2)
    (corpus / "notes.bin").write_text("never read")
    with pinned(str(corpus)) as view:
        (corpus / "b.json").unlink()
        (corpus / "b.json").symlink_to(secret)
        ds = restore(load_dataset(view), view, str(corpus))
    assert (len(ds), ds.name, ds.source) == (6, "corpus", str(corpus))
    assert ds.report.files == (str(corpus / "a.json"), str(corpus / "b.json"))
    assert not os.path.exists(os.path.dirname(view))  # the private links are gone


def test_a_data_error_of_a_pinned_load_names_the_submitted_path(tree: Path) -> None:
    corpus = tree / "corpus"
    corpus.mkdir()
    (corpus / "bad.json").write_text("{not json")
    with pinned(str(corpus)) as view:
        with pytest.raises(DataError) as err:
            load_dataset(view)
        restored = restore_error(err.value, view, str(corpus))
    assert restored.file.startswith(str(corpus / "bad.json"))
    assert str(restored).startswith(f"{corpus}/bad.json")
