"""One writer per database: an exclusive ``flock`` on ``<database>.lock`` beside it.

SQLite serialises transactions, not runs: two trainers on one file each do the whole run,
both committing. The daemon and ``hasherd train`` therefore hold this lock for their
whole life, taken before they open (or migrate) the database. ``flock`` is released by
the kernel when its holder dies, SIGKILL included, so a lock never goes stale and never
needs clearing by hand. The file itself stays (unlinking it would race a process that
has just opened it); it holds the last holder's pid and command line, which a refused
writer names. Readers (``export``, ``verify``) take no lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from hasherd.storage.errors import StorageError, from_os_error

LOCK_SUFFIX = ".lock"
# A refused writer may read the file between the holder's flock and its write.
_HOLDER_WAIT_S = 0.5


@dataclass(frozen=True, slots=True)
class Holder:
    """Who holds a database's lock: a pid, its command line, its control socket if any."""

    pid: int
    command: str
    socket: str | None = None

    def describe(self) -> str:
        where = f", control socket {self.socket}" if self.socket else ""
        return f"pid {self.pid} ({self.command}{where})"

    def to_json(self) -> str:
        return json.dumps({"pid": self.pid, "command": self.command, "socket": self.socket})

    @classmethod
    def from_json(cls, text: str) -> Holder | None:
        """The holder written in ``text``; None for an empty or foreign file."""
        try:
            data = json.loads(text)
            return cls(int(data["pid"]), str(data["command"]), data.get("socket"))
        except (ValueError, TypeError, KeyError):
            return None


class DatabaseInUse(StorageError):
    """Another process holds the database's writer lock (``holder``, when it says)."""

    def __init__(self, path: str, holder: Holder | None, hint: str = "") -> None:
        self.holder = holder
        self.hint = hint
        who = holder.describe() if holder else "another process (which did not say)"
        tail = f"; {hint}" if hint else ""
        super().__init__(path, f"already in use by {who}{tail}", "in_use")

    def with_hint(self, hint: str) -> DatabaseInUse:
        """The same refusal, with what to do instead."""
        return DatabaseInUse(self.path, self.holder, hint)


def lock_path(db: Path) -> Path:
    """The lock file of ``db``: beside the real file, so that every path to one database
    (a symlink, a relative path) meets the same lock."""
    real = db.resolve()
    return real.with_name(real.name + LOCK_SUFFIX)


class DatabaseLock:
    """The writer lock of one database, held from ``acquire`` until ``release`` (or the
    process's end). Use it as a context manager."""

    def __init__(self, db: Path, fd: int) -> None:
        self.db = db
        self.path = lock_path(db)
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, db: Path, command: str, socket: str | None = None) -> DatabaseLock:
        """Take ``db``'s lock without waiting and write this process into it.

        Creates the database's directory when missing. Raises DatabaseInUse naming the
        holder when another process has it, and StorageError when the lock file cannot
        be created (a read-only file system, no permission, a full disk)."""
        fd = _open_lock_file(db)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _wait_for_holder(fd)
            os.close(fd)
            raise DatabaseInUse(str(db), holder) from None
        except OSError as exc:
            os.close(fd)
            raise from_os_error(str(db), exc, f"cannot lock {lock_path(db)}") from exc
        try:
            _write_holder(fd, Holder(os.getpid(), command, socket))
        except OSError as exc:
            os.close(fd)  # closing releases the lock
            raise from_os_error(str(db), exc, f"cannot write {lock_path(db)}") from exc
        return cls(db, fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Give the lock up; safe to repeat. The file's content is left as it is."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> DatabaseLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def read_holder(db: Path) -> Holder | None:
    """The process last written into ``db``'s lock file (it may have ended since)."""
    try:
        return Holder.from_json(lock_path(db).read_text(encoding="utf-8"))
    except OSError:
        return None


def _open_lock_file(db: Path) -> int:
    path = lock_path(db)
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
        # Not O_TRUNC: the file may be another process's, still holding the lock.
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise from_os_error(str(db), exc, f"cannot open the lock file {path}") from exc


def _write_holder(fd: int, holder: Holder) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, (holder.to_json() + "\n").encode(), 0)


def _wait_for_holder(fd: int) -> Holder | None:
    """The holder's record, read through our own descriptor; a holder that has just
    taken the lock gets a moment to write it."""
    deadline = time.monotonic() + _HOLDER_WAIT_S
    while True:
        holder = Holder.from_json(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
        if holder is not None and _alive(holder.pid):
            return holder
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a record left by a holder that has died is not the holder)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
