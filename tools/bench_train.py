"""Training benchmark: throughput against the bare evaluator, tokens per hour, GRPO against
plain random search, and the peak RSS of training 1,000 records.

    .venv/bin/python tools/bench_train.py [--quick] [--json]

Every figure is measured in this run; nothing is compared with a number from elsewhere.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import numpy as np

from hasherd.backends import create
from hasherd.config import Config
from hasherd.data import Dataset, load_dataset
from hasherd.kernel import spec
from hasherd.kernel.evaluators.base import Evaluator
from hasherd.scheduler.dispatch import EvaluatorDispatch
from hasherd.scheduler.trainer import Trainer
from hasherd.storage import Store


def subset(ds: Dataset, idx: list[int]) -> Dataset:
    """Some records of a dataset, as a dataset of their own (their own jitter memory)."""
    from dataclasses import replace

    return replace(
        ds, slots=ds.slots[idx], targets=ds.targets[idx], context_keys=ds.context_keys[idx]
    )


async def _train(ds: Dataset, cfg: Config, ev: Evaluator, db: Path) -> dict[str, Any]:
    async with await Store.open(db) as store:
        t0 = time.perf_counter()
        with EvaluatorDispatch(ev, cfg.simulator.timeout) as dispatch:
            s = await Trainer(store, ds, cfg, dispatch).run()
        return {
            "seconds": time.perf_counter() - t0,
            "candidates": s.candidates,
            "winners": s.winners,
            "records": s.records,
        }


def train(ds: Dataset, ev: Evaluator, **training: Any) -> dict[str, Any]:
    cfg = Config().with_training(epochs=1, seed=1, validation_split=0.0, **training)
    with tempfile.TemporaryDirectory() as tmp:
        return anyio.run(_train, ds, cfg, ev, Path(tmp) / "b.db")


def bare_rate(ds: Dataset, ev: Evaluator, population: int, seconds: float) -> float:
    rng = np.random.default_rng(2)
    seeds = rng.integers(0, 256, size=(64, population, 32), dtype=np.uint8)
    n, t0, i = 0, time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        r = i % len(ds)
        ev.evaluate(ds.slots[r], seeds[i % 64], ds.memory, 21, 0)
        n, i = n + population, i + 1
    return n / (time.perf_counter() - t0)


def random_search(ds: Dataset, ev: Evaluator, d: int) -> dict[str, Any]:
    """Fresh random seeds, 256 at a time, until each record has a winner at D."""
    rng = np.random.default_rng(3)
    cands, t0 = [], time.perf_counter()
    for r in range(len(ds)):
        target, n = spec.target_word(int(ds.targets[r]), 17), 0
        while True:
            res = ev.evaluate(
                ds.slots[r], rng.integers(0, 256, (256, 32), dtype=np.uint8), ds.memory
            )
            xor = res.output ^ np.uint32(target)
            hit = (
                np.nonzero((xor >> np.uint32(32 - d)) == 0)[0]
                if d < 32
                else np.nonzero(xor == 0)[0]
            )
            if len(hit):
                cands.append(n + int(hit[0]) + 1)
                break
            n += 256
    return {
        "seconds": time.perf_counter() - t0,
        "candidates_per_win": statistics.mean(cands),
        "wins": len(cands),
    }


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
    ap.add_argument("--quick", action="store_true", help="fewer records (about 30 s)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    ds = load_dataset(None)
    ev = create("numba")
    ev.warm_up()
    out: dict[str, Any] = {"records_in_sample": len(ds)}
    # 1. Throughput: training (store, scoring, breeding included) against the bare evaluator,
    # at population 256, on records that cannot win (D = 32) so every generation is full.
    # The two are measured in turns, three times each, and the medians compared: a shared
    # machine's noise then hits both alike.
    part = subset(ds, list(range(128)))  # the trainer keeps 64 in flight, two groups of 32
    trained, bares = [], []
    for _ in range(3):
        tp = train(part, ev, population_size=256, max_generations=12, difficulty_bits=32)
        trained.append(tp["candidates"] / tp["seconds"])
        bares.append(bare_rate(ds, ev, 256, 2.0))
    t_med, b_med = statistics.median(trained), statistics.median(bares)
    out["throughput"] = {
        "training_candidates_per_s": t_med,
        "bare_candidates_per_s": b_med,
        "ratio": t_med / b_med,
        "training_runs": trained,
        "bare_runs": bares,
    }
    # 2. Tokens per hour and candidates per win, GRPO beside plain random search.
    plan = {12: 40, 17: 4, 20: 1} if args.quick else {12: 100, 17: 8, 20: 2}
    out["difficulty"] = {}
    for d, n in plan.items():
        part = subset(ds, list(range(100, 100 + n)))
        g = train(part, ev, population_size=256, max_generations=100_000, difficulty_bits=d)
        rnd = random_search(part, ev, d)
        out["difficulty"][d] = {
            "records": n,
            "grpo_tokens_per_hour": g["winners"] / g["seconds"] * 3600,
            "grpo_candidates_per_win": g["candidates"] / max(1, g["winners"]),
            "random_tokens_per_hour": rnd["wins"] / rnd["seconds"] * 3600,
            "random_candidates_per_win": rnd["candidates_per_win"],
            "expected_candidates_per_win": 2**d,
        }
    with tempfile.TemporaryDirectory() as tmp:
        out["peak_rss_mib_1000_records"] = rss_1000(Path(tmp))
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        report(out)
    return 0


def report(out: dict[str, Any]) -> None:
    t = out["throughput"]
    print(
        f"training throughput at population 256: {t['training_candidates_per_s']:,.0f} cand/s; "
        f"bare evaluator: {t['bare_candidates_per_s']:,.0f} cand/s; ratio {t['ratio']:.2f} "
        f"(medians of {', '.join(f'{x:,.0f}' for x in t['training_runs'])} and "
        f"{', '.join(f'{x:,.0f}' for x in t['bare_runs'])})"
    )
    print(
        f"{'D':>3} {'records':>7} {'GRPO tok/h':>11} {'GRPO cand/win':>14} {'random tok/h':>13} "
        f"{'random cand/win':>16} {'2^D':>9}"
    )
    for d, r in out["difficulty"].items():
        print(
            f"{d:>3} {r['records']:>7} {r['grpo_tokens_per_hour']:>11,.0f} "
            f"{r['grpo_candidates_per_win']:>14,.0f} {r['random_tokens_per_hour']:>13,.0f} "
            f"{r['random_candidates_per_win']:>16,.0f} {r['expected_candidates_per_win']:>9,}"
        )
    print(f"peak RSS, hasherd train on 1,000 records: {out['peak_rss_mib_1000_records']:.1f} MiB")


if __name__ == "__main__":
    raise SystemExit(main())
