"""Which stored weights a command works on: by job, run, dataset, layer and kernel.

A seed is only meaningful with its kernel (passes, zero bits, token bits, jitter memory;
docs/kernel.md), so every command that reads weights can narrow them to one kernel:
``--kernel zb=4/p=21`` names one (any of its parts), ``--run``/``--job`` that of a run.
An empty selection is never checked silently: ``require`` raises ``NoWeights``, saying
what the database holds instead (``verify``, ``validate`` and ``weights list``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from hasherd.errors import InputError
from hasherd.storage.rows import Kernel, WeightRow
from hasherd.storage.store import Store

_PARTS = {"zb": "zero_bits", "p": "passes", "tb": "token_bits", "mem": "memory_id"}


class NoWeights(InputError):
    """The selection holds no weight; the message says why."""


@dataclass(frozen=True)
class KernelSpec:
    """A kernel, whole or in part (None: any); ``memory_id`` matches as a prefix."""

    passes: int | None = None
    zero_bits: int | None = None
    token_bits: int | None = None
    memory_id: str | None = None

    @classmethod
    def parse(cls, text: str, field: str = "--kernel") -> KernelSpec:
        """``zb=4/p=21/tb=17/mem=<hex prefix>`` (the ``Kernel.label`` form; any subset of
        the parts, separated by ``/`` or ``,``)."""
        found: dict[str, int | str] = {}
        for part in text.replace(",", "/").split("/"):
            name, _, value = part.strip().partition("=")
            if name not in _PARTS or not value:
                raise InputError(field, f"{part!r} is not one of zb=K, p=P, tb=B, mem=HEX")
            if name == "mem":
                found[_PARTS[name]] = value.lower()
            elif value.isdigit():
                found[_PARTS[name]] = int(value)
            else:
                raise InputError(field, f"{part!r}: {value!r} is not a whole number")
        return cls(**found)  # type: ignore[arg-type]

    @classmethod
    def exactly(cls, k: Kernel) -> KernelSpec:
        return cls(k.passes, k.zero_bits, k.token_bits, k.memory_id)

    def matches(self, k: Kernel) -> bool:
        return (
            self.passes in (None, k.passes)
            and self.zero_bits in (None, k.zero_bits)
            and self.token_bits in (None, k.token_bits)
            and (self.memory_id is None or k.memory_id.startswith(self.memory_id))
        )

    @property
    def label(self) -> str:
        parts = [
            f"{short}={value if short != 'mem' else str(value)[:12]}"
            for short, name in _PARTS.items()
            if (value := getattr(self, name)) is not None
        ]
        return "/".join(parts) or "any"


@dataclass(frozen=True)
class WeightFilter:
    """What to select: any of job, run, dataset, layer and kernel (None: all)."""

    run_id: int | None = None
    job_id: int | None = None
    dataset_id: int | None = None
    layer: int | None = None
    kernel: KernelSpec | None = None


async def run_of_job(store: Store, job_id: int, run_id: int | None = None) -> int:
    """The run job ``job_id`` trains; InputError when it has none yet or is not ``run_id``."""
    job = await store.job(job_id)
    if job.run_id is None:
        raise InputError("job", f"job {job_id} has no run yet (status {job.status})")
    if run_id is not None and run_id != job.run_id:
        raise InputError("run", f"job {job_id} trains run {job.run_id}, not run {run_id}")
    return job.run_id


async def run_kernel(store: Store, run_id: int) -> Kernel:
    """The kernel run ``run_id`` trains with (its config and its dataset's memory)."""
    run = await store.run(run_id)
    ds = await store.dataset(run.dataset_id)
    t = json.loads(run.config_json).get("training", {})
    if "passes" not in t or "zero_bits" not in t:
        raise InputError("run", f"run {run_id}: its config names no training.passes/zero_bits")
    return Kernel(
        int(t["passes"]), int(t["zero_bits"]), int(t.get("token_bits", ds.token_bits)), ds.memory_id
    )


async def kernel_choice(
    store: Store, kernel: str | None, run_id: int | None, job_id: int | None
) -> KernelSpec | None:
    """The kernel that ``--kernel``, ``--run`` or ``--job`` names (one of them at most;
    None when none is given): a run's or a job's is the exact kernel it trains with."""
    given = [name for name, v in (("--kernel", kernel), ("--run", run_id), ("--job", job_id)) if v]
    if len(given) > 1:
        raise InputError(given[1], f"give one of --kernel, --run, --job (got {', '.join(given)})")
    if kernel is not None:
        return KernelSpec.parse(kernel)
    if job_id is not None:
        run_id = await run_of_job(store, job_id)
    return None if run_id is None else KernelSpec.exactly(await run_kernel(store, run_id))


async def select(store: Store, f: WeightFilter) -> list[WeightRow]:
    """The stored weights ``f`` selects (a job stands for the run it trains)."""
    run_id = f.run_id
    if f.job_id is not None:
        run_id = await run_of_job(store, f.job_id, run_id)
    rows = await store.weights(f.dataset_id, f.layer, run_id=run_id)
    return [
        w for w in rows if w.id is not None and (f.kernel is None or f.kernel.matches(w.kernel))
    ]


async def require(store: Store, f: WeightFilter) -> list[WeightRow]:
    """``select``, or ``NoWeights`` saying why nothing matched and what is stored."""
    rows = await select(store, f)
    if not rows:
        raise NoWeights("weights", await explain_empty(store, f))
    return rows


def _kernels_line(kernels: dict[Kernel, int]) -> str:
    return ", ".join(f"{k.label} ({n})" for k, n in kernels.items())


async def _runs_by_job(store: Store) -> dict[int, int]:
    return {j.run_id: j.id for j in await store.jobs() if j.run_id is not None}


async def explain_empty(store: Store, f: WeightFilter) -> str:
    """Why ``f`` selects no weight, naming the kernels the database holds and, for a run
    or job, which runs hold the weights of its kernel instead."""
    stored = await store.kernels(f.dataset_id, f.layer)
    scope = " of ".join(
        part
        for part in (
            f"layer {f.layer}" if f.layer is not None else "",
            f"dataset {f.dataset_id}" if f.dataset_id is not None else "",
        )
        if part
    )
    where = f" in {scope}" if scope else ""
    if not stored:
        return f"no weights stored{where}: nothing to check"
    held = f"stored{where}: {_kernels_line(stored)}"
    run_id = f.run_id if f.job_id is None else await run_of_job(store, f.job_id, f.run_id)
    if run_id is None:
        return f"no weights for kernel {f.kernel.label if f.kernel else 'any'}; {held}"
    jobs = await _runs_by_job(store)
    who = f"job {f.job_id} (run {run_id})" if f.job_id is not None else _run_name(run_id, jobs)
    k = await run_kernel(store, run_id)
    if f.kernel is not None and not f.kernel.matches(k):
        return f"{who} trains kernel {k.label}, not {f.kernel.label}; {held}"
    run = await store.run(run_id)
    others = {w.run_id for w in await store.weights(run.dataset_id, f.layer, kernel=k)}
    if others:
        names = ", ".join(_run_name(r, jobs) for r in sorted(others))
        return (
            f"{who} has no weights{where} for kernel {k.label}: the best seeds of that kernel "
            f"on its dataset were found by {names}; {held}"
        )
    return f"{who} has no weights{where} for kernel {k.label} (no record won yet); {held}"


def _run_name(run_id: int, jobs: dict[int, int]) -> str:
    return f"job {jobs[run_id]} (run {run_id})" if run_id in jobs else f"run {run_id}"
