"""The remote path's overhead: one job on a local actor against the same job on a Ray node.

    .venv/bin/python tools/bench_cluster.py [--threads T] [--per-node A] [--batch B]
                                            [--generations N] [--rounds R] [--json]

Two daemons (``hasherd run``, real processes) on the same generated data (128 records at
D = 32, so no record wins and every generation is full, as ``tools/bench_daemon.py``):
one with a local numba actor of T threads, one with no local actor and ``[cluster]``
pointing at a Ray cluster started here (``ray.cluster_utils``: a head with no CPU and one
worker node, ``bench-node``, with a numba actor of T threads). Each gets the same job
through its control socket, timed from ``jobs.submit`` to the job's end; the rounds
alternate so a shared machine's noise hits both alike, and the medians are compared:
``ray / local`` is the throughput the remote path keeps. ``--batch`` is ``daemon.batch``
(the records in flight, split between the actor's two mailbox slots): each call's
fixed cost weighs less on larger groups. ``--per-node A`` splits the node's T threads
between A actors (``cluster.cpu_actors_per_node``), so that one computes while another's
batch is on the wire; the local daemon keeps one actor of T threads.
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
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_daemon import HASHERD, run_daemon_job, write_data

from hasherd.backends.cluster import node_resource
from hasherd.control.client import ControlClient, ControlError

NODE = "bench-node"


def config(d: Path, name: str, args: argparse.Namespace, cluster: str) -> Path:
    """A daemon's config: its own socket and database; its one actor local or remote."""
    threads = args.threads
    devices = f"cpu_actors = 1\n[simulator]\nmax_concurrency = {threads}"
    if cluster:
        devices = (
            f'cpu_actors = 0\n[cluster]\naddress = "{cluster}"\nnamespace = "bench"\n'
            f'nodes = ["{NODE}"]\ncpu_threads = {threads // args.per_node}\n'
            f'cpu_actors_per_node = {args.per_node}\nstart_timeout = "300s"'
        )
    path = d / f"{name}.toml"
    path.write_text(f"""
[daemon]
database = "{d / f"{name}.db"}"
batch = {args.batch}
[control]
socket = "{d / f"{name}.sock"}"
[metrics]
address = ""
[jitter]
enabled = false
[training]
epochs = 1
difficulty_bits = 32
population_size = 256
max_generations = {args.generations}
validation_split = 0.0
[devices]
{devices}
""")
    return path


def start_daemon(stack: ExitStack, d: Path, cfg: Path, name: str) -> ControlClient:
    """``hasherd run`` until healthy (its actor started and its kernels loaded)."""
    log = stack.enter_context(open(d / f"{name}.log", "w"))  # noqa: SIM115
    daemon = subprocess.Popen(
        [*HASHERD, "run", "--config", str(cfg)],
        stdout=log,
        stderr=log,
        env={**os.environ, "NOTIFY_SOCKET": ""},
    )

    def stop() -> None:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)

    stack.callback(stop)
    client = ControlClient(d / f"{name}.sock", timeout=60)
    deadline = time.monotonic() + 600
    while True:
        try:
            if client.call("health")["healthy"]:
                return client
        except (OSError, ControlError):  # not up yet
            pass
        if daemon.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{name} daemon did not become healthy: see its log")
        time.sleep(0.2)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=1, help="numba threads of each actor")
    ap.add_argument("--per-node", type=int, default=1, help="actors sharing the node's threads")
    ap.add_argument("--batch", type=int, default=64, help="daemon.batch: records in flight")
    ap.add_argument("--generations", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not 1 <= args.per_node <= args.threads:
        ap.error("--per-node must be in 1..--threads")
    from ray.cluster_utils import Cluster

    local: list[float] = []
    remote: list[float] = []
    with tempfile.TemporaryDirectory(prefix="hd-") as tmp, ExitStack() as stack:
        d = Path(tmp)
        cluster = Cluster(
            initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False}
        )
        stack.callback(cluster.shutdown)
        cluster.add_node(num_cpus=args.threads, resources={node_resource(NODE): 1})
        cluster.wait_for_nodes()
        data = write_data(d, 128)
        cfg_local = config(d, "local", args, "")
        cfg_ray = config(d, "ray", args, cluster.address)
        on_local = start_daemon(stack, d, cfg_local, "local")
        on_ray = start_daemon(stack, d, cfg_ray, "ray")
        for r in range(args.rounds):
            local.append(run_daemon_job(on_local, data, 100 + r))
            remote.append(run_daemon_job(on_ray, data, 100 + r))
    out: dict[str, Any] = {
        "threads": args.threads,
        "batch": args.batch,
        "per_node": args.per_node,
        "local_candidates_per_s": statistics.median(local),
        "ray_candidates_per_s": statistics.median(remote),
        "local_runs": local,
        "ray_runs": remote,
    }
    out["ray_over_local"] = out["ray_candidates_per_s"] / out["local_candidates_per_s"]
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for name, runs in (("local", local), ("ray", remote)):
            runs_text = ", ".join(f"{x:,.0f}" for x in runs)
            print(f"{name:5} actor: {statistics.median(runs):,.0f} cand/s (runs: {runs_text})")
        print(f"ray / local: {out['ray_over_local']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
