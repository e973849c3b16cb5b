"""``hasherctl validate``: the cross-hardware validator, run by the daemon.

    hasherctl validate [--job ID] [--run ID] [--kernel SPEC] [--sample F] [--seed N]
                       [--evaluator A] [--against B] [--no-wait] [--json]
    hasherctl validate --show [ID]

The daemon starts the validation as a task of its own (``validate.start``) and answers at
once; this command then polls ``validate.show`` until it ends and prints the report.
Exit status as ``hasherd validate``: 0 within tolerance and every weight evaluated, 1
otherwise (or when the validation failed), 2 on bad input, 3 without a daemon.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from hasherd.control.client import ControlClient
from hasherd.control.params import ShowValidation, StartValidation

EXIT_OK = 0
EXIT_FAILED = 1
POLL_S = 0.5

Command = Callable[[ControlClient, argparse.Namespace], int]


def _finding(f: Mapping[str, Any]) -> str:
    head = (
        f"weight {f['weight_id']} (record {f['record_id']}, token {f['token_id']}, "
        f"run {f['run_id']})"
    )
    if f["agree"] is None:
        return f"FAILED {head} after {f['attempts']} attempt(s): {f['error']}"
    return (
        f"NON-DETERMINISTIC {head}: stored output {f['stored_output']} nonce "
        f"{f['stored_golden_nonce']}; {f['evaluator_a']} {f['output_a']} nonce "
        f"{f['golden_nonce_a']}; {f['evaluator_b']} {f['output_b']} nonce "
        f"{f['golden_nonce_b']}"
    )


def render(v: Mapping[str, Any]) -> str:
    """A validation as ``hasherd validate`` prints its report."""
    head = f"validation {v['id']}: {v['evaluator_a']} against {v['evaluator_b']}, {v['state']}"
    r = v["report"]
    if r is None:
        counts = ", ".join(f"{k} {n}" for k, n in v["counts"].items())
        tail = [f"error: {v['error']}"] if v["error"] else []
        return "\n".join([head, f"so far: {counts}", *tail])
    verdict = "within tolerance" if r["within_tolerance"] else "BEYOND tolerance"
    lines = [
        head,
        f"{r['checked']} of {r['selected']} weights checked (sample {r['sample']:g}, "
        f"seed {r['seed']})",
        f"agree {r['agree']}, disagree {r['disagree']}, failed {r['failed']}",
        f"disagreement rate {r['rate']:.4f} (tolerance {r['tolerance']:g}): {verdict}",
    ]
    lines += [_finding(f) for f in (*r["disagreements"], *r["failures"])]
    return "\n".join(lines)


def _status(v: Mapping[str, Any]) -> int:
    if v["state"] == "running":
        return EXIT_OK
    return EXIT_OK if v["state"] == "finished" and v["report"]["ok"] else EXIT_FAILED


def cmd_validate(client: ControlClient, args: argparse.Namespace) -> int:
    if args.show is not None:
        show = ShowValidation(None if args.show == "last" else int(args.show))
        v = client.call("validate.show", **show.to_params())
    else:
        v = client.call("validate.start", **start_request(args).to_params())
        while not args.no_wait and v["validation"]["state"] == "running":
            time.sleep(POLL_S)
            v = client.call("validate.show", **ShowValidation(v["validation"]["id"]).to_params())
    validation = v["validation"]
    print(json.dumps(validation, indent=1) if args.json else render(validation), flush=True)
    return _status(validation)


def start_request(args: argparse.Namespace) -> StartValidation:
    return StartValidation(
        job=args.job,
        run=args.run_id,
        sample=args.sample,
        seed=args.seed,
        evaluator=args.evaluator,
        against=args.against,
        kernel=args.kernel,
    )


def _show_id(text: str) -> str:
    if text != "last" and not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a validation id or 'last', got {text!r}")
    return text


def register(sub: Any, reader: Callable[[Any, str, str, Command], argparse.ArgumentParser]) -> None:
    p = reader(
        sub,
        "validate",
        "re-evaluate stored weights on two evaluators (in the daemon)",
        cmd_validate,
    )
    p.add_argument("--job", type=int, metavar="ID", help="only the weights of this job's run")
    p.add_argument(
        "--run", dest="run_id", type=int, metavar="ID", help="only the weights of this run"
    )
    p.add_argument(
        "--kernel", metavar="SPEC", help="only this kernel: zb=K/p=P/tb=B/mem=HEX, any part"
    )
    p.add_argument(
        "--sample",
        type=float,
        metavar="F",
        help="share of the weights to check, in (0, 1] (default 1)",
    )
    p.add_argument("--seed", type=int, metavar="N", help="seed of the sample draw")
    p.add_argument(
        "--evaluator",
        metavar="A",
        help="first side: an actor name (a chip) or an evaluator (default: the "
        "first chip with validation.enable_asic, else numba)",
    )
    p.add_argument("--against", metavar="B", help="second side (default: numba or reference)")
    p.add_argument(
        "--no-wait", action="store_true", help="print the started validation's id and return"
    )
    p.add_argument(
        "--show",
        nargs="?",
        const="last",
        type=_show_id,
        metavar="ID",
        help="show validation ID (default: the last), start none",
    )
