"""Jitter RPC benchmark: lookups/s over the socket, and the rpc evaluator's candidates/s.

    .venv/bin/python tools/bench_jitter.py [--frames N] [--seconds S] [--no-numba] [--json]

The service runs in a child process (as it would beside an upstream trainer, so client
and server do not share a GIL), serving the sample data set's memory (or N random
frames). Measured in this run, on one connection each:

* legacy frames pipelined (a writer thread streams 56-byte requests while the reader
  takes the 4-byte replies), and legacy frames one at a time (request, reply, repeat);
* batch mode, 256 records per request (request, reply, repeat);
* candidates/s of the rpc evaluator, the in-process reference evaluator and numba on the
  same record, seeds and memory (k = 0, 21 passes, 64 candidates a call).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hasherd.backends import create
from hasherd.backends.rpc import RpcEvaluator, SyncJitterClient
from hasherd.kernel.evaluators.base import Evaluator
from hasherd.kernel.jitter_batch import lookup_many
from hasherd.kernel.memory import JitterMemory

SERVE = """
import sys, anyio, numpy as np
from hasherd.jitter.service import JitterService
from hasherd.kernel.memory import JitterMemory
service = JitterService(sys.argv[1], JitterMemory(np.load(sys.argv[2])))
anyio.run(service.serve)
"""


def memory_for(frames: int) -> JitterMemory:
    if frames == 0:
        from hasherd.data import load_dataset

        return load_dataset().memory
    rng = np.random.default_rng(1)
    return JitterMemory(rng.integers(0, 2**32, (frames, 12), dtype=np.uint64).astype(np.uint32))


def records(memory: JitterMemory, n: int) -> np.ndarray:
    rng = np.random.default_rng(2)
    rec = np.zeros((n, 14), dtype=np.uint32)
    rec[:, :12] = memory.frames[rng.integers(0, len(memory), n)]
    rec[:, 12] = rng.integers(0, 2**32, n, dtype=np.uint64)
    rec[:, 13] = rng.integers(0, 21, n)
    return rec


def timed(seconds: float, step: Callable[[], int]) -> float:
    """Units per second of ``step()`` (which returns its units), run for about ``seconds``."""
    step()  # warm
    done, t0 = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - t0) < seconds:
        done += step()
    return done / elapsed


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("service closed the connection")
        buf += chunk
    return bytes(buf)


def legacy_pipelined(path: Path, rec: np.ndarray, want: bytes) -> float:
    data = rec.astype("<u4").tobytes()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(path))
        writer = threading.Thread(target=sock.sendall, args=(data,))
        t0 = time.perf_counter()
        writer.start()
        got = recv_exact(sock, 4 * len(rec))
        elapsed = time.perf_counter() - t0
        writer.join()
    if got != want:
        raise AssertionError("pipelined legacy replies differ from the in-process lookup")
    return len(rec) / elapsed


def legacy_one_at_a_time(path: Path, rec: np.ndarray, want: bytes, seconds: float) -> float:
    frames = [r.astype("<u4").tobytes() for r in rec]
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(path))
        i = 0

        def step() -> int:
            nonlocal i
            k = i % len(frames)
            sock.sendall(frames[k])
            if recv_exact(sock, 4) != want[4 * k : 4 * k + 4]:
                raise AssertionError("legacy reply differs from the in-process lookup")
            i += 1
            return 1

        return timed(seconds, step)


def batches(path: Path, memory: JitterMemory, rec: np.ndarray, seconds: float) -> float:
    want = lookup_many(memory, rec)[0]
    with SyncJitterClient(path) as client:
        i = 0

        def step() -> int:
            nonlocal i
            lo = (i * 256) % (len(rec) - 256)
            jit, _ = client.lookup(rec[lo : lo + 256])
            if not np.array_equal(jit, want[lo : lo + 256]):
                raise AssertionError("batch reply differs from the in-process lookup")
            i += 1
            return 256

        return timed(seconds, step)


def evaluator_rate(ev: Evaluator, memory: JitterMemory, seconds: float) -> tuple[float, Any]:
    rng = np.random.default_rng(3)
    slots = memory.frames[len(memory) // 2].copy()
    seeds = rng.integers(0, 256, (64, 32), dtype=np.uint8)
    result = ev.evaluate(slots, seeds, memory, 21, 0)
    return timed(seconds, lambda: len(ev.evaluate(slots, seeds, memory, 21, 0))), result.output


def wait_for(path: Path, child: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while not path.exists():
        if child.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the jitter service did not start")
        time.sleep(0.05)


def run(args: argparse.Namespace) -> dict[str, Any]:
    memory = memory_for(args.frames)
    rec = records(memory, 100_000)
    want = lookup_many(memory, rec)[0].astype("<u4").tobytes()
    out: dict[str, Any] = {"memory_frames": len(memory), "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="hjb-") as tmp:
        path, npy = Path(tmp) / "jitter.sock", Path(tmp) / "memory.npy"
        np.save(npy, memory.frames)
        child = subprocess.Popen([sys.executable, "-c", SERVE, str(path), str(npy)])
        try:
            wait_for(path, child)
            out["legacy_pipelined_lookups_per_s"] = legacy_pipelined(path, rec, want)
            out["legacy_one_at_a_time_lookups_per_s"] = legacy_one_at_a_time(
                path, rec, want, args.seconds
            )
            out["batch256_lookups_per_s"] = batches(path, memory, rec, args.seconds)
            rpc = RpcEvaluator(path)
            rate, rpc_out = evaluator_rate(rpc, memory, args.seconds)
            rpc.close()
            out["candidates_per_s"] = {"rpc": rate}
        finally:
            child.terminate()
            child.wait(10)
    names = ["reference"] + ([] if args.no_numba else ["numba"])
    for name in names:
        ev = create(name)
        ev.warm_up()
        rate, ev_out = evaluator_rate(ev, memory, args.seconds)
        if not np.array_equal(ev_out, rpc_out):
            raise AssertionError(f"rpc and {name} outputs differ")
        out["candidates_per_s"][name] = rate
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--frames",
        type=int,
        default=0,
        help="random memory of N frames (default 0: the sample data set's memory)",
    )
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    parser.add_argument("--no-numba", action="store_true", help="skip the numba evaluator")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args()
    out = run(args)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"memory: {out['memory_frames']} frames; {out['cpus']} CPUs; service in a child process")
    rows = [
        ("legacy, pipelined on one connection", out["legacy_pipelined_lookups_per_s"]),
        ("legacy, one at a time", out["legacy_one_at_a_time_lookups_per_s"]),
        ("batch mode, 256 per request", out["batch256_lookups_per_s"]),
    ]
    for label, rate in rows:
        print(f"{label + ':':<38}{rate:>12,.0f} lookups/s")
    for name, rate in out["candidates_per_s"].items():
        print(f"evaluator {name:<10} (k=0, P=21, 64 a call): {rate:>10,.0f} candidates/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
