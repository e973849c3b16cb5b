"""What the search writes each generation: checkpoints, seen seeds, best weights.

The ``seen`` table holds a record's history for its current epoch only: the generation
that ends the record's epoch (``GenerationWrite.ends_epoch``) deletes it in the same
transaction, so what stays is bounded by the records in flight, and a resume still finds
every hash the interrupted epoch remembered. ``reclaim_space`` hands the freed pages back
to the file system (the database is created with ``auto_vacuum = INCREMENTAL``).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from hasherd.errors import InputError
from hasherd.storage.catalog import EVENT_INSERT, event_params
from hasherd.storage.core import StoreCore, where
from hasherd.storage.errors import from_sqlite
from hasherd.storage.rows import Checkpoint, Event, Kernel, WeightRow

_U64 = 1 << 64
_RECLAIM_PAGES = 256  # pages freed per transaction: 1 MiB at 4 KiB pages
_I64_MIN = -(1 << 63)

_CHECKPOINT_COLS = (
    "epoch, generation, difficulty, population, results, rng_state, best_prefix, updated_at"
)
_CHECKPOINT_UPSERT = f"""
INSERT INTO checkpoints (run_id, record_id, {_CHECKPOINT_COLS})
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (run_id, record_id) DO UPDATE SET
    epoch = excluded.epoch, generation = excluded.generation,
    difficulty = excluded.difficulty, population = excluded.population,
    results = excluded.results, rng_state = excluded.rng_state,
    best_prefix = excluded.best_prefix, updated_at = excluded.updated_at
"""

_KERNEL_COLS = "passes, zero_bits, token_bits, memory_id"
_WEIGHT_VALUES = (
    "record_id, run_id, token_id, context_key, slots, seed, output, golden_nonce, prefix_bits,"
    " difficulty_bits, fitness, generation, epoch, memory_id, layer, validation, created_at,"
    " passes, zero_bits, token_bits"
)
# WeightRow's order
_WEIGHT_COLS = _WEIGHT_VALUES.replace("created_at", "id, created_at")
_WEIGHT_REPLACED = ", ".join(
    f"{col} = excluded.{col}"
    for col in _WEIGHT_VALUES.split(", ")
    if col not in ("record_id", *_KERNEL_COLS.split(", "))
)
# A record keeps one weight per kernel (its identity: record and kernel settings), and
# only a better seed for the same kernel replaces it: more prefix bits, then a higher
# fitness. Seeds for different kernels never replace each other.
_WEIGHT_UPSERT = f"""
INSERT INTO weights ({_WEIGHT_VALUES}) VALUES ({", ".join("?" * 20)})
ON CONFLICT (record_id, {_KERNEL_COLS}) DO UPDATE SET {_WEIGHT_REPLACED}
WHERE excluded.prefix_bits > weights.prefix_bits
   OR (excluded.prefix_bits = weights.prefix_bits AND excluded.fitness > weights.fitness)
"""


def to_signed64(h: int) -> int:
    """A 64-bit hash (given unsigned, or already signed) as SQLite's signed INTEGER."""
    h = int(h)
    if not _I64_MIN <= h < _U64:
        raise InputError("seen_hashes", f"{h} is not a 64-bit value")
    return h - _U64 if h >= 1 << 63 else h


def _weight_params(w: WeightRow, now: float) -> tuple[Any, ...]:
    return (
        *(w.record_id, w.run_id, w.token_id, w.context_key, bytes(w.slots), bytes(w.seed)),
        *(w.output, w.golden_nonce, w.prefix_bits, w.difficulty_bits, float(w.fitness)),
        *(w.generation, w.epoch, w.memory_id, w.layer, w.validation, now),
        *(w.passes, w.zero_bits, w.token_bits),
    )


def _checkpoint_params(run_id: int, record_id: int, c: Checkpoint, now: float) -> tuple[Any, ...]:
    return (
        *(run_id, record_id, c.epoch, c.generation, c.difficulty),
        *(bytes(c.population), bytes(c.results), c.rng_state, c.best_prefix, now),
    )


@dataclass(frozen=True)
class GenerationWrite:
    """One record's generation, as ``save_generations`` commits it. ``ends_epoch``: the
    record's epoch is over (it won, or spent its generations), so its seen history is
    deleted instead of extended: the next epoch starts a history of its own."""

    run_id: int
    record_id: int
    checkpoint: Checkpoint
    seen_hashes: Sequence[int] | np.ndarray
    weight: WeightRow | None
    events: Sequence[Event]
    ends_epoch: bool = False


def _hash_blob(hashes: Sequence[int] | np.ndarray) -> bytes:
    if isinstance(hashes, np.ndarray) and hashes.dtype == np.uint64:
        return hashes.astype("<u8").tobytes()
    return np.array([to_signed64(h) for h in hashes], dtype="<i8").tobytes()


def _prepare(w: GenerationWrite, now: float) -> tuple[Any, Any, list[Any]]:
    if w.weight is not None and (w.weight.record_id, w.weight.run_id) != (w.record_id, w.run_id):
        raise InputError("weight", f"is for record {w.weight.record_id} of run {w.weight.run_id}")
    ck = _checkpoint_params(w.run_id, w.record_id, w.checkpoint, now)
    seen = (w.run_id, w.record_id, w.checkpoint.generation, _hash_blob(w.seen_hashes))
    # Built before the transaction, so a payload that is not JSON fails early.
    events = [event_params(_place(e, w.run_id, w.record_id), now) for e in w.events]
    return ck, seen, events


class TrainingMixin(StoreCore):
    """The per-generation write and the reads a resumed run needs."""

    async def save_generation(
        self,
        run_id: int,
        record_id: int,
        checkpoint: Checkpoint,
        seen_hashes: Sequence[int] | np.ndarray,
        weight: WeightRow | None,
        events: Sequence[Event],
    ) -> bool:
        """Commit one generation in one transaction: all of it is stored, or none.

        Upserts the checkpoint, adds the seen hashes (as the generation's row), stores
        ``weight`` when it beats the stored one, and logs ``events`` (a missing
        run_id/record_id is this generation's). Returns whether ``weight`` was stored.
        """
        write = GenerationWrite(run_id, record_id, checkpoint, seen_hashes, weight, events)
        return (await self.save_generations([write]))[0]

    async def save_generations(self, writes: Sequence[GenerationWrite]) -> list[bool]:
        """Commit several records' generations in one transaction (group commit): each
        generation is stored whole or not at all, and so is the group."""
        now = time.time()
        prepared = [_prepare(w, now) for w in writes]
        weights = [w.weight for w in writes]

        ended = [(w.run_id, w.record_id) for w in writes if w.ends_epoch]
        kept = [p[1] for p, w in zip(prepared, writes, strict=True) if not w.ends_epoch]

        def body(conn: sqlite3.Connection) -> list[bool]:
            conn.executemany(_CHECKPOINT_UPSERT, [p[0] for p in prepared])
            conn.executemany(
                "INSERT OR REPLACE INTO seen (run_id, record_id, generation, hashes)"
                " VALUES (?, ?, ?, ?)",
                kept,
            )
            conn.executemany("DELETE FROM seen WHERE run_id = ? AND record_id = ?", ended)
            stored = _upsert_weights(conn, weights, now)
            conn.executemany(EVENT_INSERT, [row for p in prepared for row in p[2]])
            return stored

        return await self.write(body)

    async def checkpoint(self, run_id: int, record_id: int) -> Checkpoint | None:
        """One record's checkpoint in a run, if it has one."""
        rows = await self._fetchall(
            f"SELECT {_CHECKPOINT_COLS} FROM checkpoints WHERE run_id = ? AND record_id = ?",
            (run_id, record_id),
        )
        return Checkpoint(*rows[0]) if rows else None

    async def checkpoints(self, run_id: int) -> dict[int, Checkpoint]:
        """The run's checkpoints by record id."""
        rows = await self._fetchall(
            f"SELECT record_id, {_CHECKPOINT_COLS} FROM checkpoints WHERE run_id = ?", (run_id,)
        )
        return {int(row[0]): Checkpoint(*row[1:]) for row in rows}

    async def seen(self, run_id: int, record_id: int) -> set[int]:
        """Hashes of the seeds evaluated for the record in the run, as unsigned 64-bit."""
        return set((await self.seen_hashes(run_id, record_id)).tolist())

    async def seen_hashes(self, run_id: int, record_id: int, *, after: int = -1) -> np.ndarray:
        """``seen`` as one uint64 array (in generation order; no Python ints made), of
        the generations numbered above ``after`` (a resume passes its epoch's start)."""
        rows = await self._fetchall(
            "SELECT hashes FROM seen WHERE run_id = ? AND record_id = ? AND generation > ?"
            " ORDER BY generation",
            (run_id, record_id, after),
        )
        if not rows:
            return np.zeros(0, dtype=np.uint64)
        return np.frombuffer(b"".join(row[0] for row in rows), dtype="<u8").astype(np.uint64)

    async def reclaim_space(self) -> None:
        """Give the database's free pages back to the file system (``PRAGMA
        incremental_vacuum``): the pages of the seen histories deleted since, moved to the
        end of the file and cut off (in WAL mode at the next checkpoint). Deleted rows'
        pages are reused by later inserts anyway; this returns what the run no longer
        needs, after an epoch. It runs in transactions of ``_RECLAIM_PAGES`` pages, each
        taking the store in turn: one transaction over every page would grow the -wal file
        by the whole move, and hold up the other writers as long. A checkpoint then copies
        the WAL back and truncates it (the file keeps its largest size otherwise). Free
        pages stay on a database without auto_vacuum."""
        free = await self._free_pages()
        while free:
            await self._vacuum_some(_RECLAIM_PAGES)
            left = await self._free_pages()
            if left >= free:
                break  # not INCREMENTAL: incremental_vacuum frees nothing
            free = left
        # Busy (a reader in the WAL) is not an error: the next checkpoint catches up.
        await self._fetchall("PRAGMA wal_checkpoint(TRUNCATE)")

    async def _free_pages(self) -> int:
        return int((await self._fetchall("PRAGMA freelist_count"))[0][0])

    async def _vacuum_some(self, pages: int) -> None:
        async with self._lock:
            conn = self._live()
            try:
                # executescript steps the pragma to its end (execute frees one page).
                await conn.executescript(f"PRAGMA incremental_vacuum({pages});")
            except sqlite3.Error as exc:
                raise from_sqlite(self.path, exc, "reclaiming free pages: ") from exc

    async def weights(
        self,
        dataset_id: int | None = None,
        layer: int | None = None,
        *,
        run_id: int | None = None,
        kernel: Kernel | None = None,
    ) -> list[WeightRow]:
        """The best seed per record and kernel, in record order (then kernel), optionally
        of a dataset, a layer, the run that found it and/or one kernel."""
        k = kernel
        clause, params = where(
            r__dataset_id=dataset_id,
            w__layer=layer,
            w__run_id=run_id,
            w__passes=None if k is None else k.passes,
            w__zero_bits=None if k is None else k.zero_bits,
            w__token_bits=None if k is None else k.token_bits,
            w__memory_id=None if k is None else k.memory_id,
        )
        cols = ", ".join(f"w.{c}" for c in _WEIGHT_COLS.split(", "))
        sql = (
            f"SELECT {cols} FROM weights w JOIN records r ON r.id = w.record_id{clause}"
            f" ORDER BY r.dataset_id, r.idx, w.zero_bits, w.passes, w.token_bits, w.memory_id"
        )
        return [WeightRow(*row) for row in await self._fetchall(sql, params)]

    async def kernels(
        self, dataset_id: int | None = None, layer: int | None = None, run_id: int | None = None
    ) -> dict[Kernel, int]:
        """The kernels of the stored weights (filtered as ``weights``), each with its
        number of weights, in ``weights``' order of first appearance."""
        counts: dict[Kernel, int] = {}
        for w in await self.weights(dataset_id, layer, run_id=run_id):
            counts[w.kernel] = counts.get(w.kernel, 0) + 1
        return counts

    async def best_prefix_by_record(
        self, dataset_id: int, kernel: Kernel | None = None
    ) -> dict[int, int]:
        """prefix_bits of the stored weight of each record of the dataset that has one
        for ``kernel`` (None: the most of any kernel)."""
        best: dict[int, int] = {}
        for w in await self.weights(dataset_id, kernel=kernel):
            best[w.record_id] = max(w.prefix_bits, best.get(w.record_id, -1))
        return best


def _place(event: Event, run_id: int, record_id: int) -> Event:
    return replace(
        event,
        run_id=run_id if event.run_id is None else event.run_id,
        record_id=record_id if event.record_id is None else event.record_id,
    )


def _upsert_weights(
    conn: sqlite3.Connection, weights: Sequence[WeightRow | None], now: float
) -> list[bool]:
    """Upsert every given weight in one statement (only-if-better), then read back which
    ones are stored now: a replaced or inserted row carries this transaction's ``now``."""
    given = [w for w in weights if w is not None]
    if not given:
        return [False] * len(weights)
    conn.executemany(_WEIGHT_UPSERT, [_weight_params(w, now) for w in given])
    marks = ", ".join("?" * len(given))
    rows = conn.execute(
        f"SELECT record_id, seed FROM weights WHERE created_at = ? AND record_id IN ({marks})",
        (now, *(w.record_id for w in given)),
    ).fetchall()
    fresh = {(int(r[0]), bytes(r[1])) for r in rows}
    return [w is not None and (w.record_id, bytes(w.seed)) in fresh for w in weights]
