"""The control methods ``hasherctl`` calls (docs/control-protocol.md lists them).

Each ``register_*`` function takes the server and only what its methods use (the store,
the scheduler, the pool, a rate reader, a status source), as ``deploy/handlers.py``
does. Every handler receives its typed request from ``control/params.py``, so a bad
param never reaches it (the client sees ``invalid_params``); a missing job or actor is
an ``InputError`` too. Handlers only read state or hand work to the scheduler and the
pool: none blocks the event loop.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import anyio.to_thread

from hasherd import __version__
from hasherd.actors.pool import ActorPool
from hasherd.backends.cluster import node_rows
from hasherd.control import access
from hasherd.control.params import (
    MAX_NAME,
    JobRef,
    ListJobs,
    ListWeights,
    NoParams,
    Registry,
    RestartActor,
    SetPriority,
    ShowValidation,
    StartValidation,
    SubmitJob,
    typed,
)
from hasherd.errors import HasherError, InputError
from hasherd.scheduler.jobs import JobScheduler
from hasherd.storage import Store
from hasherd.storage.jobs import JobRow
from hasherd.storage.rows import WeightRow
from hasherd.storage.selection import KernelSpec, WeightFilter, require
from hasherd.storage.status import JobStatus
from hasherd.transport.peers import CURRENT_PEER
from hasherd.validation.service import ValidationService

Reply = dict[str, Any]


class StatusSource(Protocol):
    """What ``status`` and ``health`` say of the process itself (``Daemon``)."""

    @property
    def state(self) -> str: ...

    def uptime(self) -> float: ...

    def healthy(self) -> tuple[bool, str]: ...


def weight_json(w: WeightRow) -> Reply:
    return {
        "id": w.id,
        "record_id": w.record_id,
        "run_id": w.run_id,
        "token_id": w.token_id,
        "context_key": w.context_key,
        "slots": bytes(w.slots).hex(),
        "seed": bytes(w.seed).hex(),
        "output": w.output,
        "golden_nonce": w.golden_nonce,
        "prefix_bits": w.prefix_bits,
        "difficulty_bits": w.difficulty_bits,
        "fitness": w.fitness,
        "generation": w.generation,
        "epoch": w.epoch,
        "memory_id": w.memory_id,
        "layer": w.layer,
        "validation": w.validation,
        "created_at": w.created_at,
        "passes": w.passes,
        "zero_bits": w.zero_bits,
        "token_bits": w.token_bits,
    }


def register_status(
    server: Registry,
    source: StatusSource,
    store: Store,
    sched: JobScheduler,
    pool: ActorPool,
    rates: Callable[[], tuple[float, float]],
) -> None:
    """``status``, ``health`` and ``version``."""

    async def status(_: NoParams) -> Reply:
        cps, dps = rates()
        counts = {s.value: 0 for s in JobStatus}
        for job in await store.jobs():
            counts[job.status] += 1
        running = [await sched.job_json(job) for job in sched.running_jobs()]
        return {
            "version": __version__,
            "pid": os.getpid(),
            "uptime_s": round(source.uptime(), 1),
            "state": source.state,
            "database": store.path,
            "database_bytes": store.database_bytes(),
            "jobs": counts,
            "active_job": running[0] if running else None,  # the first, for older clients
            "active_jobs": running,
            "actors": pool.snapshot(),
            "candidates_per_s": round(cps, 1),
            "dsha_per_s": round(dps, 1),
        }

    async def health(_: NoParams) -> Reply:
        ok, reason = source.healthy()
        return {"healthy": ok, "reason": reason}

    async def version(_: NoParams) -> Reply:
        return {"version": __version__}

    server.register("status", typed(NoParams, status))
    server.register("health", typed(NoParams, health))
    server.register("version", typed(NoParams, version))


def register_jobs(server: Registry, store: Store, sched: JobScheduler) -> None:
    """``jobs.*``. Pausing or cancelling a running job returns within about a second: the
    scheduler withdraws its batches in flight."""

    async def submit(req: SubmitJob) -> Reply:
        # only what the peer could read itself, through no link (control/access.py)
        await anyio.to_thread.run_sync(access.check_readable, req.data, CURRENT_PEER.get())
        name = req.name or Path(req.data).name[:MAX_NAME]
        job = await sched.submit(name, req.data, req.options, req.priority)
        return {"job": await sched.job_json(job)}

    async def set_priority(req: SetPriority) -> Reply:
        return {"job": await sched.job_json(await sched.set_priority(req.id, req.priority))}

    async def list_jobs(req: ListJobs) -> Reply:
        return {"jobs": [await sched.job_json(j) for j in await store.jobs(req.status)]}

    def on_job(act: Callable[[int], Awaitable[JobRow]]) -> Callable[[JobRef], Awaitable[Reply]]:
        async def handle(req: JobRef) -> Reply:
            return {"job": await sched.job_json(await act(req.id))}

        return handle

    server.register("jobs.submit", typed(SubmitJob, submit))
    server.register("jobs.list", typed(ListJobs, list_jobs))
    server.register("jobs.set_priority", typed(SetPriority, set_priority))
    for method, act in {
        "jobs.show": store.job,
        "jobs.pause": sched.pause,
        "jobs.resume": sched.resume,
        "jobs.cancel": sched.cancel,
    }.items():
        server.register(method, typed(JobRef, on_job(act)))


def register_weights(server: Registry, store: Store) -> None:
    """``weights.list``."""

    async def list_weights(req: ListWeights) -> Reply:
        if (req.run, req.job, req.kernel) == (None, None, None):
            rows = await store.weights(req.dataset, req.layer)
        else:  # a selection by run, job or kernel: never silently empty
            spec = KernelSpec.parse(req.kernel, "kernel") if req.kernel else None
            chosen = WeightFilter(req.run, req.job, req.dataset, req.layer, spec)
            rows = await require(store, chosen)
        shown = rows if req.limit is None else rows[: req.limit]
        return {"weights": [weight_json(w) for w in shown], "total": len(rows)}

    server.register("weights.list", typed(ListWeights, list_weights))


def register_actors(server: Registry, pool: ActorPool) -> None:
    """``actors.list`` and ``actors.restart``."""

    async def list_actors(_: NoParams) -> Reply:
        return {"actors": pool.snapshot()}

    async def restart(req: RestartActor) -> Reply:
        if req.name not in pool.actors:
            actors = ", ".join(pool.actors)
            raise InputError("name", f"no actor {req.name!r} (actors: {actors})")
        await pool.restart(req.name)
        return {"actor": pool.actors[req.name].snapshot()}

    server.register("actors.list", typed(NoParams, list_actors))
    server.register("actors.restart", typed(RestartActor, restart))


NodeLister = Callable[[], Awaitable[list[dict[str, Any]]]]


def register_nodes(
    server: Registry, pool: ActorPool, cluster: NodeLister | None, configured: tuple[str, ...]
) -> None:
    """``nodes.list``: the daemon's own process and the cluster's nodes, with the actors
    on each (``cluster`` None: no ``[cluster]``). A cluster that does not answer leaves
    ``alive`` unknown and says why in ``cluster_error``, rather than failing."""

    async def list_nodes(_: NoParams) -> Reply:
        found, error = None, ""
        if cluster is not None:
            try:
                found = await cluster()
            except Exception as exc:  # the head of the cluster unreachable, ray missing
                error = f"{type(exc).__name__}: {exc}".splitlines()[0]
        rows = node_rows(pool.snapshot(), found, configured)
        return {"nodes": rows, **({"cluster_error": error} if error else {})}

    server.register("nodes.list", typed(NoParams, list_nodes))


def register_reload(
    server: Registry,
    reload: Callable[[], dict[str, list[str]]],
    count_error: Callable[[str], None],
) -> None:
    """``reload``: the config file read again (``Daemon.reload``)."""

    async def handle(_: NoParams) -> Reply:
        try:
            return dict(reload())
        except HasherError:
            count_error("ConfigError")
            raise

    server.register("reload", typed(NoParams, handle))


def register_validation(server: Registry, validation: ValidationService) -> None:
    """``validate.start`` and ``validate.show``."""

    async def start(req: StartValidation) -> Reply:
        return {"validation": validation.start(req).to_json()}

    async def show(req: ShowValidation) -> Reply:
        return {"validation": validation.show(req.id).to_json()}

    server.register("validate.start", typed(StartValidation, start))
    server.register("validate.show", typed(ShowValidation, show))
