"""``hasherd vectors``: conformance vectors (kernel.md, "Conformance vectors").

``hasherd vectors check FILE`` checks the kernel module and each evaluator against a
vectors file. Exit status: 0 when every case passed, 1 when some failed, 2 when the file or
an evaluator name is unusable.
"""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

from hasherd import backends
from hasherd.kernel import spec
from hasherd.kernel.conformance import CheckReport, Mismatch, check
from hasherd.kernel.evaluators.base import Evaluator
from hasherd.kernel.vectors import KERNEL, load

LOGGER = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1


def register(sub: Any) -> None:
    p = sub.add_parser(
        "vectors",
        help="work with kernel conformance vectors",
        description="Work with kernel conformance vectors (docs/kernel.md).",
    )
    vsub = p.add_subparsers(dest="subcommand", required=True)
    c = vsub.add_parser(
        "check",
        help="check the kernel and evaluators against a vectors file",
        description="Check the kernel sections against the kernel module (reported as "
        "'kernel') and the loop section against each evaluator, with and without a trace. "
        "Exit 0 when every case passed, 1 when some failed, 2 on a bad file or evaluator.",
    )
    c.add_argument("file", metavar="FILE", help="the vectors file (JSON)")
    c.add_argument(
        "--evaluator",
        "-e",
        dest="evaluators",
        action="append",
        metavar="NAME",
        help="evaluator to run the loop section on, e.g. reference, numba, numba:4; "
        "repeat for several (default: every evaluator available here); "
        f"'{KERNEL}' alone checks only the kernel sections",
    )
    c.add_argument(
        "--json",
        action="store_true",
        help='print only {"evaluators": {NAME: {SECTION: {"passed": N, "failed": M}}}} on stdout',
    )
    c.set_defaults(handler=run_check)


def run_check(args: argparse.Namespace) -> int:
    """The ``vectors check`` handler; HasherErrors propagate to main (exit 2)."""
    chosen = _create(args.evaluators or backends.available())
    vectors = load(args.file)
    LOGGER.info("checking %s (%d cases) with %s", args.file, len(vectors), ", ".join(chosen))
    report = check(vectors, chosen)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(format_report(report, len(vectors)))
    return EXIT_OK if report.ok else EXIT_FAILED


def _create(names: list[str]) -> dict[str, Evaluator]:
    """Evaluators by name, in order, once each; ``kernel`` is always checked anyway."""
    return {n: backends.create(n) for n in dict.fromkeys(names) if n != KERNEL}


def format_report(report: CheckReport, cases: int) -> str:
    lines = [f"{report.path}: {spec.SPEC}, {cases} cases", ""]
    lines.append(f"{'evaluator':<12} {'section':<14} {'passed':>7} {'failed':>7} {'skipped':>8}")
    for ev in report.evaluators:
        for s in ev.sections:
            row = f"{ev.evaluator:<12} {s.section:<14} {s.passed:>7} {s.failed:>7} {s.skipped:>8}"
            lines.append(row)
    for name, section in report.failures():
        if section.first_mismatch is not None:
            lines += ["", *_format_mismatch(name, section.failed, section.first_mismatch)]
    failed = sum(s.failed for _, s in report.failures())
    lines += ["", "all cases passed" if report.ok else f"FAILED: {failed} case(s)"]
    return "\n".join(lines)


def _format_mismatch(evaluator: str, failed: int, m: Mismatch) -> list[str]:
    note = f" ({m.note})" if m.note else ""
    return [
        f"{evaluator} {m.section}: {failed} failed; first: {m.section}[{m.case}]{note}",
        f"  field:    {m.field}",
        f"  expected: {_show(m.expected)}",
        f"  got:      {_show(m.got)}",
    ]


def _show(value: object) -> str:
    if isinstance(value, (bytes, bytearray)):
        return value.hex() if value else "(no bytes)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and 0 <= value <= spec.MASK32:
        return f"{value} (0x{value:08x})"
    return repr(value) if isinstance(value, float) else str(value)
