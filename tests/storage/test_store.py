"""The SQLite store against real database files: schema, reads and writes, atomicity."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
import pytest_asyncio

from hasherd.errors import InputError
from hasherd.storage import (
    Checkpoint,
    Event,
    GenerationWrite,
    StorageError,
    Store,
    WeightRow,
    newest_version,
)
from hasherd.storage.opening import WAL_SIZE_LIMIT

pytestmark = pytest.mark.asyncio

SLOTS = bytes(range(48))
ROWS = [(7, 1001, SLOTS), (8, -5, bytes(48)), (9, 2**62, b"\xff" * 48)]


@pytest_asyncio.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with Store.connect(tmp_path / "h.db") as st:
        yield st


async def _dataset(st: Store, digest: str = "d1") -> tuple[int, list[int]]:
    ds = await st.add_dataset("tiny", "unit", "mem-1", 8, digest, ROWS)
    return ds, [r.id for r in await st.records(ds)]


async def _run(st: Store, ds: int, digest: str = "c1") -> int:
    return await st.create_run(ds, '{"a": 1}', digest, 42, '{"hasherd": "0.1.0"}')


def _ck(generation: int, best: int = 0) -> Checkpoint:
    return Checkpoint(1, generation, 12, bytes(64), b"res%d" % generation, "[1, 2]", best)


def _w(record: int, run: int, prefix: int, fitness: float, seed: int = 1) -> WeightRow:
    return WeightRow(
        *(record, run, 7, 1001, SLOTS, bytes([seed]) * 32, 0xDEADBEEF, 77, prefix, 12),
        *(fitness, 3, 1, "mem-1"),
    )


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _pragma(path: Path, name: str) -> object:
    with sqlite3.connect(path) as conn:
        value = conn.execute(f"PRAGMA {name}").fetchone()[0]
    conn.close()
    return value


async def test_migrates_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    async with Store.connect(path) as st:
        mode = await st._fetchall("PRAGMA journal_mode")
        fks = await st._fetchall("PRAGMA foreign_keys")
        sync = await st._fetchall("PRAGMA synchronous")
        assert (mode[0][0], fks[0][0], sync[0][0]) == ("wal", 1, 1)  # 1 = NORMAL
        limit = await st._fetchall("PRAGMA journal_size_limit")
        assert limit[0][0] == WAL_SIZE_LIMIT > 0
        assert await st.datasets() == []
    assert _pragma(path, "user_version") == newest_version() >= 1
    tables = {"datasets", "records", "runs", "checkpoints", "seen", "weights", "events"}
    with sqlite3.connect(path) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    conn.close()
    assert tables <= names


async def test_missing_file_without_create(tmp_path: Path) -> None:
    path = tmp_path / "absent.db"
    with pytest.raises(StorageError, match="no such database file") as info:
        await Store.open(path, create=False)
    assert info.value.path == str(path)
    assert not path.exists()


async def test_reopen_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    async with Store.connect(path) as st:
        ds, recs = await _dataset(st)
        run = await _run(st, ds)
        await st.set_run_progress(run, 2, 14)
        ev = Event("winner", {"prefix_bits": 9})
        await st.save_generation(run, recs[0], _ck(5, 9), [1, 2, 3], _w(recs[0], run, 9, 0.5), [ev])
        before = (await st.datasets(), await st.records(ds), await st.runs(), await st.weights())
    async with Store.connect(path, create=False) as st:
        after = (await st.datasets(), await st.records(ds), await st.runs(), await st.weights())
        assert after == before
        ck = (await st.checkpoints(run))[recs[0]]
        assert (ck.generation, ck.results, ck.population) == (5, b"res5", bytes(64))
        assert await st.seen(run, recs[0]) == {1, 2, 3}
        [event] = await st.events(run_id=run)
        assert (event.kind, event.payload, event.record_id) == (
            "winner",
            {"prefix_bits": 9},
            recs[0],
        )
        assert (await st.run(run)).epoch == 2
        assert [r.slots for r in await st.records(ds)] == [r[2] for r in ROWS]


async def test_newer_schema_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    async with Store.connect(path) as st:
        await _dataset(st)
    newer = newest_version() + 5
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {newer}")
    conn.close()
    digest = _sha(path)
    with pytest.raises(StorageError, match=rf"newer hasherd \(schema {newer} > "):
        await Store.open(path)
    assert _sha(path) == digest


async def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"not a database, just some notes\n" * 200)
    digest = _sha(path)
    with pytest.raises(StorageError, match="not a SQLite database"):
        await Store.open(path)
    assert _sha(path) == digest


async def test_a_corrupt_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    async with Store.connect(path) as st:
        ds, recs = await _dataset(st)
        run = await _run(st, ds)
        hashes = list(range(20_000))
        await st.save_generation(run, recs[0], _ck(1), hashes, None, [])
    size = path.stat().st_size
    page = 4096
    start = (size // 2) // page * page
    with path.open("r+b") as f:
        f.seek(start)
        f.write(bytes((i * 131 + 7) % 256 for i in range(2 * page)))
    digest = _sha(path)
    with pytest.raises(StorageError, match="integrity_check") as info:
        await Store.open(path)
    assert info.value.path == str(path)
    assert _sha(path) == digest


async def test_weight_upsert_keeps_only_the_better_seed(store: Store) -> None:
    ds, recs = await _dataset(store)
    run = await _run(store, ds)
    rec = recs[1]

    async def offer(prefix: int, fitness: float, seed: int) -> bool:
        w = _w(rec, run, prefix, fitness, seed)
        return await store.save_generation(run, rec, _ck(1), [], w, [])

    assert await offer(5, 0.5, 1)
    first = (await store.weights())[0]
    assert not await offer(4, 0.9, 2)  # fewer prefix bits lose
    assert not await offer(5, 0.4, 3)  # same bits, lower fitness loses
    assert not await offer(5, 0.5, 4)  # a tie keeps the stored seed
    assert await offer(5, 0.6, 5)
    assert await offer(7, 0.1, 6)
    [best] = await store.weights(dataset_id=ds)
    assert (best.id, best.seed, best.prefix_bits, best.fitness) == (
        first.id,
        bytes([6]) * 32,
        7,
        0.1,
    )
    assert best.validation == "unvalidated"
    assert await store.best_prefix_by_record(ds) == {rec: 7}
    assert await store.weights(layer=1) == []
    assert len(await store.weights(dataset_id=ds, layer=0)) == 1


async def test_save_generation_is_all_or_nothing(store: Store) -> None:
    ds, recs = await _dataset(store)
    run = await _run(store, ds)
    rec = recs[0]
    await store.save_generation(run, rec, _ck(1), [10, 11], None, [Event("g", {"n": 1})])
    # A 5-byte seed fails the weights CHECK, after the checkpoint and seen writes ran.
    broken = replace(_w(rec, run, 3, 1.0), seed=b"short")
    with pytest.raises(StorageError, match="CHECK constraint"):
        await store.save_generation(run, rec, _ck(2), [12, 13], broken, [Event("g", {"n": 2})])
    assert (await store.checkpoints(run))[rec].generation == 1
    assert await store.seen(run, rec) == {10, 11}
    assert [e.payload for e in await store.events(kind="g")] == [{"n": 1}]
    assert await store.weights() == []
    assert store.stats()["write_failures"] == 1


async def test_add_dataset_is_idempotent(store: Store) -> None:
    ds, recs = await _dataset(store)
    again, recs_again = await _dataset(store)
    assert (again, recs_again) == (ds, recs)
    assert len(await store.datasets()) == 1
    assert (await store.dataset(ds)).record_count == len(ROWS)
    other, _ = await _dataset(store, digest="d2")
    assert other != ds
    with pytest.raises(StorageError, match="3 records, not 1"):
        await store.add_dataset("tiny", "unit", "mem-1", 8, "d1", ROWS[:1])


async def test_bad_rows_are_refused_whole(store: Store) -> None:
    with pytest.raises(StorageError, match="CHECK constraint"):
        await store.add_dataset("x", "unit", "m", 8, "dx", [*ROWS, (1, 2, b"short")])
    assert await store.datasets() == []


async def test_runs(store: Store) -> None:
    ds, _ = await _dataset(store)
    assert await store.resumable_run(ds, "c1") is None
    old, new, done = [await _run(store, ds) for _ in range(3)]
    await store.set_run_status(old, "stopped")
    await store.set_run_status(done, "finished")
    # The newest run that did not fail: a finished one continues (more epochs, or nothing).
    assert (await store.resumable_run(ds, "c1")).id == done  # type: ignore[union-attr]
    await store.set_run_status(done, "failed")
    assert (await store.resumable_run(ds, "c1")).id == new  # type: ignore[union-attr]
    await store.set_run_status(new, "failed")
    assert (await store.resumable_run(ds, "c1")).id == old  # type: ignore[union-attr]
    assert await store.resumable_run(ds, "other") is None
    await store.set_run_progress(old, 3, 15)
    row = await store.run(old)
    assert (row.status, row.epoch, row.difficulty, row.rng_seed) == ("stopped", 3, 15, 42)
    assert row.updated_at >= row.created_at
    assert [r.id for r in await store.runs()] == [old, new, done]
    with pytest.raises(InputError):
        await store.set_run_status(old, "paused")
    with pytest.raises(StorageError, match="no run 99"):
        await store.run(99)
    with pytest.raises(StorageError, match="no run 99"):
        await store.set_run_progress(99, 1, 1)
    with pytest.raises(StorageError, match="FOREIGN KEY"):
        await store.create_run(99, "{}", "c", 1, "{}")


async def test_events(store: Store) -> None:
    ds, recs = await _dataset(store)
    run = await _run(store, ds)
    await store.add_event("start", {"k": [1, 2]})
    await store.add_event("tick", {}, run_id=run, record_id=recs[2])
    await store.add_event("start", {"k": None}, run_id=run)
    assert [e.kind for e in await store.events()] == ["start", "tick", "start"]
    assert [e.payload for e in await store.events(kind="start")] == [{"k": [1, 2]}, {"k": None}]
    assert [e.kind for e in await store.events(run_id=run, kind="start")] == ["start"]
    assert (await store.events(kind="tick"))[0].record_id == recs[2]
    with pytest.raises(InputError, match="payload"):
        await store.add_event("bad", {"x": float("nan")})


async def test_seen_hashes_round_trip_as_unsigned(store: Store) -> None:
    ds, recs = await _dataset(store)
    run = await _run(store, ds)
    hashes = [0, 1, 2**63 - 1, 2**63, 2**64 - 1]
    await store.save_generation(run, recs[0], _ck(1), hashes, None, [])
    await store.save_generation(run, recs[0], _ck(2), hashes, None, [])  # repeats are ignored
    assert await store.seen(run, recs[0]) == set(hashes)
    assert await store.seen(run, recs[1]) == set()
    with pytest.raises(InputError, match="seen_hashes"):
        await store.save_generation(run, recs[0], _ck(3), [2**64], None, [])


async def test_weights_are_never_deleted(store: Store) -> None:
    ds, recs = await _dataset(store)
    run = await _run(store, ds)
    await store.save_generation(run, recs[0], _ck(1), [], _w(recs[0], run, 2, 0.1), [])
    with pytest.raises(StorageError, match="never deleted"):
        async with store.transaction() as conn:
            await conn.execute("DELETE FROM weights")
    assert len(await store.weights()) == 1


async def test_set_validation(store: Store) -> None:
    ds, recs = await _dataset(store)
    run = await _run(store, ds)
    await store.save_generation(run, recs[0], _ck(1), [], _w(recs[0], run, 2, 0.1), [])
    [w] = await store.weights()
    assert w.id is not None
    await store.set_validation(w.id, "non-deterministic")
    assert (await store.weights())[0].validation == "non-deterministic"
    with pytest.raises(InputError):
        await store.set_validation(w.id, "maybe")
    with pytest.raises(StorageError, match="no weight"):
        await store.set_validation(w.id + 1, "validated")


async def test_a_weight_for_another_record_is_refused(store: Store) -> None:
    ds, recs = await _dataset(store)
    run = await _run(store, ds)
    with pytest.raises(InputError, match="weight"):
        await store.save_generation(run, recs[0], _ck(1), [], _w(recs[1], run, 2, 0.1), [])


async def test_concurrent_writers_take_turns(store: Store) -> None:
    ds, recs = await _dataset(store)
    run = await _run(store, ds)

    async def generation(i: int) -> None:
        rec = recs[i % len(recs)]
        await store.save_generation(run, rec, _ck(i), [i], None, [Event("g", {"i": i})])

    await asyncio.gather(*(generation(i) for i in range(60)), store.add_event("x", {}))
    assert len(await store.events(kind="g")) == 60
    assert set().union(*[await store.seen(run, r) for r in recs]) == set(range(60))
    stats = store.stats()
    assert stats["write_transactions"] >= 63
    assert 0 < stats["last_write_seconds"] <= stats["max_write_seconds"]
    assert stats["total_write_seconds"] >= stats["max_write_seconds"]


async def test_a_closed_store_refuses_work(tmp_path: Path) -> None:
    st = await Store.open(tmp_path / "h.db")
    async with st:
        pass
    assert st.closed
    await st.close()  # closing twice is fine
    with pytest.raises(StorageError, match="closed"):
        await st.datasets()


async def test_a_failed_migration_leaves_the_old_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hasherd.storage import migrations as m

    path = tmp_path / "h.db"
    async with Store.connect(path) as st:
        await _dataset(st)
    shipped = m.migrations()
    broken = m.Migration(len(shipped) + 1, "9999_broken.sql", ("CREATE TABLE t (x)", "NONSENSE"))
    monkeypatch.setattr(m, "migrations", lambda: (*shipped, broken))
    with pytest.raises(StorageError, match=r"9999_broken\.sql"):
        await Store.open(path)
    assert _pragma(path, "user_version") == len(shipped)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT name FROM sqlite_master WHERE name = 't'").fetchall() == []
    conn.close()


async def test_group_commit_reports_which_weights_were_stored(store: Store) -> None:
    ds, recs = await _dataset(store)
    run = await _run(store, ds)
    await store.save_generation(run, recs[0], _ck(1), [], _w(recs[0], run, 5, 0.5, 1), [])
    writes = [
        GenerationWrite(run, recs[0], _ck(2), [11], _w(recs[0], run, 4, 0.9, 2), []),  # worse
        GenerationWrite(run, recs[1], _ck(2), [12], _w(recs[1], run, 3, 0.1, 3), []),  # new
        GenerationWrite(run, recs[2], _ck(2), [13], None, [Event("x", {"a": 1})]),
    ]
    assert await store.save_generations(writes) == [False, True, False]
    seeds = {w.record_id: w.seed[0] for w in await store.weights()}
    assert seeds == {recs[0]: 1, recs[1]: 3}
    assert [await store.seen(run, r) for r in recs] == [{11}, {12}, {13}]
    assert [e.record_id for e in await store.events(kind="x")] == [recs[2]]
