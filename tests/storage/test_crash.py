"""Crash safety: a writer SIGKILLed at random moments loses at most the generation in flight.

A child process writes one generation per transaction and prints each generation number
after its commit returns. After each kill the database must open (integrity_check ok)
and hold exactly the last printed generation, or the one after it if the kill landed
between COMMIT and the print, with everything that generation wrote and nothing more.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import hasherd
from hasherd.storage import Store

KILLS = 5
HASHES_PER_GEN = 200
SEEDS = 16

CHILD = f"""
import asyncio, sys
from hasherd.storage import Checkpoint, Event, Store, WeightRow

K, N = {HASHES_PER_GEN}, {SEEDS}

def prefix(g): return min(g // 100, 200)
def fitness(g): return float(g) if g % 3 else 0.0  # every third seed is no better

async def main(path, run, rec):
    async with Store.connect(path, create=False) as st:
        cks = await st.checkpoints(run)
        g = cks[rec].generation if rec in cks else 0
        print("ready", g, flush=True)
        while True:
            g += 1
            pop = g.to_bytes(4, "little") * 8 * N
            ck = Checkpoint(0, g, 3, pop, bytes([g % 251]) * 300, "[%d]" % g, prefix(g))
            w = WeightRow(rec, run, 5, 6, bytes(48), g.to_bytes(32, "little"), g, g, prefix(g), 3,
                          fitness(g), g, 0, "mem")
            await st.save_generation(run, rec, ck, range(g * K, (g + 1) * K), w,
                                     [Event("gen", {{"g": g}})])
            print(g, flush=True)

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
"""


def _best_up_to(g: int) -> tuple[int, float, int]:
    """(prefix_bits, fitness, generation) of the weight that must be stored after gen g."""
    # The first seed to reach the best (prefix, fitness) wins: a tie does not replace it.
    best = max(((min(i // 100, 200), float(i) if i % 3 else 0.0), -i) for i in range(1, g + 1))
    return (*best[0], -best[1])


class _Reader(threading.Thread):
    def __init__(self, proc: subprocess.Popen[str]) -> None:
        super().__init__(daemon=True)
        self.proc = proc
        self.lines: list[str] = []
        self.ready = threading.Event()

    def run(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.strip())
            if line.startswith("ready"):
                self.ready.set()

    def last_generation(self) -> int:
        numbers = [int(s.split()[-1]) for s in self.lines if s]
        return max(numbers, default=-1)


async def _setup(path: Path) -> tuple[int, int]:
    async with Store.connect(path) as st:
        ds = await st.add_dataset("crash", "test", "mem", 8, "crash-digest", [(5, 6, bytes(48))])
        run = await st.create_run(ds, "{}", "c", 1, "{}")
        return run, (await st.records(ds))[0].id


async def _check(path: Path, run: int, rec: int, printed: int) -> int:
    async with Store.connect(path, create=False) as st:  # runs integrity_check
        g = (await st.checkpoints(run))[rec].generation
        assert printed <= g <= printed + 1, (printed, g)
        assert await st.seen(run, rec) == set(range(HASHES_PER_GEN, (g + 1) * HASHES_PER_GEN))
        assert [e.payload["g"] for e in await st.events(kind="gen")] == list(range(1, g + 1))
        [w] = await st.weights()
        assert (w.prefix_bits, w.fitness, w.generation) == _best_up_to(g)
        return g


def _run_child(script: Path, path: Path, run: int, rec: int, delay: float) -> int:
    env = {**os.environ, "PYTHONPATH": str(Path(hasherd.__file__).resolve().parents[1])}
    args = [sys.executable, str(script), str(path), str(run), str(rec)]
    with subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env) as proc:
        reader = _Reader(proc)
        reader.start()
        try:
            assert reader.ready.wait(15), "the child never opened the store"
            time.sleep(delay)
            assert proc.poll() is None, "the child died before the kill (see its stderr)"
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            reader.join(5)
    assert proc.returncode == -signal.SIGKILL
    return reader.last_generation()


def test_sigkill_loses_at_most_the_generation_in_flight(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    path = tmp_path / "crash.db"
    run, rec = asyncio.run(_setup(path))
    rng = random.Random()
    stored = 0
    for _ in range(KILLS):
        delay = rng.uniform(0.05, 0.5)
        printed = _run_child(script, path, run, rec, delay)
        assert printed >= stored, (printed, stored)
        stored = asyncio.run(_check(path, run, rec, printed))
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        conn.close()
    assert stored > KILLS  # the child really wrote between kills
