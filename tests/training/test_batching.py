"""The trainer's batched paths give exactly what the one-at-a-time ones give: generations
committed together (once an interval) against one commit per generation, the two-pass
breeding against drawing and checking each child in turn, and the elite picked by
selection against a stable sort of the whole group."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
from numba import njit

from hasherd.config import Config
from hasherd.data import Dataset, load_dataset
from hasherd.kernel.evaluators.base import EvalResult, Evaluator
from hasherd.scheduler import trainer as trainer_mod
from hasherd.scheduler.dispatch import EvaluatorDispatch
from hasherd.scheduler.phases import PhaseClock
from hasherd.scheduler.trainer import RunSummary, Trainer
from hasherd.storage import Store
from hasherd.training import steps
from hasherd.training.search import RecordSearch, SearchParams, record_key
from tests.helpers import db_rows, write_frames


def _config() -> Config:
    return Config().with_training(
        epochs=2,
        difficulty_bits=9,
        population_size=32,
        max_generations=6,
        seed=5,
        validation_split=0.0,
    )


def _train(
    db: Path, ds: Dataset, ev: Evaluator, clock: PhaseClock, stop_after: int | None = None
) -> tuple[RunSummary, int]:
    """One run in process; returns its summary and the number of commits it made."""
    commits = 0

    async def main() -> RunSummary:
        nonlocal commits
        async with Store.connect(db) as store:
            save = store.save_generations

            async def counted(writes: Any) -> Any:
                nonlocal commits
                commits += 1
                return await save(writes)

            store.save_generations = counted  # type: ignore[method-assign]
            with EvaluatorDispatch(ev, 60.0, clock) as dispatch:
                trainer = Trainer(store, ds, _config(), dispatch, batch=8, clock=clock)
                steps_done = 0

                def on_step(_: float) -> None:
                    nonlocal steps_done
                    steps_done += 1
                    if stop_after is not None and steps_done >= stop_after:
                        trainer.stop.set()

                trainer.on_step = on_step
                return await trainer.run()

    return anyio.run(main), commits


def _state(db: Path) -> list[list[tuple[Any, ...]]]:
    return [
        db_rows(
            db,
            "SELECT record_id, seed, output, golden_nonce, prefix_bits, fitness, generation,"
            " epoch FROM weights ORDER BY record_id",
        ),
        db_rows(
            db,
            "SELECT record_id, epoch, generation, difficulty, population, results, rng_state,"
            " best_prefix FROM checkpoints ORDER BY record_id",
        ),
        db_rows(db, "SELECT count(*) FROM seen"),
        db_rows(db, "SELECT kind, record_id FROM events WHERE kind = 'winner' ORDER BY id"),
    ]


def test_generations_committed_together_store_what_one_commit_each_stores(
    tmp_path: Path, numba_eval: Evaluator, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = load_dataset(write_frames(tmp_path / "frames.json", 12, 17))
    monkeypatch.setattr(trainer_mod, "COMMIT_SECONDS", 0.0)  # every generation
    each, each_commits = _train(tmp_path / "each.db", ds, numba_eval, PhaseClock())
    monkeypatch.setattr(trainer_mod, "COMMIT_SECONDS", 1e9)  # records ending, and the stop
    clock = PhaseClock()
    batched, batched_commits = _train(tmp_path / "batched.db", ds, numba_eval, clock)
    assert each.status == batched.status == "finished"
    assert (each.candidates, each.winners) == (batched.candidates, batched.winners)
    assert _state(tmp_path / "each.db") == _state(tmp_path / "batched.db")
    assert batched_commits < each_commits
    for phase in ("begin", "requests", "kernel", "step", "absorb", "commit"):
        assert clock.calls[phase] > 0 and clock.seconds[phase] >= 0.0, phase
    # Stopped with generations not yet committed: they are committed at the stop, and the
    # resumed run ends with the weights of the uninterrupted one.
    db = tmp_path / "stopped.db"
    stopped, _ = _train(db, ds, numba_eval, PhaseClock(), stop_after=3)
    assert stopped.status == "stopped"
    assert db_rows(db, "SELECT count(*) FROM checkpoints")[0][0] > 0
    resumed, _ = _train(db, ds, numba_eval, PhaseClock())
    assert resumed.status == "finished" and resumed.resumed
    assert _state(db)[0] == _state(tmp_path / "each.db")[0]


@njit(cache=True, nogil=True)
def _draw(
    seeds: np.ndarray,
    elite: np.ndarray,
    adv: np.ndarray,
    st: np.ndarray,
    n_fresh: int,
    drawn: np.ndarray,
    j: int,
    next_seeds: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """The plain draw the step's two passes must equal: member ``j`` of the next
    population before its duplicate check, a mutant of an elite parent (a parent by
    ``_below``, then its flips one ``_flip_bit`` at a time, a bit drawn twice flipping
    once), or a fresh seed for the last ``n_fresh``."""
    n, n_elite = seeds.shape[0], elite.shape[0]
    if j >= n - n_fresh:
        steps._random_row(next_seeds, j, st)
        return
    parent = elite[steps._below(st, n_elite)]
    flips = int(min(max(steps.MAX_FLIPS / (abs(adv[parent]) + 1.0), 1.0), float(steps.MAX_FLIPS)))
    for q in range(4):
        next_seeds[j, q] = seeds[parent, q]
    for f in range(flips):
        b = steps._flip_bit(st)
        again = False
        for q in range(f):
            again |= drawn[q] == b
        drawn[f] = b
        if not again:
            next_seeds[j, b >> 6] ^= steps._bit_mask(b)


def _breed_one_by_one(
    seeds: np.ndarray,
    elite: np.ndarray,
    adv: np.ndarray,
    table: np.ndarray,
    st: np.ndarray,
    n_fresh: int,
    out: np.ndarray,
) -> None:
    """Each member drawn, then made unique against the table and added, in turn."""
    drawn = np.empty(steps.MAX_FLIPS, dtype=np.int64)
    for j in range(len(elite), seeds.shape[0]):
        _draw(seeds, elite, adv, st, n_fresh, drawn, j, out)
        steps._unique_seen(out, j, table, st)


@pytest.mark.parametrize("spread", [0.0, 0.05, 3.0])
def test_two_pass_breeding_draws_what_one_by_one_draws(spread: float) -> None:
    """Many duplicates (one parent far ahead, one flip per child, a table full of its
    neighbours) as well as none: the same children, the same table, the same stream."""
    rng = np.random.default_rng(int(spread * 100))
    n, n_elite, n_fresh = 128, 4, 8
    seeds = rng.integers(0, 2**63, (n, 4)).astype(np.uint64)
    reward = rng.random(n) * spread
    reward[7] = 10.0  # one member far ahead: its children get a single flip
    elite = steps.top_members(reward, n_elite)
    adv = steps.advantages(reward)
    table = np.zeros(4096, dtype=np.uint64)
    near = np.repeat(seeds[7:8], 300, axis=0)
    bits = rng.integers(224, 256, 300)  # one-flip neighbours of the leader, in the nonce
    near[np.arange(300), bits >> 6] ^= np.uint64(1) << (bits & 63).astype(np.uint64)
    steps.table_insert(table, steps.seed_hashes(near[: int(spread * 50)]))
    for generation in range(3):
        a_table, b_table = table.copy(), table.copy()
        a_st, b_st = steps.stream(np.uint64(9), generation), steps.stream(np.uint64(9), generation)
        a_out, b_out = np.zeros_like(seeds), np.zeros_like(seeds)
        steps._breed(seeds, elite, adv, a_table, a_st, n_fresh, a_out)
        _breed_one_by_one(seeds, elite, adv, b_table, b_st, n_fresh, b_out)
        np.testing.assert_array_equal(a_out, b_out)
        np.testing.assert_array_equal(a_table, b_table)
        assert a_st[0] == b_st[0]
        table = a_table


def test_a_table_sized_up_front_draws_what_a_growing_one_draws() -> None:
    """``expect`` only sizes the seen table: the same seeds, generation after generation,
    and the same history."""
    params = SearchParams(population=64)
    slots = np.arange(12, dtype=np.uint32)
    a = RecordSearch(slots, 5, params, record_key(3, 4))
    b = RecordSearch(slots, 5, params, record_key(3, 4), expect=20_000)
    assert len(b.table) > len(a.table)
    rng = np.random.default_rng(5)
    tokens = np.arange(0, 1 << 17, 97, dtype=np.uint32)
    for _ in range(12):
        np.testing.assert_array_equal(a.pending(), b.pending())
        n = len(a.pending())
        out = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
        res = EvalResult(out, out, out, np.zeros((n, 32), np.uint8), out ^ np.uint32(3))
        ga, gb = a.absorb(res, 32, tokens), b.absorb(res, 32, tokens)
        assert ga.best == gb.best
        np.testing.assert_array_equal(ga.new_hashes, gb.new_hashes)
    assert a.seen == b.seen


def test_elite_selection_is_the_stable_sort_of_the_group() -> None:
    rng = np.random.default_rng(12)
    for trial in range(300):
        n = int(rng.integers(2, 700))
        k = int(rng.integers(1, n))
        reward = rng.integers(0, 6, n) / 4.0 if trial % 2 else rng.random(n)
        want = np.argsort(-reward, kind="mergesort")[:k]
        np.testing.assert_array_equal(steps.top_members(reward, k), want)


def test_the_seen_set_leaves_out_the_children_bred_for_next() -> None:
    """Children are added to the table as they are bred; ``seen`` still answers with the
    seeds evaluated only."""
    params = SearchParams(population=16)
    search = RecordSearch(np.arange(12, dtype=np.uint32), 5, params, record_key(1, 1))
    evaluated: set[int] = set()
    for _ in range(4):
        batch = search.pending()
        evaluated |= set(steps.seed_hashes(batch.view("<u8")).tolist())
        zeros = np.zeros(len(batch), dtype=np.uint32)
        res = EvalResult(zeros, zeros, zeros, np.zeros((len(batch), 32), np.uint8), zeros)
        search.absorb(res, 32, np.zeros(0, dtype=np.uint32))
        assert search.seen == evaluated
