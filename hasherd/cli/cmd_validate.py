"""``hasherd validate``: stored weights re-evaluated on two evaluators (cross-hardware).

Each chosen weight runs on evaluator A (``--evaluator``) and B (``--against``); both must
reproduce its stored output and golden nonce. The weight is marked validated or
non-deterministic, and every check is stored with both outputs. Exit status: 0 when the
disagreement rate is within ``validation.tolerance_threshold`` and every weight could be
evaluated, 1 otherwise, 2 on bad input or a storage error, or when the filters (``--job``,
``--run``, ``--dataset``, ``--kernel``) select no weight: the error says why, never "0 of
0 weights checked". Each weight runs with its own kernel (the passes and zero bits stored
with it). The database is ``--db``, else ``<storage.base_path>/hasherd.db`` of
``--config``. It stores its checks, so it
holds the database's writer lock: beside a running daemon (which holds it for its life) it
is refused, and ``hasherctl validate`` does the same work through the daemon. See
docs/validation.md.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import anyio

from hasherd import config as config_mod
from hasherd.backends.choice import evaluator_named
from hasherd.cli.common import add_config_args, add_db_arg, add_selection_args, db_path
from hasherd.cli.writer import hold_writer_lock
from hasherd.errors import InputError
from hasherd.storage import Store
from hasherd.storage.selection import KernelSpec
from hasherd.validation.core import Finding, Report, default_evaluators, validate


def register(sub: Any) -> None:
    p = sub.add_parser(
        "validate",
        help="re-evaluate stored weights on two evaluators",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    add_db_arg(p)
    p.add_argument(
        "--sample",
        type=float,
        default=1.0,
        metavar="F",
        help="share of the weights to check, in (0, 1] (default 1)",
    )
    p.add_argument(
        "--seed",
        type=int,
        metavar="N",
        help="seed of the sample draw (default: a fresh one, printed)",
    )
    p.add_argument(
        "--evaluator",
        metavar="A",
        help="first evaluator: a [[devices.chips]] name or an evaluator such as "
        "numba or asic:PATH,K (default: the first chip with "
        "validation.enable_asic, else numba)",
    )
    p.add_argument("--against", metavar="B", help="second evaluator (default: reference)")
    add_selection_args(
        p, run_help="only the weights of this run", job_help="only the weights of this job's run"
    )
    p.add_argument("--dataset", type=int, metavar="ID", help="only this dataset's weights")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_config_args(p)
    p.set_defaults(handler=run_validate)


async def _validate(args: argparse.Namespace) -> Report:
    cfg = config_mod.load(args.config)
    name_a, name_b = default_evaluators(cfg)
    name_a, name_b = args.evaluator or name_a, args.against or name_b
    ev_a, ev_b = evaluator_named(name_a, cfg), evaluator_named(name_b, cfg)
    kernel = KernelSpec.parse(args.kernel) if args.kernel else None
    db = db_path(args, cfg)
    if not db.is_file():
        raise InputError("--db", f"{db}: no such file")
    with hold_writer_lock(db, args, instead="validate"):
        async with await Store.open(db, create=False) as store:
            return await validate(
                store,
                ev_a,
                ev_b,
                config=cfg.validation,
                sample=args.sample,
                seed=args.seed,
                run_id=args.run,
                job_id=args.job,
                dataset_id=args.dataset,
                kernel=kernel,
                labels=(name_a, name_b),
            )


def _line(f: Finding) -> str:
    c = f.check
    head = f"weight {c.weight_id} (record {f.record_id}, token {f.token_id}, run {f.run_id})"
    if c.agree is None:
        return f"FAILED {head} after {c.attempts} attempt(s): {c.error}"
    return (
        f"NON-DETERMINISTIC {head}: stored output {c.stored_output} nonce "
        f"{c.stored_golden_nonce}; {c.evaluator_a} {c.output_a} nonce {c.golden_nonce_a}; "
        f"{c.evaluator_b} {c.output_b} nonce {c.golden_nonce_b}"
    )


def render(r: Report) -> str:
    verdict = "within tolerance" if r.within_tolerance else "BEYOND tolerance"
    lines = [
        f"{r.evaluator_a} against {r.evaluator_b}: {r.checked} of {r.selected} weights checked"
        f" (sample {r.sample:g}, seed {r.seed})",
        f"agree {r.agree}, disagree {r.disagree}, failed {r.failed}",
        f"disagreement rate {r.rate:.4f} (tolerance {r.tolerance:g}): {verdict}",
    ]
    lines += [_line(f) for f in (*r.disagreements, *r.failures)]
    return "\n".join(lines)


def run_validate(args: argparse.Namespace) -> int:
    report = anyio.run(_validate, args)
    print(json.dumps(report.to_json(), indent=1) if args.json else render(report))
    return 0 if report.ok else 1
