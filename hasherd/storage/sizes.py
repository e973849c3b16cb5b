"""How big a database is, and what takes the room: ``hasherd db stats`` and the daemon's
``status``.

The file size is the main file plus its ``-wal`` (in WAL mode committed pages sit there
until a checkpoint copies them back). Bytes per table come from SQLite's ``dbstat``
virtual table (the pages of the table and of its indexes); a SQLite built without it
gives only the row counts, and the seen history's share is then its payload's. Nothing
here writes.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from hasherd.storage.errors import StorageError

SEEN = "seen"
WAL_SUFFIX = "-wal"
AUTO_VACUUM = {0: "none", 1: "full", 2: "incremental"}

# A read of the store: SQL in, rows out.
Query = Callable[[str], Awaitable[Sequence[Sequence[Any]]]]


def file_bytes(path: str) -> tuple[int, int]:
    """(the database file's size, its ``-wal`` file's), 0 for one that does not exist."""
    return _size(path), _size(path + WAL_SUFFIX)


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def human_bytes(n: int | None) -> str:
    """``31.2 MiB``; ``-`` for None (a daemon that does not say)."""
    if n is None:
        return "-"
    if n < 1024:
        return f"{n} B"
    value = n / 1024
    for unit in ("KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


@dataclass(frozen=True)
class TableSize:
    """One table: its rows, and its bytes (pages of the table and its indexes; None
    without ``dbstat``)."""

    name: str
    rows: int
    bytes: int | None


@dataclass(frozen=True)
class DatabaseSize:
    """A database's size and what fills it (see the module docstring)."""

    path: str
    file_bytes: int
    wal_bytes: int
    page_size: int
    pages: int
    free_pages: int
    auto_vacuum: str
    tables: list[TableSize]
    seen_bytes: int  # the seen history: its pages, or its payload without dbstat

    @property
    def seen_share(self) -> float:
        """The seen history's part of the database's pages (those committed, the ones
        still in the -wal included; 0 for an empty database)."""
        total = self.pages * self.page_size
        return self.seen_bytes / total if total else 0.0

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "seen_share": round(self.seen_share, 4)}


async def measure(path: str, query: Query) -> DatabaseSize:
    """The size report of the database at ``path``, read through ``query``."""
    main, wal = file_bytes(path)
    page_size, pages, free, vacuum = [
        int((await query(f"PRAGMA {name}"))[0][0])
        for name in ("page_size", "page_count", "freelist_count", "auto_vacuum")
    ]
    per_table = await _table_bytes(query)
    tables = await _tables(query, per_table)
    if per_table is not None:
        seen = per_table.get(SEEN, 0)
    else:
        seen = int((await query(f"SELECT total(length(hashes)) FROM {SEEN}"))[0][0])
    vacuum_mode = AUTO_VACUUM.get(vacuum, str(vacuum))
    return DatabaseSize(path, main, wal, page_size, pages, free, vacuum_mode, tables, seen)


async def _tables(query: Query, per_table: dict[str, int] | None) -> list[TableSize]:
    """Every table of the schema, by name, with its rows (and bytes, when known)."""
    names = await query(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        " ORDER BY name"
    )
    out = []
    for (name,) in names:
        rows = int((await query(f'SELECT count(*) FROM "{name}"'))[0][0])
        size = None if per_table is None else per_table.get(str(name), 0)
        out.append(TableSize(str(name), rows, size))
    return out


async def _table_bytes(query: Query) -> dict[str, int] | None:
    """Bytes per table, its indexes counted with it; None without ``dbstat``."""
    try:
        rows = await query(
            "SELECT coalesce(m.tbl_name, d.name), sum(d.pgsize)"
            " FROM dbstat AS d LEFT JOIN sqlite_master AS m ON m.name = d.name"
            " WHERE d.aggregate = TRUE GROUP BY 1"
        )
    except StorageError as exc:
        if "no such table: dbstat" in exc.problem:
            return None
        raise
    return {str(name): int(size) for name, size in rows}
