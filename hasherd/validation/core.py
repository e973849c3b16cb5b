"""The cross-hardware validator: stored weights re-evaluated on two evaluators.

Each chosen weight is run on evaluator A and on evaluator B (a chip against the
simulator; without a chip, numba against the reference), against its dataset's jitter
memory rebuilt from the stored records, with the passes and zero bits of the run that
found it. Both must reproduce the stored output and golden nonce: the weight becomes
'validated', otherwise 'non-deterministic'; every check is stored with both evaluators'
outputs (``validations`` table). An evaluator that fails or overruns
``validation.timeout`` is tried again, ``validation.retry_attempts`` times; a weight
that still cannot be evaluated keeps its state and the error is stored. See
docs/validation.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from hasherd import backends
from hasherd.actors.thread import CallThread
from hasherd.config import Config, ValidationConfig
from hasherd.errors import InputError
from hasherd.kernel.evaluators.base import Evaluator
from hasherd.kernel.memory import JitterMemory
from hasherd.storage import Store
from hasherd.storage.rows import WeightRow
from hasherd.storage.validations import ValidationRow, outputs_agree, store_validation

LOGGER = logging.getLogger(__name__)


def default_evaluators(cfg: Config) -> tuple[str, str]:
    """The pair validated against each other when none is named: the first chip device
    against numba when ``validation.enable_asic`` and a chip is configured; otherwise
    numba (reference without numba) against the reference."""
    simulator = "numba" if "numba" in backends.available() else "reference"
    if cfg.validation.enable_asic:
        if cfg.devices.chips:
            return cfg.devices.chips[0].name, simulator
        LOGGER.warning(
            "validation.enable_asic: no [[devices.chips]] configured; "
            "validating %s against the reference",
            simulator,
        )
    return simulator, "reference"


def make_evaluator(name: str, cfg: Config) -> Evaluator:
    """A configured chip device by its name, else an evaluator spec (``numba``,
    ``asic:PATH,K``, ...)."""
    for chip in cfg.devices.chips:
        if chip.name == name:
            from hasherd.backends.asic import chip_evaluator

            return chip_evaluator(chip)
    return backends.create(name)


@dataclass(frozen=True)
class Finding:
    """A weight that disagreed or could not be evaluated, with its stored check."""

    record_id: int
    token_id: int
    run_id: int
    check: ValidationRow

    def to_json(self) -> dict[str, Any]:
        return {
            "record_id": self.record_id,
            "token_id": self.token_id,
            "run_id": self.run_id,
            **self.check.to_json(),
        }


@dataclass(frozen=True)
class Report:
    """What one validation found. ``checked`` = ``agree`` + ``disagree`` + ``failed``; the
    disagreement rate is over the weights both evaluators ran (``agree + disagree``)."""

    evaluator_a: str
    evaluator_b: str
    sample: float
    seed: int
    selected: int  # weights that matched the filters
    checked: int  # of those, the sample that was checked
    agree: int
    disagree: int
    failed: int
    tolerance: float
    disagreements: tuple[Finding, ...] = field(default=())
    failures: tuple[Finding, ...] = field(default=())

    @property
    def evaluated(self) -> int:
        return self.agree + self.disagree

    @property
    def rate(self) -> float:
        return self.disagree / self.evaluated if self.evaluated else 0.0

    @property
    def within_tolerance(self) -> bool:
        return self.rate <= self.tolerance

    @property
    def ok(self) -> bool:
        """Within tolerance, and every checked weight could be evaluated."""
        return self.within_tolerance and self.failed == 0

    def to_json(self) -> dict[str, Any]:
        return {
            "evaluator_a": self.evaluator_a,
            "evaluator_b": self.evaluator_b,
            "sample": self.sample,
            "seed": self.seed,
            "selected": self.selected,
            "checked": self.checked,
            "agree": self.agree,
            "disagree": self.disagree,
            "failed": self.failed,
            "rate": self.rate,
            "tolerance": self.tolerance,
            "within_tolerance": self.within_tolerance,
            "ok": self.ok,
            "disagreements": [f.to_json() for f in self.disagreements],
            "failures": [f.to_json() for f in self.failures],
        }


@dataclass(frozen=True)
class Task:
    """What one weight's evaluation needs: its record, seed, memory, passes, zero bits."""

    slots: np.ndarray
    seed: bytes
    memory: JitterMemory
    passes: int
    zero_bits: int


class Lane(Protocol):
    """One side of the comparison: an evaluator on its own thread (``EvaluatorLane``), or
    a daemon actor reached through the pool (a chip that holds its port)."""

    label: str

    def supports(self, zero_bits: int) -> bool: ...

    async def warm_up(self) -> None: ...

    async def run(self, task: Task, timeout: float) -> tuple[int, int]:
        """(output, golden nonce); ``TimeoutError`` after ``timeout`` seconds."""
        ...

    def close(self) -> None: ...


class EvaluatorLane:
    """An evaluator on its own CallThread, one call at a time (so ``timeout`` times the
    evaluation, not the wait for the thread). A call that overruns cannot be stopped; it
    keeps its thread, and later calls get a fresh one."""

    def __init__(self, label: str, evaluator: Evaluator) -> None:
        self.label = label
        self.evaluator = evaluator
        self.thread = CallThread(f"validate-{label}")
        self.lock = asyncio.Lock()

    def supports(self, zero_bits: int) -> bool:
        return self.evaluator.supports(zero_bits)

    async def warm_up(self) -> None:
        async with self.lock:
            await self.thread.call(self.evaluator.warm_up)

    async def run(self, task: Task, timeout: float) -> tuple[int, int]:
        ev = self.evaluator
        async with self.lock:
            thread = self.thread
            call = thread.call(
                ev.evaluate, task.slots, [task.seed], task.memory, task.passes, task.zero_bits
            )
            try:
                res = await asyncio.wait_for(call, timeout)
            except TimeoutError:
                thread.close()
                self.thread = CallThread(f"validate-{self.label}")
                raise
        return int(res.output[0]), int(res.golden_nonce[0])

    def close(self) -> None:
        self.thread.close(self.evaluator.close)


async def _attempt(
    lane: Lane, task: Task, cfg: ValidationConfig, weight_id: int
) -> tuple[tuple[int, int] | None, int, str | None]:
    """(output, golden nonce) or None, the runs it took, the last error."""
    if not lane.supports(task.zero_bits):
        return None, 0, f"{lane.label}: does not serve zero_bits {task.zero_bits}"
    error = ""
    for attempt in range(1, cfg.retry_attempts + 2):
        try:
            return await lane.run(task, cfg.timeout), attempt, None
        except TimeoutError:
            error = f"{lane.label}: timed out after {cfg.timeout:g} s"
        except Exception as exc:  # any failure of the evaluator is retried
            error = f"{lane.label}: {type(exc).__name__}: {exc}"
        LOGGER.warning("validation of weight %d, attempt %d: %s", weight_id, attempt, error)
    return None, cfg.retry_attempts + 1, error


class _Context:
    """The stored things a weight's evaluation needs: its dataset memory, its run's
    training options; each read once."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.record_ds: dict[int, int] = {}
        self.memories: dict[int, JitterMemory] = {}
        self.training: dict[int, dict[str, Any]] = {}

    async def load(self, dataset_ids: list[int], run_ids: set[int]) -> None:
        for ds_id in dataset_ids:
            rows = await self.store.records(ds_id)
            for r in rows:
                self.record_ds[r.id] = ds_id
            frames = np.frombuffer(b"".join(r.slots for r in rows), dtype="<u4").reshape(-1, 12)
            self.memories[ds_id] = JitterMemory(frames.astype(np.uint32))
        for run_id in run_ids:
            run = await self.store.run(run_id)
            self.training[run_id] = json.loads(run.config_json)["training"]

    def task(self, w: WeightRow) -> Task:
        memory = self.memories[self.record_ds[w.record_id]]
        if memory.memory_id != w.memory_id:
            raise InputError(
                "memory_id",
                f"weight's {w.memory_id[:12]} but the dataset's memory is {memory.memory_id[:12]}",
            )
        t = self.training[w.run_id]
        slots = np.frombuffer(w.slots, dtype="<u4").astype(np.uint32)
        return Task(slots, bytes(w.seed), memory, int(t["passes"]), int(t["zero_bits"]))


def choose(weights: list[WeightRow], sample: float, seed: int) -> list[WeightRow]:
    """``ceil(sample * n)`` of the weights, drawn with ``seed``, in their given order."""
    if not 0.0 < sample <= 1.0:
        raise InputError("sample", f"{sample} is outside (0, 1]")
    n = len(weights)
    k = min(n, math.ceil(sample * n - 1e-9))
    if k == n:
        return list(weights)
    picked = np.random.default_rng(seed).choice(n, size=k, replace=False)
    return [weights[i] for i in sorted(int(i) for i in picked)]


async def _select(
    store: Store, run_id: int | None, job_id: int | None, dataset_id: int | None
) -> list[WeightRow]:
    if job_id is not None:
        job = await store.job(job_id)
        if job.run_id is None:
            raise InputError("job", f"job {job_id} has no run yet")
        if run_id is not None and run_id != job.run_id:
            raise InputError("run", f"job {job_id} trains run {job.run_id}, not run {run_id}")
        run_id = job.run_id
    weights = await store.weights(dataset_id=dataset_id)
    return [w for w in weights if w.id is not None and (run_id is None or w.run_id == run_id)]


async def validate(
    store: Store,
    evaluator_a: Evaluator | Lane,
    evaluator_b: Evaluator | Lane,
    *,
    config: ValidationConfig,
    sample: float = 1.0,
    seed: int | None = None,
    run_id: int | None = None,
    job_id: int | None = None,
    dataset_id: int | None = None,
    labels: tuple[str, str] | None = None,
    on_check: Callable[[str], None] | None = None,
) -> Report:
    """Validate the stored weights that match the filters (a ``sample`` share of them,
    drawn with ``seed``; a fresh seed, reported, when None) on both evaluators,
    ``config.max_concurrency`` weights at once; store every check and return the report.
    ``labels`` name the evaluators in the database and the report (default: their
    kinds). ``on_check(kind)`` is called after each weight (``agree``, ``disagree`` or
    ``failed``)."""
    if seed is None:
        seed = secrets.randbits(63)
    label_a, label_b = labels or (_label(evaluator_a), _label(evaluator_b))
    selected = await _select(store, run_id, job_id, dataset_id)
    chosen = choose(selected, sample, seed)
    ctx = _Context(store)
    datasets = [d.id for d in await store.datasets()]
    await ctx.load(datasets if dataset_id is None else [dataset_id], {w.run_id for w in chosen})
    lanes = (_lane(label_a, evaluator_a), _lane(label_b, evaluator_b))
    findings: dict[str, list[Finding]] = {"agree": [], "disagree": [], "failed": []}
    try:
        await asyncio.gather(*(lane.warm_up() for lane in lanes))
        pending: Iterator[WeightRow] = iter(chosen)

        async def worker() -> None:
            for w in pending:  # shared: each weight is taken by one worker
                check = await _check_one(store, ctx, lanes, w, config)
                kind = {True: "agree", False: "disagree", None: "failed"}[check.agree]
                findings[kind].append(Finding(w.record_id, w.token_id, w.run_id, check))
                if on_check is not None:
                    on_check(kind)

        async with asyncio.TaskGroup() as tg:
            for _ in range(max(1, min(config.max_concurrency, len(chosen)))):
                tg.create_task(worker())
    finally:
        for lane in lanes:
            lane.close()

    def by_weight(items: list[Finding]) -> tuple[Finding, ...]:
        return tuple(sorted(items, key=lambda f: f.check.weight_id))

    report = Report(
        evaluator_a=label_a,
        evaluator_b=label_b,
        sample=sample,
        seed=seed,
        selected=len(selected),
        checked=len(chosen),
        agree=len(findings["agree"]),
        disagree=len(findings["disagree"]),
        failed=len(findings["failed"]),
        tolerance=config.tolerance_threshold,
        disagreements=by_weight(findings["disagree"]),
        failures=by_weight(findings["failed"]),
    )
    payload = {k: v for k, v in report.to_json().items() if k not in ("disagreements", "failures")}
    payload["non_deterministic"] = [f.check.weight_id for f in report.disagreements]
    await store.add_event("validation", payload, run_id=run_id)
    return report


def _label(side: Evaluator | Lane) -> str:
    return side.name if isinstance(side, Evaluator) else side.label


def _lane(label: str, side: Evaluator | Lane) -> Lane:
    return EvaluatorLane(label, side) if isinstance(side, Evaluator) else side


async def _check_one(
    store: Store,
    ctx: _Context,
    lanes: tuple[Lane, Lane],
    w: WeightRow,
    cfg: ValidationConfig,
) -> ValidationRow:
    assert w.id is not None  # _select keeps stored weights only
    stored = (w.output, w.golden_nonce)
    a: tuple[int, int] | None = None
    b: tuple[int, int] | None = None
    attempts = 0
    error: str | None
    try:
        task = ctx.task(w)
    except InputError as exc:
        error = str(exc)
    else:
        (a, tries_a, error_a), (b, tries_b, error_b) = await asyncio.gather(
            _attempt(lanes[0], task, cfg, w.id), _attempt(lanes[1], task, cfg, w.id)
        )
        attempts = max(tries_a, tries_b)
        error = "; ".join(e for e in (error_a, error_b) if e) or None
    row = ValidationRow(
        weight_id=w.id,
        seed=bytes(w.seed),
        stored_output=stored[0],
        stored_golden_nonce=stored[1],
        evaluator_a=lanes[0].label,
        output_a=None if a is None else a[0],
        golden_nonce_a=None if a is None else a[1],
        evaluator_b=lanes[1].label,
        output_b=None if b is None else b[0],
        golden_nonce_b=None if b is None else b[1],
        agree=outputs_agree(stored, a, b),
        attempts=attempts,
        error=error,
    )
    if row.agree is False:
        LOGGER.warning(
            "weight %d (record %d) is non-deterministic: stored %s, %s %s, %s %s",
            *(w.id, w.record_id, stored, row.evaluator_a, a, row.evaluator_b, b),
        )
    return await store_validation(store, row)
