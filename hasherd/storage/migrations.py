"""Versioned schema files and the migration that applies the pending ones.

Schema files live in ``schema/`` as package data, named ``NNNN_name.sql``; file ``NNNN``
takes the database from ``user_version`` NNNN-1 to NNNN. All pending files run in one
``BEGIN IMMEDIATE`` transaction that also sets ``user_version``, so a crash or an error
leaves the database at its old version, never in between. Schema files therefore hold no
transaction statements of their own.

After a migration the database is switched to ``auto_vacuum = INCREMENTAL`` when it is not
yet (``enable_incremental_vacuum``): a setting only a VACUUM applies to a database that
has tables, and VACUUM cannot run inside a transaction, so it runs after the commit.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
from dataclasses import dataclass
from functools import cache
from importlib import resources

import aiosqlite

from hasherd.storage.errors import StorageError, from_sqlite

LOGGER = logging.getLogger(__name__)
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
INCREMENTAL = 2  # PRAGMA auto_vacuum's value for INCREMENTAL


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


def split_statements(script: str) -> list[str]:
    """The complete SQL statements in ``script``, in order (triggers stay whole)."""
    statements: list[str] = []
    buf = ""
    for piece in script.split(";"):
        buf += piece + ";"
        if sqlite3.complete_statement(buf):
            statements.append(buf.strip())
            buf = ""
    if buf.strip(" \n\t;"):
        raise ValueError(f"incomplete SQL statement at the end: {buf.strip()[:60]!r}")
    return [s for s in statements if _has_sql(s)]


def _has_sql(statement: str) -> bool:
    lines = (line.split("--", 1)[0] for line in statement.splitlines())
    return bool("".join(lines).strip(" \n\t;"))


@cache
def migrations() -> tuple[Migration, ...]:
    """The schema files shipped with the package, by version; versions run 1, 2, ... N."""
    folder = resources.files("hasherd.storage") / "schema"
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match:
            statements = tuple(split_statements(entry.read_text(encoding="utf-8")))
            found.append(Migration(int(match.group(1)), entry.name, statements))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"schema files are not numbered 1..N: {versions}")
    return tuple(found)


def newest_version() -> int:
    return len(migrations())


async def user_version(conn: aiosqlite.Connection) -> int:
    rows = list(await conn.execute_fetchall("PRAGMA user_version"))
    return int(rows[0][0])


async def check_version(conn: aiosqlite.Connection, path: str) -> int:
    """The database's schema version; a StorageError when a newer hasherd wrote it."""
    current = await user_version(conn)
    newest = newest_version()
    if current > newest:
        raise StorageError(
            path,
            f"created by a newer hasherd (schema {current} > {newest}); refusing to open",
        )
    return current


async def migrate(conn: aiosqlite.Connection, path: str) -> int:
    """Apply every pending schema file in one transaction; the version now in force."""
    newest = newest_version()
    if await check_version(conn, path) == newest:
        return newest
    try:
        await conn.execute("BEGIN IMMEDIATE")
        # Read again under the write lock: another process may have migrated meanwhile.
        current = await check_version(conn, path)
        for migration in migrations()[current:]:
            await _apply(conn, migration)
        await conn.execute(f"PRAGMA user_version = {newest}")
        await conn.execute("COMMIT")
    except BaseException as exc:
        await asyncio.shield(rollback(conn))
        if isinstance(exc, sqlite3.Error):
            raise from_sqlite(path, exc, f"migration to schema {newest} failed: ") from exc
        raise
    await enable_incremental_vacuum(conn, path)
    return newest


async def enable_incremental_vacuum(conn: aiosqlite.Connection, path: str) -> bool:
    """Switch the database to ``auto_vacuum = INCREMENTAL``, so that ``PRAGMA
    incremental_vacuum`` can give its free pages back to the file system; whether it is
    in that mode now.

    A new database is switched right after its tables are created (the VACUUM of an
    empty file). An older one is rewritten once, right after the migration that dropped
    the seen history it no longer needs (0006), so the copy holds only what stays. A
    VACUUM that fails (no room for the copy, another writer in between) changes nothing
    and is logged, not raised: the database works as before, its free pages reused by
    later writes rather than returned."""
    rows = list(await conn.execute_fetchall("PRAGMA auto_vacuum"))
    if int(rows[0][0]) == INCREMENTAL:
        return True
    try:
        await conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        await conn.execute("VACUUM")
    except sqlite3.Error as exc:
        LOGGER.warning(
            "%s: could not switch to auto_vacuum = INCREMENTAL (%s); the file will not shrink",
            path,
            exc,
        )
        return False
    return True


async def rollback(conn: aiosqlite.Connection) -> None:
    """End the open transaction, if any, keeping nothing of it."""
    if conn.in_transaction:
        await conn.execute("ROLLBACK")


async def _apply(conn: aiosqlite.Connection, migration: Migration) -> None:
    for statement in migration.statements:
        try:
            await conn.execute(statement)
        except sqlite3.Error as exc:
            raise sqlite3.OperationalError(f"{migration.name}: {exc}") from exc
