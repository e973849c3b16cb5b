"""The cross-hardware validator (``hasherd validate``) on a database from a real training."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import anyio
import numpy as np
import pytest

from hasherd.backends import create
from hasherd.cli import cmd_validate
from hasherd.cli import main as cli
from hasherd.config import Config, ValidationConfig
from hasherd.errors import EvaluatorError, InputError
from hasherd.kernel.evaluators.base import EvalRequest, EvalResult, Evaluator
from hasherd.storage import Store
from hasherd.storage.errors import StorageError
from hasherd.storage.migrations import newest_version
from hasherd.storage.validations import ValidationRow, ValidationsMixin, load_validations
from hasherd.validation import sample as sample_mod
from hasherd.validation.core import StoredInputs, choose, validate
from tests.helpers import db_rows

N_FRAMES = 12


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database written by a real ``hasherd train`` of 12 random frames."""
    folder = tmp_path_factory.mktemp("trained")
    rng = np.random.default_rng(21)
    frames = [
        {
            "feature_vector": rng.integers(0, 2**32, size=12, dtype=np.uint64).tolist(),
            "target_token": int(rng.integers(0, 100_000)),
        }
        for _ in range(N_FRAMES)
    ]
    data, db = folder / "frames.json", folder / "h.db"
    data.write_text(json.dumps(frames))
    cmd = [
        sys.executable,
        "-m",
        "hasherd.cli.main",
        "train",
        "--data",
        str(data),
        "--db",
        str(db),
        "--difficulty-bits",
        "6",
        "--epochs",
        "1",
        "--seed",
        "1",
    ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    return db


@pytest.fixture
def db(trained: Path, tmp_path: Path) -> Path:
    """A copy of the trained database (WAL included) for one test, every weight reset to
    'unvalidated' (the training's own end-of-run sample may have validated one)."""
    path = tmp_path / "copy.db"
    src, dst = sqlite3.connect(trained), sqlite3.connect(path)
    try:
        src.backup(dst)
        dst.execute("UPDATE weights SET validation = 'unvalidated'")
        dst.commit()
    finally:
        src.close()
        dst.close()
    return path


@pytest.fixture
def run_cli(monkeypatch: pytest.MonkeyPatch) -> Callable[..., int]:
    """``hasherd ARGS`` in this process, with the validate command registered."""
    if cmd_validate not in cli.COMMANDS:
        monkeypatch.setattr(cli, "COMMANDS", (*cli.COMMANDS, cmd_validate))
    return lambda *argv: cli.main([str(a) for a in argv])


def _execute(db: Path, sql: str, params: tuple[Any, ...] = ()) -> None:
    con = sqlite3.connect(db)
    try:
        con.execute(sql, params)
        con.commit()
    finally:
        con.close()


def _states(db: Path) -> dict[int, str]:
    return {int(i): s for i, s in db_rows(db, "SELECT id, validation FROM weights")}


def test_numba_against_reference_all_agree(
    db: Path, run_cli: Callable[..., int], capsys: Any
) -> None:
    assert run_cli("validate", "--db", db, "--seed", 5) == 0
    out = capsys.readouterr().out
    assert "numba against reference: 12 of 12 weights checked (sample 1, seed 5)" in out
    assert "agree 12, disagree 0, failed 0" in out
    assert "disagreement rate 0.0000 (tolerance 0.01): within tolerance" in out
    assert set(_states(db).values()) == {"validated"}
    stored = dict(db_rows(db, "SELECT id, output FROM weights"))
    cols = "weight_id, evaluator_a, output_a, evaluator_b, output_b, agree, attempts, error"
    checks = db_rows(db, f"SELECT {cols}, stored_output FROM validations ORDER BY weight_id")
    assert [c[0] for c in checks] == sorted(stored)
    for wid, ev_a, out_a, ev_b, out_b, agree, attempts, error, stored_out in checks:
        assert (ev_a, ev_b, agree, attempts, error) == ("numba", "reference", 1, 1, None)
        assert out_a == out_b == stored_out == stored[wid]
    kinds = db_rows(db, "SELECT payload_json FROM events WHERE kind = 'validation'")
    assert len(kinds) == 1 and json.loads(kinds[0][0])["agree"] == 12


def test_tampered_output_is_non_deterministic(
    db: Path, run_cli: Callable[..., int], capsys: Any
) -> None:
    victim, original = db_rows(db, "SELECT id, output FROM weights ORDER BY id LIMIT 1 OFFSET 4")[0]
    flip = "(output | 1) - (output & 1)"  # output ^ 1 (SQLite has no XOR)
    _execute(db, f"UPDATE weights SET output = {flip} WHERE id = ?", (victim,))
    assert run_cli("validate", "--db", db, "--seed", 1, "--json") == 1
    report = json.loads(capsys.readouterr().out)
    assert (report["agree"], report["disagree"], report["failed"]) == (11, 1, 0)
    assert report["rate"] == pytest.approx(1 / 12) and report["within_tolerance"] is False
    (bad,) = report["disagreements"]
    assert bad["weight_id"] == victim and bad["stored"]["output"] == original ^ 1
    assert bad["a"] == {
        "evaluator": "numba",
        "output": original,
        "golden_nonce": bad["a"]["golden_nonce"],
    }
    assert bad["b"]["output"] == original and bad["b"]["golden_nonce"] == bad["a"]["golden_nonce"]
    row = db_rows(
        db,
        "SELECT stored_output, output_a, output_b, agree FROM validations WHERE weight_id = ?",
        (victim,),
    )
    assert row == [(original ^ 1, original, original, 0)]
    states = _states(db)
    assert states.pop(victim) == "non-deterministic" and set(states.values()) == {"validated"}


def test_tolerance_from_the_config_file(
    db: Path, run_cli: Callable[..., int], tmp_path: Path, capsys: Any
) -> None:
    _execute(
        db,
        "UPDATE weights SET golden_nonce = golden_nonce + 1 WHERE id = "
        "(SELECT min(id) FROM weights)",
    )
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"validation": {"tolerance_threshold": 0.1, "max_concurrency": 3}}))
    assert run_cli("validate", "--db", db, "--config", cfg) == 0
    out = capsys.readouterr().out
    assert "agree 11, disagree 1, failed 0" in out
    assert "disagreement rate 0.0833 (tolerance 0.1): within tolerance" in out
    assert "NON-DETERMINISTIC weight" in out


class Faulty(Evaluator):
    """The real numba evaluator behind a switch: ``plan(seed, attempt)`` may raise, or
    block on ``release`` (a hung chip), before the real evaluation."""

    name = "faulty"

    def __init__(self, plan: Callable[[bytes, int], str | None]) -> None:
        self.inner = create("numba")
        self.plan = plan
        self.calls: dict[bytes, int] = {}
        self.release = threading.Event()

    def warm_up(self) -> float:
        return self.inner.warm_up()

    def _evaluate(self, req: EvalRequest) -> EvalResult:
        seed = req.seeds[0].tobytes()
        self.calls[seed] = self.calls.get(seed, 0) + 1
        action = self.plan(seed, self.calls[seed])
        if action == "raise":
            raise EvaluatorError("faulty", "injected failure")
        if action == "hang":
            self.release.wait(30)
            raise EvaluatorError("faulty", "released after its timeout")
        return self.inner.evaluate_request(req)


def _weights(db: Path) -> list[tuple[int, bytes]]:
    return [
        (int(r[0]), bytes(r[1])) for r in db_rows(db, "SELECT id, seed FROM weights ORDER BY id")
    ]


@pytest.mark.anyio
async def test_failing_evaluator_is_retried_then_recorded(db: Path) -> None:
    ids = _weights(db)
    (dead_id, dead), (flaky_id, flaky) = ids[2], ids[7]
    ev = Faulty(lambda s, n: "raise" if s == dead or (s == flaky and n == 1) else None)
    cfg = ValidationConfig(retry_attempts=2, timeout=20.0, max_concurrency=4)
    async with await Store.open(db, create=False) as store:
        report = await validate(store, ev, create("reference"), config=cfg, seed=3)
        checks = {c.weight_id: c for c in await load_validations(store)}
    assert (report.checked, report.agree, report.disagree, report.failed) == (12, 11, 0, 1)
    assert report.within_tolerance and not report.ok  # a failure is not a pass
    assert ev.calls[dead] == 3 and ev.calls[flaky] == 2
    failed = checks[dead_id]
    assert (failed.agree, failed.attempts, failed.output_a) == (None, 3, None)
    assert failed.error == "faulty: EvaluatorError: evaluator 'faulty': injected failure"
    assert failed.output_b == failed.stored_output  # the other evaluator's output is kept
    assert (checks[flaky_id].agree, checks[flaky_id].attempts) == (True, 2)
    states = _states(db)
    assert states.pop(dead_id) == "unvalidated" and set(states.values()) == {"validated"}


@pytest.mark.anyio
async def test_hung_evaluator_times_out_and_the_retry_runs_on_a_fresh_thread(db: Path) -> None:
    hung_id, hung = _weights(db)[0]
    ev = Faulty(lambda s, n: "hang" if s == hung and n == 1 else None)
    cfg = ValidationConfig(retry_attempts=1, timeout=0.3, max_concurrency=2)
    try:
        async with await Store.open(db, create=False) as store:
            report = await validate(store, ev, create("reference"), config=cfg, seed=3)
    finally:
        ev.release.set()  # the abandoned call ends (with an error nobody waits for)
    assert (report.checked, report.agree, report.failed) == (12, 12, 0)
    assert ev.calls[hung] == 2 and all(n == 1 for s, n in ev.calls.items() if s != hung)
    row = db_rows(db, "SELECT agree, attempts FROM validations WHERE weight_id = ?", (hung_id,))
    assert row == [(1, 2)]


@pytest.mark.anyio
async def test_changed_memory_fails_without_running(db: Path) -> None:
    _execute(
        db,
        "UPDATE weights SET memory_id = 'x' || memory_id WHERE id = (SELECT min(id) FROM weights)",
    )
    async with await Store.open(db, create=False) as store:
        report = await validate(
            store, create("reference"), create("reference"), config=ValidationConfig(), seed=1
        )
    (f,) = report.failures
    assert f.check.attempts == 0 and f.check.output_a is None and f.check.output_b is None
    assert f.check.error is not None and "memory_id" in f.check.error
    assert report.agree == 11


async def _end_of_run_sample(db: Path, cfg: Config) -> tuple[int, int]:
    """The training's end-of-run sample of the database's run, as the trainer calls it."""
    async with await Store.open(db, create=False) as store:
        (run,) = await store.runs()
        inputs = StoredInputs(store)
        await inputs.load([1], {run.id})
        return await sample_mod.check_sample(store, run, inputs.memories[1], cfg)


def _events(db: Path, kind: str) -> list[tuple[dict[str, Any], int]]:
    rows = db_rows(
        db, "SELECT payload_json, record_id FROM events WHERE kind = ? ORDER BY id", (kind,)
    )
    return [(json.loads(p), int(r)) for p, r in rows]


@pytest.mark.anyio
async def test_end_of_run_sample_is_the_stored_output_against_the_reference(db: Path) -> None:
    """Every weight (split 1) re-run on the reference: a tampered one is non-deterministic,
    the others validated; the weights' states only, no row in ``validations``."""
    victim = _weights(db)[5][0]
    _execute(db, "UPDATE weights SET output = (output | 1) - (output & 1) WHERE id = ?", (victim,))
    cfg = Config().with_training(validation_split=1.0)
    assert await _end_of_run_sample(db, cfg) == (11, 1)
    states = _states(db)
    assert states.pop(victim) == "non-deterministic" and set(states.values()) == {"validated"}
    assert db_rows(db, "SELECT count(*) FROM validations") == [(0,)]
    assert _events(db, "validation_failed") == []


@pytest.mark.anyio
async def test_end_of_run_sample_draws_with_the_run_seed(db: Path) -> None:
    """``round(split * n)`` of the run's weights (in the store's order), drawn by
    ``numpy.random.default_rng(run seed).choice``: the same weights every time."""
    cfg = Config().with_training(validation_split=0.3)  # round(3.6) = 4 of the 12
    assert await _end_of_run_sample(db, cfg) == (4, 0)
    ((rng_seed,),) = db_rows(db, "SELECT rng_seed FROM runs")
    order = "SELECT w.id FROM weights w JOIN records r ON r.id = w.record_id ORDER BY r.idx"
    ids = [int(i) for (i,) in db_rows(db, order)]
    drawn = np.random.default_rng(rng_seed).choice(len(ids), size=4, replace=False)
    validated = {i for i, s in _states(db).items() if s == "validated"}
    assert validated == {ids[int(k)] for k in drawn}
    _execute(db, "UPDATE weights SET validation = 'unvalidated'")
    assert await _end_of_run_sample(db, Config().with_training(validation_split=0.0)) == (0, 0)
    assert set(_states(db).values()) == {"unvalidated"}


@pytest.mark.anyio
async def test_end_of_run_sample_failures_keep_the_state_and_leave_an_event(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A weight the reference cannot re-run (it hangs past the timeout on every try, or
    fails) stays unvalidated, and a ``validation_failed`` event says why."""
    ids = _weights(db)
    (hung_id, hung), (dead_id, dead) = ids[1], ids[4]
    ev = Faulty(lambda s, n: "hang" if s == hung else "raise" if s == dead else None)
    monkeypatch.setattr(sample_mod, "ReferenceEvaluator", lambda: ev)
    cfg = dataclasses.replace(
        Config().with_training(validation_split=1.0),
        validation=ValidationConfig(retry_attempts=1, timeout=0.3, max_concurrency=3),
    )
    try:
        assert await _end_of_run_sample(db, cfg) == (10, 0)
    finally:
        ev.release.set()  # the abandoned calls end (with an error nobody waits for)
    assert ev.calls[hung] == 2 and ev.calls[dead] == 2
    states = _states(db)
    assert (states.pop(hung_id), states.pop(dead_id)) == ("unvalidated", "unvalidated")
    assert set(states.values()) == {"validated"}
    failed = {p["weight"]: (p, record) for p, record in _events(db, "validation_failed")}
    assert failed[hung_id][0] == {"weight": hung_id, "reason": "timeout"}
    assert (
        failed[dead_id][0]["reason"] == "error"
        and "injected failure" in failed[dead_id][0]["error"]
    )
    records = dict(db_rows(db, "SELECT id, record_id FROM weights"))
    assert {w: r for w, (_, r) in failed.items()} == {w: records[w] for w in (hung_id, dead_id)}


def _picked(db: Path) -> list[int]:
    return [int(r[0]) for r in db_rows(db, "SELECT weight_id FROM validations ORDER BY weight_id")]


@pytest.mark.anyio
async def test_sample_is_honoured_and_reproducible(db: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    _execute(db, f"VACUUM INTO '{other}'")
    cfg = ValidationConfig()
    picks = []
    for path, seed in ((db, 11), (other, 11)):
        async with await Store.open(path, create=False) as store:
            report = await validate(
                store, create("reference"), create("reference"), config=cfg, sample=0.5, seed=seed
            )
        assert (report.selected, report.checked, report.agree) == (12, 6, 6)
        picks.append(_picked(path))
    assert picks[0] == picks[1] and len(set(picks[0])) == 6
    states = _states(db)
    assert sorted(i for i, s in states.items() if s == "validated") == picks[0]
    items = list(range(20))
    assert choose(items, 0.01, 4) == choose(items, 0.01, 4) and len(choose(items, 0.01, 4)) == 1  # type: ignore[arg-type]
    assert choose(items, 0.3, 4) != choose(items, 0.3, 5)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="sample"):
        choose(items, 0.0, 1)  # type: ignore[arg-type]


def test_bad_input_exits_2(
    db: Path, run_cli: Callable[..., int], tmp_path: Path, capsys: Any
) -> None:
    assert run_cli("validate", "--db", db, "--sample", "1.5") == 2
    assert run_cli("validate", "--db", db, "--evaluator", "nope") == 2
    assert run_cli("validate", "--db", tmp_path / "missing.db") == 2
    assert run_cli("validate", "--db", db, "--job", 99) == 2
    err = capsys.readouterr().err
    assert "sample: 1.5 is outside (0, 1]" in err and "'nope': unknown" in err
    assert "no such file" in err and "no job 99" in err
    assert db_rows(db, "SELECT count(*) FROM validations") == [(0,)]


class _Store(Store, ValidationsMixin):
    pass


@pytest.mark.anyio
async def test_store_mixin_rows_and_summary(db: Path) -> None:
    (wid, seed), (other_id, _) = (_weights(db))[:2]
    out = db_rows(db, "SELECT output, golden_nonce FROM weights WHERE id = ?", (wid,))[0]
    base = ValidationRow(
        wid, seed, out[0], out[1], "numba", out[0], out[1], "reference", out[0], out[1], True, 1
    )
    store = cast(_Store, await _Store.open(db, create=False))
    try:
        first = await store.add_validation(base)
        assert first.id is not None and first.created_at is not None
        failed = dataclasses.replace(
            base,
            output_b=None,
            golden_nonce_b=None,
            agree=None,
            attempts=4,
            error="reference: boom",
        )
        await store.add_validation(failed)
        # A check of a seed the weight no longer holds is kept but leaves the state alone.
        await store.add_validation(
            dataclasses.replace(
                base, weight_id=other_id, seed=b"\x01" * 32, output_a=1, agree=False
            )
        )
        with pytest.raises(InputError, match="agree"):
            await store.add_validation(dataclasses.replace(base, output_a=1))
        with pytest.raises(StorageError, match="no weight 999999"):
            await store.add_validation(dataclasses.replace(base, weight_id=999999))
        rows = await store.validations(wid)
        summary = await store.validation_summary()
        ds_summary = await store.validation_summary(dataset_id=1)
        none_summary = await store.validation_summary(dataset_id=42)
    finally:
        await store.close()
    assert [r.agree for r in rows] == [True, None] and rows[1].error == "reference: boom"
    assert rows[0] == first
    assert (summary.weights, summary.validated, summary.unvalidated) == (12, 1, 11)
    assert (summary.non_deterministic, summary.checks, summary.failed_checks) == (0, 3, 1)
    assert ds_summary == summary and (none_summary.weights, none_summary.checks) == (0, 0)
    assert _states(db)[other_id] == "unvalidated"


def test_migration_0004_applies_to_a_0003_database(db: Path) -> None:
    counts = (
        "SELECT (SELECT count(*) FROM weights), (SELECT count(*) FROM records),"
        " (SELECT count(*) FROM runs), (SELECT count(*) FROM events)"
    )
    before = db_rows(db, counts)
    _execute(db, "DROP TABLE validations")
    _execute(db, "ALTER TABLE jobs DROP COLUMN priority")  # added by 0005
    _execute(db, "PRAGMA user_version = 3")
    assert db_rows(db, "SELECT name FROM sqlite_master WHERE name LIKE 'validations%'") == []

    async def reopen() -> None:
        async with await Store.open(db, create=False):
            pass

    anyio.run(reopen)
    assert db_rows(db, "PRAGMA user_version") == [(newest_version(),)] and newest_version() >= 4
    assert db_rows(db, counts) == before and before[0][0] == 12
    names = {
        r[0] for r in db_rows(db, "SELECT name FROM sqlite_master WHERE name LIKE 'validations%'")
    }
    assert names == {"validations", "validations_by_weight"}
