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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio.abc

from hasherd.actors.pool import ActorPool
from hasherd.backends.choice import evaluator_named
from hasherd.config import Config
from hasherd.control.params import LOCAL_EVALUATORS, LOCAL_ONLY, StartValidation
from hasherd.errors import HasherError, InputError
from hasherd.kernel.evaluators.base import make_request
from hasherd.storage import Store
from hasherd.storage.selection import KernelSpec
from hasherd.validation.core import (
    EvaluatorLane,
    Lane,
    Report,
    Task,
    default_evaluators,
    validate,
)

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
    """The daemon's validations (see the module docstring).

    ``config`` is read at each start (a reload applies to the next validation); ``tasks``
    runs the validations; ``live_run`` names the run a job in progress trains (the jobs
    table links them only when the job stops); ``count_error`` counts a failure by class
    name for ``hasherd_errors_total``.
    """

    def __init__(
        self,
        store: Store,
        pool: ActorPool,
        config: Callable[[], Config],
        tasks: anyio.abc.TaskGroup,
        *,
        live_run: Callable[[int], int | None] = lambda job_id: None,
        count_error: Callable[[str], None] = lambda kind: None,
    ) -> None:
        self.store, self.pool, self.config, self.tasks = store, pool, config, tasks
        self.live_run = live_run
        self.count_error = count_error
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
        pool = self.pool
        if name in pool.actors and pool.actors[name].zero_bits is not None:
            return ActorLane(pool, name)  # a chip: only its actor may open the port
        chips = [c.name for c in self.config().devices.chips]
        if name not in chips and name.partition(":")[0] not in LOCAL_EVALUATORS:
            devices = ", ".join(chips) or "none configured"
            raise InputError("evaluator", f"{name!r} is not a device ({devices}); {LOCAL_ONLY}")
        try:
            return EvaluatorLane(name, evaluator_named(name, self.config()))
        except HasherError as exc:
            raise InputError("evaluator", f"{name!r}: {exc}") from None

    def start(self, req: StartValidation) -> ValidationRun:
        """Start a validation task for ``req``; InputError on an evaluator that cannot be
        built, or while one is running."""
        busy = self.running
        if busy is not None:
            raise InputError("validation", f"validation {busy.id} is still running")
        if req.kernel:
            KernelSpec.parse(req.kernel, "kernel")  # refused now, not in the task
        default_a, default_b = default_evaluators(self.config())
        name_a, name_b = req.evaluator or default_a, req.against or default_b
        lane_a = self._lane(name_a)
        try:
            lane_b = self._lane(name_b)
        except BaseException:
            lane_a.close()
            raise
        run = ValidationRun(self.next_id, req.to_params(), (name_a, name_b))
        self.next_id += 1
        self.runs[run.id] = run
        for old in sorted(self.runs)[:-KEPT]:
            del self.runs[old]
        self.tasks.start_soon(self._run, run, req, lane_a, lane_b)
        LOGGER.info("validation %d started: %s against %s", run.id, name_a, name_b)
        return run

    def _scope(self, req: StartValidation) -> tuple[int | None, int | None]:
        """(run, job) to validate: a job this process trains now is known by its run."""
        run_id, job_id = req.run, req.job
        live = self.live_run(job_id) if job_id is not None else None
        if live is not None and run_id in (None, live):
            return live, None
        return run_id, job_id

    async def _run(self, run: ValidationRun, req: StartValidation, a: Lane, b: Lane) -> None:
        def on_check(kind: str) -> None:
            outcome = OUTCOME[kind]
            run.counts[outcome] += 1
            self.weights[outcome] += 1

        try:
            run_id, job_id = self._scope(req)
            report = await validate(
                self.store,
                a,
                b,
                config=self.config().validation,
                sample=1.0 if req.sample is None else float(req.sample),
                seed=req.seed,
                run_id=run_id,
                job_id=job_id,
                kernel=KernelSpec.parse(req.kernel, "kernel") if req.kernel else None,
                labels=run.evaluators,
                on_check=on_check,
            )
        except HasherError as exc:
            run.state, run.error = "failed", str(exc)
            LOGGER.error("validation %d failed: %s", run.id, exc)
            self.count_error(type(exc).__name__)
        except Exception as exc:  # an unexpected failure is reported, not lost in the log
            run.state, run.error = "failed", f"{type(exc).__name__}: {exc}"
            LOGGER.exception("validation %d failed", run.id)
            self.count_error(type(exc).__name__)
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
