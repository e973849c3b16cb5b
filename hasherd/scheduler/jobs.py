"""The daemon's job scheduler: training jobs from the database, several at once.

A job names a dataset, training options and a priority. The scheduler starts queued jobs
in id order while fewer than ``daemon.max_jobs`` run, and trains each with the same
``Trainer`` as ``hasherd train``, its batches going through a lease of its own on the
actor pool (``ActorPool.lease``): the pool gives each batch to an actor that serves the
job's zero bits and passes, and shares the actors between running jobs by priority. A job
that no configured actor can serve is refused at submit. Every generation is persisted as
it completes, so a job survives a daemon restart, even after SIGKILL: jobs left
``running`` are queued again at start, and their runs resume from the last committed
generation.

Pausing or cancelling a running job stops its trainer and closes its lease: the batches
it has in flight fail at once (``JobWithdrawn``), even one stuck on a device, so the job
ends within a second, keeping what was committed. A job that fails records its cause
(the pool's error naming the device, the storage error naming the path), never the
exception group that carried it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc

from hasherd.actors.base import JobWithdrawn
from hasherd.actors.lease import JobLease
from hasherd.actors.pool import ActorPool
from hasherd.config import Config, TrainingConfig
from hasherd.control import access
from hasherd.control.params import JobOptions
from hasherd.data import DataError, Dataset, load_dataset
from hasherd.errors import HasherError, InputError, first_hasher_error, leaves
from hasherd.scheduler.progress import ProgressSnapshot
from hasherd.scheduler.runs import config_digest, records_digest
from hasherd.scheduler.trainer import Progress, Trainer
from hasherd.storage import Store
from hasherd.storage.jobs import JobRow
from hasherd.storage.status import JobStatus

LOGGER = logging.getLogger(__name__)
# After a stopping job's lease is withdrawn, the time its trainer gets to commit what it
# holds and end by itself before its task is cancelled (its commits are shielded).
STOP_GRACE = 0.5

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


def check_servable(pool: ActorPool, training: TrainingConfig) -> None:
    """InputError, naming the option, when no configured actor serves the job's zero bits
    and passes (``ActorPool.can_serve`` says why)."""
    problem = pool.can_serve(training.zero_bits, training.passes)
    if problem is not None:
        blamed = "passes" if "passes" in problem and "zero_bits" not in problem else "zero_bits"
        raise InputError(blamed, problem)


def failure_cause(exc: BaseException) -> BaseException:
    """What made a job fail, taken out of any exception group: the first ``HasherError``
    that is not a withdrawal (it names the device, the zero bits, the path), else the
    first error."""
    found = first_hasher_error(exc, skip=(JobWithdrawn,))
    return found if found is not None else next(leaves(exc))


def job_error(exc: BaseException) -> str:
    """A failed job's ``error``: its cause (``failure_cause``), never the group's own
    "unhandled errors in a TaskGroup"."""
    cause = failure_cause(exc)
    if isinstance(cause, HasherError):
        return str(cause)
    return f"{type(cause).__name__}: {cause}"


def _load_checked(path: str, *, token_bits: int, strict: bool) -> Dataset:
    """The job's dataset, read through the inodes of a walk that follows no link: a file
    the submitter swapped for a link since ``jobs.submit`` is not followed
    (``control/access.py``)."""
    with access.pinned(path) as view:
        try:
            ds = load_dataset(view, token_bits=token_bits, strict=strict)
        except DataError as exc:
            raise access.restore_error(exc, view, path) from None
        return access.restore(ds, view, path)


@dataclass
class RunningJob:
    """A job being trained: its row, its lease and trainer once built, the status it
    takes when asked to stop early (None: not asked), the scope its training runs in, and
    ``done``, set once its status is stored."""

    job: JobRow
    lease: JobLease | None = None
    trainer: Trainer | None = None
    stop_as: JobStatus | None = None
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    done: anyio.Event = field(default_factory=anyio.Event)

    def stop(self, status: JobStatus, *, withdraw: bool = True) -> None:
        """Stop as ``status``: the trainer ends after its batches in flight, which
        ``withdraw`` fails at once (the lease closed). Before the trainer exists there is
        nothing to commit, and the job's task is cancelled."""
        self.stop_as = status
        if self.trainer is None:
            self.scope.cancel()
            return
        self.trainer.stop.set()
        if withdraw:
            self.withdraw()

    def withdraw(self) -> None:
        if self.lease is not None:
            self.lease.close()

    def lease_snapshot(self) -> dict[str, Any] | None:
        return self.lease.snapshot() if self.lease is not None else None


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
        self.running: dict[int, RunningJob] = {}  # by job id, in the order they started
        self.progress: dict[int, Progress] = {}  # by job id: the last known progress
        self.seen_jobs: dict[int, JobRow] = {}  # job id -> its row as this process last set it
        self._runs: dict[tuple[str, str], anyio.Lock] = {}  # one trainer per run at a time
        self._wake = anyio.Event()
        self._stopping = False
        self.finished = anyio.Event()

    @property
    def active(self) -> RunningJob | None:
        """The running job that started first (``status``'s ``active_job``)."""
        return next(iter(self.running.values()), None)

    # -- control --------------------------------------------------------------------------

    async def submit(
        self, name: str, data: str, options: JobOptions, priority: int | None = None
    ) -> JobRow:
        """Queue a job, once its options are in range and some configured actor serves
        its zero bits and passes (InputError naming the option otherwise)."""
        cfg = self.config()
        opts = stored_options(options, cfg)
        check_servable(self.pool, job_config(cfg, opts).training)
        extra = {} if priority is None else {"priority": priority}
        job = await self.store.add_job(name, data, opts, **extra)
        LOGGER.info(
            "job %d (%s) queued at priority %d: %s %s",
            job.id,
            job.name,
            job.priority,
            data,
            opts,
        )
        self._wake.set()
        return job

    async def pause(self, job_id: int) -> JobRow:
        return await self._stop_or_move(job_id, JobStatus.PAUSED)

    async def cancel(self, job_id: int) -> JobRow:
        return await self._stop_or_move(job_id, JobStatus.CANCELLED)

    async def resume(self, job_id: int) -> JobRow:
        """Queue a stopped job again; a running one is left as it is (queued again, it
        would be started twice)."""
        if job_id in self.running:
            return await self.store.job(job_id)
        job = await self.store.move_job(job_id, JobStatus.QUEUED)
        self._wake.set()
        return job

    async def set_priority(self, job_id: int, priority: int) -> JobRow:
        """Store the job's priority and apply it to its lease at once if it runs."""
        job = await self.store.set_job_priority(job_id, priority)
        running = self.running.get(job_id)
        if running is not None:
            running.job = job
            if running.lease is not None:
                running.lease.set_priority(priority)
        if job_id in self.seen_jobs:
            self.seen_jobs[job_id] = job
        LOGGER.info("job %d priority %d", job_id, priority)
        return job

    async def _stop_or_move(self, job_id: int, status: JobStatus) -> JobRow:
        """A running job: stopped (its batches withdrawn), returning once its status is
        stored; a trainer still busy after ``STOP_GRACE`` is cancelled. Any other job:
        moved to ``status``."""
        running = self.running.get(job_id)
        if running is None:
            try:
                return await self.store.move_job(job_id, status)
            except InputError:
                if job_id not in self.running:
                    raise
                running = self.running[job_id]  # it started meanwhile: stop it
        running.stop(status)
        with anyio.move_on_after(STOP_GRACE):
            await running.done.wait()
        running.scope.cancel()
        with anyio.fail_after(self.config().daemon.shutdown_timeout + 30):
            await running.done.wait()
        return await self.store.job(job_id)

    async def shutdown(self) -> None:
        """Stop taking jobs. The running ones get half of ``daemon.shutdown_timeout`` to
        persist their generations in flight, then their leases are withdrawn; they go
        back to the queue (they resume at the next start)."""
        self._stopping = True
        self._wake.set()
        for running in list(self.running.values()):
            running.stop(running.stop_as or JobStatus.QUEUED, withdraw=False)
        with anyio.move_on_after(self.config().daemon.shutdown_timeout / 2):
            await self.finished.wait()
        for running in list(self.running.values()):
            running.withdraw()
        with anyio.move_on_after(STOP_GRACE):
            await self.finished.wait()
        for running in list(self.running.values()):
            running.scope.cancel()
        await self.finished.wait()

    # -- the loop -------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            requeued = await self.store.requeue_interrupted_jobs()
            if requeued:
                LOGGER.info("jobs %s were interrupted; they resume", requeued)
            async with anyio.create_task_group() as tg:
                while not self._stopping:
                    room = len(self.running) < self.config().daemon.max_jobs
                    if room and await self._start_next(tg):
                        continue
                    if self._wake.is_set():
                        self._wake = anyio.Event()
                        continue
                    await self._wake.wait()
        finally:
            self.finished.set()

    async def _start_next(self, tg: anyio.abc.TaskGroup) -> bool:
        """Start the oldest queued job; False when there is none."""
        job = await self.store.next_queued_job()
        if job is None:
            return False
        # registered before it moves: a pause or cancel meanwhile finds it and stops it
        running = self.running[job.id] = RunningJob(job)
        try:
            running.job = await self.store.move_job(job.id, JobStatus.RUNNING)
        except InputError:  # paused or cancelled meanwhile: look again
            del self.running[job.id]
            running.done.set()
            return True
        self.seen_jobs[job.id] = running.job
        if self._stopping:  # the daemon began to stop meanwhile: back to the queue
            running.stop(JobStatus.QUEUED)
        tg.start_soon(self._run_job, running)
        return True

    async def _run_job(self, running: RunningJob) -> None:
        job = running.job
        try:
            outcome = None
            with running.scope:
                outcome = await self._train(running)
            status, run_id = outcome or (running.stop_as or JobStatus.QUEUED, None)
            await self._settle(job, status, run_id)
        except Exception as exc:
            message = job_error(exc)
            expected = isinstance(failure_cause(exc), HasherError)  # else: a traceback too
            LOGGER.error("job %d failed: %s", job.id, message, exc_info=None if expected else exc)
            await self._settle(job, JobStatus.FAILED, None, error=message)
        finally:
            running.withdraw()
            del self.running[job.id]
            running.done.set()
            self._wake.set()

    async def _train(self, running: RunningJob) -> tuple[JobStatus, int]:
        """Train the job until it finishes or is stopped: (its status, its run)."""
        job = running.job
        cfg = job_config(self.config(), job.options)
        t = cfg.training
        check_servable(self.pool, t)
        ds = await self._load(job, cfg)
        async with self._one_trainer_per_run(job, cfg, ds):
            progress = self.progress[job.id] = Progress(epochs=t.epochs)
            lease = self.pool.lease(
                job.id, zero_bits=t.zero_bits, passes=t.passes, priority=running.job.priority
            )
            running.lease = lease
            trainer = Trainer(
                self.store,
                ds,
                cfg,
                lease,
                batch=cfg.daemon.batch,
                on_step=lambda s: self.on_step(job.id, s),
            )
            trainer.progress = progress
            running.trainer = trainer
            summary = await trainer.run()
        if summary.status == "finished":
            return JobStatus.FINISHED, summary.run_id
        return running.stop_as or JobStatus.QUEUED, summary.run_id

    async def _load(self, job: JobRow, cfg: Config) -> Dataset:
        strict = bool(job.options.get("strict", False))
        load = functools.partial(
            _load_checked, job.data_path, token_bits=cfg.training.token_bits, strict=strict
        )
        # abandoned when the job is stopped meanwhile: reading a file has no side effects
        ds = await anyio.to_thread.run_sync(load, abandon_on_cancel=True)
        if self.on_dataset is not None:
            await self.on_dataset(ds)
        return ds

    @contextlib.asynccontextmanager
    async def _one_trainer_per_run(
        self, job: JobRow, cfg: Config, ds: Dataset
    ) -> AsyncIterator[None]:
        """Two jobs of the same dataset and training config train one run (it resumes),
        so the second waits for the first to end, as it would in a queue."""
        key = (records_digest(ds), config_digest(cfg, ds))
        lock = self._runs.setdefault(key, anyio.Lock())
        if lock.locked():
            LOGGER.info("job %d waits: a running job trains the same run", job.id)
        try:
            async with lock:
                yield
        finally:
            if not lock.locked() and not lock.statistics().tasks_waiting:
                self._runs.pop(key, None)

    async def _settle(
        self, job: JobRow, status: JobStatus, run_id: int | None, *, error: str | None = None
    ) -> None:
        links = {"run_id": run_id} if run_id else {}
        row = await self.store.move_job(job.id, status, error=error, **links)
        self.seen_jobs[job.id] = row
        if status == JobStatus.FAILED:
            return
        p = self.progress.get(job.id)
        LOGGER.info(
            "job %d %s: %d of %d records hold a winner at %d bits",
            job.id,
            status,
            p.records_won if p else 0,
            p.records_total if p else 0,
            p.difficulty if p else 0,
        )

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

    def running_jobs(self) -> list[JobRow]:
        """The running jobs' rows, in the order they started."""
        return [r.job for r in list(self.running.values())]

    async def job_json(self, job: JobRow) -> dict[str, Any]:
        """A job as the control methods show it: its row, its progress, and ``lease``,
        the pool's view of it while it runs (priority, share, batches in flight)."""
        snap = self.snapshot(job.id)
        running = self.running.get(job.id)
        out = {
            **job.to_json(),
            "progress": None if snap is None else snap.to_json(),
            "lease": running.lease_snapshot() if running is not None else None,
        }
        if out["run_id"] is None and snap is not None and snap.run_id:
            out["run_id"] = snap.run_id  # linked in the table when it ends
        return out

    def job_snapshots(self) -> list[dict[str, Any]]:
        """``MetricsSource.job_snapshots``: the jobs this process has trained (their
        counters restart with the process), with the share and priority of the running
        ones. Called from the metrics server's thread."""
        out = []
        for job_id, p in list(self.progress.items()):
            row = self.seen_jobs.get(job_id)
            running = self.running.get(job_id)
            lease = running.lease_snapshot() if running is not None else None
            out.append(
                {
                    "id": job_id,
                    "name": row.name if row else "",
                    "status": row.status if row else JobStatus.RUNNING,
                    "priority": row.priority if row else math.nan,
                    "share": lease["share"] if lease else math.nan,
                    **ProgressSnapshot.of(p).to_metrics(),
                }
            )
        return out
