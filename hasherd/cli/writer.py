"""The database's writer lock as the commands take it: the holder named, and what to do
instead (a daemon holds its database for its whole life, so beside one the same work
goes through ``hasherctl``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from hasherd.storage.errors import StorageError
from hasherd.storage.lock import DatabaseInUse, DatabaseLock, Holder


def command_line(args: argparse.Namespace) -> str:
    """This process's command, as written into the lock file for a refused writer."""
    line = getattr(args, "command_line", None)
    return str(line) if line else f"hasherd {args.command}"


def hold_writer_lock(
    db: Path, args: argparse.Namespace, *, instead: str, must_exist: bool = True
) -> DatabaseLock:
    """``db``'s writer lock for this command, held until released (or the process ends).

    ``instead`` is the hasherctl command that does the same work through a daemon that
    holds the database. With ``must_exist`` a missing database is refused before a lock
    file (and its directory) is created beside it."""
    if must_exist and not db.is_file():
        raise StorageError(str(db), "no such database file")
    try:
        return DatabaseLock.acquire(db, command_line(args))
    except DatabaseInUse as exc:
        raise exc.with_hint(hint(exc.holder, instead)) from None


def hint(holder: Holder | None, instead: str) -> str:
    """What to do when ``holder`` has the database: ask the daemon, or wait."""
    if holder is not None and holder.socket:
        return f"one writer per database: use hasherctl --socket {holder.socket} {instead}"
    return "one writer per database: wait for it to finish or stop it"
