"""What the head sustains in front of a large fleet: the real pool, trainer and SQLite
writer in front of a synthetic fleet of fast fake remote evaluators.

    .venv/bin/python tools/bench_head.py [--actors 8,32,128] [--records N] [--population P]
                                         [--generations G] [--latency S] [--json]

Each fleet member is a ``FakeRemoteEvaluator``, a ``Backend`` that answers a batch at once
(after ``--latency`` seconds, the network's round trip) with results shaped as a real
evaluator's and passed through pickle both ways, as Ray would deliver them; it computes
no hash, so what is measured is the head alone: the dispatcher's sizing and mailboxes,
the trainer's select and breed steps, and one SQLite transaction per committed
generation. The job never wins (D = 32), so every generation is full. For each fleet
size it prints batches dispatched per second, generations committed per second,
candidates per second, result bytes per second and the writer's busy share: the head's
ceiling, to divide by a device's rate for the largest fleet it feeds (docs/scale-out.md).
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import numpy as np

from hasherd.actors.evaluator import EvaluatorActor
from hasherd.actors.pool import ActorPool
from hasherd.actors.rates import CostModel
from hasherd.config import Config
from hasherd.data import load_dataset
from hasherd.kernel.evaluators.base import EvalRequest, EvalResult
from hasherd.scheduler.trainer import Trainer
from hasherd.storage import Store

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_daemon import write_data

T = TypeVar("T")
RESULT_BYTES = 4 + 4 + 4 + 32 + 4  # a candidate's result: output, nonce, roll, digest, key


class FakeRemoteEvaluator:
    """A fake remote evaluator (see the module docstring): a ``Backend`` that hashes
    nothing. Its outputs come from the seeds, so the trainer's steps see real arrays."""

    def __init__(self, latency: float) -> None:
        self.latency = latency

    @property
    def threads(self) -> int:
        return 1

    async def start(self) -> None:
        return None

    async def evaluate_many(self, reqs: list[EvalRequest]) -> list[EvalResult]:
        sent = pickle.dumps([(r.slots, r.seeds, r.passes) for r in reqs])  # the call
        if self.latency:
            await anyio.sleep(self.latency)
        results = [_result(slots, seeds, passes) for slots, seeds, passes in pickle.loads(sent)]
        out: list[EvalResult] = pickle.loads(pickle.dumps(results))  # the answer
        return out

    async def run_post(self, fn: Callable[[list[EvalResult]], T], results: list[EvalResult]) -> T:
        return await anyio.to_thread.run_sync(fn, results)

    @property
    def post_apart(self) -> bool:
        return True  # on a worker thread of the daemon

    async def probe(self) -> None:
        return None

    def supports(self, zero_bits: int) -> bool:
        return True

    def device_stats(self) -> dict[str, Any] | None:
        return None

    async def close(self) -> None:
        return None


def _result(slots: np.ndarray, seeds: np.ndarray, passes: int) -> EvalResult:
    n = seeds.shape[0]
    words = np.ascontiguousarray(seeds).view("<u4")
    return EvalResult(
        output=words[:, 0] ^ slots[0],
        golden_nonce=np.zeros(n, dtype=np.uint32),
        ntime_roll=np.zeros(n, dtype=np.uint32),
        final_digest=seeds.copy(),
        last_key=words[:, 1].copy(),
        dsha=n * (passes + 1),
        compressions=3 * n * (passes + 1),
    )


def fleet(n: int, latency: float) -> list[EvaluatorActor]:
    return [
        EvaluatorActor(
            f"fake{i}",
            "fake",
            backend=lambda: FakeRemoteEvaluator(latency),
            cost=CostModel(hashes_per_second=1e12),
        )
        for i in range(n)
    ]


async def measure(d: Path, n: int, args: argparse.Namespace) -> dict[str, Any]:
    cfg = Config().with_training(
        epochs=1,
        difficulty_bits=32,
        population_size=args.population,
        max_generations=args.generations,
        seed=5,
        validation_split=0.0,
    )
    ds = load_dataset(write_data(d, args.records))
    pool = ActorPool(fleet(n, args.latency))
    steps = 0

    def on_step(_: float) -> None:
        nonlocal steps
        steps += 1

    async with Store.connect(d / f"head-{n}.db") as store, anyio.create_task_group() as tg:
        await tg.start(pool.run)
        lease = pool.lease(1, zero_bits=0, passes=cfg.training.passes)
        trainer = Trainer(store, ds, cfg, lease, batch=args.records, on_step=on_step)
        t0 = time.perf_counter()
        summary = await trainer.run()
        wall = time.perf_counter() - t0
        lease.close()
        writes = store.stats()
        tg.cancel_scope.cancel()
    batches = sum(a.stats.jobs for a in pool.actors.values())
    candidates = sum(a.stats.candidates for a in pool.actors.values())
    return {
        "actors": n,
        "status": summary.status,
        "seconds": wall,
        "batches_per_s": batches / wall,
        "generations_per_s": steps / wall,
        "candidates_per_s": candidates / wall,
        "result_bytes_per_s": candidates * RESULT_BYTES / wall,
        "commits_per_s": writes["write_transactions"] / wall,
        "writer_busy_share": writes["total_write_seconds"] / wall,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--actors", default="8,32,128", help="fleet sizes, comma-separated")
    ap.add_argument("--records", type=int, default=256)
    ap.add_argument("--population", type=int, default=256)
    ap.add_argument("--generations", type=int, default=20)
    ap.add_argument("--latency", type=float, default=0.001, help="seconds per round trip")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="hd-head-") as tmp:
        for n in (int(x) for x in args.actors.split(",")):
            rows.append(anyio.run(measure, Path(tmp), n, args))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"records {args.records}, population {args.population}, latency {args.latency:g} s")
    print("actors  batches/s  generations/s  candidates/s  result MB/s  commits/s  writer busy")
    for r in rows:
        print(
            f"{r['actors']:6}  {r['batches_per_s']:9,.0f}  {r['generations_per_s']:13,.0f}"
            f"  {r['candidates_per_s']:12,.0f}  {r['result_bytes_per_s'] / 1e6:11.1f}"
            f"  {r['commits_per_s']:9,.1f}  {r['writer_busy_share']:11.0%}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
