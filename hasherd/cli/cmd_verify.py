"""``hasherd verify``: every stored weight re-run through the reference evaluator.

Each weight is evaluated against its own dataset's jitter memory (rebuilt from the stored
records, and checked against the weight's memory_id) with the passes and zero bits of the
run that found it. Output, golden nonce and prefix bits must all agree. Exit status: 0
when every weight agrees, 1 when any does not (each mismatch is listed), 2 on a bad
database. The database is only read (no writer lock), so this works beside a running
daemon or ``hasherd train``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import anyio

from hasherd.cli.writer import command_line
from hasherd.errors import InputError
from hasherd.kernel import spec
from hasherd.kernel.evaluators.reference import ReferenceEvaluator
from hasherd.storage import Store
from hasherd.storage.rows import WeightRow
from hasherd.validation.core import StoredInputs


def register(sub: Any) -> None:
    p = sub.add_parser(
        "verify",
        help="re-run every stored weight on the reference evaluator",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    p.add_argument("--db", required=True, metavar="PATH", help="the training database")
    p.set_defaults(handler=run_verify)


async def _load(db: Path, command: str) -> tuple[list[WeightRow], StoredInputs]:
    # No lock (works beside a writer); ``command`` names us if an old schema needs it.
    async with await Store.open_reader(db, command=command) as store:
        weights = await store.weights()
        inputs = StoredInputs(store)
        runs = {r.id for r in await store.runs()}
        await inputs.load([ds.id for ds in await store.datasets()], runs)
    return weights, inputs


def check(w: WeightRow, inputs: StoredInputs) -> str | None:
    """None when the weight reproduces, else what differs."""
    try:
        task = inputs.task(w)
    except InputError as exc:
        return str(exc)
    res = ReferenceEvaluator().evaluate(
        task.slots, [task.seed], task.memory, task.passes, task.zero_bits
    )
    out, nonce = int(res.output[0]), int(res.golden_nonce[0])
    token_bits = int(inputs.training[w.run_id]["token_bits"])
    prefix = spec.prefix_bits(out, spec.target_word(w.token_id, token_bits))
    got, want = (out, nonce, prefix), (w.output, w.golden_nonce, w.prefix_bits)
    if got != want:
        return f"stored (output, golden_nonce, prefix_bits) = {want}, reference gives {got}"
    return None


def run_verify(args: argparse.Namespace) -> int:
    weights, inputs = anyio.run(_load, Path(args.db), command_line(args))
    bad = 0
    for w in weights:
        problem = check(w, inputs)
        if problem:
            bad += 1
            print(f"MISMATCH weight {w.id} (record {w.record_id}, token {w.token_id}): {problem}")
    print(
        f"{len(weights)} weights checked on the reference evaluator: "
        f"{len(weights) - bad} agree, {bad} differ"
    )
    return 1 if bad else 0
