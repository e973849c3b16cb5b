"""The control methods ``hasherctl`` calls (docs/control-protocol.md lists them).

Each handler takes the request's params and returns JSON-able data; a bad param is an
``InputError`` naming it (the client sees ``invalid_params``), a missing job or actor
too. Handlers only read state or hand work to the scheduler and the pool: none blocks
the event loop.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hasherd import __version__
from hasherd.control.server import ControlServer
from hasherd.errors import HasherError, InputError
from hasherd.storage.rows import WeightRow

if TYPE_CHECKING:
    from hasherd.daemon.root import Daemon

MAX_LIST = 100_000


def _int(params: dict[str, Any], key: str, *, default: int | None = None) -> int:
    value = params.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(key, f"expected an integer, got {value!r}")
    return value


def _opt_int(params: dict[str, Any], key: str) -> int | None:
    return None if params.get(key) is None else _int(params, key)


def _only(params: dict[str, Any], *keys: str) -> None:
    extra = sorted(set(params) - set(keys))
    if extra:
        raise InputError(extra[0], "unknown parameter")


def weight_json(w: WeightRow) -> dict[str, Any]:
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
    }


def register(d: Daemon, server: ControlServer) -> None:
    """Register every method on ``server``."""
    store, sched, pool = d.store, d.scheduler, d.pool
    assert store is not None and sched is not None

    async def status(params: dict[str, Any]) -> dict[str, Any]:
        _only(params)
        cps, dps = d._update_rates()
        counts = {s: 0 for s in ("queued", "running", "paused", "finished", "cancelled", "failed")}
        for job in await store.jobs():
            counts[job.status] += 1
        active = sched.active
        return {
            "version": __version__,
            "pid": os.getpid(),
            "uptime_s": round(time.monotonic() - d.started, 1),
            "state": d.state,
            "database": store.path,
            "jobs": counts,
            "active_job": await sched.job_json(active.job) if active else None,
            "actors": pool.snapshot(),
            "candidates_per_s": round(cps, 1),
            "dsha_per_s": round(dps, 1),
        }

    async def health(params: dict[str, Any]) -> dict[str, Any]:
        _only(params)
        ok, reason = d.healthy()
        return {"healthy": ok, "reason": reason}

    async def version(params: dict[str, Any]) -> dict[str, Any]:
        _only(params)
        return {"version": __version__}

    async def jobs_submit(params: dict[str, Any]) -> dict[str, Any]:
        data = params.get("data")
        if not isinstance(data, str) or not data:
            raise InputError("data", "expected the path of a dataset file or directory")
        if not Path(data).is_absolute():
            raise InputError(
                "data",
                f"{data!r} must be an absolute path (the daemon's working directory is not yours)",
            )
        if not Path(data).exists():
            raise InputError("data", f"{data} does not exist (as seen by the daemon)")
        name = params.get("name") or Path(data).name
        if not isinstance(name, str):
            raise InputError("name", "expected a string")
        options = {k: v for k, v in params.items() if k not in ("data", "name")}
        job = await sched.submit(name, data, options)
        return {"job": await sched.job_json(job)}

    async def jobs_list(params: dict[str, Any]) -> dict[str, Any]:
        _only(params, "status")
        status = params.get("status")
        if status is not None and not isinstance(status, str):
            raise InputError("status", "expected a string")
        return {"jobs": [await sched.job_json(j) for j in await store.jobs(status)]}

    async def jobs_show(params: dict[str, Any]) -> dict[str, Any]:
        _only(params, "id")
        return {"job": await sched.job_json(await store.job(_int(params, "id")))}

    def job_action(name: str) -> Any:
        async def act(params: dict[str, Any]) -> dict[str, Any]:
            _only(params, "id")
            job_id = _int(params, "id")
            job = await getattr(sched, name)(job_id)
            return {"job": await sched.job_json(job)}

        return act

    async def weights_list(params: dict[str, Any]) -> dict[str, Any]:
        _only(params, "dataset", "layer", "limit")
        limit = _opt_int(params, "limit")
        if limit is not None and not 0 <= limit <= MAX_LIST:
            raise InputError("limit", f"must be in 0..{MAX_LIST}")
        rows = await store.weights(_opt_int(params, "dataset"), _opt_int(params, "layer"))
        shown = rows if limit is None else rows[:limit]
        return {"weights": [weight_json(w) for w in shown], "total": len(rows)}

    async def actors_list(params: dict[str, Any]) -> dict[str, Any]:
        _only(params)
        return {"actors": pool.snapshot()}

    async def actors_restart(params: dict[str, Any]) -> dict[str, Any]:
        _only(params, "name")
        name = params.get("name")
        if not isinstance(name, str) or name not in pool.actors:
            raise InputError("name", f"no actor {name!r} (actors: {', '.join(pool.actors)})")
        await pool.restart(name)
        return {"actor": pool.actors[name].snapshot()}

    async def reload(params: dict[str, Any]) -> dict[str, Any]:
        _only(params)
        try:
            return d.reload()
        except HasherError:
            d.count_error("ConfigError")
            raise

    async def validate_start(params: dict[str, Any]) -> dict[str, Any]:
        _only(params, "job", "run", "sample", "seed", "evaluator", "against")
        for key in ("job", "run", "seed"):
            _opt_int(params, key)
        return {"validation": d.validation.start(params).to_json()}

    async def validate_show(params: dict[str, Any]) -> dict[str, Any]:
        _only(params, "id")
        return {"validation": d.validation.show(_opt_int(params, "id")).to_json()}

    for method, handler in {
        "status": status,
        "health": health,
        "version": version,
        "jobs.submit": jobs_submit,
        "jobs.list": jobs_list,
        "jobs.show": jobs_show,
        "jobs.pause": job_action("pause"),
        "jobs.resume": job_action("resume"),
        "jobs.cancel": job_action("cancel"),
        "weights.list": weights_list,
        "actors.list": actors_list,
        "actors.restart": actors_restart,
        "reload": reload,
        "validate.start": validate_start,
        "validate.show": validate_show,
    }.items():
        server.register(method, handler)
