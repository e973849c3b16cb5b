"""Opening a database file: refuse anything damaged or too new before touching it.

The order matters. The header, ``integrity_check`` and ``user_version`` are only read,
so a refused file is left byte for byte as it was; only then is WAL switched on (which
rewrites the header) and the pending migrations applied. A read-only connection (for the
commands that only read, beside a running writer) stops after the checks.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import aiosqlite

from hasherd.storage import migrations
from hasherd.storage.errors import StorageError, from_os_error, from_sqlite, one_line

SQLITE_MAGIC = b"SQLite format 3\x00"
_MAX_PROBLEMS = 10


class SchemaBehind(StorageError):
    """A read-only open found pending migrations: only a writer may apply them."""


async def open_connection(
    path: Path, *, create: bool, busy_timeout_s: float, read_only: bool = False
) -> aiosqlite.Connection:
    """A checked, configured, migrated connection to ``path``; with ``read_only``, a
    checked connection that cannot write (SchemaBehind when migrations are pending)."""
    _check_file(path, create=create and not read_only, write=not read_only)
    conn = await _connect(
        path, mode="ro" if read_only else "rwc" if create else "rw", busy_timeout_s=busy_timeout_s
    )
    try:
        await _check_integrity(conn, str(path))
        if read_only:
            await _check_current(conn, str(path), busy_timeout_s)
        else:
            await migrations.check_version(conn, str(path))
            await _configure(conn, str(path), busy_timeout_s)
            await migrations.migrate(conn, str(path))
    except BaseException as exc:
        await conn.close()
        if isinstance(exc, sqlite3.Error):  # a read the steps above do not wrap themselves
            raise from_sqlite(str(path), exc) from exc
        raise
    return conn


def _check_file(path: Path, *, create: bool, write: bool) -> None:
    if not path.exists():
        if not create:
            raise StorageError(str(path), "no such database file")
        return
    if not path.is_file():
        raise StorageError(str(path), "not a regular file")
    try:
        with path.open("rb") as f:
            header = f.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise from_os_error(str(path), exc, "cannot read") from exc
    if header and header != SQLITE_MAGIC:
        raise StorageError(str(path), "not a SQLite database (bad file header)", "corrupt")
    if write:
        _check_writable(path)


def _check_writable(path: Path) -> None:
    """Refuse a file this process may not write (a read-only mount, its mode) at once:
    SQLite would open it read-only without a word and fail at the first commit."""
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CLOEXEC))
    except OSError as exc:
        raise from_os_error(str(path), exc, "cannot open for writing") from exc


async def _connect(path: Path, *, mode: str, busy_timeout_s: float) -> aiosqlite.Connection:
    # mode=rw never creates the file, so create=False holds even against a race.
    uri = f"{path.resolve().as_uri()}?mode={mode}"
    try:
        return await aiosqlite.connect(uri, uri=True, isolation_level=None, timeout=busy_timeout_s)
    except sqlite3.Error as exc:
        raise from_sqlite(str(path), exc, "cannot open: ") from exc


async def _check_current(conn: aiosqlite.Connection, path: str, busy_timeout_s: float) -> None:
    """A reader's checks after integrity: the schema is this hasherd's, the settings set."""
    current = await migrations.check_version(conn, path)
    newest = migrations.newest_version()
    if current < newest:
        raise SchemaBehind(path, f"schema {current} needs migrating to {newest} by a writer")
    try:
        await conn.execute("PRAGMA foreign_keys = ON")
        await conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
    except sqlite3.Error as exc:
        raise from_sqlite(path, exc, "cannot configure: ") from exc


async def _check_integrity(conn: aiosqlite.Connection, path: str) -> None:
    try:
        rows = list(await conn.execute_fetchall("PRAGMA integrity_check"))
    except sqlite3.DatabaseError as exc:
        raise from_sqlite(path, exc, "integrity_check failed: ") from exc
    problems = [one_line(str(row[0])) for row in rows]
    if problems != ["ok"]:
        shown = "; ".join(problems[:_MAX_PROBLEMS])
        more = (
            f" (and {len(problems) - _MAX_PROBLEMS} more)" if len(problems) > _MAX_PROBLEMS else ""
        )
        raise StorageError(path, f"corrupt database (integrity_check: {shown}{more})", "corrupt")


WAL_SIZE_LIMIT = 4 * 1024 * 1024  # bytes


async def _configure(conn: aiosqlite.Connection, path: str, busy_timeout_s: float) -> None:
    try:
        rows = list(await conn.execute_fetchall("PRAGMA journal_mode = WAL"))
        await conn.execute("PRAGMA synchronous = NORMAL")
        # After each checkpoint the -wal file is cut back to this size, so it stays small
        # through a long epoch instead of keeping its largest size until the epoch ends.
        await conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
        await conn.execute("PRAGMA foreign_keys = ON")
        await conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
    except sqlite3.Error as exc:
        raise from_sqlite(path, exc, "cannot configure: ") from exc
    if str(rows[0][0]).lower() != "wal":
        raise StorageError(path, f"cannot switch to WAL (journal_mode is {rows[0][0]})")
