"""The trainer with one evaluator, in process: compiled steps never run on the event loop,
a record's seen history lasts as long as its epoch, and a run stopped anywhere resumes to
exactly the weights of the uninterrupted run."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest

from hasherd.config import Config
from hasherd.data import Dataset, load_dataset
from hasherd.kernel.evaluators.base import Evaluator
from hasherd.scheduler.dispatch import EvaluatorDispatch
from hasherd.scheduler.trainer import RunSummary, Trainer, warm_up_search
from hasherd.storage import Store
from hasherd.training import steps
from tests.helpers import db_rows, write_frames

COMPILED = ("fresh_population", "table_insert", "table_rehash", "step", "seed_hashes")


def _dataset(path: Path, n: int = 12) -> Dataset:
    return load_dataset(write_frames(path, n, 17))


def _config() -> Config:
    """Few generations per epoch: some records win, others spend them all (both ends of
    a record's epoch are exercised)."""
    return Config().with_training(
        epochs=3,
        difficulty_bits=9,
        population_size=32,
        max_generations=8,
        seed=21,
        validation_split=0.0,
    )


def _train(db: Path, ds: Dataset, ev: Evaluator, stop_after: int | None = None) -> RunSummary:
    """One ``hasherd train`` process, in process; stopped after ``stop_after`` steps."""

    async def main() -> RunSummary:
        async with Store.connect(db) as store:
            with EvaluatorDispatch(ev, 60.0) as dispatch:
                trainer = Trainer(store, ds, _config(), dispatch, batch=8)
                steps_done = 0

                def on_step(_: float) -> None:
                    nonlocal steps_done
                    steps_done += 1
                    if stop_after is not None and steps_done >= stop_after:
                        trainer.stop.set()

                trainer.on_step = on_step
                return await trainer.run()

    return anyio.run(main)


def _weights(db: Path) -> list[tuple[Any, ...]]:
    return db_rows(
        db,
        "SELECT record_id, seed, output, golden_nonce, prefix_bits, fitness, generation, epoch"
        " FROM weights ORDER BY record_id",
    )


def _check_history(db: Path) -> None:
    """What the seen table holds: only records in the middle of their epoch, only that
    epoch's generations, and no hash twice."""
    limit = _config().training.max_generations
    rows = db_rows(
        db,
        "SELECT s.record_id, s.generation, s.hashes, c.epoch, c.generation, c.best_prefix,"
        " c.difficulty, c.rng_state, r.epoch FROM seen s"
        " JOIN checkpoints c ON c.run_id = s.run_id AND c.record_id = s.record_id"
        " JOIN runs r ON r.id = s.run_id",
    )
    assert len(rows) == db_rows(db, "SELECT count(*) FROM seen")[0][0]
    by_record: dict[int, list[np.ndarray]] = {}
    for record, gen, blob, ck_epoch, ck_gen, best, d, state, run_epoch in rows:
        start = json.loads(state)["epoch_start"]
        assert ck_epoch == run_epoch and best < d and ck_gen - start < limit
        assert start < gen <= ck_gen
        by_record.setdefault(record, []).append(np.frombuffer(blob, dtype="<u8"))
    for blobs in by_record.values():
        hashes = np.concatenate(blobs)
        assert len(np.unique(hashes)) == len(hashes)


def _recording(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[bool]]:
    """Each compiled step of the search wrapped: for each call, whether it ran on the
    main thread (the event loop's, under ``anyio.run``)."""
    calls: dict[str, list[bool]] = {name: [] for name in COMPILED}

    def wrap(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def recorded(*args: Any) -> Any:
            calls[name].append(threading.current_thread() is threading.main_thread())
            return fn(*args)

        return recorded

    for name in COMPILED:
        monkeypatch.setattr(steps, name, wrap(name, getattr(steps, name)))
    return calls


def test_compiled_steps_never_run_on_the_event_loop(
    tmp_path: Path, numba_eval: Evaluator, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = _dataset(tmp_path / "frames.json")
    calls = _recording(monkeypatch)
    _train(tmp_path / "a.db", ds, numba_eval, stop_after=20)
    _train(tmp_path / "a.db", ds, numba_eval)  # resumed: searches restored from the store
    assert calls["fresh_population"] and calls["step"] and calls["seed_hashes"]
    assert not any(on_loop for made in calls.values() for on_loop in made)


def test_the_warm_up_compiles_every_step_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = _recording(monkeypatch)
    anyio.run(warm_up_search)
    assert all(calls[name] for name in COMPILED), calls
    assert not any(on_loop for made in calls.values() for on_loop in made)


def test_a_run_stopped_anywhere_resumes_to_the_uninterrupted_weights(
    tmp_path: Path, numba_eval: Evaluator
) -> None:
    ds = _dataset(tmp_path / "frames.json")
    clean = _train(tmp_path / "clean.db", ds, numba_eval)
    assert clean.status == "finished" and 0 < clean.winners < clean.records
    assert db_rows(tmp_path / "clean.db", "SELECT count(*) FROM seen") == [(0,)]
    db, rng, stops = tmp_path / "stopped.db", random.Random(4), 0
    while True:
        summary = _train(db, ds, numba_eval, stop_after=rng.randint(1, 12))
        _check_history(db)
        if summary.status == "finished":
            break
        stops += 1
    assert stops >= 3
    assert _weights(db) == _weights(tmp_path / "clean.db")
    assert db_rows(db, "SELECT count(*) FROM seen") == [(0,)]
    spent = db_rows(
        db, "SELECT count(*) FROM checkpoints WHERE best_prefix < difficulty AND epoch = 3"
    )
    assert spent[0][0] > 0  # some records ended an epoch by spending their generations
