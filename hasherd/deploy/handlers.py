"""The control methods ``flash.deploy``, ``flash.status`` and ``flash.rollback``.

The deployment keys are read from the daemon's current config at each call (so a
``reload`` applies to the next deployment). One deployment or rollback runs at a time;
a second waits for it. Bad params are ``InputError`` (``invalid_params``); a deployment
that cannot be carried out is ``DeployError`` (code ``deploy``, or ``bpf`` for a failed
system call), with the reason in the message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio

from hasherd.config import Config
from hasherd.control.params import DeployLayer, NoParams, Registry, typed
from hasherd.deploy import flash
from hasherd.deploy.engine import Settings
from hasherd.deploy.metrics import DeployMetrics
from hasherd.storage import Store
from hasherd.storage.selection import kernel_choice


def gates_of(req: DeployLayer, default_mode: str) -> flash.Gates:
    """The gates of ``req`` (``deployment.validation_mode`` when it names no mode)."""
    mode = req.validation_mode if req.validation_mode is not None else default_mode
    return flash.Gates(mode, req.target_fitness, req.min_difficulty)


def register(
    server: Registry,
    store: Store,
    config_getter: Callable[[], Config],
    metrics: DeployMetrics | None = None,
) -> DeployMetrics:
    """Register the ``flash.*`` methods on ``server``; the metrics they update."""
    counts = metrics if metrics is not None else DeployMetrics()
    busy = anyio.Lock()

    def settings() -> Settings:
        return Settings.from_config(config_getter().deployment)

    async def deploy(req: DeployLayer) -> dict[str, Any]:
        gates = gates_of(req, config_getter().deployment.validation_mode)
        kernel = await kernel_choice(store, req.kernel, req.run, req.job)
        async with busy:
            return await flash.deploy(
                store,
                settings(),
                req.layer,
                gates,
                dry_run=req.dry_run,
                metrics=counts,
                kernel=kernel,
            )

    async def status(_: NoParams) -> dict[str, Any]:
        return await flash.status(settings(), counts)

    async def rollback(_: NoParams) -> dict[str, Any]:
        async with busy:
            return await flash.rollback(settings(), store, counts)

    server.register("flash.deploy", typed(DeployLayer, deploy))
    server.register("flash.status", typed(NoParams, status))
    server.register("flash.rollback", typed(NoParams, rollback))
    return counts
