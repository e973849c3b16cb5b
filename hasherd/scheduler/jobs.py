"""The daemon's job scheduler: training jobs from the database, one at a time, in order.

A job names a dataset and training options. The scheduler takes the oldest queued job,
loads its data, and trains it with the same ``Trainer`` as ``hasherd train``, except that
evaluation batches go to the actor pool (whichever evaluator actor is free, a bounded
number in flight). Every generation is persisted as it completes, so a job survives a
daemon restart, even after SIGKILL: jobs left ``running`` are queued again at start, and
their runs resume from the last committed generation. Pausing or cancelling a job stops
it after the generations in flight are persisted.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio

from hasherd.actors.pool import ActorPool
from hasherd.config import Config
from hasherd.data import DataError, load_dataset
from hasherd.errors import HasherError, InputError
from hasherd.scheduler.trainer import Progress, Trainer
from hasherd.storage import Store
from hasherd.storage.jobs import JobRow

LOGGER = logging.getLogger(__name__)

# hasherctl/jobs.submit option -> training config key
OPTION_KEYS = {
    "epochs": "epochs",
    "population": "population_size",
    "generations": "max_generations",
    "difficulty_bits": "difficulty_bits",
    "seed": "seed",
    "zero_bits": "zero_bits",  # a job at a chip device's zero bits runs on that chip
    "passes": "passes",
}
BOOL_OPTIONS = {"strict"}


def check_options(options: dict[str, Any], cfg: Config) -> dict[str, Any]:
    """Validate a job's options against the training config (InputError names the bad one)."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        if key in BOOL_OPTIONS:
            if not isinstance(value, bool):
                raise InputError(key, "expected true or false")
            out[key] = value
        elif key in OPTION_KEYS:
            if isinstance(value, bool) or not isinstance(value, int):
                raise InputError(key, f"expected an integer, got {value!r}")
            out[key] = value
        else:
            known = ", ".join(sorted([*OPTION_KEYS, *BOOL_OPTIONS]))
            raise InputError(key, f"unknown option (known: {known})")
    job_config(cfg, out)  # range checks, as the config file would apply them
    return out


def job_config(cfg: Config, options: dict[str, Any]) -> Config:
    overrides = {OPTION_KEYS[k]: v for k, v in options.items() if k in OPTION_KEYS}
    try:
        return cfg.with_training(**overrides)
    except HasherError as exc:
        key = next((k for k, v in OPTION_KEYS.items() if f"training.{v}" in str(exc)), "options")
        raise InputError(key, str(exc)) from None


@dataclass
class _Active:
    job: JobRow
    trainer: Trainer | None = None
    stop_as: str = ""  # the status the job takes when it stops early ("" = not stopping)


class JobScheduler:
    """Runs queued jobs (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        pool: ActorPool,
        config: Callable[[], Config],
        *,
        on_step: Callable[[int, float], None] | None = None,
        on_dataset: Callable[[Any], Awaitable[None]] | None = None,
    ) -> None:
        self.store, self.pool, self.config = store, pool, config
        self.on_step = on_step or (lambda job_id, seconds: None)
        self.on_dataset = on_dataset  # told each job's dataset as it starts (jitter service)
        self.active: _Active | None = None
        self.progress: dict[int, Progress] = {}  # by job id: the last known progress
        self.seen_jobs: dict[int, tuple[str, str]] = {}  # job id -> (name, last status)
        self._wake = anyio.Event()
        self._stopping = False
        self.finished = anyio.Event()

    # -- control --------------------------------------------------------------------------

    async def submit(self, name: str, data: str, options: dict[str, Any]) -> JobRow:
        opts = check_options(options, self.config())
        job = await self.store.add_job(name, data, opts)
        LOGGER.info("job %d (%s) queued: %s %s", job.id, job.name, data, opts)
        self._wake.set()
        return job

    async def pause(self, job_id: int) -> JobRow:
        return await self._stop_or_move(job_id, "paused")

    async def cancel(self, job_id: int) -> JobRow:
        return await self._stop_or_move(job_id, "cancelled")

    async def resume(self, job_id: int) -> JobRow:
        job = await self.store.move_job(job_id, "queued")
        self._wake.set()
        return job

    async def _stop_or_move(self, job_id: int, status: str) -> JobRow:
        active = self.active
        if active is not None and active.job.id == job_id:
            active.stop_as = status
            if active.trainer is not None:
                active.trainer.stop.set()
            with anyio.fail_after(self.config().daemon.shutdown_timeout + 30):
                while self.active is active:
                    await anyio.sleep(0.05)
            return await self.store.job(job_id)
        return await self.store.move_job(job_id, status)

    async def shutdown(self) -> None:
        """Stop taking jobs; the running one persists its generations in flight and goes
        back to the queue (it resumes at the next start)."""
        self._stopping = True
        active = self.active
        if active is not None:
            active.stop_as = active.stop_as or "queued"
            if active.trainer is not None:
                active.trainer.stop.set()
        self._wake.set()
        await self.finished.wait()

    # -- the loop -------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            requeued = await self.store.requeue_interrupted_jobs()
            if requeued:
                LOGGER.info("jobs %s were interrupted; they resume", requeued)
            while not self._stopping:
                job = await self.store.next_queued_job()
                if job is None:
                    if self._wake.is_set():
                        self._wake = anyio.Event()
                        continue
                    await self._wake.wait()
                    continue
                await self._run_job(job)
        finally:
            self.finished.set()

    async def _run_job(self, job: JobRow) -> None:
        active = self.active = _Active(job)
        try:
            job = await self.store.move_job(job.id, "running")
            active.job = job
            self.seen_jobs[job.id] = (job.name, "running")
            cfg = job_config(self.config(), job.options)
            strict = bool(job.options.get("strict", False))
            load = functools.partial(
                load_dataset, job.data_path, token_bits=cfg.training.token_bits, strict=strict
            )
            ds = await anyio.to_thread.run_sync(load)
            if self.on_dataset is not None:
                await self.on_dataset(ds)
            progress = self.progress[job.id] = Progress(epochs=cfg.training.epochs)
            trainer = Trainer(
                self.store,
                ds,
                cfg,
                dispatch=self.pool.evaluate_then,
                lanes=self.pool.capacity_for(cfg.training.zero_bits),
                batch=cfg.daemon.batch,
                on_step=lambda s: self.on_step(job.id, s),
            )
            trainer.progress = progress
            active.trainer = trainer
            if active.stop_as:
                trainer.stop.set()
            summary = await trainer.run()
            links = {"run_id": summary.run_id}
            if summary.status == "finished":
                status, error = "finished", None
            else:
                status, error = active.stop_as or "queued", None
            await self.store.move_job(job.id, status, error=error, **links)
            self.seen_jobs[job.id] = (job.name, status)
            LOGGER.info(
                "job %d %s: %d of %d records hold a winner at %d bits",
                job.id,
                status,
                summary.winners,
                summary.records,
                summary.final_difficulty,
            )
        except (DataError, HasherError) as exc:
            LOGGER.error("job %d failed: %s", job.id, exc)
            await self.store.move_job(job.id, "failed", error=str(exc))
            self.seen_jobs[job.id] = (job.name, "failed")
        except Exception as exc:
            LOGGER.exception("job %d failed", job.id)
            await self.store.move_job(job.id, "failed", error=f"{type(exc).__name__}: {exc}")
            self.seen_jobs[job.id] = (job.name, "failed")
        finally:
            self.active = None

    # -- reporting ------------------------------------------------------------------------

    def job_progress(self, job_id: int) -> dict[str, Any] | None:
        p = self.progress.get(job_id)
        if p is None:
            return None
        return {
            "epoch": p.epoch,
            "epochs": p.epochs,
            "difficulty_bits": p.difficulty,
            "records_total": p.records_total,
            "records_won": p.records_won,
            "records_done": p.done,
            "records_todo": p.todo,
            "candidates": p.candidates,
            "dsha": p.dsha,
            "tokens": p.tokens,
            "candidates_per_s": round(p.candidates_per_s, 1),
            "best_fitness": _finite(p.best_reward),
            "mean_fitness": _finite(p.mean_reward),
            "run_id": p.run_id or None,
        }

    async def job_json(self, job: JobRow) -> dict[str, Any]:
        out = {**job.to_json(), "progress": self.job_progress(job.id)}
        if out["run_id"] is None and out["progress"] and out["progress"]["run_id"]:
            out["run_id"] = out["progress"]["run_id"]  # linked in the table when it ends
        return out

    def running_since(self) -> float | None:
        active = self.active
        if active is None or active.trainer is None:
            return None
        return time.monotonic() - active.trainer.progress.started


def _finite(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 6)
