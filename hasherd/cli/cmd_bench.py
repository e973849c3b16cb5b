"""``hasherd bench``: measure the kernel evaluators against the plain-Python baseline.

The measurement is ``hasherd.backends.bench``; this module parses arguments and prints a
table (or, with ``--json``, the report as one JSON object).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from hasherd.backends import bench

EPILOG = """\
Each figure is the median round of a round-robin run (docs/perf.md, section 3).
Rates count the work each evaluator reports doing: a 'miss' record hashes all 22
double SHA-256 per candidate at k = 0; a 'zone-1 hit' record lets the numba evaluator
skip passes 0..7. Large --zero-bits take long: each pass scans about 2^k nonces.

--records R makes each call one evaluate_many of R distinct records of the kind,
--population candidates each: the shape the trainer uses (its batch of 64 records in
2 groups: --records 32 --population 256 for `hasherd train --population 256`).

--against hashcat also runs `hashcat -b -m 21400 -D 1` (sha256(sha256_bin($pass)) on
the CPU devices, 2 compressions per hash) before and after the measurements (the mean
of the two is its figure) and prints hasherd's compressions/s next to hashcat's, with
the ratio, counted three ways: as the function counts them (at k = 0, 3 x (passes + 1)
a candidate, whatever an evaluator may skip: how hashcat and miners count hashes),
hashed (3 per double SHA-256 the evaluator reports; the zone-1 shortcut's skipped
passes not counted) and performed (SHA-256 rounds the kernel really runs / 64). Every
record `hasherd train` evaluates is a frame of its memory: the 'zone-1 hit' line is
the trainer's work."""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "bench",
        help="measure the kernel evaluators (candidates/s, double SHA-256/s)",
        description="Measure the kernel evaluators on a generated workload.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--seconds", type=float, default=3.0, help="per measurement (default 3)")
    p.add_argument(
        "--population", type=int, default=256, help="candidates per call, 1..4096 (default 256)"
    )
    p.add_argument(
        "--records",
        type=int,
        default=1,
        metavar="R",
        help="records per call, each of --population candidates, through evaluate_many as"
        " the trainer calls (default 1: one evaluate of one record)",
    )
    p.add_argument("--zero-bits", type=int, default=0, help="k, 0..32 (default 0)")
    p.add_argument(
        "--evaluator",
        action="append",
        metavar="NAME",
        help="evaluator to measure, repeatable (default: numba:1 and numba)",
    )
    p.add_argument(
        "--memory-frames", type=int, default=1000, help="jitter memory size (default 1000)"
    )
    p.add_argument(
        "--against",
        choices=("hashcat",),
        help="also run hashcat's benchmark (mode 21400, CPU) and print the ratio",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    cfg = bench.BenchConfig(
        seconds=args.seconds,
        population=args.population,
        records_per_call=args.records,
        zero_bits=args.zero_bits,
        evaluators=tuple(args.evaluator or bench.DEFAULT_EVALUATORS),
        memory_frames=args.memory_frames,
        against=args.against,
    )
    report = bench.run(cfg).to_dict()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_table(report))
    return 0


def _si(x: float) -> str:
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(x) >= div:
            return f"{x / div:.3g} {unit}"
    return f"{x:.3g}"


STEAL_WARN = 5.0  # percent
COLUMNS = ("evaluator", "thr", "startup", "record", "cand/s", "dsha/s", "compr/s", "dsha/cand")


def _rows(name: str, entry: dict[str, Any], nonces: bool) -> list[list[str]]:
    startup = f"{entry['startup_s']:.2f} s {entry['startup_kind']}"
    rows = []
    for label, fig in (("miss", entry), ("zone-1 hit", entry["zone1_hit"])):
        ratio = fig.get("ratio_to_baseline")
        row = [
            name,
            str(entry["threads"]),
            startup,
            label,
            _si(fig["candidates_per_s"]),
            _si(fig["dsha_per_s"]),
            _si(fig["compressions_per_s"]),
            f"{fig['dsha_per_candidate']:.1f}",
            "1 (baseline)" if ratio is None else f"{ratio:.1f}x",
        ]
        if nonces:
            row.append(_si(fig["nonces_per_s"]))
        rows.append(row)
        name, startup = "", ""
    return rows


def format_table(report: dict[str, Any]) -> str:
    """The report as a readable text table."""
    conf, cpu = report["config"], report["cpu"]
    nonces = conf["zero_bits"] > 0
    head = [*COLUMNS, "vs baseline", *(["nonces/s"] if nonces else [])]
    rows = _rows(conf["baseline"], report["baseline"], nonces)
    for name, entry in report["evaluators"].items():
        rows += _rows(name, entry, nonces)
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = [
        f"hasherd bench: {conf['rounds']} rounds of {conf['round_s']:.2f} s per measurement, "
        f"round-robin, median round; {_shape(conf)}, "
        f"zero_bits {conf['zero_bits']}, passes {conf['passes']}",
        f"memory: {conf['memory_frames']} generated frames (id {conf['memory_id'][:12]})",
        f"cpu: {cpu.get('cpu_name')}, {cpu['cpu_count']} cores, "
        f"numba vector bits: {cpu.get('vector_bits', 'n/a')}, "
        f"load average at start: {cpu['load_avg_1m_at_start']:.2f}",
        f"record 'miss': {conf['records']['miss']}",
        f"record 'zone-1 hit': {conf['records']['zone1_hit']}",
        f"baseline population: {report['baseline']['population']}"
        f"{' of one record' if conf.get('records_per_call', 1) > 1 else ''} "
        "(cut so one call is about a tenth of a round)",
        "",
        "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip(),
    ]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    if "against" in report:
        lines += ["", *format_against(report["against"])]
    lines += ["", f"peak RSS: {report['peak_rss_mib']:.1f} MiB"]
    steal = cpu.get("steal_percent")
    if steal is not None:
        lines.append(f"CPU steal during the measurements: {steal:.1f} %")
        if steal > STEAL_WARN:
            lines.append("warning: the hypervisor ran other guests on these CPUs; multi-thread")
            lines.append("figures (and all ratios) are unreliable, run again when it is quieter")
    return "\n".join(lines)


def _shape(conf: dict[str, Any]) -> str:
    """Today's "population N" for one record per call, else the call's shape."""
    if conf.get("records_per_call", 1) == 1:
        return f"population {conf['population']}"
    return f"{conf['shape']} candidates per call (evaluate_many)"


def format_against(against: dict[str, Any]) -> list[str]:
    """hashcat's figure and each evaluator's compressions/s against it."""
    hc = against["hashcat"]
    lines = [
        f"hashcat {hc['version'] or '(version unknown)'}: {hc['command']}",
        f"  device: {'; '.join(hc['devices']) or '(not reported)'}",
        f"  {_si(hc['hashes_per_s'])}H/s x {hc['compressions_per_hash']} compressions per hash"
        f" = {_si(hc['compressions_per_s'])} compressions/s (mean of the runs before and"
        f" after: {', '.join(_si(x) + 'H/s' for x in hc['runs_hashes_per_s'])})",
    ]
    many = against.get("records_per_call", 1) > 1
    for name, recs in against["evaluators"].items():
        for rec, fig in recs.items():
            label = "miss" if rec == "miss" else "zone-1 hit"
            label += f" ({against['shape']})" if many else ""
            head = f"  {name} {label}: "
            if "function_compressions_per_s" in fig:
                head += (
                    f"{_si(fig['function_compressions_per_s'])} compr/s as the function counts"
                    f" them ({fig['function_compressions_per_candidate']} a candidate)"
                    f" = {fig['function_ratio']:.2f}x hashcat; hashed"
                )
            lines.append(
                f"{head} {_si(fig['compressions_per_s'])}"
                f" = {fig['ratio']:.2f}x ({fig['dsha_per_candidate']:.1f} double SHA-256 a"
                f" candidate); performed {_si(fig['performed_compressions_per_s'])}"
                f" = {fig['performed_ratio']:.2f}x; per CPU-second"
                f" {_si(fig['compressions_per_cpu_s'])}"
            )
    return lines
