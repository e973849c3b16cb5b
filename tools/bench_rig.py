"""A slow device must not stall a job: the same job on numba alone and on numba plus a slow
emulated chip chain, wall time from submit to finish.

    .venv/bin/python tools/bench_rig.py [--records N] [--rounds R] [--json]

Two daemons (``hasherd run``) in turn on the same generated data (200 records, new ones
each round) and options (zero bits 4, difficulty 10, population 32, one epoch): one with
a numba actor only; one with the same numba actor and a BM1370 chain serving the job's
zero bits,
emulated on a pty (``hasherd emulate bm1370 --chips 2 --zero-bits 4 --sweep-limit 1024``,
``[[devices.chips]]`` with ``nonces_per_chip = 1024``, ``sweep_time = "100ms"``): about
0.15 s a chip job, so tens of thousands times slower per candidate than numba. Each
daemon is started and warmed (healthy, kernels loaded) before its job is submitted; the
rounds alternate between them, and the medians are compared. The mixed rig should take at
most 1.2 times the numba-only time.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from hasherd.control.client import ControlClient, ControlError

HASHERD = [sys.executable, "-m", "hasherd.cli.main"]
ZERO_BITS = 4
SWEEP = 1024
TARGET = 1.2


def write_data(d: Path, n: int, round_: int) -> Path:
    """``n`` generated records, new ones each round (a daemon's database keeps the
    weights of the records it trained)."""
    rng = np.random.default_rng(15 + round_)
    frames = [
        {
            "feature_vector": rng.integers(0, 2**32, 12, dtype=np.uint64).tolist(),
            "target_token": int(rng.integers(0, 100_000)),
        }
        for _ in range(n)
    ]
    path = d / f"frames-{round_}.json"
    path.write_text(json.dumps(frames))
    return path


def config(d: Path, name: str, chain: str | None) -> Path:
    """A daemon's config: one numba actor, and the chain at ``chain`` when given."""
    text = f"""
[daemon]
database = "{d / f"{name}.db"}"
[control]
socket = "{d / f"{name}.sock"}"
[metrics]
address = ""
[jitter]
enabled = false
[training]
epochs = 1
difficulty_bits = 10
population_size = 32
zero_bits = {ZERO_BITS}
validation_split = 0.0
[devices]
cpu_actors = 1
"""
    if chain is not None:
        text += f"""
[[devices.chips]]
name = "chain0"
path = "{chain}"
zero_bits = {ZERO_BITS}
chips = 2
nonces_per_chip = {SWEEP}
sweep_time = "100ms"
"""
    path = d / f"{name}.toml"
    path.write_text(text)
    return path


@contextmanager
def emulator() -> Iterator[str]:
    """``hasherd emulate bm1370`` on a pty, in a process of its own; yields the pty's path."""
    proc = subprocess.Popen(
        [
            *HASHERD,
            "emulate",
            "bm1370",
            "--chips",
            "2",
            "--zero-bits",
            str(ZERO_BITS),
            "--sweep-limit",
            str(SWEEP),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        path = proc.stdout.readline().strip()
        if not path.startswith("/dev/"):
            raise RuntimeError(f"the emulator printed {path!r}")
        yield path
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


@contextmanager
def daemon(d: Path, name: str, cfg: Path, actors: int) -> Iterator[ControlClient]:
    """A started daemon whose ``actors`` actors are all ready; yields a control client."""
    log = open(d / f"{name}.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [*HASHERD, "run", "--config", str(cfg)],
        stdout=log,
        stderr=log,
        env={**os.environ, "NOTIFY_SOCKET": ""},
    )
    try:
        client = ControlClient(d / f"{name}.sock", timeout=60)
        deadline = time.monotonic() + 300
        while not _ready(client, actors):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"daemon {name} did not start: {_tail(d / f'{name}.log')}")
            time.sleep(0.2)
        yield client
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _ready(client: ControlClient, actors: int) -> bool:
    try:
        listed = client.call("actors.list")["actors"]
    except (OSError, ControlError):  # not up yet
        return False
    ready = [a for a in listed if a["state"] == "ready"]
    return len(ready) == actors


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-2000:]


def run_job(client: ControlClient, data: Path, seed: int) -> dict[str, Any]:
    """Submit the job, wait for its end: its wall time and each actor's jobs."""
    before = {a["name"]: a["jobs"] for a in client.call("actors.list")["actors"]}
    t0 = time.monotonic()
    job = client.call("jobs.submit", data=str(data), seed=seed)["job"]
    while True:
        got = client.call("jobs.show", id=job["id"])["job"]
        if got["status"] in ("finished", "failed", "cancelled"):
            break
        time.sleep(0.05)
    seconds = time.monotonic() - t0
    if got["status"] != "finished":
        raise RuntimeError(f"the job ended {got['status']}: {got.get('error')}")
    after = {a["name"]: a["jobs"] for a in client.call("actors.list")["actors"]}
    return {
        "seconds": seconds,
        "candidates": got["progress"]["candidates"],
        "actor_calls": {n: after[n] - before.get(n, 0) for n in after},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--records", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    runs: dict[str, list[dict[str, Any]]] = {"numba": [], "mixed": []}
    with tempfile.TemporaryDirectory(prefix="hd-") as tmp, emulator() as chain:
        d = Path(tmp)
        only, mixed = config(d, "numba", None), config(d, "mixed", chain)
        with daemon(d, "numba", only, 1) as a, daemon(d, "mixed", mixed, 2) as b:
            for r in range(args.rounds):
                data = write_data(d, args.records, r)
                runs["numba"].append(run_job(a, data, 100 + r))
                runs["mixed"].append(run_job(b, data, 100 + r))
    report = summary(runs)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        show(report)
    return 0 if report["mixed_over_numba"] <= TARGET else 1


def summary(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    numba = statistics.median(r["seconds"] for r in runs["numba"])
    mixed = statistics.median(r["seconds"] for r in runs["mixed"])
    return {
        "numba_seconds": numba,
        "mixed_seconds": mixed,
        "mixed_over_numba": mixed / numba,
        "target": TARGET,
        "runs": runs,
    }


def show(report: dict[str, Any]) -> None:
    for name, label in (("numba", "numba only"), ("mixed", "numba + chain")):
        for r in report["runs"][name]:
            calls = ", ".join(f"{n} {c}" for n, c in sorted(r["actor_calls"].items()))
            print(
                f"{label:14} {r['seconds']:7.2f} s  {r['candidates']:>9,} candidates  "
                f"calls: {calls}"
            )
    print(
        f"mixed / numba only: {report['mixed_over_numba']:.2f} "
        f"(medians {report['mixed_seconds']:.2f} s / {report['numba_seconds']:.2f} s; "
        f"target <= {report['target']})"
    )


if __name__ == "__main__":
    raise SystemExit(main())
