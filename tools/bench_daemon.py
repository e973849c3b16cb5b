"""The daemon against ``hasherd train``: candidates/s on the same job, measured in turns.

    .venv/bin/python tools/bench_daemon.py [--generations N] [--rounds R] [--json]

Both run as real processes on the same generated data (128 records at D = 32, so no
record wins and every generation is full): ``hasherd train`` reports its candidates and
seconds; the daemon (``hasherd run``, warm) gets the same job through its control socket
and is timed from ``jobs.submit`` to the job's end. The rounds alternate so a shared
machine's noise hits both alike; the medians are compared.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from hasherd.control.client import ControlClient, ControlError

HASHERD = [sys.executable, "-m", "hasherd.cli.main"]


def write_data(d: Path, n: int) -> Path:
    rng = np.random.default_rng(11)
    frames = [
        {
            "feature_vector": rng.integers(0, 2**32, 12, dtype=np.uint64).tolist(),
            "target_token": int(rng.integers(0, 100_000)),
        }
        for _ in range(n)
    ]
    path = d / "frames.json"
    path.write_text(json.dumps(frames))
    return path


def config(d: Path, generations: int) -> Path:
    path = d / "bench.toml"
    path.write_text(f"""
[daemon]
database = "{d / "daemon.db"}"
[control]
socket = "{d / "c.sock"}"
[metrics]
address = ""
[training]
epochs = 1
difficulty_bits = 32
population_size = 256
max_generations = {generations}
validation_split = 0.0
""")
    return path


def run_train(d: Path, cfg: Path, data: Path, seed: int) -> float:
    db = d / f"train-{seed}.db"
    out = subprocess.run(
        [
            *HASHERD,
            "train",
            "--config",
            str(cfg),
            "--data",
            str(data),
            "--db",
            str(db),
            "--seed",
            str(seed),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    m = re.search(r"candidates evaluated\s+([\d,]+) in ([\d.]+) s", out.stdout)
    if m is None:
        raise RuntimeError(f"hasherd train printed no summary:\n{out.stdout}\n{out.stderr}")
    return int(m.group(1).replace(",", "")) / float(m.group(2))


def run_daemon_job(client: ControlClient, data: Path, seed: int) -> float:
    t0 = time.monotonic()
    job = client.call("jobs.submit", data=str(data), seed=seed)["job"]
    while True:
        got = client.call("jobs.show", id=job["id"])["job"]
        if got["status"] in ("finished", "failed", "cancelled"):
            break
        time.sleep(0.05)
    seconds = time.monotonic() - t0
    if got["status"] != "finished":
        raise RuntimeError(f"daemon job ended {got['status']}: {got['error']}")
    return float(got["progress"]["candidates"]) / seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--generations", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="hd-") as tmp:
        d = Path(tmp)
        data, cfg = write_data(d, 128), config(d, args.generations)
        log = open(d / "daemon.log", "w")  # noqa: SIM115 - closed below
        daemon = subprocess.Popen(
            [*HASHERD, "run", "--config", str(cfg)],
            stdout=log,
            stderr=log,
            env={**os.environ, "NOTIFY_SOCKET": ""},
        )
        try:
            client = ControlClient(d / "c.sock", timeout=60)
            deadline = time.monotonic() + 300
            while True:  # the socket is up and the actor has loaded its kernels
                try:
                    if client.call("health")["healthy"]:
                        break
                except (OSError, ControlError):  # not up yet
                    if time.monotonic() > deadline:
                        raise
                time.sleep(0.2)
            trained, daemoned = [], []
            for r in range(args.rounds):
                trained.append(run_train(d, cfg, data, 100 + r))
                daemoned.append(run_daemon_job(client, data, 200 + r))
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(60)
            log.close()
    out: dict[str, Any] = {
        "train_candidates_per_s": statistics.median(trained),
        "daemon_candidates_per_s": statistics.median(daemoned),
        "train_runs": trained,
        "daemon_runs": daemoned,
    }
    out["daemon_over_train"] = out["daemon_candidates_per_s"] / out["train_candidates_per_s"]
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(
            f"hasherd train: {out['train_candidates_per_s']:,.0f} cand/s (runs: "
            f"{', '.join(f'{x:,.0f}' for x in trained)})"
        )
        print(
            f"hasherd run:   {out['daemon_candidates_per_s']:,.0f} cand/s (runs: "
            f"{', '.join(f'{x:,.0f}' for x in daemoned)})"
        )
        print(f"daemon / train: {out['daemon_over_train']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
