"""The store's one connection: the write lock, transactions, reads and write timings."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import aiosqlite

from hasherd.storage.errors import StorageError, from_sqlite
from hasherd.storage.migrations import rollback
from hasherd.storage.sizes import DatabaseSize, file_bytes, measure

LOGGER = logging.getLogger(__name__)

Params = tuple[Any, ...] | list[Any]
T = TypeVar("T")


@dataclass(slots=True)
class WriteStats:
    """Timings of committed write transactions (seconds, from ``time.perf_counter``)."""

    transactions: int = 0
    failed: int = 0
    last_seconds: float = 0.0
    total_seconds: float = 0.0
    max_seconds: float = 0.0

    def record(self, seconds: float, *, ok: bool) -> None:
        if not ok:
            self.failed += 1
            return
        self.transactions += 1
        self.last_seconds = seconds
        self.total_seconds += seconds
        self.max_seconds = max(self.max_seconds, seconds)


class StoreCore:
    """One aiosqlite connection (one thread), used by one coroutine at a time.

    Every statement runs under ``_lock``: aiosqlite serialises calls but not
    transactions, and a statement from another coroutine must never land inside ours.
    """

    def __init__(self, conn: aiosqlite.Connection, path: str) -> None:
        self._conn: aiosqlite.Connection | None = conn
        self._lock = asyncio.Lock()
        self._stats = WriteStats()
        self.path = path

    @property
    def closed(self) -> bool:
        return self._conn is None

    def _live(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise StorageError(self.path, "the store is closed")
        return self._conn

    async def close(self) -> None:
        """Close the connection (waits for a transaction in flight); safe to repeat."""
        async with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                await conn.close()

    def stats(self) -> dict[str, float | int]:
        """A cheap snapshot of the write timings, for metrics."""
        s = self._stats
        return {
            "write_transactions": s.transactions,
            "write_failures": s.failed,
            "last_write_seconds": s.last_seconds,
            "total_write_seconds": s.total_seconds,
            "max_write_seconds": s.max_seconds,
        }

    def database_bytes(self) -> int:
        """The database's size on disk now: the file and its ``-wal`` (two stats, cheap
        enough for every ``status``)."""
        return sum(file_bytes(self.path))

    async def size_stats(self) -> DatabaseSize:
        """What fills the database, table by table (``hasherd db stats``; reads every
        page when SQLite has ``dbstat``)."""
        return await measure(self.path, self._fetchall)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``; any failure rolls back and propagates.

        SQLite errors come out as StorageError. Not reentrant: do not call other store
        methods inside, use the connection it yields.
        """
        async with self._lock:
            conn = self._live()
            started = time.perf_counter()
            ok = False
            try:
                await conn.execute("BEGIN IMMEDIATE")
                yield conn
                await conn.execute("COMMIT")
                ok = True
            except sqlite3.Error as exc:
                raise from_sqlite(self.path, exc) from exc
            finally:
                if not ok:
                    await self._rollback(conn)
                self._stats.record(time.perf_counter() - started, ok=ok)

    async def write(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``body`` as one ``BEGIN IMMEDIATE`` ... ``COMMIT`` on the connection's own
        thread, in a single hand-over (``transaction`` costs one per statement, and each
        waits for a core while the kernels keep every core busy). ``body`` gets the plain
        sqlite3 connection and must not await; any failure rolls back and propagates
        (SQLite errors as StorageError). The transaction completes on its thread even if
        the caller is cancelled, so it is committed or rolled back whole, never left open.
        """
        async with self._lock:
            conn = self._live()
            started = time.perf_counter()
            ok = False

            def run() -> T:
                raw: sqlite3.Connection = conn._conn  # only ever used on its own thread
                raw.execute("BEGIN IMMEDIATE")
                try:
                    out = body(raw)
                    raw.execute("COMMIT")
                    return out
                except BaseException:
                    if raw.in_transaction:
                        raw.execute("ROLLBACK")
                    raise

            try:
                # aiosqlite's queue of calls for its thread (the same one ``execute`` uses).
                submit = cast("Callable[[Callable[[], T]], Awaitable[T]]", conn._execute)
                out = await submit(run)
                ok = True
                return out
            except sqlite3.Error as exc:
                raise from_sqlite(self.path, exc) from exc
            finally:
                self._stats.record(time.perf_counter() - started, ok=ok)

    async def _rollback(self, conn: aiosqlite.Connection) -> None:
        try:
            await asyncio.shield(rollback(conn))
        except sqlite3.Error:
            # The failure being raised matters more; SQLite has rolled back already in
            # most of the cases where ROLLBACK itself fails.
            LOGGER.warning("%s: ROLLBACK failed", self.path, exc_info=True)

    async def _fetchall(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        async with self._lock:
            conn = self._live()
            try:
                return list(await conn.execute_fetchall(sql, params))
            except sqlite3.Error as exc:
                raise from_sqlite(self.path, exc) from exc

    async def _fetchone(self, sql: str, params: Params, what: str) -> sqlite3.Row:
        rows = await self._fetchall(sql, params)
        if not rows:
            raise StorageError(self.path, f"no {what}")
        return rows[0]


def where(**filters: Any) -> tuple[str, list[Any]]:
    """`` WHERE a = ? AND b = ?`` and its parameters for the filters that are not None
    (keys are column names, ``r__dataset_id`` standing for ``r.dataset_id``)."""
    given = {k.replace("__", "."): v for k, v in filters.items() if v is not None}
    clause = " AND ".join(f"{col} = ?" for col in given)
    return (f" WHERE {clause}" if clause else ""), list(given.values())


async def insert(conn: aiosqlite.Connection, sql: str, params: Params) -> int:
    """Run an INSERT and return the new row's id."""
    cursor = await conn.execute(sql, params)
    rowid = cursor.lastrowid
    await cursor.close()
    if rowid is None:
        raise sqlite3.OperationalError(f"no row id after {sql.split('(')[0].strip()}")
    return rowid


async def execute_many(conn: aiosqlite.Connection, sql: str, rows: Iterable[Params]) -> None:
    cursor = await conn.executemany(sql, rows)
    await cursor.close()


async def changes(conn: aiosqlite.Connection, sql: str, params: Params) -> int:
    """Run a statement and return how many rows it changed."""
    cursor = await conn.execute(sql, params)
    count = cursor.rowcount
    await cursor.close()
    return count
