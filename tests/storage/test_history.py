"""The seen history's bounds in the store, on real database files: a record's history goes
with the generation that ends its epoch, the file gives the freed pages back, an older
database is compacted by migration 0006, and the size report says what fills a file."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosqlite
import numpy as np
import pytest
import pytest_asyncio

from hasherd.storage import Checkpoint, GenerationWrite, StorageError, Store
from hasherd.storage.migrations import migrations
from hasherd.storage.sizes import measure

pytestmark = pytest.mark.asyncio

SLOTS = bytes(range(48))
MAX_GENERATIONS = 500
EPOCH_START = 400  # the old runs' epoch 2 began after this generation


@pytest_asyncio.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with Store.connect(tmp_path / "h.db") as st:
        yield st


async def _records(st: Store, n: int) -> list[int]:
    rows = [(i, i, SLOTS) for i in range(n)]
    ds = await st.add_dataset("tiny", "unit", "mem-1", 17, f"digest-{n}", rows)
    return [r.id for r in await st.records(ds)]


def _ck(generation: int, *, epoch: int = 1, start: int = 0, best: int = 0) -> Checkpoint:
    state = json.dumps({"generation": generation, "search": 2, "epoch_start": start})
    return Checkpoint(epoch, generation, 12, bytes(64), b"", state, best)


def _hashes(generation: int, record: int, n: int = 96) -> np.ndarray:
    base = (record << 32) + generation * n
    return np.arange(base, base + n, dtype=np.uint64)


def _pragma(path: Path, name: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(f"PRAGMA {name}").fetchone()[0])
    finally:
        conn.close()


def _file_size(path: Path) -> int:
    """The database file and its -wal."""
    wal = Path(f"{path}-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


async def test_the_generation_that_ends_an_epoch_drops_the_history(store: Store) -> None:
    recs = await _records(store, 2)
    run = await store.create_run(1, "{}", "c", 1, "{}")
    for g in range(1, 4):
        writes = [GenerationWrite(run, r, _ck(g), _hashes(g, r), None, []) for r in recs]
        await store.save_generations(writes)
    assert len(await store.seen(run, recs[0])) == 3 * 96
    last = [
        GenerationWrite(run, recs[0], _ck(4, best=12), _hashes(4, recs[0]), None, [], True),
        GenerationWrite(run, recs[1], _ck(4), _hashes(4, recs[1]), None, []),
    ]
    await store.save_generations(last)
    assert await store.seen(run, recs[0]) == set()  # its epoch is over: nothing kept
    assert len(await store.seen(run, recs[1])) == 4 * 96
    assert (await store.checkpoints(run))[recs[0]].generation == 4  # the checkpoint stays
    later = await store.seen_hashes(run, recs[1], after=2)
    assert later.tolist() == np.concatenate([_hashes(3, recs[1]), _hashes(4, recs[1])]).tolist()


async def test_a_new_database_gives_freed_pages_back(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    async with Store.connect(path) as st:
        assert _pragma(path, "auto_vacuum") == 2  # INCREMENTAL
        recs = await _records(st, 8)
        run = await st.create_run(1, "{}", "c", 1, "{}")
        for g in range(1, 200):
            await st.save_generations(
                [GenerationWrite(run, r, _ck(g), _hashes(g, r), None, []) for r in recs]
            )
        grown = _file_size(path)
        await st.save_generations(
            [GenerationWrite(run, r, _ck(200), [], None, [], True) for r in recs]
        )
        assert _file_size(path) >= grown  # deleted rows free pages, the file keeps them
        await st.reclaim_space()
        reclaimed = _file_size(path)
        size = await st.size_stats()
    assert grown > 8 * 199 * 96 * 8  # the histories were in the file
    assert reclaimed < grown // 10
    assert size.free_pages == 0 and size.seen_bytes < 16 * 1024
    assert os.path.getsize(path) < grown // 10  # closed: the WAL is folded back


async def test_size_stats_name_every_table_and_the_seen_share(store: Store) -> None:
    recs = await _records(store, 3)
    run = await store.create_run(1, "{}", "c", 1, "{}")
    for g in range(1, 101):
        await store.save_generations(
            [GenerationWrite(run, r, _ck(g), _hashes(g, r), None, []) for r in recs]
        )
    size = await store.size_stats()
    tables = {t.name: t for t in size.tables}
    assert {"seen", "checkpoints", "weights", "records", "jobs"} <= set(tables)
    assert tables["seen"].rows == 3 * 100 and tables["records"].rows == 3
    assert tables["seen"].bytes is not None and tables["seen"].bytes >= 3 * 100 * 96 * 8
    assert size.seen_bytes == tables["seen"].bytes and 0.5 < size.seen_share < 1
    assert size.file_bytes + size.wal_bytes == store.database_bytes()
    assert size.auto_vacuum == "incremental" and size.page_size > 0
    assert size.to_json()["tables"][0].keys() == {"name", "rows", "bytes"}


def _old_database(path: Path, version: int) -> None:
    """A database at schema ``version``, as an older hasherd made it (no auto_vacuum)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("BEGIN")
        for migration in migrations()[:version]:
            for statement in migration.statements:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {version}")
        conn.execute("COMMIT")
    finally:
        conn.close()


def _fill_old(path: Path) -> None:
    """Runs and histories as the old rule kept them (every generation, every epoch):
    record 1 won at its checkpoint's epoch, 2 spent its generations, 3 is in the middle
    of epoch 2 (which began after generation ``EPOCH_START``), 4 belongs to a failed
    run."""
    config = json.dumps({"training": {"max_generations": MAX_GENERATIONS}})
    checkpoints = {  # record: (run, generation, best_prefix)
        1: (1, EPOCH_START + 5, 13),
        2: (1, EPOCH_START + MAX_GENERATIONS, 11),
        3: (1, EPOCH_START + 20, 11),
        4: (2, EPOCH_START + 20, 11),
    }
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN")
        conn.execute("INSERT INTO datasets VALUES (1, 'd', 's', 'm', 17, 'digest', 4, 0)")
        conn.executemany(
            "INSERT INTO records (id, dataset_id, idx, token_id, context_key, slots)"
            " VALUES (?, 1, ?, ?, ?, ?)",
            [(i, i, i, i, SLOTS) for i in checkpoints],
        )
        for run, status in ((1, "stopped"), (2, "failed")):
            conn.execute(
                "INSERT INTO runs (id, dataset_id, status, config_json, config_digest, rng_seed,"
                " versions_json, created_at, updated_at, epoch, difficulty)"
                " VALUES (?, 1, ?, ?, 'c', 1, '{}', 0, 0, 2, 13)",
                (run, status, config),
            )
        for rec, (run, gen, best) in checkpoints.items():
            state = json.dumps({"generation": gen, "search": 2, "epoch_start": EPOCH_START})
            conn.execute(
                "INSERT INTO checkpoints VALUES (?, ?, 2, ?, 13, ?, x'', ?, ?, 0)",
                (run, rec, gen, bytes(64), state, best),
            )
            conn.executemany(
                "INSERT INTO seen (run_id, record_id, generation, hashes) VALUES (?, ?, ?, ?)",
                [(run, rec, g, _hashes(g, rec, 200).tobytes()) for g in range(1, gen + 1)],
            )
        conn.execute("COMMIT")
    finally:
        conn.close()


async def test_migration_keeps_only_the_history_a_resume_reads(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _old_database(path, 5)
    _fill_old(path)
    assert _pragma(path, "auto_vacuum") == 0
    before = _file_size(path)
    async with Store.connect(path, create=False) as st:
        kept = await st.seen_hashes(1, 3)
        gone = [len(await st.seen_hashes(run, rec)) for run, rec in ((1, 1), (1, 2), (2, 4))]
        size = await st.size_stats()
    # Record 3 keeps the generations of its unfinished epoch, those after its epoch_start.
    want = [_hashes(g, 3, 200) for g in range(EPOCH_START + 1, EPOCH_START + 21)]
    assert kept.tolist() == np.concatenate(want).tolist()
    assert gone == [0, 0, 0]
    assert size.auto_vacuum == "incremental"
    assert os.path.getsize(path) < before // 10  # the VACUUM after the migration shrank it


async def test_a_vacuum_that_fails_leaves_a_migrated_database(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "old.db"
    _old_database(path, 5)
    _fill_old(path)
    execute = aiosqlite.Connection.execute

    async def no_room(self: aiosqlite.Connection, sql: str, *args: Any) -> aiosqlite.Cursor:
        if sql == "VACUUM":  # as when the disk has no room for the copy
            raise sqlite3.OperationalError("database or disk is full")
        return await execute(self, sql, *args)

    monkeypatch.setattr(aiosqlite.Connection, "execute", no_room)
    async with Store.connect(path, create=False) as st:
        gone = len(await st.seen_hashes(1, 2))
        size = await st.size_stats()
    assert gone == 0 and size.auto_vacuum == "none"  # migrated and compacted, not rewritten
    assert "could not switch to auto_vacuum = INCREMENTAL" in caplog.text
    assert _pragma(path, "user_version") == len(migrations())


async def test_size_stats_without_dbstat_count_the_rows_and_the_payload(store: Store) -> None:
    recs = await _records(store, 2)
    run = await store.create_run(1, "{}", "c", 1, "{}")
    await store.save_generations(
        [GenerationWrite(run, r, _ck(1), _hashes(1, r), None, []) for r in recs]
    )

    async def no_dbstat(sql: str) -> list[sqlite3.Row]:
        if "dbstat" in sql:  # as a SQLite built without SQLITE_ENABLE_DBSTAT_VTAB answers
            raise StorageError(store.path, "no such table: dbstat")
        return await store._fetchall(sql)

    size = await measure(store.path, no_dbstat)
    tables = {t.name: t for t in size.tables}
    assert tables["seen"].rows == 2 and all(t.bytes is None for t in size.tables)
    assert size.seen_bytes == 2 * 96 * 8  # the hashes' payload
