"""What a control client may have the daemon read: a dataset it could read itself.

The daemon may run as root, or as a service user that can read files its clients cannot.
``jobs.submit`` names a path, and a trained job gives its records back (``weights.list``:
the token ids in record order are the text), so the daemon must read for a client only
what that client could read. ``check_readable`` walks the path from ``/`` one component at
a time, each opened with ``O_PATH | O_NOFOLLOW`` relative to the one before, and decides
on what the kernel returns for that very inode (``fstat``):

- a symbolic link anywhere on the path is refused (``hasherctl`` resolves the user's own
  links before it sends the path), and so is a ``..`` component;
- every directory must be searchable, the dataset file readable (a directory dataset:
  the directory readable and searchable, every file the loader would read readable and
  not a link), by the peer's uid, gid and supplementary groups (``SO_PEERCRED``,
  ``SO_PEERGROUPS``), by the permission bits (owner, group, other; root reads all);
- a path the daemon itself cannot see under ``/home``, ``/root`` or ``/run/user`` is
  named as hidden by the unit's ``ProtectHome=``.

``check_path`` is the same walk without a peer (links and ``..`` only): the scheduler
repeats it when it loads a job, so that a file swapped for a link after the submission is
not followed. docs/control-protocol.md gives the threat model and its limits.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import PurePosixPath

from hasherd.data.dataset import SUPPORTED
from hasherd.errors import InputError
from hasherd.transport.peers import PeerCredentials

KEY = "data"
READ, SEARCH = 4, 1  # permission bits of one class (r, x)
# Where systemd's ProtectHome= hides files (systemd.exec(5)).
PROTECTED_HOME = ("/home", "/root", "/run/user")


def own_credentials() -> PeerCredentials:
    """The daemon's own credentials: a request that did not come over the socket."""
    return PeerCredentials(os.getpid(), os.geteuid(), os.getegid(), frozenset(os.getgroups()))


def permits(st: os.stat_result, peer: PeerCredentials, want: int) -> bool:
    """Whether ``peer`` has the ``want`` bits (READ, SEARCH) on a file of status ``st``,
    by its permission bits: the owner's class, else the group's, else the others'."""
    if peer.uid == 0:
        return True
    if st.st_uid == peer.uid:
        bits = st.st_mode >> 6
    elif peer.in_group(st.st_gid):
        bits = st.st_mode >> 3
    else:
        bits = st.st_mode
    return bits & want == want


def check_readable(path: str, peer: PeerCredentials | None) -> None:
    """InputError (``data``) unless ``peer`` (None: the daemon itself) may read the
    dataset at ``path`` (a file, or a directory of files) through no symbolic link."""
    who = peer if peer is not None else own_credentials()
    _check(path, who)


def check_path(path: str) -> None:
    """InputError (``data``) if ``path`` has a symbolic link or a ``..`` on its way."""
    _check(path, None)


def _check(path: str, peer: PeerCredentials | None) -> None:
    with _walk(path, peer) as (fd, st):
        if stat.S_ISDIR(st.st_mode):
            _check_directory(path, fd, st, peer)
        elif not stat.S_ISREG(st.st_mode):
            raise InputError(KEY, f"{path} is not a regular file or a directory")
        elif peer is not None and not permits(st, peer, READ):
            raise InputError(KEY, _refused(path, peer, "read"))


def _check_directory(path: str, fd: int, st: os.stat_result, peer: PeerCredentials | None) -> None:
    """The directory readable and searchable; each file the loader reads (not hidden, a
    supported extension) a regular file, not a link, readable."""
    if peer is not None and not permits(st, peer, READ | SEARCH):
        raise InputError(KEY, _refused(path, peer, "list"))
    with _opened(".", fd, path, os.O_RDONLY | os.O_DIRECTORY) as listing:
        names = sorted(os.listdir(listing))
    for name in names:
        if name.startswith(".") or PurePosixPath(name).suffix.lower() not in SUPPORTED:
            continue
        child = os.path.join(path, name)
        with _opened(name, fd, child, os.O_PATH | os.O_NOFOLLOW) as cfd:
            cst = os.fstat(cfd)
        if stat.S_ISLNK(cst.st_mode):
            raise InputError(KEY, _link(child))
        if stat.S_ISREG(cst.st_mode) and peer is not None and not permits(cst, peer, READ):
            raise InputError(KEY, _refused(child, peer, "read"))


@contextmanager
def _walk(path: str, peer: PeerCredentials | None) -> Iterator[tuple[int, os.stat_result]]:
    """The ``O_PATH`` descriptor and status of ``path``'s last component, reached from
    ``/`` without following a link, each directory on the way searchable by ``peer``."""
    parts = PurePosixPath(path).parts
    if not parts or parts[0] != "/":
        raise InputError(KEY, f"{path!r} must be an absolute path")
    if ".." in parts:
        raise InputError(KEY, f"{path} must not contain '..'")
    fd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        where = "/"
        for name in parts[1:]:
            if peer is not None and not permits(st, peer, SEARCH):
                raise InputError(KEY, _refused(where, peer, "search"))
            where = os.path.join(where, name)
            nfd = _open(name, fd, where, os.O_PATH | os.O_NOFOLLOW)
            os.close(fd)
            fd, st = nfd, os.fstat(nfd)
            if stat.S_ISLNK(st.st_mode):
                raise InputError(KEY, _link(where))
        yield fd, st
    finally:
        os.close(fd)


@contextmanager
def _opened(name: str, dir_fd: int, where: str, flags: int) -> Iterator[int]:
    fd = _open(name, dir_fd, where, flags)
    try:
        yield fd
    finally:
        os.close(fd)


def _open(name: str, dir_fd: int, where: str, flags: int) -> int:
    """``name`` opened in ``dir_fd``; InputError naming ``where`` (and ProtectHome=)."""
    try:
        return os.open(name, flags | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        raise InputError(KEY, _unseen(where, exc)) from None


def _unseen(where: str, exc: OSError) -> str:
    hidden = next((p for p in PROTECTED_HOME if where.startswith(p + "/")), None)
    if hidden is not None and exc.errno in (errno.EACCES, errno.ENOENT, errno.EPERM):
        return (
            f"{where}: the daemon cannot see it: the unit's ProtectHome= hides "
            f"{', '.join(PROTECTED_HOME)} from the service (or its user may not enter "
            f"{hidden}); put the dataset elsewhere, such as under /srv or /var/lib/hasherd"
        )
    if exc.errno == errno.ENOENT:
        return f"{where} does not exist (as seen by the daemon)"
    return f"{where}: the daemon cannot open it ({os.strerror(exc.errno or 0)})"


def _link(where: str) -> str:
    return f"{where} is a symbolic link; submit the path of the file it points to"


def _refused(where: str, peer: PeerCredentials, what: str) -> str:
    return (
        f"{where}: uid {peer.uid} may not {what} it; the daemon reads only what the "
        "submitting user can read"
    )
