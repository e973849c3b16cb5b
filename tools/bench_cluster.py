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

On a shared machine other work takes cores from both sides, so each run also counts the
CPU seconds its side used (from ``/proc``: the local daemon's process tree; the Ray
daemon's tree plus every Ray process of the cluster), and the candidates per CPU-second
compare what each path costs; the machine's load average before and after says how far
to trust the wall-clock figures.
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


def cpu_seconds(roots: set[int], skip: set[int]) -> dict[str, float]:
    """User and system CPU seconds of the processes in the trees under ``roots`` (the
    roots included), leaving out the trees under ``skip``, by process name."""
    parent: dict[int, int] = {}
    used: dict[int, float] = {}
    names: dict[int, str] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        head, tail = stat.rsplit(")", 1)
        fields = tail.split()
        pid = int(entry.name)
        names[pid] = head.split("(", 1)[1]
        parent[pid] = int(fields[1])
        used[pid] = (int(fields[11]) + int(fields[12])) / tick

    def inside(pid: int) -> bool:
        while pid > 1:
            if pid in skip:
                return False
            if pid in roots:
                return True
            pid = parent.get(pid, 0)
        return False

    out: dict[str, float] = {}
    for pid, t in used.items():
        if inside(pid):
            out[names[pid]] = out.get(names[pid], 0.0) + t
    return out


def timed_job(
    client: ControlClient,
    data: Path,
    seed: int,
    side: tuple[set[int], set[int]],
    spent: dict[str, float],
) -> tuple[float, float]:
    """One job's candidates/s, and its candidates per CPU-second of ``side``'s process
    trees (``cpu_seconds``); the CPU seconds by process name are added to ``spent``."""
    cpu0, t0 = cpu_seconds(*side), time.monotonic()
    rate = run_daemon_job(client, data, seed)
    after, wall = cpu_seconds(*side), time.monotonic() - t0
    used = {k: v - cpu0.get(k, 0.0) for k, v in after.items()}
    for k, v in used.items():
        spent[k] = spent.get(k, 0.0) + v
    cpu = sum(used.values())
    return rate, rate * wall / cpu if cpu > 0 else 0.0


def idle_cpu(side: tuple[set[int], set[int]], seconds: float = 3.0) -> dict[str, float]:
    """CPU seconds a second that ``side``'s processes use with no job running: what
    the path costs whatever it computes."""
    before = cpu_seconds(*side)
    time.sleep(seconds)
    after = cpu_seconds(*side)
    return {k: (v - before.get(k, 0.0)) / seconds for k, v in after.items()}


def start_daemon(stack: ExitStack, d: Path, cfg: Path, name: str) -> tuple[ControlClient, int]:
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
                return client, daemon.pid
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
    ap.add_argument("--generations", type=int, default=200, help="per job: about 5 s each")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not 1 <= args.per_node <= args.threads:
        ap.error("--per-node must be in 1..--threads")
    from ray.cluster_utils import Cluster

    local: list[float] = []
    remote: list[float] = []
    per_cpu: dict[str, list[float]] = {"local": [], "ray": []}
    spent: dict[str, dict[str, float]] = {"local": {}, "ray": {}}
    load_before = os.getloadavg()
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
        on_local, local_pid = start_daemon(stack, d, cfg_local, "local")
        on_ray, _ = start_daemon(stack, d, cfg_ray, "ray")
        local_side: tuple[set[int], set[int]] = ({local_pid}, set())
        ray_side = ({os.getpid()}, {local_pid})  # the Ray cluster's processes are ours
        idle = {"local": idle_cpu(local_side), "ray": idle_cpu(ray_side)}
        for r in range(args.rounds):
            rate, cpu_rate = timed_job(on_local, data, 100 + r, local_side, spent["local"])
            local.append(rate)
            per_cpu["local"].append(cpu_rate)
            rate, cpu_rate = timed_job(on_ray, data, 100 + r, ray_side, spent["ray"])
            remote.append(rate)
            per_cpu["ray"].append(cpu_rate)
    out: dict[str, Any] = {
        "threads": args.threads,
        "batch": args.batch,
        "per_node": args.per_node,
        "local_candidates_per_s": statistics.median(local),
        "ray_candidates_per_s": statistics.median(remote),
        "local_runs": local,
        "ray_runs": remote,
        "local_candidates_per_cpu_s": statistics.median(per_cpu["local"]),
        "ray_candidates_per_cpu_s": statistics.median(per_cpu["ray"]),
        "local_runs_per_cpu_s": per_cpu["local"],
        "ray_runs_per_cpu_s": per_cpu["ray"],
        "cpu_seconds_by_process": spent,
        "idle_cpu_by_process": idle,
        "load_average": [load_before, os.getloadavg()],  # 1, 5, 15 min: before, after
    }
    out["ray_over_local"] = out["ray_candidates_per_s"] / out["local_candidates_per_s"]
    cpu_ratio = out["ray_candidates_per_cpu_s"] / out["local_candidates_per_cpu_s"]
    out["ray_over_local_per_cpu_s"] = cpu_ratio
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for name, runs in (("local", local), ("ray", remote)):
            runs_text = ", ".join(f"{x:,.0f}" for x in runs)
            print(f"{name:5} actor: {statistics.median(runs):,.0f} cand/s (runs: {runs_text})")
        print(f"ray / local: {out['ray_over_local']:.2f}")
        for name in ("local", "ray"):
            runs_text = ", ".join(f"{x:,.0f}" for x in per_cpu[name])
            median = statistics.median(per_cpu[name])
            print(f"{name:5} per CPU-second: {median:,.0f} cand (runs: {runs_text})")
        print(f"ray / local per CPU-second: {cpu_ratio:.2f}")
        for name in ("local", "ray"):
            top = sorted(spent[name].items(), key=lambda kv: -kv[1])[:6]
            print(f"{name:5} CPU s by process: " + ", ".join(f"{k} {v:.1f}" for k, v in top))
        for name in ("local", "ray"):
            top = sorted(idle[name].items(), key=lambda kv: -kv[1])[:4]
            text = ", ".join(f"{k} {v:.3f}" for k, v in top)
            print(f"{name:5} idle, CPU s per s by process: {text}")
        loads = " -> ".join(", ".join(f"{x:.2f}" for x in la) for la in out["load_average"])
        print(f"load average (1, 5, 15 min), before -> after: {loads}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
