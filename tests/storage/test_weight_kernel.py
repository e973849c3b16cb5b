"""Schema 0007: a weight belongs to its record and its kernel (passes, zero bits, token
bits, memory). Seeds of different kernels never replace each other; a database of
schema 6 moves its weights to the kernel of the run that stored them, losing nothing;
an empty selection says why."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from hasherd.errors import InputError
from hasherd.storage import Checkpoint, StorageError, Store, WeightRow
from hasherd.storage.migrations import migrations
from hasherd.storage.rows import Kernel
from hasherd.storage.selection import (
    KernelSpec,
    NoWeights,
    WeightFilter,
    kernel_choice,
    require,
)

pytestmark = pytest.mark.asyncio

MEM = "ab" * 32
SLOTS = bytes(range(48))


def _config(zero_bits: int | None, passes: int = 21) -> str:
    training: dict[str, int] = {"passes": passes, "token_bits": 8}
    if zero_bits is not None:
        training["zero_bits"] = zero_bits
    return json.dumps({"training": training})


def _database_at_schema_6(path: Path, zero_bits: int | None = 4) -> None:
    """A database as hasherd wrote it before 0007: one weight of a zero_bits run, checked
    once by ``hasherd validate``."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN")
        for migration in migrations()[:6]:
            for statement in migration.statements:
                conn.execute(statement)
        conn.execute("PRAGMA user_version = 6")
        conn.execute(f"INSERT INTO datasets VALUES (1, 'd', 's', '{MEM}', 8, 'dg', 2, 0)")
        conn.executemany(
            "INSERT INTO records (id, dataset_id, idx, token_id, context_key, slots)"
            " VALUES (?, 1, ?, 7, 0, ?)",
            [(1, 0, SLOTS), (2, 1, SLOTS)],
        )
        conn.execute(
            "INSERT INTO runs (id, dataset_id, config_json, config_digest, rng_seed,"
            " versions_json, created_at, updated_at) VALUES (1, 1, ?, 'c', 1, '{}', 0, 0)",
            (_config(zero_bits),),
        )
        conn.execute(
            "INSERT INTO weights (id, record_id, run_id, token_id, context_key, slots, seed,"
            " output, golden_nonce, prefix_bits, difficulty_bits, fitness, generation, epoch,"
            " memory_id, layer, validation, created_at)"
            f" VALUES (5, 1, 1, 7, 0, ?, ?, 99, 3, 12, 12, 0.6, 4, 1, '{MEM}', 0,"
            " 'validated', 1.5)",
            (SLOTS, b"\x01" * 32),
        )
        conn.execute(
            "INSERT INTO validations (weight_id, seed, stored_output, stored_golden_nonce,"
            " evaluator_a, output_a, golden_nonce_a, evaluator_b, output_b, golden_nonce_b,"
            " agree, attempts, created_at)"
            " VALUES (5, ?, 99, 3, 'numba', 99, 3, 'reference', 99, 3, 1, 1, 2.0)",
            (b"\x01" * 32,),
        )
        conn.execute("COMMIT")
    finally:
        conn.close()


def _weight(record: int, run: int, zero_bits: int, prefix: int, seed: int = 1) -> WeightRow:
    return WeightRow(
        *(record, run, 7, 0, SLOTS, bytes([seed]) * 32, 99, 3, prefix, 12, 0.5, 1, 1, MEM),
        passes=21,
        zero_bits=zero_bits,
        token_bits=8,
    )


async def test_schema_6_weights_move_to_the_kernel_of_their_run(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    _database_at_schema_6(db)
    async with await Store.open(db) as store:
        (w,) = await store.weights()
        assert (w.id, w.seed, w.validation, w.prefix_bits) == (5, b"\x01" * 32, "validated", 12)
        assert w.kernel == Kernel(21, 4, 8, MEM)
        checks = await store.validations(5)
        assert len(checks) == 1 and checks[0].agree is True
        # A seed of another kernel for the same record is kept beside it.
        assert await store.save_generation(1, 1, _ck(), [], _weight(1, 1, 0, 20), [])
        assert {k.zero_bits: n for k, n in (await store.kernels()).items()} == {0: 1, 4: 1}
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        with pytest.raises(sqlite3.IntegrityError, match="never deleted"):
            conn.execute("DELETE FROM weights WHERE id = 5")
    conn.close()


async def test_a_run_without_kernel_settings_is_not_guessed(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    _database_at_schema_6(db, zero_bits=None)
    before = db.read_bytes()
    with pytest.raises(StorageError, match=r"0007_weight_kernel\.sql: NOT NULL.*zero_bits"):
        await Store.open(db)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (6,)
        assert conn.execute("SELECT count(*) FROM weights").fetchone() == (1,)
    conn.close()
    assert len(db.read_bytes()) >= len(before) // 2  # the file is still there, whole


def _ck() -> Checkpoint:
    return Checkpoint(1, 1, 12, bytes(32), b"r", "[1]", 0)


async def _two_kernels(store: Store) -> None:
    ds = await store.add_dataset("d", "s", MEM, 8, "dg", [(7, 0, SLOTS), (7, 1, SLOTS)])
    recs = [r.id for r in await store.records(ds)]
    runs = [await store.create_run(ds, _config(zb), f"c{zb}", 1, "{}") for zb in (4, 0)]
    for rec in recs:
        await store.save_generation(runs[0], rec, _ck(), [], _weight(rec, runs[0], 4, 12), [])
    # zero_bits 0 finds more prefix bits; it must not replace the zero_bits 4 winners.
    for rec in recs:
        await store.save_generation(runs[1], rec, _ck(), [], _weight(rec, runs[1], 0, 20, 2), [])
    await store.add_job("one", "/d", {"zero_bits": 4}, priority=10)
    await store.add_job("two", "/d", {"zero_bits": 0}, priority=10)
    for job, run in zip((1, 2), runs, strict=True):
        await store.move_job(job, "running", run_id=run, dataset_id=ds)


async def test_seeds_of_different_kernels_never_replace_each_other(tmp_path: Path) -> None:
    async with Store.connect(tmp_path / "h.db") as store:
        await _two_kernels(store)
        weights = await store.weights()
        assert sorted((w.zero_bits, w.prefix_bits, w.run_id) for w in weights) == [
            (0, 20, 2),
            (0, 20, 2),
            (4, 12, 1),
            (4, 12, 1),
        ]
        # Within one kernel the rule stays: only a better seed replaces.
        better = replace(_weight(1, 1, 4, 13, 3), run_id=1)
        assert await store.save_generation(1, 1, _ck(), [], better, [])
        assert not await store.save_generation(1, 1, _ck(), [], _weight(1, 1, 4, 5, 4), [])
        mine = await store.weights(kernel=Kernel(21, 4, 8, MEM))
        assert [w.prefix_bits for w in mine] == [13, 12]
        assert await store.best_prefix_by_record(1, Kernel(21, 4, 8, MEM)) == {1: 13, 2: 12}


async def test_selection_by_job_and_kernel_and_why_it_is_empty(tmp_path: Path) -> None:
    async with Store.connect(tmp_path / "h.db") as store:
        await _two_kernels(store)
        one = await require(store, WeightFilter(job_id=1))
        assert {w.zero_bits for w in one} == {4} and len(one) == 2
        spec = await kernel_choice(store, None, None, 2)
        assert spec == KernelSpec(21, 0, 8, MEM)
        assert len(await require(store, WeightFilter(kernel=KernelSpec.parse("zb=0")))) == 2
        with pytest.raises(NoWeights, match=r"job 1 \(run 1\) trains kernel zb=4/p=21"):
            await require(store, WeightFilter(job_id=1, kernel=KernelSpec.parse("zb=0")))
        with pytest.raises(
            NoWeights, match=r"no weights for kernel zb=9; stored: zb=0/p=21.*, zb=4/p=21"
        ):
            await require(store, WeightFilter(kernel=KernelSpec.parse("zb=9")))
        # A third run of job 1's kernel finds better seeds: job 1 keeps none, and says who.
        run3 = await store.create_run(1, _config(4), "c4b", 2, "{}")
        for rec in (1, 2):
            await store.save_generation(run3, rec, _ck(), [], _weight(rec, run3, 4, 30, 5), [])
        with pytest.raises(
            NoWeights,
            match=r"job 1 \(run 1\) has no weights for kernel "
            r"zb=4/p=21/tb=8/mem=abab.*found by run 3",
        ):
            await require(store, WeightFilter(job_id=1))
        with pytest.raises(InputError, match="give one of"):
            await kernel_choice(store, "zb=0", 1, None)
        with pytest.raises(InputError, match="'q=1' is not one of"):
            KernelSpec.parse("q=1")
