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

When the job starts, the scheduler walks the path again without a peer (links and
``..`` only) and loads the dataset through ``pinned``: through the descriptors that walk
opened, so that a file swapped for a link after the submission, or during the load, is
not followed. docs/control-protocol.md gives the threat model and its limits.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import PurePosixPath
from tempfile import TemporaryDirectory

from hasherd.data import DataError, Dataset
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


@contextmanager
def pinned(path: str) -> Iterator[str]:
    """A path to load the dataset at ``path`` from that names exactly the inodes of a walk
    that follows no link (InputError at a link or a ``..``, as in ``check_readable``),
    whatever happens to ``path`` meanwhile.

    It lies in a private temporary directory: ``NAME`` (the path's last component) is a
    link to ``/proc/self/fd/N``, the descriptor the walk opened for the file, or, for a
    directory, a directory of such links, one for each file the loader would read. The
    kernel resolves ``/proc/self/fd/N`` to the inode itself, so a file that its owner
    swaps for a link after the check is never followed. ``restore`` gives the loaded
    dataset (and ``restore_error`` a data error) back the names under ``path``."""
    name = PurePosixPath(path).name
    with ExitStack() as stack:
        fd, st = stack.enter_context(_walk(path, None))
        if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
            raise InputError(KEY, f"{path} is not a regular file or a directory")
        view = os.path.join(stack.enter_context(TemporaryDirectory(prefix="hasherd-")), name)
        if stat.S_ISREG(st.st_mode):
            os.symlink(_proc(fd), view)
        else:
            os.mkdir(view, 0o700)
            for child, cfd, _ in _files(path, fd, stack):
                os.symlink(_proc(cfd), os.path.join(view, PurePosixPath(child).name))
        yield view


def restore(ds: Dataset, view: str, path: str) -> Dataset:
    """``ds`` loaded from ``pinned(path)``'s ``view``, with the names under ``path``."""
    report = ds.report
    errors = tuple(replace(e, file=_renamed(e.file, view, path)) for e in report.errors)
    files = tuple(_renamed(f, view, path) for f in report.files)
    return replace(ds, source=path, report=replace(report, files=files, errors=errors))


def restore_error(exc: DataError, view: str, path: str) -> DataError:
    """``exc`` raised loading ``pinned(path)``'s ``view``, naming the file under ``path``."""
    return DataError(_renamed(exc.file, view, path), exc.problem, exc.location)


def _renamed(file: str, view: str, path: str) -> str:
    return path + file[len(view) :] if file.startswith(view) else file


def _proc(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


def _check(path: str, peer: PeerCredentials | None) -> None:
    with _walk(path, peer) as (fd, st):
        if stat.S_ISDIR(st.st_mode):
            if peer is not None and not permits(st, peer, READ | SEARCH):
                raise InputError(KEY, _refused(path, peer, "list"))
            with ExitStack() as stack:
                for child, _, cst in _files(path, fd, stack):
                    if peer is not None and not permits(cst, peer, READ):
                        raise InputError(KEY, _refused(child, peer, "read"))
        elif not stat.S_ISREG(st.st_mode):
            raise InputError(KEY, f"{path} is not a regular file or a directory")
        elif peer is not None and not permits(st, peer, READ):
            raise InputError(KEY, _refused(path, peer, "read"))


def _files(path: str, fd: int, stack: ExitStack) -> Iterator[tuple[str, int, os.stat_result]]:
    """The path, ``O_PATH`` descriptor (closed with ``stack``) and status of each regular
    file in the directory ``fd`` that the loader reads (not hidden, a supported
    extension); InputError for such a name that is a link."""
    with _opened(".", fd, path, os.O_RDONLY | os.O_DIRECTORY) as listing:
        names = sorted(os.listdir(listing))
    for name in names:
        if name.startswith(".") or PurePosixPath(name).suffix.lower() not in SUPPORTED:
            continue
        child = os.path.join(path, name)
        cfd = _open(name, fd, child, os.O_PATH | os.O_NOFOLLOW)
        stack.callback(os.close, cfd)
        cst = os.fstat(cfd)
        if stat.S_ISLNK(cst.st_mode):
            raise InputError(KEY, _link(child))
        if stat.S_ISREG(cst.st_mode):
            yield child, cfd, cst


@contextmanager
def _walk(path: str, peer: PeerCredentials | None) -> Iterator[tuple[int, os.stat_result]]:
    """The ``O_PATH`` descriptor and status of ``path``'s last component, reached from
    ``/`` without following a link, each directory on the way searchable by ``peer``."""
    parts = PurePosixPath(path).parts
    if not parts or parts[0] != "/":
        raise InputError(KEY, f"{path!r} must be an absolute path")
    if len(parts) == 1:
        raise InputError(KEY, "the root directory is not a dataset")
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
