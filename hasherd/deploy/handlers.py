"""The control methods ``flash.deploy``, ``flash.status`` and ``flash.rollback``.

The deployment keys are read from the daemon's current config at each call (so a
``reload`` applies to the next deployment). One deployment or rollback runs at a time;
a second waits for it. Bad params are ``InputError`` (``invalid_params``); a deployment
that cannot be carried out is ``DeployError`` (code ``deploy``, or ``bpf`` for a failed
system call), with the reason in the message.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import anyio

from hasherd.config import Config
from hasherd.deploy import flash
from hasherd.deploy.engine import Settings
from hasherd.deploy.metrics import DeployMetrics
from hasherd.errors import InputError
from hasherd.storage import Store

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class Registry(Protocol):
    """Where methods are registered: ``ControlServer``."""

    def register(self, method: str, handler: Handler) -> None: ...


def _only(params: dict[str, Any], *keys: str) -> None:
    extra = sorted(set(params) - set(keys))
    if extra:
        raise InputError(extra[0], "unknown parameter")


def _natural(params: dict[str, Any], key: str) -> int:
    value = params.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError(key, f"expected an integer >= 0, got {value!r}")
    return value


def _opt_natural(params: dict[str, Any], key: str) -> int | None:
    return None if params.get(key) is None else _natural(params, key)


def _number(params: dict[str, Any], key: str) -> float | None:
    value = params.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(key, f"expected a number, got {value!r}")
    return float(value)


def _bool(params: dict[str, Any], key: str) -> bool:
    value = params.get(key, False)
    if not isinstance(value, bool):
        raise InputError(key, f"expected true or false, got {value!r}")
    return value


def gates_of(params: dict[str, Any], default_mode: str) -> flash.Gates:
    mode = params.get("validation_mode", default_mode)
    if not isinstance(mode, str):
        raise InputError("validation_mode", "expected strict or lenient")
    fitness, difficulty = _number(params, "target_fitness"), _opt_natural(params, "min_difficulty")
    return flash.Gates(mode, fitness, difficulty)


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

    async def deploy(params: dict[str, Any]) -> dict[str, Any]:
        _only(params, "layer", "dry_run", "target_fitness", "min_difficulty", "validation_mode")
        layer = _natural(params, "layer")
        gates = gates_of(params, config_getter().deployment.validation_mode)
        dry_run = _bool(params, "dry_run")
        async with busy:
            return await flash.deploy(
                store, settings(), layer, gates, dry_run=dry_run, metrics=counts
            )

    async def status(params: dict[str, Any]) -> dict[str, Any]:
        _only(params)
        return await flash.status(settings(), counts)

    async def rollback(params: dict[str, Any]) -> dict[str, Any]:
        _only(params)
        async with busy:
            return await flash.rollback(settings(), store, counts)

    server.register("flash.deploy", deploy)
    server.register("flash.status", status)
    server.register("flash.rollback", rollback)
    return counts
