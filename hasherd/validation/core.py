"""The validation core: stored weights re-evaluated on two sides, with retries, a timeout
and a tolerance.

Each chosen weight is run on side A and side B (a chip against the simulator; without a
chip, numba against the reference; for the end-of-run sample of ``hasherd train``, the
stored output itself against the reference), against its dataset's jitter memory, with
the passes and zero bits of the run that found it. Both must reproduce the stored output
and golden nonce: the weight becomes 'validated', otherwise 'non-deterministic'. A side
that fails or overruns ``validation.timeout`` is tried again,
``validation.retry_attempts`` times; a weight that still cannot be evaluated keeps its
state. ``validate`` stores every check with both sides' outputs (``validations`` table).
See docs/validation.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import secrets
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, TypeVar

import numpy as np

from hasherd.actors.thread import CallThread
from hasherd.backends.choice import best_simulator
from hasherd.config import Config, ValidationConfig
from hasherd.errors import InputError
from hasherd.kernel.evaluators.base import Evaluator
from hasherd.kernel.memory import JitterMemory
from hasherd.storage import Store
from hasherd.storage.rows import WeightRow
from hasherd.storage.selection import KernelSpec, WeightFilter, require
from hasherd.storage.validations import ValidationRow, outputs_agree, store_validation

LOGGER = logging.getLogger(__name__)
T = TypeVar("T")


def default_evaluators(cfg: Config) -> tuple[str, str]:
    """The pair validated against each other when none is named: the first chip device
    against numba when ``validation.enable_asic`` and a chip is configured; otherwise
    numba (reference without numba) against the reference."""
    simulator = best_simulator()
    if cfg.validation.enable_asic:
        if cfg.devices.chips:
            return cfg.devices.chips[0].name, simulator
        LOGGER.warning(
            "validation.enable_asic: no [[devices.chips]] configured; "
            "validating %s against the reference",
            simulator,
        )
    return simulator, "reference"


# -- one weight on two sides -----------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    """What one weight's evaluation needs: its record, seed, memory, passes, zero bits, and
    the (output, golden nonce) training stored for it."""

    slots: np.ndarray
    seed: bytes
    memory: JitterMemory
    passes: int
    zero_bits: int
    stored: tuple[int, int]


def task_for(w: WeightRow, memory: JitterMemory, passes: int, zero_bits: int) -> Task:
    """The task of a stored weight, against ``memory``; InputError when the memory is not
    the one the weight was found with."""
    if memory.memory_id != w.memory_id:
        raise InputError(
            "memory_id",
            f"weight's {w.memory_id[:12]} but the dataset's memory is {memory.memory_id[:12]}",
        )
    slots = np.frombuffer(w.slots, dtype="<u4").astype(np.uint32)
    return Task(slots, bytes(w.seed), memory, passes, zero_bits, (w.output, w.golden_nonce))


class Lane(Protocol):
    """One side of the comparison: an evaluator on its own thread (``EvaluatorLane``), a
    daemon actor reached through the pool (a chip that holds its port), or the stored
    output itself (``StoredLane``)."""

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


class StoredLane:
    """The stored output as a side: checked against one evaluator, a weight agrees when
    that evaluator reproduces what training stored (the end-of-run sample)."""

    label = "stored"

    def supports(self, zero_bits: int) -> bool:
        return True

    async def warm_up(self) -> None:
        return None

    async def run(self, task: Task, timeout: float) -> tuple[int, int]:
        return task.stored

    def close(self) -> None:
        return None


class Attempts(NamedTuple):
    """One side's answer for one weight: its (output, golden nonce) or None, the runs it
    took, the last error, and whether every failed run overran the timeout."""

    result: tuple[int, int] | None
    runs: int
    error: str | None
    timed_out: bool


async def _attempt(lane: Lane, task: Task, cfg: ValidationConfig, weight_id: int) -> Attempts:
    if not lane.supports(task.zero_bits):
        return Attempts(None, 0, f"{lane.label}: does not serve zero_bits {task.zero_bits}", False)
    error, timed_out = "", True
    for attempt in range(1, cfg.retry_attempts + 2):
        try:
            return Attempts(await lane.run(task, cfg.timeout), attempt, None, False)
        except TimeoutError:
            error = f"{lane.label}: timed out after {cfg.timeout:g} s"
        except Exception as exc:  # any failure of the evaluator is retried
            error, timed_out = f"{lane.label}: {type(exc).__name__}: {exc}", False
        LOGGER.warning("validation of weight %d, attempt %d: %s", weight_id, attempt, error)
    return Attempts(None, cfg.retry_attempts + 1, error, timed_out)


@dataclass(frozen=True)
class Check:
    """One weight checked on both sides, not stored yet. ``timed_out``: it could not be
    evaluated because a side overran the timeout on every run."""

    weight: WeightRow
    row: ValidationRow
    timed_out: bool = False


async def check_weight(
    lanes: tuple[Lane, Lane],
    w: WeightRow,
    task_of: Callable[[WeightRow], Task],
    cfg: ValidationConfig,
) -> Check:
    """Run ``w`` on both lanes (``task_of`` builds its task; an InputError from it fails
    the weight without running it) and compare both answers with the stored one."""
    weight_id = w.id
    assert weight_id is not None  # callers check stored weights only
    try:
        task = task_of(w)
    except InputError as exc:
        return Check(w, _row(weight_id, w, lanes, Attempts(None, 0, str(exc), False), None))
    a, b = await asyncio.gather(
        _attempt(lanes[0], task, cfg, weight_id), _attempt(lanes[1], task, cfg, weight_id)
    )
    row = _row(weight_id, w, lanes, a, b)
    if row.agree is False:
        LOGGER.warning(
            "weight %d (record %d) is non-deterministic: stored %s, %s %s, %s %s",
            *(weight_id, w.record_id, task.stored, row.evaluator_a, a.result),
            *(row.evaluator_b, b.result),
        )
    failed = [x for x in (a, b) if x.error is not None]
    return Check(w, row, bool(failed) and all(x.timed_out for x in failed))


def _row(
    weight_id: int, w: WeightRow, lanes: tuple[Lane, Lane], a: Attempts, b: Attempts | None
) -> ValidationRow:
    """The check of weight ``weight_id`` (``w``) from both sides' attempts (``b`` None: it
    did not run)."""
    stored = (w.output, w.golden_nonce)
    out_a, out_b = a.result, None if b is None else b.result
    error = "; ".join(x.error for x in (a, b) if x is not None and x.error) or None
    return ValidationRow(
        weight_id=weight_id,
        seed=bytes(w.seed),
        stored_output=stored[0],
        stored_golden_nonce=stored[1],
        evaluator_a=lanes[0].label,
        output_a=None if out_a is None else out_a[0],
        golden_nonce_a=None if out_a is None else out_a[1],
        evaluator_b=lanes[1].label,
        output_b=None if out_b is None else out_b[0],
        golden_nonce_b=None if out_b is None else out_b[1],
        agree=outputs_agree(stored, out_a, out_b),
        attempts=max(a.runs, 0 if b is None else b.runs),
        error=error,
    )


async def check_all(
    lanes: tuple[Lane, Lane],
    weights: Sequence[WeightRow],
    task_of: Callable[[WeightRow], Task],
    cfg: ValidationConfig,
    record: Callable[[Check], Awaitable[None]],
) -> None:
    """Warm both lanes up, check every weight on them, ``cfg.max_concurrency`` weights at
    once, and hand each check to ``record`` (which stores it as its caller wants); the
    lanes are closed at the end, whatever happens."""
    try:
        await asyncio.gather(*(lane.warm_up() for lane in lanes))
        pending: Iterator[WeightRow] = iter(weights)

        async def worker() -> None:
            for w in pending:  # shared: each weight is taken by one worker
                await record(await check_weight(lanes, w, task_of, cfg))

        async with asyncio.TaskGroup() as tg:
            for _ in range(max(1, min(cfg.max_concurrency, len(weights)))):
                tg.create_task(worker())
    finally:
        for lane in lanes:
            lane.close()


# -- which weights ---------------------------------------------------------------------------


def draw(items: Sequence[T], k: int, seed: int) -> list[T]:
    """``k`` of the items, drawn with ``seed``, in their given order (all when k >= n)."""
    n = len(items)
    if k >= n:
        return list(items)
    picked = np.random.default_rng(seed).choice(n, size=k, replace=False)
    return [items[i] for i in sorted(int(i) for i in picked)]


def choose(weights: list[WeightRow], sample: float, seed: int) -> list[WeightRow]:
    """``ceil(sample * n)`` of the weights, drawn with ``seed``, in their given order."""
    if not 0.0 < sample <= 1.0:
        raise InputError("sample", f"{sample} is outside (0, 1]")
    return draw(weights, math.ceil(sample * len(weights) - 1e-9), seed)


class StoredInputs:
    """What re-evaluating stored weights needs, read from the store once: each dataset's
    jitter memory, rebuilt from its records in record order, and each run's training
    options (the passes and zero bits of a weight are its own, stored with it)."""

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
        """The weight's task, with its own kernel (passes and zero bits stored with it)."""
        memory = self.memories[self.record_ds[w.record_id]]
        return task_for(w, memory, w.passes, w.zero_bits)


# -- ``hasherd validate`` and the daemon's validations ----------------------------------------


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
    kernel: KernelSpec | None = None,
    labels: tuple[str, str] | None = None,
    on_check: Callable[[str], None] | None = None,
) -> Report:
    """Validate the stored weights that match the filters (a ``sample`` share of them,
    drawn with ``seed``; a fresh seed, reported, when None) on both evaluators, each with
    its own kernel; ``NoWeights`` (saying why) when the filters match none.
    ``config.max_concurrency`` weights at once; store every check and return the report.
    ``labels`` name the evaluators in the database and the report (default: their
    kinds). ``on_check(kind)`` is called after each weight (``agree``, ``disagree`` or
    ``failed``)."""
    if seed is None:
        seed = secrets.randbits(63)
    label_a, label_b = labels or (_label(evaluator_a), _label(evaluator_b))
    selected = await require(store, WeightFilter(run_id, job_id, dataset_id, kernel=kernel))
    chosen = choose(selected, sample, seed)
    inputs = StoredInputs(store)
    datasets = [d.id for d in await store.datasets()]
    await inputs.load(datasets if dataset_id is None else [dataset_id], {w.run_id for w in chosen})
    findings: dict[str, list[Finding]] = {"agree": [], "disagree": [], "failed": []}

    async def record(c: Check) -> None:
        row, w = await store_validation(store, c.row), c.weight
        kind = {True: "agree", False: "disagree", None: "failed"}[row.agree]
        findings[kind].append(Finding(w.record_id, w.token_id, w.run_id, row))
        if on_check is not None:
            on_check(kind)

    lanes = (_lane(label_a, evaluator_a), _lane(label_b, evaluator_b))
    await check_all(lanes, chosen, inputs.task, config, record)
    report = _report((label_a, label_b), sample, seed, len(selected), findings, config)
    payload = {k: v for k, v in report.to_json().items() if k not in ("disagreements", "failures")}
    payload["non_deterministic"] = [f.check.weight_id for f in report.disagreements]
    await store.add_event("validation", payload, run_id=run_id)
    return report


def _report(
    labels: tuple[str, str],
    sample: float,
    seed: int,
    selected: int,
    findings: dict[str, list[Finding]],
    config: ValidationConfig,
) -> Report:
    def by_weight(items: list[Finding]) -> tuple[Finding, ...]:
        return tuple(sorted(items, key=lambda f: f.check.weight_id))

    return Report(
        evaluator_a=labels[0],
        evaluator_b=labels[1],
        sample=sample,
        seed=seed,
        selected=selected,
        checked=sum(len(found) for found in findings.values()),
        agree=len(findings["agree"]),
        disagree=len(findings["disagree"]),
        failed=len(findings["failed"]),
        tolerance=config.tolerance_threshold,
        disagreements=by_weight(findings["disagree"]),
        failures=by_weight(findings["failed"]),
    )


def _label(side: Evaluator | Lane) -> str:
    return side.name if isinstance(side, Evaluator) else side.label


def _lane(label: str, side: Evaluator | Lane) -> Lane:
    return EvaluatorLane(label, side) if isinstance(side, Evaluator) else side
