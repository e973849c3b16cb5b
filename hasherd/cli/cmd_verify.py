"""``hasherd verify``: every stored weight re-run through the reference evaluator.

Each weight is evaluated against its own dataset's jitter memory (rebuilt from the stored
records, and checked against the weight's memory_id) with its own kernel (the passes,
zero bits and token bits stored with it). Output, golden nonce and prefix bits must all
agree. ``--run``, ``--job`` (the weights that run found) and ``--kernel`` narrow the
check. Exit status: 0 when every weight agrees, 1 when any does not (each mismatch is
listed), 2 on a bad database, or when nothing is selected (an error says why: no weight
is ever checked silently). The database is ``--db``, else ``<storage.base_path>/hasherd.db``
of ``--config``. It is only read (no writer lock), so this works beside a running daemon
or ``hasherd train``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import anyio

from hasherd import config as config_mod
from hasherd.cli.common import add_config_args, add_db_arg, add_selection_args, db_path
from hasherd.cli.writer import command_line
from hasherd.errors import InputError
from hasherd.kernel import spec
from hasherd.kernel.evaluators.reference import ReferenceEvaluator
from hasherd.storage import Store
from hasherd.storage.rows import WeightRow
from hasherd.storage.selection import KernelSpec, WeightFilter, require
from hasherd.validation.core import StoredInputs


def register(sub: Any) -> None:
    p = sub.add_parser(
        "verify",
        help="re-run every stored weight on the reference evaluator",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    add_db_arg(p)
    add_selection_args(
        p, run_help="only the weights this run found", job_help="only the weights of this job's run"
    )
    add_config_args(p)
    p.set_defaults(handler=run_verify)


def weight_filter(args: argparse.Namespace) -> WeightFilter:
    kernel = KernelSpec.parse(args.kernel) if args.kernel else None
    return WeightFilter(args.run, args.job, kernel=kernel)


async def _load(
    db: Path, command: str, chosen: WeightFilter
) -> tuple[list[WeightRow], StoredInputs]:
    # No lock (works beside a writer); ``command`` names us if an old schema needs it.
    async with await Store.open_reader(db, command=command) as store:
        weights = await require(store, chosen)
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
    prefix = spec.prefix_bits(out, spec.target_word(w.token_id, w.token_bits))
    got, want = (out, nonce, prefix), (w.output, w.golden_nonce, w.prefix_bits)
    if got != want:
        return f"stored (output, golden_nonce, prefix_bits) = {want}, reference gives {got}"
    return None


def run_verify(args: argparse.Namespace) -> int:
    db = db_path(args, config_mod.load(args.config))
    weights, inputs = anyio.run(_load, db, command_line(args), weight_filter(args))
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
