"""``hasherd verify``: every stored weight re-run through the reference evaluator.

Each weight is evaluated against its own dataset's jitter memory (rebuilt from the stored
records, and checked against the weight's memory_id) with the passes and zero bits of the
run that found it. Output, golden nonce and prefix bits must all agree. Exit status: 0
when every weight agrees, 1 when any does not (each mismatch is listed), 2 on a bad
database.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import anyio
import numpy as np

from hasherd.kernel import spec
from hasherd.kernel.evaluators.reference import ReferenceEvaluator
from hasherd.kernel.memory import JitterMemory
from hasherd.storage import Store
from hasherd.storage.rows import WeightRow


def register(sub: Any) -> None:
    p = sub.add_parser(
        "verify",
        help="re-run every stored weight on the reference evaluator",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    p.add_argument("--db", required=True, metavar="PATH", help="the training database")
    p.set_defaults(handler=run_verify)


async def _load(
    db: Path,
) -> tuple[list[WeightRow], dict[int, JitterMemory], dict[int, dict[str, Any]]]:
    async with await Store.open(db, create=False) as store:
        weights = await store.weights()
        memories: dict[int, JitterMemory] = {}
        for ds in await store.datasets():
            rows = await store.records(ds.id)
            frames = np.frombuffer(b"".join(r.slots for r in rows), dtype="<u4").reshape(-1, 12)
            memories[ds.id] = JitterMemory(frames.astype(np.uint32))
        record_ds = {}
        for ds_id in memories:
            for r in await store.records(ds_id):
                record_ds[r.id] = ds_id
        runs = {r.id: json.loads(r.config_json)["training"] for r in await store.runs()}
    by_record = {w.record_id: memories[record_ds[w.record_id]] for w in weights}
    return weights, by_record, runs


def check(w: WeightRow, memory: JitterMemory, training: dict[str, Any]) -> str | None:
    """None when the weight reproduces, else what differs."""
    if memory.memory_id != w.memory_id:
        return f"memory_id {w.memory_id[:12]} but the dataset's memory is {memory.memory_id[:12]}"
    slots = np.frombuffer(w.slots, dtype="<u4").astype(np.uint32)
    res = ReferenceEvaluator().evaluate(
        slots, [w.seed], memory, training["passes"], training["zero_bits"]
    )
    out, nonce = int(res.output[0]), int(res.golden_nonce[0])
    prefix = spec.prefix_bits(out, spec.target_word(w.token_id, training["token_bits"]))
    got, want = (out, nonce, prefix), (w.output, w.golden_nonce, w.prefix_bits)
    if got != want:
        return f"stored (output, golden_nonce, prefix_bits) = {want}, reference gives {got}"
    return None


def run_verify(args: argparse.Namespace) -> int:
    weights, memories, runs = anyio.run(_load, Path(args.db))
    bad = 0
    for w in weights:
        problem = check(w, memories[w.record_id], runs[w.run_id])
        if problem:
            bad += 1
            print(f"MISMATCH weight {w.id} (record {w.record_id}, token {w.token_id}): {problem}")
    print(
        f"{len(weights)} weights checked on the reference evaluator: "
        f"{len(weights) - bad} agree, {bad} differ"
    )
    return 1 if bad else 0
