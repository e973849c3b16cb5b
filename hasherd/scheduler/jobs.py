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
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio

from hasherd.actors.pool import ActorPool
from hasherd.config import Config
from hasherd.control.params import JobOptions
from hasherd.data import DataError, Dataset, load_dataset
from hasherd.errors import HasherError, InputError
from hasherd.scheduler.dispatch import PoolDispatch
from hasherd.scheduler.trainer import Progress, Trainer
from hasherd.storage import Store
from hasherd.storage.jobs import JobRow
from hasherd.storage.status import JobStatus

LOGGER = logging.getLogger(__name__)

# jobs.submit option (a field of JobOptions) -> training config key
OPTION_KEYS = {
    "epochs": "epochs",
    "population": "population_size",
    "generations": "max_generations",
    "difficulty_bits": "difficulty_bits",
    "seed": "seed",
    "zero_bits": "zero_bits",  # a job at a chip device's zero bits runs on that chip
    "passes": "passes",
}


def check_options(options: Mapping[str, Any], cfg: Config) -> dict[str, Any]:
    """A job's options as stored with it: their types checked as ``JobOptions``, their
    ranges against the training config (InputError names the bad one)."""
    return stored_options(JobOptions.parse(options), cfg)


def stored_options(options: JobOptions, cfg: Config) -> dict[str, Any]:
    """``options`` as stored with the job, once the config file's range checks pass."""
    stored = options.to_params()
    job_config(cfg, stored)
    return stored


def job_config(cfg: Config, options: Mapping[str, Any]) -> Config:
    overrides = {OPTION_KEYS[k]: v for k, v in options.items() if k in OPTION_KEYS}
    try:
        return cfg.with_training(**overrides)
    except HasherError as exc:
        key = next((k for k, v in OPTION_KEYS.items() if f"training.{v}" in str(exc)), "options")
        raise InputError(key, str(exc)) from None


@dataclass
class RunningJob:
    """The job being trained: its row, its trainer once built, and the status it takes
    when asked to stop early (None: not asked)."""

    job: JobRow
    trainer: Trainer | None = None
    stop_as: JobStatus | None = None


@dataclass(frozen=True)
class ProgressSnapshot:
    """A job's ``Progress`` at one moment, the one conversion of it: ``to_json`` is the
    ``progress`` of ``jobs.show``, ``to_metrics`` what the metrics collector reads."""

    run_id: int | None  # None until the trainer has created or resumed its run
    epoch: int
    epochs: int
    difficulty_bits: int
    records_total: int
    records_won: int
    records_done: int
    records_todo: int
    candidates: int
    dsha: int
    tokens: int
    candidates_per_s: float
    best_fitness: float  # NaN until a generation has run
    mean_fitness: float

    @classmethod
    def of(cls, p: Progress) -> ProgressSnapshot:
        return cls(
            run_id=p.run_id or None,
            epoch=p.epoch,
            epochs=p.epochs,
            difficulty_bits=p.difficulty,
            records_total=p.records_total,
            records_won=p.records_won,
            records_done=p.done,
            records_todo=p.todo,
            candidates=p.candidates,
            dsha=p.dsha,
            tokens=p.tokens,
            candidates_per_s=p.candidates_per_s,
            best_fitness=p.best_reward,
            mean_fitness=p.mean_reward,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "epochs": self.epochs,
            "difficulty_bits": self.difficulty_bits,
            "records_total": self.records_total,
            "records_won": self.records_won,
            "records_done": self.records_done,
            "records_todo": self.records_todo,
            "candidates": self.candidates,
            "dsha": self.dsha,
            "tokens": self.tokens,
            "candidates_per_s": round(self.candidates_per_s, 1),
            "best_fitness": _finite(self.best_fitness),
            "mean_fitness": _finite(self.mean_fitness),
            "run_id": self.run_id,
        }

    def to_metrics(self) -> dict[str, Any]:
        """The keys of ``MetricsSource.job_snapshots`` (NaN fitness: not known yet)."""
        return {
            "difficulty_bits": self.difficulty_bits,
            "records_total": self.records_total,
            "records_won": self.records_won,
            "records_pending": max(0, self.records_todo - self.records_done),
            "tokens_trained": self.tokens,
            "best_fitness": self.best_fitness,
            "mean_fitness": self.mean_fitness,
            "candidates": self.candidates,
            "dsha": self.dsha,
        }


class JobScheduler:
    """Runs queued jobs (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        pool: ActorPool,
        config: Callable[[], Config],
        *,
        on_step: Callable[[int, float], None] | None = None,
        on_dataset: Callable[[Dataset], Awaitable[None]] | None = None,
    ) -> None:
        self.store, self.pool, self.config = store, pool, config
        self.on_step = on_step or (lambda job_id, seconds: None)
        self.on_dataset = on_dataset  # told each job's dataset as it starts (jitter service)
        self.active: RunningJob | None = None
        self.progress: dict[int, Progress] = {}  # by job id: the last known progress
        self.seen_jobs: dict[int, tuple[str, JobStatus]] = {}  # job id -> (name, last status)
        self._wake = anyio.Event()
        self._stopping = False
        self.finished = anyio.Event()

    # -- control --------------------------------------------------------------------------

    async def submit(self, name: str, data: str, options: JobOptions) -> JobRow:
        opts = stored_options(options, self.config())
        job = await self.store.add_job(name, data, opts)
        LOGGER.info("job %d (%s) queued: %s %s", job.id, job.name, data, opts)
        self._wake.set()
        return job

    async def pause(self, job_id: int) -> JobRow:
        return await self._stop_or_move(job_id, JobStatus.PAUSED)

    async def cancel(self, job_id: int) -> JobRow:
        return await self._stop_or_move(job_id, JobStatus.CANCELLED)

    async def resume(self, job_id: int) -> JobRow:
        job = await self.store.move_job(job_id, JobStatus.QUEUED)
        self._wake.set()
        return job

    async def _stop_or_move(self, job_id: int, status: JobStatus) -> JobRow:
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
            active.stop_as = active.stop_as or JobStatus.QUEUED
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
        active = self.active = RunningJob(job)
        try:
            job = await self.store.move_job(job.id, JobStatus.RUNNING)
            active.job = job
            self.seen_jobs[job.id] = (job.name, JobStatus.RUNNING)
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
                PoolDispatch(self.pool, cfg.training.zero_bits),
                batch=cfg.daemon.batch,
                on_step=lambda s: self.on_step(job.id, s),
            )
            trainer.progress = progress
            active.trainer = trainer
            if active.stop_as is not None:
                trainer.stop.set()
            summary = await trainer.run()
            if summary.status == "finished":
                status = JobStatus.FINISHED
            else:
                status = active.stop_as or JobStatus.QUEUED
            await self.store.move_job(job.id, status, run_id=summary.run_id)
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
            await self._fail(job, str(exc))
        except Exception as exc:
            LOGGER.exception("job %d failed", job.id)
            await self._fail(job, f"{type(exc).__name__}: {exc}")
        finally:
            self.active = None

    async def _fail(self, job: JobRow, error: str) -> None:
        await self.store.move_job(job.id, JobStatus.FAILED, error=error)
        self.seen_jobs[job.id] = (job.name, JobStatus.FAILED)

    # -- reporting ------------------------------------------------------------------------

    def snapshot(self, job_id: int) -> ProgressSnapshot | None:
        """The progress of a job this process has trained (None: none yet)."""
        p = self.progress.get(job_id)
        return None if p is None else ProgressSnapshot.of(p)

    def live_run(self, job_id: int) -> int | None:
        """The run a job trains, as this process knows it: the jobs table links a job to
        its run only when the job stops."""
        p = self.progress.get(job_id)
        return p.run_id if p is not None and p.run_id else None

    async def job_json(self, job: JobRow) -> dict[str, Any]:
        snap = self.snapshot(job.id)
        out = {**job.to_json(), "progress": None if snap is None else snap.to_json()}
        if out["run_id"] is None and snap is not None and snap.run_id:
            out["run_id"] = snap.run_id  # linked in the table when it ends
        return out

    def job_snapshots(self) -> list[dict[str, Any]]:
        """``MetricsSource.job_snapshots``: the jobs this process has trained (their
        counters restart with the process). Called from the metrics server's thread."""
        out = []
        for job_id, p in list(self.progress.items()):
            name, status = self.seen_jobs.get(job_id, ("", JobStatus.RUNNING))
            snap = ProgressSnapshot.of(p)
            out.append({"id": job_id, "name": name, "status": status, **snap.to_metrics()})
        return out


def _finite(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 6)
