"""The SQLite store: one file, one connection, one writer."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType

from hasherd.storage.catalog import CatalogMixin
from hasherd.storage.jobs import JobsMixin
from hasherd.storage.lock import DatabaseLock
from hasherd.storage.opening import SchemaBehind, open_connection
from hasherd.storage.training import TrainingMixin
from hasherd.storage.validations import ValidationsMixin

DEFAULT_BUSY_TIMEOUT_S = 5.0


class Store(CatalogMixin, TrainingMixin, JobsMixin, ValidationsMixin):
    """hasherd's database: datasets, runs, checkpoints, seen seeds, weights, events, jobs.

    Build it with ``await Store.open(path)`` (then ``close()``, or ``async with``) or
    ``async with Store.connect(path) as store``; ``Store.open_reader`` for a read-only
    store. A process that writes holds the database's ``DatabaseLock`` first
    (``storage/lock.py``): one writer per database. All methods are coroutines that take
    the store's one connection in turn; each write is one transaction.
    """

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        create: bool = True,
        busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
    ) -> Store:
        """Open (or, with ``create``, create) the database at ``path``.

        Refuses, with StorageError and without changing the file, a file that is not a
        SQLite database, fails ``integrity_check``, or has a newer schema than this
        hasherd knows; otherwise switches on WAL and applies pending migrations.
        """
        file = Path(path)
        conn = await open_connection(file, create=create, busy_timeout_s=busy_timeout_s)
        return cls(conn, str(file))

    @classmethod
    async def open_reader(
        cls,
        path: str | os.PathLike[str],
        *,
        command: str = "hasherd (migrating the schema for a reader)",
        busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
    ) -> Store:
        """The existing database at ``path``, read-only: it never writes and takes no
        lock, so it works beside a running writer (the daemon, ``hasherd train``).

        The same checks as ``open``. A database whose schema is older than this
        hasherd's is first migrated under the writer's lock (``command`` names this
        process in it; DatabaseInUse while another writer holds it)."""
        file = Path(path)
        try:
            conn = await open_connection(
                file, create=False, busy_timeout_s=busy_timeout_s, read_only=True
            )
        except SchemaBehind:
            with DatabaseLock.acquire(file, command):
                await (await cls.open(file, create=False, busy_timeout_s=busy_timeout_s)).close()
            conn = await open_connection(
                file, create=False, busy_timeout_s=busy_timeout_s, read_only=True
            )
        return cls(conn, str(file))

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        path: str | os.PathLike[str],
        *,
        create: bool = True,
        busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
    ) -> AsyncIterator[Store]:
        """``Store.open`` as a context manager that closes the store on the way out."""
        store = await cls.open(path, create=create, busy_timeout_s=busy_timeout_s)
        try:
            yield store
        finally:
            await store.close()

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
