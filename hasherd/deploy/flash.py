"""Deploying a layer of stored weights into the BPF maps, rolling back, and status.

``deploy`` selects the layer's weights through the gates, then runs ``engine.flash`` in
a worker thread: up to ``1 + max_retries`` attempts while they fail transiently, all
within ``deployment_timeout``. Each deployment, rollback and failure is an event in the
database (kinds ``deployed``, ``rolled_back``, ``deploy_failed``, ``rollback_failed``)
and a count in ``DeployMetrics``. A dry run reads what is live and reports the
difference; it changes no map, file or row.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio.to_thread

from hasherd.deploy import backups, engine
from hasherd.deploy.abi import Entries, checksum, entry_of
from hasherd.deploy.engine import Diff, Fault, LayerInfo, Settings, Swap
from hasherd.deploy.errors import DeployError
from hasherd.deploy.metrics import DeployMetrics
from hasherd.errors import InputError
from hasherd.storage import Store
from hasherd.storage.rows import Kernel, WeightRow
from hasherd.storage.selection import KernelSpec

LOGGER = logging.getLogger(__name__)
VALIDATION_MODES = ("strict", "lenient")
T = TypeVar("T")


@dataclass(frozen=True)
class Gates:
    """Which stored weights may go live.

    ``strict`` takes only validated weights; ``lenient`` also unvalidated ones. A weight
    found non-deterministic is never deployed. ``min_fitness`` and ``min_difficulty``
    (leading zero bits, ``prefix_bits``) are optional floors.
    """

    validation_mode: str = "strict"
    min_fitness: float | None = None
    min_difficulty: int | None = None

    def __post_init__(self) -> None:
        mode = self.validation_mode
        if mode not in VALIDATION_MODES:
            raise InputError("validation_mode", f"{mode!r} is not strict or lenient")

    def rejects(self, w: WeightRow) -> str | None:
        """Why ``w`` may not go live (None: it may)."""
        if w.validation == "non-deterministic":
            return "non_deterministic"
        if self.validation_mode == "strict" and w.validation != "validated":
            return "unvalidated"
        if self.min_fitness is not None and w.fitness < self.min_fitness:
            return "below_fitness"
        if self.min_difficulty is not None and w.prefix_bits < self.min_difficulty:
            return "below_difficulty"
        return None


@dataclass(frozen=True)
class Selection:
    layer: int
    entries: Entries
    stored: int  # weights stored for the layer (of its kernel)
    rejected: dict[str, int] = field(default_factory=dict)  # by reason
    duplicates: int = 0  # keys held by several records: the best weight kept
    kernel: Kernel | None = None  # the one kernel of the layer's weights

    def to_json(self) -> dict[str, Any]:
        return {"stored": self.stored, "rejected": self.rejected, "duplicates": self.duplicates}


def _rank(w: WeightRow) -> tuple[int, float, int, int]:
    return (w.prefix_bits, w.fitness, w.validation == "validated", w.id or 0)


def select(weights: Sequence[WeightRow], layer: int, gates: Gates) -> Selection:
    """The entries of ``layer``: its weights that pass ``gates``, one per key (the most
    prefix bits, then the highest fitness, then validated, then the newest)."""
    rejected: dict[str, int] = {}
    best: dict[bytes, WeightRow] = {}
    duplicates = 0
    for w in weights:
        reason = gates.rejects(w)
        if reason is not None:
            rejected[reason] = rejected.get(reason, 0) + 1
            continue
        key = entry_of(w)[0]
        if key in best:
            duplicates += 1
            if _rank(w) <= _rank(best[key]):
                continue
        best[key] = w
    entries = dict(entry_of(w) for w in best.values())
    kernel = weights[0].kernel if weights else None
    return Selection(layer, entries, len(weights), rejected, duplicates, kernel)


def one_kernel(layer: int, weights: Sequence[WeightRow], spec: KernelSpec | None) -> None:
    """InputError when the layer's stored weights (of ``spec``) belong to several kernels:
    a seed only reproduces with its own kernel, so a layer goes live for one kernel."""
    kernels: dict[Kernel, int] = {}
    for w in weights:
        kernels[w.kernel] = kernels.get(w.kernel, 0) + 1
    if len(kernels) > 1:
        held = ", ".join(f"{k.label} ({n})" for k, n in kernels.items())
        within = f" of kernel {spec.label}" if spec is not None else ""
        raise InputError(
            "kernel",
            f"layer {layer} holds weights{within} of {len(kernels)} kernels: {held}; "
            "a layer never mixes kernels: choose one with --kernel, --run or --job",
        )


async def selection(
    store: Store, layer: int, gates: Gates, kernel: KernelSpec | None = None
) -> Selection:
    """The layer's entries for one kernel (``kernel``; needed when it holds several)."""
    if layer < 0:
        raise InputError("layer", f"{layer} is negative")
    weights = await store.weights(layer=layer)
    mine = [w for w in weights if kernel is None or kernel.matches(w.kernel)]
    if weights and not mine:
        held = ", ".join(sorted({w.kernel.label for w in weights}))
        raise DeployError(
            f"layer {layer}: no weights of kernel {kernel.label if kernel else '-'} "
            f"(it holds {held}); nothing deployed"
        )
    one_kernel(layer, mine, kernel)
    chosen = select(mine, layer, gates)
    if not chosen.entries:
        why = ", ".join(f"{n} {r}" for r, n in sorted(chosen.rejected.items())) or "none stored"
        raise DeployError(
            f"layer {layer}: no weights pass the gates ({chosen.stored} stored; "
            f"rejected: {why}); nothing deployed"
        )
    return chosen


def _report(
    sel: Selection, s: Settings, diff: Diff, previous: LayerInfo | None, **extra: Any
) -> dict[str, Any]:
    return {
        "map_path": s.map_path,
        "layer": sel.layer,
        "count": len(sel.entries),
        "checksum": checksum(sel.entries).hex(),
        "kernel": sel.kernel.to_json() if sel.kernel else None,
        **diff.__dict__,
        "previous": previous.to_json() if previous else None,
        "selection": sel.to_json(),
        **extra,
    }


async def _thread(func: Callable[..., T], *args: Any) -> T:
    return await anyio.to_thread.run_sync(functools.partial(func, *args))


async def _with_retries(
    s: Settings, what: str, attempt: Callable[[float], T], tries: list[int]
) -> T:
    """``attempt(deadline)`` in a worker thread, again after a transient failure."""
    deadline = time.monotonic() + s.timeout
    while True:
        tries[0] += 1
        try:
            return await _thread(attempt, deadline)
        except DeployError as exc:
            last = tries[0] > s.max_retries or time.monotonic() + s.retry_delay >= deadline
            if not exc.transient or last:
                raise
            LOGGER.warning(
                "%s: attempt %d failed: %s; retrying in %g s", what, tries[0], exc, s.retry_delay
            )
            await anyio.sleep(s.retry_delay)


async def deploy(
    store: Store,
    s: Settings,
    layer: int,
    gates: Gates,
    *,
    dry_run: bool = False,
    fault: Fault | None = None,
    metrics: DeployMetrics | None = None,
    kernel: KernelSpec | None = None,
) -> dict[str, Any]:
    """Make ``layer`` live (or, with ``dry_run``, say what that would change) for one
    kernel: ``kernel`` picks it when the layer holds several (InputError otherwise)."""
    sel = await selection(store, layer, gates, kernel)
    if dry_run:
        live = await _thread(engine.read_live, s)
        previous = LayerInfo.of(live.meta) if live.meta and live.map_id is not None else None
        return _report(
            sel,
            s,
            Diff.between(live.entries, sel.entries),
            previous,
            dry_run=True,
            attempts=0,
            backup=None,
            deployed_at=None,
        )
    tries = [0]
    try:
        swap = await _with_retries(
            s,
            f"flash layer {layer}",
            lambda deadline: engine.flash(s, layer, sel.entries, deadline, fault, sel.kernel),
            tries,
        )
    except Exception as exc:
        await _failed(store, metrics, "deploy_failed", s, exc, tries[0], layer=layer)
        raise
    report = _report(
        sel,
        s,
        swap.diff,
        swap.previous,
        dry_run=False,
        attempts=tries[0],
        backup=swap.backup,
        deployed_at=swap.live.deployed_at,
    )
    await store.add_event("deployed", {k: v for k, v in report.items() if k != "dry_run"})
    if metrics is not None:
        metrics.deployed(swap.live)
    LOGGER.info(
        "layer %d live at %s: %d weights (+%d ~%d -%d), checksum %s",
        layer,
        s.map_path,
        report["count"],
        swap.diff.added,
        swap.diff.changed,
        swap.diff.removed,
        report["checksum"][:16],
    )
    return report


async def rollback(
    s: Settings, store: Store | None = None, metrics: DeployMetrics | None = None
) -> dict[str, Any]:
    """Make the previous layer live again (``_prev``, else the newest backup file)."""
    tries = [0]
    try:
        swap: Swap = await _with_retries(
            s, "rollback", lambda deadline: engine.rollback(s, deadline), tries
        )
    except Exception as exc:
        await _failed(store, metrics, "rollback_failed", s, exc, tries[0])
        raise
    report = {
        "map_path": s.map_path,
        "source": swap.source,
        "live": swap.live.to_json(),
        "previous": swap.previous.to_json() if swap.previous else None,
        "backup": swap.backup,
        "attempts": tries[0],
    }
    if store is not None:
        await store.add_event("rolled_back", report)
    if metrics is not None:
        metrics.rolled_back(swap.live)
    LOGGER.info("rolled back %s to layer %d (from %s)", s.map_path, swap.live.layer, swap.source)
    return report


async def _failed(
    store: Store | None,
    metrics: DeployMetrics | None,
    kind: str,
    s: Settings,
    exc: BaseException,
    tries: int,
    **more: Any,
) -> None:
    if metrics is not None:
        metrics.failed()
    payload = {
        "map_path": s.map_path,
        "error": str(exc) or type(exc).__name__,
        "attempts": tries,
        **more,
    }
    LOGGER.error("%s: %s", kind, payload["error"])
    if store is not None:
        await store.add_event(kind, payload)


async def status(s: Settings, metrics: DeployMetrics | None = None) -> dict[str, Any]:
    """What is live at ``s.map_path``: layer, count, checksum, since when, and whether the
    map's content still matches its meta; the layer kept for rollback; the newest backup."""
    live = await _thread(engine.read_live, s)
    shown: dict[str, Any] | None = None
    info = None
    if live.meta is not None and live.map_id is not None:
        info = LayerInfo.of(live.meta)
        intact = checksum(live.entries) == live.meta.checksum
        intact = intact and len(live.entries) == live.meta.count
        shown = {
            **info.to_json(),
            "map_id": live.map_id,
            "entries": len(live.entries),
            "intact": intact,
            "kernel": live.meta.kernel.to_json() if live.meta.kernel else None,
        }
    if metrics is not None:
        metrics.observe(info)
    newest = backups.latest(s.backup_path, s.stem) if s.backup_path else None
    return {
        "map_path": s.map_path,
        "pinned": live.meta is not None,
        "live": shown,
        "previous": LayerInfo.of(live.previous).to_json() if live.previous else None,
        "latest_backup": str(newest) if newest else None,
    }
