"""The end-of-run sample of a training: ``training.validation_split`` of the run's weights,
their stored output against the reference evaluator, through the validation core.

A weight the reference reproduces becomes 'validated', one it does not 'non-deterministic'
(the weight's state only: the ``validations`` table keeps the checks of ``hasherd
validate`` and ``hasherctl validate``). A weight the reference cannot re-run within
``validation.timeout``, after ``validation.retry_attempts`` more tries, stays
'unvalidated', and a ``validation_failed`` event says why.
"""

from __future__ import annotations

from typing import Any

from hasherd.config import Config
from hasherd.kernel.evaluators.reference import ReferenceEvaluator
from hasherd.kernel.memory import JitterMemory
from hasherd.storage import Store
from hasherd.storage.rows import RunRow, WeightRow
from hasherd.validation.core import (
    Check,
    EvaluatorLane,
    StoredLane,
    Task,
    check_all,
    draw,
    task_for,
)


async def check_sample(
    store: Store, run: RunRow, memory: JitterMemory, cfg: Config
) -> tuple[int, int]:
    """Check the sample of ``run`` (its weights drawn with the run's RNG seed) against
    ``memory``, the run's dataset memory; (validated, non-deterministic)."""
    mine = [w for w in await store.weights(run_id=run.id) if w.id is not None]
    picked = draw(mine, round(cfg.training.validation_split * len(mine)), run.rng_seed)
    if not picked:
        return 0, 0
    counts = {"validated": 0, "non-deterministic": 0}

    def task_of(w: WeightRow) -> Task:
        return task_for(w, memory, w.passes, w.zero_bits)

    async def record(c: Check) -> None:
        w, state = c.weight, c.row.state
        assert w.id is not None  # the sample holds stored weights only
        if state is None:
            await store.add_event(
                "validation_failed", _failure(c), run_id=run.id, record_id=w.record_id
            )
            return
        await store.set_validation(w.id, state)
        counts[state] += 1

    lanes = (StoredLane(), EvaluatorLane("reference", ReferenceEvaluator()))
    await check_all(lanes, picked, task_of, cfg.validation, record)
    return counts["validated"], counts["non-deterministic"]


def _failure(c: Check) -> dict[str, Any]:
    """The ``validation_failed`` event's payload: ``reason`` "timeout" when the reference
    overran ``validation.timeout`` on every run, else "error" with the error."""
    if c.timed_out:
        return {"weight": c.weight.id, "reason": "timeout"}
    return {"weight": c.weight.id, "reason": "error", "error": c.row.error}
