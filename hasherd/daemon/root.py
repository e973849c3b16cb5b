"""The composition root of ``hasherd run``: config, logging, database, actors, scheduler,
control socket, metrics, systemd notification and signals, wired together.

Start-up order: the database's writer lock is taken (a second writer is refused), the
database is opened and migrated, the control socket bound and the metrics endpoint
listening, then READY=1 goes to systemd; the evaluator actors load their kernels in the
background (a first start on a machine compiles them, which can take longer than
systemd's start timeout), and so does the trainer's search (on a worker thread: the event
loop never waits for numba's compiler), and the scheduler resumes unfinished jobs.

Signals: SIGTERM and SIGINT stop dispatch, let the generations in flight be persisted
(bounded by ``daemon.shutdown_timeout``), send STOPPING=1 and exit 0. SIGHUP reloads the
config file: ``logging.*`` at once, ``deployment.*`` for the next deployment, and
``training.*``, ``validation.*``, ``simulator.timeout``, ``daemon.batch`` and
``daemon.max_jobs`` for the jobs that start after it; the other keys (database, sockets,
metrics address, devices, the rest of ``simulator``) keep their running value until a
restart, and ``reload`` says which ones changed.
"""

from __future__ import annotations

import functools
import logging
import signal
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

from hasherd import __version__
from hasherd import config as config_mod
from hasherd.actors.build import build_pool
from hasherd.backends.cluster import cluster_nodes
from hasherd.config import Config
from hasherd.control.client import default_socket_path
from hasherd.control.server import ControlServer
from hasherd.daemon import handlers
from hasherd.daemon.notify import Notifier, watchdog_interval, watchdog_loop
from hasherd.daemon.rates import RateMeter, pool_totals
from hasherd.data import Dataset, load_dataset
from hasherd.deploy import DeployMetrics
from hasherd.deploy import handlers as deploy_handlers
from hasherd.errors import ConfigError, first_hasher_error
from hasherd.jitter.service import JitterService
from hasherd.logs import setup_logging
from hasherd.metrics import Metrics
from hasherd.scheduler.jobs import JobScheduler
from hasherd.scheduler.progress import ProgressSnapshot
from hasherd.scheduler.trainer import warm_up_search
from hasherd.storage import Store
from hasherd.storage.lock import DatabaseLock
from hasherd.transport.peers import resolve_group
from hasherd.validation.service import ValidationService

LOGGER = logging.getLogger(__name__)
DB_NAME = "hasherd.db"
# Keys a SIGHUP applies (the rest keep their running value until a restart).
RELOADABLE = (
    "logging",
    "deployment",
    "training",
    "validation",
    "simulator.timeout",
    "daemon.batch",
    "daemon.status_interval",
    "daemon.shutdown_timeout",
    "daemon.max_jobs",
)


def database_path(cfg: Config) -> Path:
    return Path(cfg.daemon.database or Path(cfg.storage.base_path) / DB_NAME)


def socket_path(cfg: Config) -> Path:
    return Path(cfg.control.socket) if cfg.control.socket else default_socket_path()


def jitter_socket_path(cfg: Config) -> Path:
    from hasherd.jitter.endpoint import default_jitter_socket_path

    return Path(cfg.jitter.socket) if cfg.jitter.socket else Path(default_jitter_socket_path())


@dataclass
class Daemon:
    """One hasherd process (see the module docstring)."""

    config: Config
    config_path: str | None = None
    notifier: Notifier = field(default_factory=Notifier.from_env)
    errors: dict[str, int] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    state: str = "starting"
    command: str = "hasherd run"  # written into the database's lock file

    def __post_init__(self) -> None:
        self.store: Store | None = None
        self.pool = build_pool(self.config)
        self.rates = RateMeter(functools.partial(pool_totals, self.pool))
        self.scheduler: JobScheduler | None = None
        self.control: ControlServer | None = None
        self.validation: ValidationService | None = None
        self.metrics: Metrics | None = None
        self.deploy_metrics = DeployMetrics()
        self.jitter: JitterService | None = None  # when jitter.enabled
        self._tg: anyio.abc.TaskGroup | None = None

    # -- lifecycle ------------------------------------------------------------------------

    async def run(self) -> int:
        """Serve until stopped, holding the database's writer lock throughout: taken
        before the database is opened and any socket bound, so a second daemon (or
        ``hasherd train``) on the same database is refused before it changes anything."""
        cfg = self.config
        with DatabaseLock.acquire(database_path(cfg), self.command, str(socket_path(cfg))):
            return await self._serve()

    async def _serve(self) -> int:
        cfg = self.config
        db = database_path(cfg)
        db.parent.mkdir(parents=True, exist_ok=True)
        async with await Store.open(db) as store:
            self.store = store
            self.scheduler = JobScheduler(
                store,
                self.pool,
                self._config,
                on_step=self._observe_step,
                on_dataset=self._job_dataset,
            )
            self.control = self._control_server(cfg)
            self._register(self.control, store, self.scheduler)
            try:
                async with anyio.create_task_group() as tg:
                    self._tg = tg
                    self.validation = ValidationService(
                        store,
                        self.pool,
                        self._config,
                        tg,
                        live_run=self.scheduler.live_run,
                        count_error=self.count_error,
                    )
                    handlers.register_validation(self.control, self.validation)
                    await tg.start(self.control.serve)
                    if cfg.jitter.enabled:
                        self.jitter = await tg.start(self._jitter_service(cfg))
                    self._start_metrics(cfg)
                    tg.start_soon(self.pool.run)
                    tg.start_soon(warm_up_search)
                    tg.start_soon(self.scheduler.run)
                    tg.start_soon(self._signals)
                    tg.start_soon(self._status_loop)
                    interval = watchdog_interval()
                    if interval is not None:
                        tg.start_soon(watchdog_loop, self.notifier, interval)
                    self.state = "running"
                    self.notifier.ready(f"listening on {socket_path(cfg)}")
                    LOGGER.info(
                        "hasherd %s running: database %s, control socket %s",
                        __version__,
                        db,
                        socket_path(cfg),
                    )
            except BaseExceptionGroup as group:
                # A start-up failure (socket taken, metrics port in use, ...) is reported
                # as itself, not wrapped in the task group's ExceptionGroup.
                first = first_hasher_error(group)
                if first is not None:
                    raise first from None
                raise
            finally:
                if self.metrics is not None:
                    self.metrics.close()
        LOGGER.info("hasherd stopped")
        return 0

    def _config(self) -> Config:
        """The running config (a reload replaces it): the getter handed to services."""
        return self.config

    def _register(self, server: ControlServer, store: Store, sched: JobScheduler) -> None:
        """The control methods, each group given only what it uses (``validate.*`` comes
        with the task group its validations run in)."""
        handlers.register_status(server, self, store, sched, self.pool, self.rates.rates)
        handlers.register_jobs(server, store, sched)
        handlers.register_weights(server, store)
        handlers.register_actors(server, self.pool)
        handlers.register_nodes(server, self.pool, *cluster_nodes(self.config))
        handlers.register_reload(server, self.reload, self.count_error)
        deploy_handlers.register(server, store, self._config, self.deploy_metrics)

    def _control_server(self, cfg: Config) -> ControlServer:
        cc = cfg.control
        group = resolve_group(cc.group) if cc.group else None
        return ControlServer(
            socket_path(cfg),
            group=group,
            mode=int(cc.mode, 8),
            read_timeout=cc.read_timeout,
            max_connections=cc.max_connections,
        )

    def _jitter_service(self, cfg: Config) -> Any:
        """The jitter RPC service's task (docs/jitter-rpc.md): the memory of
        ``jitter.dataset``, else the running job's (set as each job starts)."""
        from hasherd.jitter.service import run_jitter_service

        jc = cfg.jitter
        source = None
        if jc.dataset:
            source = functools.partial(
                lambda: load_dataset(jc.dataset, token_bits=cfg.training.token_bits).memory
            )
        return functools.partial(
            run_jitter_service,
            source,
            jitter_socket_path(cfg),
            group=resolve_group(jc.group) if jc.group else None,
            mode=int(jc.mode, 8),
            allow_upload=jc.allow_upload,
            max_uploads=jc.max_uploads,
            read_timeout=jc.read_timeout,
            max_connections=jc.max_connections,
        )

    async def _job_dataset(self, ds: Dataset) -> None:
        if self.jitter is not None and not self.config.jitter.dataset:
            await self.jitter.set_default(ds.memory)

    def validation_stats(self) -> dict[str, Any] | None:
        return self.validation.stats() if self.validation is not None else None

    def jitter_stats(self) -> dict[str, Any] | None:
        return self.jitter.stats() if self.jitter is not None else None

    def _start_metrics(self, cfg: Config) -> None:
        if not cfg.metrics.address:
            return
        self.metrics = Metrics(self)
        self.metrics.serve(cfg.metrics.address)

    async def stop(self) -> None:
        """Stop dispatch, persist what is in flight (bounded), then end the task group."""
        if self.state == "stopping":
            return
        self.state = "stopping"
        self.notifier.stopping("persisting the generations in flight")
        LOGGER.info("stopping: persisting the generations in flight")
        if self.scheduler is not None:
            with anyio.move_on_after(self.config.daemon.shutdown_timeout) as scope:
                await self.scheduler.shutdown()
            if scope.cancelled_caught:
                LOGGER.warning(
                    "the job did not stop within daemon.shutdown_timeout; its "
                    "uncommitted generations are dropped"
                )
        if self.control is not None:
            self.control.stop()
        if self.jitter is not None:
            self.jitter.stop()
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    async def _signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as sigs:
            async for signum in sigs:
                if signum == signal.SIGHUP:
                    try:
                        self.reload()
                    except ConfigError as exc:
                        LOGGER.error("reload refused, keeping the running config: %s", exc)
                        self.count_error("ConfigError")
                    continue
                LOGGER.info("received %s", signal.Signals(signum).name)
                assert self._tg is not None
                self._tg.start_soon(self.stop)

    def reload(self) -> dict[str, list[str]]:
        """Re-read the config file (see the module docstring for what applies)."""
        self.notifier.reloading("reloading the config")
        try:
            new = config_mod.load(self.config_path)
            old = self.config
            changed = _changed_keys(old, new)
            applied = [k for k in changed if _reloadable(k)]
            restart = [k for k in changed if not _reloadable(k)]
            merged = _merge(old, new, applied)
            self.config = merged
            for actor in self.pool.actors.values():
                if actor.zero_bits is None:  # a simulator (chips keep their own timeout)
                    actor.timeout = merged.simulator.timeout
            if any(k.startswith("logging.") for k in applied):
                setup_logging(merged)
            LOGGER.info(
                "config reloaded: applied %s; needs a restart: %s",
                applied or "nothing",
                restart or "nothing",
            )
            return {"reloaded": applied, "restart_needed": restart}
        finally:
            self.notifier.ready(f"listening on {socket_path(self.config)}")

    # -- reporting ------------------------------------------------------------------------

    def count_error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def _observe_step(self, job_id: int, seconds: float) -> None:
        if self.metrics is not None:
            self.metrics.observe_generation(seconds, job_id)

    async def _status_loop(self) -> None:
        while True:
            await anyio.sleep(self.config.daemon.status_interval)
            line = self.status_line()
            self.notifier.status(line)
            LOGGER.info("%s", line)

    def status_line(self) -> str:
        """Every running job in a few words, then the daemon's rate: ``job 3 epoch 1/2
        D=12: 5/48 won; job 4 starting, 1,234 candidates/s``."""
        cps, _ = self.rates.rates()
        sched = self.scheduler
        jobs = sched.running_jobs() if sched is not None else []
        if sched is None or not jobs:
            return f"idle; {cps:,.0f} candidates/s"
        parts = [_job_status(job.id, sched.snapshot(job.id)) for job in jobs]
        return f"{'; '.join(parts)}, {cps:,.0f} candidates/s"

    # StatusSource (the status and health methods)
    def uptime(self) -> float:
        return time.monotonic() - self.started

    def healthy(self) -> tuple[bool, str]:
        if self.state != "running":
            return False, f"daemon is {self.state}"
        ok, why = self.pool.healthy()
        if not ok:
            return ok, why
        if self.scheduler is not None and self.scheduler.finished.is_set():
            return False, "the job scheduler has stopped"
        return True, why

    # MetricsSource
    def actor_snapshots(self) -> list[dict[str, Any]]:
        return self.pool.snapshot()

    def job_snapshots(self) -> list[dict[str, Any]]:
        return self.scheduler.job_snapshots() if self.scheduler is not None else []

    def store_stats(self) -> dict[str, float | int]:
        return self.store.stats() if self.store is not None else {}

    def deploy_stats(self) -> dict[str, float | int]:
        stats: dict[str, float | int] = self.deploy_metrics.snapshot()
        return stats

    def error_counts(self) -> dict[str, int]:
        counts = dict(self.errors)
        for a in self.pool.actors.values():
            for kind, n in a.stats.errors.items():
                counts[kind] = counts.get(kind, 0) + n
        return counts


def _job_status(job_id: int, p: ProgressSnapshot | None) -> str:
    if p is None:
        return f"job {job_id} starting"
    return (
        f"job {job_id} epoch {p.epoch}/{p.epochs} D={p.difficulty_bits}: "
        f"{p.records_won}/{p.records_total} won"
    )


def _flat(cfg: Config) -> dict[str, Any]:
    return {f"{s}.{k}": v for s, keys in cfg.to_dict().items() for k, v in keys.items()}


def _changed_keys(old: Config, new: Config) -> list[str]:
    a, b = _flat(old), _flat(new)
    return sorted(k for k in a if a[k] != b.get(k))


def _reloadable(key: str) -> bool:
    return any(key == r or key.startswith(r + ".") for r in RELOADABLE)


def _merge(old: Config, new: Config, applied: list[str]) -> Config:
    """The running config with exactly the ``applied`` keys taken from ``new``: a changed
    key that needs a restart keeps its running value until then, so what ``reload``
    reports is what the daemon uses."""
    sections: dict[str, Any] = {}
    for name in old.to_dict():
        take = {
            k.split(".", 1)[1]: getattr(getattr(new, name), k.split(".", 1)[1])
            for k in applied
            if k.startswith(name + ".")
        }
        if take:
            sections[name] = replace(getattr(old, name), **take)
    return replace(old, **sections)
