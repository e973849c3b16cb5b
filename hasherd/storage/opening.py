"""Opening a database file: refuse anything damaged or too new before touching it.

The order matters. The header, ``integrity_check`` and ``user_version`` are only read,
so a refused file is left byte for byte as it was; only then is WAL switched on (which
rewrites the header) and the pending migrations applied.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiosqlite

from hasherd.storage import migrations
from hasherd.storage.errors import StorageError

SQLITE_MAGIC = b"SQLite format 3\x00"
_MAX_PROBLEMS = 10


async def open_connection(
    path: Path, *, create: bool, busy_timeout_s: float
) -> aiosqlite.Connection:
    """A checked, configured, migrated connection to ``path``."""
    _check_file(path, create=create)
    conn = await _connect(path, create=create, busy_timeout_s=busy_timeout_s)
    try:
        await _check_integrity(conn, str(path))
        await migrations.check_version(conn, str(path))
        await _configure(conn, str(path), busy_timeout_s)
        await migrations.migrate(conn, str(path))
    except BaseException:
        await conn.close()
        raise
    return conn


def _check_file(path: Path, *, create: bool) -> None:
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
        raise StorageError(str(path), f"cannot read: {exc.strerror or exc}") from exc
    if header and header != SQLITE_MAGIC:
        raise StorageError(str(path), "not a SQLite database (bad file header)")


async def _connect(path: Path, *, create: bool, busy_timeout_s: float) -> aiosqlite.Connection:
    # mode=rw never creates the file, so create=False holds even against a race.
    uri = f"{path.resolve().as_uri()}?mode={'rwc' if create else 'rw'}"
    try:
        return await aiosqlite.connect(uri, uri=True, isolation_level=None, timeout=busy_timeout_s)
    except sqlite3.Error as exc:
        raise StorageError(str(path), f"cannot open: {exc}") from exc


async def _check_integrity(conn: aiosqlite.Connection, path: str) -> None:
    try:
        rows = list(await conn.execute_fetchall("PRAGMA integrity_check"))
    except sqlite3.DatabaseError as exc:
        raise StorageError(path, f"integrity_check failed: {exc}") from exc
    problems = [str(row[0]) for row in rows]
    if problems != ["ok"]:
        shown = "; ".join(problems[:_MAX_PROBLEMS])
        more = (
            f" (and {len(problems) - _MAX_PROBLEMS} more)" if len(problems) > _MAX_PROBLEMS else ""
        )
        raise StorageError(path, f"integrity_check: {shown}{more}")


async def _configure(conn: aiosqlite.Connection, path: str, busy_timeout_s: float) -> None:
    try:
        rows = list(await conn.execute_fetchall("PRAGMA journal_mode = WAL"))
        await conn.execute("PRAGMA synchronous = NORMAL")
        await conn.execute("PRAGMA foreign_keys = ON")
        await conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
    except sqlite3.Error as exc:
        raise StorageError(path, f"cannot configure: {exc}") from exc
    if str(rows[0][0]).lower() != "wal":
        raise StorageError(path, f"cannot switch to WAL (journal_mode is {rows[0][0]})")
