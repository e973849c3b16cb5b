"""The storage layer's errors: which database file, what went wrong, and why.

``reason`` sorts the failures an operator acts on differently (free space, remount, fix
permissions, restore a backup, stop the other writer); the message names the path and
the cause on one line, so a command's error and a job's error read the same.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from typing import Literal

from hasherd.errors import HasherError

Reason = Literal[
    "disk_full", "read_only", "permission_denied", "corrupt", "io_error", "busy", "in_use"
]

# SQLite's primary result codes (the low byte of an extended code) -> reason.
_SQLITE_REASONS: dict[int, Reason] = {
    sqlite3.SQLITE_FULL: "disk_full",
    sqlite3.SQLITE_READONLY: "read_only",
    sqlite3.SQLITE_PERM: "permission_denied",
    sqlite3.SQLITE_CORRUPT: "corrupt",
    sqlite3.SQLITE_NOTADB: "corrupt",
    sqlite3.SQLITE_IOERR: "io_error",
    sqlite3.SQLITE_BUSY: "busy",
    sqlite3.SQLITE_LOCKED: "busy",
}
_ERRNO_REASONS: dict[int, Reason] = {
    errno.ENOSPC: "disk_full",
    errno.EDQUOT: "disk_full",
    errno.EROFS: "read_only",
    errno.EACCES: "permission_denied",
    errno.EPERM: "permission_denied",
    errno.EIO: "io_error",
}
# Less free space than this makes an I/O error a full disk (SQLite grows the -shm file in
# 32 KiB steps and reports a failure there as SQLITE_IOERR, not SQLITE_FULL).
_LOW_SPACE_BYTES = 1 << 20
_LABELS: dict[Reason, str] = {
    "disk_full": "disk full",
    "read_only": "read-only database",
    "permission_denied": "permission denied",
    "corrupt": "corrupt database",
    "io_error": "I/O error",
    "busy": "database busy",
    "in_use": "in use",
}


class StorageError(HasherError):
    """The database file is unusable, or a read or write against it failed.

    ``path`` is the database file and ``problem`` says what is wrong with it (what
    ``integrity_check`` reported, which constraint a write broke, ...). ``reason`` is set
    when the cause is the file or its disk rather than the data: ``disk_full``,
    ``read_only``, ``permission_denied``, ``corrupt``, ``io_error``, ``busy``, ``in_use``.
    """

    def __init__(self, path: str, problem: str, reason: Reason | None = None) -> None:
        self.path = path
        self.problem = problem
        self.reason = reason
        super().__init__(f"{path}: {problem}")


def from_sqlite(path: str, exc: sqlite3.Error, doing: str = "") -> StorageError:
    """``exc`` as a StorageError on one line: the cause first when it is the file or its
    disk (``disk full (database or disk is full)``), else SQLite's own words."""
    text = one_line(f"{doing}{exc}")
    code = getattr(exc, "sqlite_errorcode", None)
    reason = _SQLITE_REASONS.get(code & 0xFF) if isinstance(code, int) else None
    if reason is None:
        return StorageError(path, text)
    if reason == "read_only":
        reason = _why_not_writable(path)
    elif reason == "io_error" and _out_of_space(path):
        reason = "disk_full"  # growing the -shm or -wal on a full disk: an I/O error
    return StorageError(path, f"{label(reason, path)} ({text})", reason)


def from_os_error(path: str, exc: OSError, doing: str) -> StorageError:
    """An OSError met on the database's behalf (its directory, its lock file)."""
    reason = _ERRNO_REASONS.get(exc.errno or 0)
    detail = one_line(f"{doing}: {exc.strerror or exc}")
    if reason is None:
        return StorageError(path, detail)
    return StorageError(path, f"{label(reason, path)} ({detail})", reason)


def label(reason: Reason, path: str) -> str:
    """The cause in words; a read-only database says whether its file system is."""
    if reason == "read_only" and _read_only_fs(path):
        return "read-only file system"
    return _LABELS[reason]


def one_line(text: str) -> str:
    """``text`` with its line breaks folded (integrity_check's rows hold some)."""
    return " ".join(text.split())


def _why_not_writable(path: str) -> Reason:
    """SQLite says only "readonly": a file we may not write is a permission problem."""
    if _read_only_fs(path):
        return "read_only"
    target = path if os.path.exists(path) else os.path.dirname(path) or "."
    return "read_only" if os.access(target, os.W_OK) else "permission_denied"


def _out_of_space(path: str) -> bool:
    """Whether the file system holding ``path`` has (almost) no room left."""
    target = path if os.path.exists(path) else os.path.dirname(path) or "."
    try:
        st = os.statvfs(target)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < _LOW_SPACE_BYTES


def _read_only_fs(path: str) -> bool:
    target = path if os.path.exists(path) else os.path.dirname(path) or "."
    try:
        return bool(os.statvfs(target).f_flag & os.ST_RDONLY)
    except OSError:
        return False
