"""Validation inside the daemon: ``validate.start`` / ``validate.show`` for ``hasherctl
validate`` (docs/validation.md).

A validation runs as a task of the daemon, one at a time, so the control call returns at
once with its id and the client polls ``validate.show``. A chip device is reached through
the actor pool (``ActorLane``): the actor holds the chain's port, so the validator sends
its batches to that very actor, between the training batches, instead of opening the
port a second time. Simulators (numba, the reference) run on threads of their own.

The counters here feed ``hasherd_validation_*`` (docs/metrics.md).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hasherd.actors.pool import ActorPool
from hasherd.errors import HasherError, InputError
from hasherd.kernel.evaluators.base import make_request
from hasherd.validation.core import (
    EvaluatorLane,
    Lane,
    Report,
    Task,
    default_evaluators,
    make_evaluator,
    validate,
)

if TYPE_CHECKING:
    from hasherd.daemon.root import Daemon

LOGGER = logging.getLogger(__name__)
KEPT = 16  # finished validations whose reports ``validate.show`` can still return
OUTCOME = {"agree": "validated", "disagree": "non_deterministic", "failed": "failed"}


class ActorLane:
    """One side of a validation served by a daemon actor (through ``pool.evaluate_on``)."""

    def __init__(self, pool: ActorPool, name: str) -> None:
        self.pool = pool
        self.label = name
        self.actor = pool.actors[name]

    def supports(self, zero_bits: int) -> bool:
        return self.actor.serves_bits(zero_bits)

    async def warm_up(self) -> None:
        return None  # the actor is started by the pool

    async def run(self, task: Task, timeout: float) -> tuple[int, int]:
        req = make_request(task.slots, [task.seed], task.memory, task.passes, task.zero_bits)
        results = await asyncio.wait_for(self.pool.evaluate_on(self.label, [req]), timeout)
        return int(results[0].output[0]), int(results[0].golden_nonce[0])

    def close(self) -> None:
        return None


@dataclass
class ValidationRun:
    """One validation the daemon started: its parameters, progress and outcome."""

    id: int
    params: dict[str, Any]
    evaluators: tuple[str, str]
    state: str = "running"  # running | finished | failed
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOME.values(), 0))
    report: Report | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "params": self.params,
            "evaluator_a": self.evaluators[0],
            "evaluator_b": self.evaluators[1],
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "counts": dict(self.counts),
            "error": self.error,
            "report": None if self.report is None else self.report.to_json(),
        }


class ValidationService:
    """The daemon's validations (see the module docstring)."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.runs: dict[int, ValidationRun] = {}
        self.next_id = 1
        self.finished = 0
        self.weights = dict.fromkeys(OUTCOME.values(), 0)
        self.last_rate = math.nan
        self.last_finished = math.nan

    @property
    def running(self) -> ValidationRun | None:
        return next((r for r in self.runs.values() if r.state == "running"), None)

    def stats(self) -> dict[str, Any]:
        """For the metrics collector (``validation_stats``)."""
        return {
            "runs": self.finished,
            "weights": dict(self.weights),
            "last_rate": self.last_rate,
            "last_finished_unix": self.last_finished,
            "running": int(self.running is not None),
        }

    def _lane(self, name: str) -> Lane:
        pool = self.daemon.pool
        if name in pool.actors and pool.actors[name].zero_bits is not None:
            return ActorLane(pool, name)  # a chip: only its actor may open the port
        try:
            return EvaluatorLane(name, make_evaluator(name, self.daemon.config))
        except HasherError as exc:
            raise InputError("evaluator", f"{name!r}: {exc}") from None

    def start(self, params: dict[str, Any]) -> ValidationRun:
        """Start a validation task for ``params`` (``job``, ``run`` and ``seed`` already
        checked as integers by the control handler); InputError on a bad sample or
        evaluator, or while one is running."""
        busy = self.running
        if busy is not None:
            raise InputError("validation", f"validation {busy.id} is still running")
        tg = self.daemon._tg
        if tg is None:
            raise InputError("validation", "the daemon is not running")
        cfg = self.daemon.config
        name_a, name_b = default_evaluators(cfg)
        name_a = _opt_str(params, "evaluator") or name_a
        name_b = _opt_str(params, "against") or name_b
        sample = params.get("sample", 1.0)
        if isinstance(sample, bool) or not isinstance(sample, (int, float)):
            raise InputError("sample", f"expected a number in (0, 1], got {sample!r}")
        if not 0.0 < float(sample) <= 1.0:
            raise InputError("sample", f"{sample} is outside (0, 1]")
        lane_a = self._lane(name_a)
        try:
            lane_b = self._lane(name_b)
        except BaseException:
            lane_a.close()
            raise
        run = ValidationRun(self.next_id, dict(params), (name_a, name_b))
        self.next_id += 1
        self.runs[run.id] = run
        for old in sorted(self.runs)[:-KEPT]:
            del self.runs[old]
        tg.start_soon(self._run, run, lane_a, lane_b, float(sample))
        LOGGER.info("validation %d started: %s against %s", run.id, name_a, name_b)
        return run

    async def _run(self, run: ValidationRun, a: Lane, b: Lane, sample: float) -> None:
        store = self.daemon.store
        assert store is not None
        p = run.params

        def on_check(kind: str) -> None:
            outcome = OUTCOME[kind]
            run.counts[outcome] += 1
            self.weights[outcome] += 1

        try:
            run_id, job_id = p.get("run"), p.get("job")
            sched = self.daemon.scheduler
            progress = sched.progress.get(job_id) if sched and job_id is not None else None
            if progress is not None and progress.run_id and run_id in (None, progress.run_id):
                # a running job is linked to its run only when it stops; this process knows
                run_id, job_id = progress.run_id, None
            report = await validate(
                store,
                a,
                b,
                config=self.daemon.config.validation,
                sample=sample,
                seed=p.get("seed"),
                run_id=run_id,
                job_id=job_id,
                labels=run.evaluators,
                on_check=on_check,
            )
        except HasherError as exc:
            run.state, run.error = "failed", str(exc)
            LOGGER.error("validation %d failed: %s", run.id, exc)
            self.daemon.count_error(type(exc).__name__)
        except Exception as exc:  # an unexpected failure is reported, not lost in the log
            run.state, run.error = "failed", f"{type(exc).__name__}: {exc}"
            LOGGER.exception("validation %d failed", run.id)
            self.daemon.count_error(type(exc).__name__)
        else:
            run.state, run.report = "finished", report
            self.last_rate = report.rate
            LOGGER.info(
                "validation %d: %d agree, %d disagree, %d failed (rate %.4f)",
                run.id,
                report.agree,
                report.disagree,
                report.failed,
                report.rate,
            )
        finally:
            a.close()
            b.close()
            run.finished_at = time.time()
            if run.state != "running":
                self.finished += 1
                self.last_finished = run.finished_at

    def show(self, run_id: int | None) -> ValidationRun:
        if run_id is None:
            if not self.runs:
                raise InputError("id", "no validation has run since the daemon started")
            return self.runs[max(self.runs)]
        if run_id not in self.runs:
            raise InputError("id", f"no validation {run_id} (kept: {sorted(self.runs)})")
        return self.runs[run_id]


def _opt_str(params: dict[str, Any], key: str) -> str | None:
    value = params.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise InputError(key, f"expected an evaluator name, got {value!r}")
    return value
