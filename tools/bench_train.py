"""Training benchmark: throughput against the bare evaluator, where a generation's time goes,
tokens per hour at D = 12, 17 and 20 for GRPO beside plain random search and 2^D, and the
peak RSS of training 1,000 records.

    .venv/bin/python tools/bench_train.py [--quick] [--json]

Every figure is measured in this run; nothing is compared with a number from elsewhere.
The full run takes about 2 to 3 minutes on 2 cores (``--quick``: under a minute, with too few
wins at D = 17 and 20 for a stable tokens/hour). On a machine shared with other work
the wall-clock figures move with it; the CPU seconds per candidate move much less.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import numpy as np

from hasherd.backends import create
from hasherd.config import Config
from hasherd.data import Dataset, load_dataset
from hasherd.kernel import spec
from hasherd.kernel.evaluators.base import Evaluator, make_request
from hasherd.scheduler.dispatch import EvaluatorDispatch
from hasherd.scheduler.phases import PHASES, PhaseClock
from hasherd.scheduler.trainer import Progress, Trainer
from hasherd.storage import Store
from hasherd.training.search import SearchParams

POPULATION = 256
THROUGHPUT_RECORDS, THROUGHPUT_GENERATIONS = 128, 40
# Per difficulty: the wins counted, of how many records. The records are more than the
# wins by the trainer's 64 in flight, so that the count ends while every group is still
# full: a job's last records, alone in their groups, are not what a user of a large
# dataset waits on.
FULL_PLAN = {12: (300, 364), 17: (200, 264), 20: (24, 88)}
QUICK_PLAN = {12: (40, 104), 17: (8, 72), 20: (1, 65)}
RANDOM_GROUP = 32  # records per evaluation call in the random search, as the trainer's


def subset(ds: Dataset, idx: list[int]) -> Dataset:
    """Some records of a dataset, as a dataset of their own (their own jitter memory)."""
    return replace(
        ds, slots=ds.slots[idx], targets=ds.targets[idx], context_keys=ds.context_keys[idx]
    )


def thread_cpu() -> dict[int, float]:
    """CPU seconds of each thread of this process (Linux; empty elsewhere)."""
    out: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return out
    for tid in tids:
        try:
            stat = Path(f"/proc/self/task/{tid}/stat").read_text()
        except OSError:
            continue  # ended meanwhile
        fields = stat[stat.rindex(")") + 2 :].split()
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def thread_role(name: str) -> str:
    if name == "MainThread":
        return "event loop"
    if name.startswith("hasherd-kernel"):
        return "kernel caller"
    if name.startswith("hasherd-score"):
        return "scoring and breeding (step)"
    if "connection_worker" in name:
        return "database"
    if name.startswith("hasherd-search"):
        return "search builder"
    return "kernel workers, other"


async def _train(
    ds: Dataset, cfg: Config, ev: Evaluator, db: Path, stop_at: int | None
) -> dict[str, Any]:
    clock = PhaseClock()
    at_stop: dict[str, float] = {}
    async with await Store.open(db) as store:
        with EvaluatorDispatch(ev, cfg.simulator.timeout, clock) as dispatch:
            cpu0, p0, t0 = thread_cpu(), time.process_time(), time.perf_counter()
            trainer = Trainer(store, ds, cfg, dispatch, clock=clock)

            def on_progress(p: Progress) -> None:
                if stop_at is not None and p.tokens >= stop_at and not at_stop:
                    at_stop.update(seconds=time.perf_counter() - t0, tokens=p.tokens)
                    at_stop["candidates"] = p.candidates
                    trainer.stop.set()

            trainer.on_progress = on_progress
            s = await trainer.run()
            seconds = time.perf_counter() - t0
            process_cpu = time.process_time() - p0
            names = {t.native_id: t.name for t in threading.enumerate()}
            cpu1 = thread_cpu()
    roles: dict[str, float] = {}
    for tid, cpu in cpu1.items():
        role = thread_role(names.get(tid, ""))
        roles[role] = roles.get(role, 0.0) + cpu - cpu0.get(tid, 0.0)
    return {
        "seconds": seconds,
        "cpu_seconds": process_cpu,
        "candidates": s.candidates,
        "winners": s.winners,
        "records": s.records,
        "phases": dict(clock.seconds),
        "thread_cpu": roles,
        "at_stop": at_stop,
    }


def train(
    ds: Dataset,
    ev: Evaluator,
    db: Path | None = None,
    stop_at: int | None = None,
    **training: Any,
) -> dict[str, Any]:
    """One ``hasherd train`` in process (one epoch, seed 1), stopped once ``stop_at``
    records have won; the database kept at ``db``."""
    cfg = Config().with_training(epochs=1, seed=1, validation_split=0.0, **training)
    if db is not None:
        return anyio.run(_train, ds, cfg, ev, db, stop_at)
    with tempfile.TemporaryDirectory() as tmp:
        return anyio.run(_train, ds, cfg, ev, Path(tmp) / "b.db", stop_at)


def bare_rate(ds: Dataset, ev: Evaluator, population: int, seconds: float) -> tuple[float, float]:
    """Candidates/s and CPU seconds per candidate of the evaluator alone, one record of
    ``population`` random seeds per call (the trainer's group size)."""
    rng = np.random.default_rng(2)
    seeds = rng.integers(0, 256, size=(64, population, 32), dtype=np.uint8)
    n, i = 0, 0
    p0, t0 = time.process_time(), time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        r = i % len(ds)
        ev.evaluate(ds.slots[r], seeds[i % 64], ds.memory, 21, 0)
        n, i = n + population, i + 1
    return n / (time.perf_counter() - t0), (time.process_time() - p0) / n


def throughput(ds: Dataset, ev: Evaluator, rounds: int) -> dict[str, Any]:
    """Training (store, scoring, breeding included) against the bare evaluator, at
    population 256, on records that cannot win (D = 32) so every generation is full. The
    two are measured in turns, ``rounds`` times each, and the medians compared: a shared
    machine's noise then hits both alike."""
    part = subset(ds, list(range(THROUGHPUT_RECORDS)))
    # A short run first, not counted: it loads (or, after a change, compiles) the
    # training step's kernels, whose compile time would otherwise land in the first
    # measured run and in the CPU per thread summed over the runs.
    train(subset(ds, [0, 1]), ev, population_size=POPULATION, max_generations=2, difficulty_bits=32)
    runs, bares = [], []
    for _ in range(rounds):
        runs.append(
            train(
                part,
                ev,
                population_size=POPULATION,
                max_generations=THROUGHPUT_GENERATIONS,
                difficulty_bits=32,
            )
        )
        bares.append(bare_rate(ds, ev, POPULATION, 2.0))
    rates = [r["candidates"] / r["seconds"] for r in runs]
    median = sorted(range(rounds), key=lambda i: rates[i])[rounds // 2]
    t_med, b_med = statistics.median(rates), statistics.median(b[0] for b in bares)
    cpu_train = statistics.median(r["cpu_seconds"] / r["candidates"] for r in runs)
    cpu_bare = statistics.median(b[1] for b in bares)
    # Thread CPU is counted in clock ticks (10 ms): summed over the runs, it resolves
    # about a third of what one run's would.
    total = sum(r["candidates"] for r in runs)
    by_role: dict[str, float] = {}
    for r in runs:
        for role, sec in r["thread_cpu"].items():
            by_role[role] = by_role.get(role, 0.0) + sec
    return {
        "training_candidates_per_s": t_med,
        "bare_candidates_per_s": b_med,
        "ratio": t_med / b_med,
        "training_runs": rates,
        "bare_runs": [b[0] for b in bares],
        "training_cpu_us_per_candidate": cpu_train * 1e6,
        "bare_cpu_us_per_candidate": cpu_bare * 1e6,
        "cpu_ratio": cpu_bare / cpu_train,
        "thread_cpu_ns_per_candidate": {k: 1e9 * v / total for k, v in by_role.items()},
        "thread_cpu_tick_ns_per_candidate": 1e9 / os.sysconf("SC_CLK_TCK") / total,
        "median_run": runs[median],
    }


def random_search(ds: Dataset, ev: Evaluator, d: int, wins: int) -> dict[str, Any]:
    """Fresh random seeds, 256 a record and ``RANDOM_GROUP`` records a call (as the
    trainer batches), a record leaving its group at its first winner, until ``wins``
    records have won. Candidates per win: all candidates spent (those of the records not
    yet won included) over the wins, the estimate that stays right when the count stops
    before every record has won."""
    rng = np.random.default_rng(3)
    targets = [spec.target_word(int(t), 17) for t in ds.targets]
    spent = [0] * len(ds)
    won: list[int] = []
    todo = list(range(len(ds)))
    t0 = time.perf_counter()
    while todo and len(won) < wins:
        group = todo[:RANDOM_GROUP]
        reqs = [
            make_request(
                ds.slots[r], rng.integers(0, 256, (POPULATION, 32), dtype=np.uint8), ds.memory
            )
            for r in group
        ]
        for r, res in zip(group, ev.evaluate_many(reqs), strict=True):
            xor = res.output ^ np.uint32(targets[r])
            hit = np.nonzero((xor >> np.uint32(32 - d)) == 0 if d < 32 else xor == 0)[0]
            if len(hit):
                won.append(spent[r] + int(hit[0]) + 1)
                spent[r] += int(hit[0]) + 1
                todo.remove(r)
            else:
                spent[r] += POPULATION
    return {
        "seconds": time.perf_counter() - t0,
        "wins": len(won),
        "candidates": sum(spent),
        "per_record": won,
    }


def grpo(ds: Dataset, ev: Evaluator, d: int, wins: int) -> dict[str, Any]:
    """The trainer until ``wins`` records have won at D (stopped there); candidates per
    win as for the random search (all evaluated, over the wins), and each winner's own
    count from the generation of its winner (the first generation evaluates the whole
    population, each later one all but the elite)."""
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "g.db"
        out = train(
            ds,
            ev,
            db,
            stop_at=wins,
            population_size=POPULATION,
            max_generations=100_000,
            difficulty_bits=d,
        )
        with sqlite3.connect(db) as con:
            sql = "SELECT generation FROM weights WHERE prefix_bits >= difficulty_bits"
            gens = [int(g) for (g,) in con.execute(sql)]
    per_gen = POPULATION - SearchParams(population=POPULATION).n_elite
    out["per_record"] = [POPULATION + per_gen * g for g in gens]
    stop = out["at_stop"] or {
        "seconds": out["seconds"],
        "tokens": out["winners"],
        "candidates": out["candidates"],
    }
    out["wins"], out["win_seconds"] = int(stop["tokens"]), stop["seconds"]
    out["win_candidates"] = int(stop["candidates"])
    return out


def spread(per_record: list[int]) -> dict[str, float]:
    q = np.percentile(per_record, [10, 50, 90]) if per_record else [0.0] * 3
    return {"p10": float(q[0]), "median": float(q[1]), "p90": float(q[2])}


def difficulty_table(
    ds: Dataset, ev: Evaluator, plan: dict[int, tuple[int, int]], rate: float
) -> dict[int, Any]:
    """Tokens/hour and candidates per win at each D, GRPO and random search on the same
    records, and what ``rate`` (the training throughput) gives at 2^D candidates a win."""
    out: dict[int, Any] = {}
    for d, (wins, n) in plan.items():
        part = subset(ds, list(range(n)))
        g = grpo(part, ev, d, wins)
        rnd = random_search(part, ev, d, wins)
        out[d] = {
            "records": n,
            "wins": g["wins"],
            "grpo_seconds": g["win_seconds"],
            "grpo_tokens_per_hour": g["wins"] / g["win_seconds"] * 3600,
            "grpo_candidates_per_s": g["win_candidates"] / g["win_seconds"],
            "grpo_candidates_per_win": g["win_candidates"] / max(1, g["wins"]),
            "grpo_winners_spread": spread(g["per_record"]),
            "random_seconds": rnd["seconds"],
            "random_wins": rnd["wins"],
            "random_tokens_per_hour": rnd["wins"] / rnd["seconds"] * 3600,
            "random_candidates_per_win": rnd["candidates"] / max(1, rnd["wins"]),
            "random_winners_spread": spread(rnd["per_record"]),
            "expected_candidates_per_win": 2**d,
            "expected_tokens_per_hour": rate * 3600 / 2**d,
            # the relative standard error of a count of n geometric waits is about 1/sqrt(n)
            "relative_error": 1 / np.sqrt(max(1, g["wins"])),
        }
    return out


def rss_1000(tmp: Path) -> float:
    """Peak RSS (MiB) of ``hasherd train`` on 1,000 generated records, in a child process."""
    rng = np.random.default_rng(4)
    frames = [
        {
            "feature_vector": rng.integers(0, 2**32, 12, dtype=np.uint64).tolist(),
            "target_token": int(rng.integers(0, 100_000)),
        }
        for _ in range(1000)
    ]
    data = tmp / "k.json"
    data.write_text(json.dumps(frames))
    args = [
        "train",
        "--data",
        str(data),
        "--db",
        str(tmp / "k.db"),
        "--epochs",
        "1",
        "--difficulty-bits",
        "8",
        "--seed",
        "1",
    ]
    # The child reports VmHWM, the peak of its own address space: ru_maxrss would carry the
    # pages its fork shared with this (larger) process over the exec.
    code = (
        "import re, sys; from hasherd.cli.main import main; main(sys.argv[1:]); "
        "print(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1])"
    )
    done = subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True)
    return int(done.stdout.decode().split()[-1]) / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer records (about a minute)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    started = time.perf_counter()
    ds = load_dataset(None)
    ev = create("numba")
    ev.warm_up()
    out: dict[str, Any] = {"records_in_sample": len(ds), "cpus": os.cpu_count()}
    out["throughput"] = throughput(ds, ev, 3)
    plan = QUICK_PLAN if args.quick else FULL_PLAN
    rate = out["throughput"]["training_candidates_per_s"]
    out["difficulty"] = difficulty_table(ds, ev, plan, rate)
    with tempfile.TemporaryDirectory() as tmp:
        out["peak_rss_mib_1000_records"] = rss_1000(Path(tmp))
    out["seconds"] = time.perf_counter() - started
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        report(out)
    return 0


def report(out: dict[str, Any]) -> None:
    t = out["throughput"]
    print(
        f"training throughput at population {POPULATION} ({THROUGHPUT_RECORDS} records x "
        f"{THROUGHPUT_GENERATIONS} generations, D = 32): "
        f"{t['training_candidates_per_s']:,.0f} cand/s; bare evaluator: "
        f"{t['bare_candidates_per_s']:,.0f} cand/s; ratio {t['ratio']:.2f} "
        f"(medians of {', '.join(f'{x:,.0f}' for x in t['training_runs'])} and "
        f"{', '.join(f'{x:,.0f}' for x in t['bare_runs'])})"
    )
    print(
        f"CPU per candidate: training {t['training_cpu_us_per_candidate']:.3f} us, bare "
        f"{t['bare_cpu_us_per_candidate']:.3f} us; ratio {t['cpu_ratio']:.2f}"
    )
    report_phases(t["median_run"])
    per = sorted(t["thread_cpu_ns_per_candidate"].items(), key=lambda kv: -kv[1])
    print(
        f"CPU ns per candidate, by thread, over the {len(t['training_runs'])} training runs "
        f"(one clock tick = {t['thread_cpu_tick_ns_per_candidate']:.1f} ns): "
        + ", ".join(f"{role} {ns:.0f}" for role, ns in per)
    )
    print()
    print(
        f"{'D':>3} {'wins':>9} {'GRPO cand/s':>12} {'GRPO tok/h':>11} {'expected':>9} "
        f"{'GRPO cand/win':>14} {'winners p10..p90':>21} {'random tok/h':>13} "
        f"{'random cand/win':>16} {'2^D':>9} {'±':>4}"
    )
    for d, r in out["difficulty"].items():
        sp = r["grpo_winners_spread"]
        print(
            f"{d:>3} {r['wins']:>4}/{r['records']:<4} {r['grpo_candidates_per_s']:>12,.0f} "
            f"{r['grpo_tokens_per_hour']:>11,.0f} {r['expected_tokens_per_hour']:>9,.0f} "
            f"{r['grpo_candidates_per_win']:>14,.0f} {sp['p10']:>10,.0f}..{sp['p90']:<9,.0f} "
            f"{r['random_tokens_per_hour']:>13,.0f} {r['random_candidates_per_win']:>16,.0f} "
            f"{r['expected_candidates_per_win']:>9,} {100 * r['relative_error']:>3.0f}%"
        )
    print(
        "wins: records won / trained (the count stops while every group is full); "
        "expected = the throughput above x 3600 / 2^D;\ncand/win = all candidates "
        "evaluated (records not yet won included) / wins; winners p10..p90 = the winners' "
        "own counts; ± = 1/sqrt(wins), the relative standard error of the count"
    )
    print(f"peak RSS, hasherd train on 1,000 records: {out['peak_rss_mib_1000_records']:.1f} MiB")
    print(f"benchmark time: {out['seconds']:.0f} s on {out['cpus']} CPUs")


def report_phases(run: dict[str, Any]) -> None:
    """Where the median training run's time went: the phases (scheduler/phases.py, wall
    seconds, overlapping across threads) and each thread's CPU seconds."""
    wall = run["seconds"]
    print(
        f"where the time goes (median run: {wall:.2f} s wall, {run['cpu_seconds']:.2f} CPU s, "
        f"{run['candidates']:,} candidates):"
    )
    for phase, what in PHASES.items():
        sec = run["phases"].get(phase, 0.0)
        print(f"  {phase:<9} {sec:7.3f} s {100 * sec / wall:5.1f}%  {what}")
    for role, sec in sorted(run["thread_cpu"].items(), key=lambda kv: -kv[1]):
        print(f"  CPU {role:<30} {sec:7.3f} s")


if __name__ == "__main__":
    raise SystemExit(main())
