"""The pool's actors on a real Ray cluster of three nodes on this machine (a head with no
evaluator and two worker nodes, ``rig-a`` and ``rig-b``, each its own raylet with its own
resources): a job trained across the two nodes gives the weights of the single-machine
run with the same seed, also when a node is killed in the middle of it (its actors fail,
their pieces go to the other node, and they come back once a node of that name rejoins);
a chip chain on a labelled node serves its batches from that node; a restarted head takes
over a live node actor; the nodes are reported by the names their resources give.

One cluster serves the module: starting a node costs seconds on a small machine.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest

from hasherd import config as config_mod
from hasherd.actors.base import ActorState
from hasherd.actors.build import build_actors, build_pool
from hasherd.actors.pool import ActorPool
from hasherd.backends.cluster import RayBackend, RayCluster, node_resource, node_rows
from hasherd.config import Config
from hasherd.data import Dataset, load_dataset
from hasherd.emulate import ChainEmulator
from hasherd.kernel.evaluators.base import EvalRequest, make_request
from hasherd.kernel.evaluators.reference import ReferenceEvaluator
from hasherd.kernel.memory import JitterMemory
from hasherd.scheduler.dispatch import EvaluatorDispatch
from hasherd.scheduler.trainer import Trainer
from hasherd.storage import Store
from tests.helpers import db_rows, write_frames

ray = pytest.importorskip(
    "ray", reason="the ray extra is not installed (pip install 'hasherd[ray]')"
)
cluster_utils = pytest.importorskip("ray.cluster_utils")

NODES = ("rig-a", "rig-b")


class Farm:
    """The cluster and its worker nodes by name."""

    def __init__(self) -> None:
        self.cluster = cluster_utils.Cluster(
            initialize_head=True,
            head_node_args={"num_cpus": 0, "include_dashboard": False},
        )
        self.nodes = {name: self.add(name) for name in NODES}
        ray.init(address=self.cluster.address, namespace="hasherd-test", log_to_driver=False)

    def add(self, name: str) -> Any:
        node = self.cluster.add_node(num_cpus=1, resources={node_resource(name): 1})
        self.cluster.wait_for_nodes()
        return node

    def kill(self, name: str, workers: list[int]) -> None:
        """SIGKILL the node's processes, as a pulled plug would: its raylet and the others
        Ray started for it, and its actors' worker processes (``workers``), which
        would otherwise serve the calls already connected to them a while longer."""
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        self.cluster.remove_node(self.nodes.pop(name), allow_graceful=False)

    def close(self) -> None:
        ray.shutdown()
        self.cluster.shutdown()


@pytest.fixture(scope="module")
def farm() -> Iterator[Farm]:
    farm = Farm()
    try:
        yield farm
    finally:
        farm.close()


def _config(farm: Farm, chips: list[dict[str, Any]] | None = None, **cluster: Any) -> Config:
    return config_mod.from_mapping(
        {
            "simulator": {"device_type": "reference"},
            "devices": {"cpu_actors": 0, "chips": chips or []},
            "cluster": {
                "address": farm.cluster.address,
                "namespace": "hasherd-test",
                "nodes": list(NODES),
                "start_timeout": 20,
                **cluster,
            },
            "training": {
                "epochs": 2,
                "difficulty_bits": 7,
                "population_size": 16,
                "max_generations": 6,
                "seed": 21,
                "validation_split": 0.0,
            },
        }
    )


def _weights(db: Path) -> list[tuple[Any, ...]]:
    return db_rows(
        db,
        "SELECT record_id, seed, output, golden_nonce, prefix_bits, fitness, generation, epoch"
        " FROM weights ORDER BY record_id",
    )


def _local(tmp: Path, ds: Dataset, cfg: Config) -> list[tuple[Any, ...]]:
    """The same job on one in-process reference evaluator (``hasherd train``'s path)."""

    async def main() -> None:
        async with Store.connect(tmp / "local.db") as store:
            with EvaluatorDispatch(ReferenceEvaluator(), 60.0) as dispatch:
                await Trainer(store, ds, cfg, dispatch, batch=4).run()

    anyio.run(main)
    return _weights(tmp / "local.db")


async def _farmed(db: Path, ds: Dataset, cfg: Config, pool: ActorPool, on_step: Any = None) -> str:
    async with Store.connect(db) as store, anyio.create_task_group() as tg:
        await tg.start(pool.run)
        lease = pool.lease(1, zero_bits=0, passes=cfg.training.passes)
        trainer = Trainer(store, ds, cfg, lease, batch=4)
        if on_step is not None:
            trainer.on_step = on_step
        summary = await trainer.run()
        lease.close()
        tg.cancel_scope.cancel()
    return summary.status


def _farmed_watching(
    db: Path, ds: Dataset, cfg: Config, pool: ActorPool, look: Any, every: float
) -> str:
    """``_farmed``, with ``look()`` called every ``every`` seconds beside the job."""

    async def main() -> str:
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                while True:
                    look()
                    await anyio.sleep(every)

            tg.start_soon(watch)
            status = await _farmed(db, ds, cfg, pool)
            tg.cancel_scope.cancel()
        return status

    return anyio.run(main)


def test_the_nodes_as_the_cluster_reports_them(farm: Farm) -> None:
    """``nodes.list``'s source: each worker named by its ``hasherd_node:`` resource, alive,
    with its CPUs; the head by its host name."""
    cfg = _config(farm)
    seen = anyio.run(RayCluster(cfg.cluster).list_nodes)
    alive = {n["name"]: n for n in seen if n["alive"]}
    assert {"rig-a", "rig-b"} <= set(alive) and len(alive) == 3
    assert alive["rig-a"]["cpus"] == 1.0 and alive["rig-a"]["address"]
    rows = node_rows([], seen, cfg.cluster.nodes)
    assert [r["name"] for r in rows if r["name"] in NODES] == list(NODES)


def test_a_restarted_head_takes_over_the_live_node_actor(farm: Farm) -> None:
    """A head that crashed left its detached actors running: the next head's start of
    the same actor finds the live one on its node (the same process, its evaluator
    already open) and serves with it; a clean close kills it."""
    cfg = _config(farm)

    def backend() -> RayBackend:
        return RayBackend(RayCluster(cfg.cluster), "rig-a-takeover", "rig-a", spec="reference")

    async def main() -> None:
        crashed, next_head = backend(), backend()
        await crashed.start()  # never closed: its head "crashed"
        await next_head.start()
        assert next_head.info["pid"] == crashed.info["pid"]
        reqs = _chip_requests()[:1]
        got = await next_head.evaluate_many([replace(reqs[0], zero_bits=0)])
        assert len(got) == 1 and len(got[0]) == 2
        await next_head.close()

    anyio.run(main)


def test_a_job_across_two_nodes_equals_the_single_machine_run(farm: Farm, tmp_path: Path) -> None:
    ds = load_dataset(write_frames(tmp_path / "frames.json", 8, 17))
    cfg = _config(farm)
    pool = build_pool(cfg)
    assert {a.node for a in pool.actors.values()} == set(NODES)
    status = anyio.run(_farmed, tmp_path / "farm.db", ds, cfg, pool)
    assert status == "finished"
    assert all(a.stats.jobs > 0 for a in pool.actors.values())  # both nodes did work
    assert _weights(tmp_path / "farm.db") == _local(tmp_path, ds, cfg)


def test_a_node_actor_holds_the_next_batch_while_one_runs(farm: Farm, tmp_path: Path) -> None:
    """One simulator actor on one node and the trainer's two lanes: the second lane's
    batch is sent while the first runs (two jobs in flight on that actor), and the
    weights are still those of the single-machine run."""
    ds = load_dataset(write_frames(tmp_path / "frames.json", 8, 17))
    cfg = _config(farm)
    cfg = replace(cfg, cluster=replace(cfg.cluster, nodes=("rig-a",)))
    pool = build_pool(cfg)
    (actor,) = pool.actors.values()
    most = depth = 0

    def look() -> None:
        nonlocal most, depth
        most, depth = max(most, len(actor.running)), max(depth, actor.depth)

    assert _farmed_watching(tmp_path / "farm.db", ds, cfg, pool, look, 0.001) == "finished"
    assert depth == 2 and most == 2
    assert actor.stats.failures == 0 and actor.stats.abandoned == 0
    assert _weights(tmp_path / "farm.db") == _local(tmp_path, ds, cfg)


def test_a_cuda_actor_is_placed_on_the_node_with_a_gpu(farm: Farm) -> None:
    """A node that declares a GPU (numba-cuda's simulator standing in for the device, as
    in the CUDA evaluator's own tests: no GPU here) gets the CUDA actor, by Ray's GPU
    resource, and its answers equal the reference's."""
    node = farm.cluster.add_node(
        num_cpus=1,
        num_gpus=1,
        resources={node_resource("rig-g"): 1},
        env_vars={"NUMBA_ENABLE_CUDASIM": "1"},
    )
    farm.cluster.wait_for_nodes()
    try:
        cfg = _config(farm, cpu_actors_per_node=0, gpu_actors_per_node=1)
        cfg = replace(cfg, cluster=replace(cfg.cluster, nodes=("rig-g",)))
        pool = build_pool(cfg)
        rng = np.random.default_rng(4)
        frames = rng.integers(0, 2**32, size=(8, 12), dtype=np.uint64).astype(np.uint32)
        mem = JitterMemory(frames)
        reqs = [
            make_request(frames[i], rng.integers(0, 256, (4, 32), np.uint8), mem, 3) for i in (0, 1)
        ]

        got = _evaluate_on(pool, "rig-g-cuda0", reqs, 120)
        snap = pool.actors["rig-g-cuda0"].snapshot()
        assert snap["kind"] == "cuda" and snap["node"] == "rig-g"
        ref = ReferenceEvaluator()
        for g, r in zip(got, reqs, strict=True):
            want = ref.evaluate_request(r)
            for name in ("output", "final_digest", "last_key"):
                assert np.array_equal(getattr(g, name), getattr(want, name)), name
    finally:
        farm.cluster.remove_node(node)


def test_an_idle_actor_whose_node_process_died_fails_without_a_batch(farm: Farm) -> None:
    """The process of rig-b's node actor is SIGKILLed while the actor has nothing to do:
    the pool's probe finds it gone (FAILED, its failure counted) with no batch sent, and
    the restart places a new one on the node, READY again. (A whole node pulled is the
    test above; its actor is found by its batch, and the probe's call fails alike.)"""
    pool = ActorPool(
        build_actors(_config(farm)), backoff_first=0.2, backoff_max=1.0, probe_every=0.3
    )
    victim = pool.actors["rig-b-reference0"]
    outcome: dict[str, Any] = {}

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(pool.run)
            with anyio.fail_after(60):
                while victim.state != ActorState.READY:
                    await anyio.sleep(0.05)
                pid = victim._backend.info["pid"]  # type: ignore[union-attr]
                os.kill(pid, signal.SIGKILL)
                while victim.state == ActorState.READY:
                    await anyio.sleep(0.02)
                outcome["state"], outcome["jobs"] = victim.state, victim.stats.jobs
                outcome["failures"] = victim.stats.failures
                while victim.state != ActorState.READY:
                    await anyio.sleep(0.05)
                outcome["pid"] = victim._backend.info["pid"]  # type: ignore[union-attr]
                outcome["killed"] = pid
            tg.cancel_scope.cancel()

    anyio.run(main)
    assert outcome["state"] in (ActorState.FAILED, ActorState.STARTING)
    assert outcome["jobs"] == 0 and outcome["failures"] == 1
    assert victim.stats.restarts == 1 and outcome["pid"] != outcome["killed"]


def test_a_node_actor_that_stops_answering_mid_job_loses_nothing(
    farm: Farm, tmp_path: Path
) -> None:
    """A partition as the head sees it: rig-b's node actor is alive but answers nothing
    (its process SIGSTOPped after its first batch). Its batch is copied to rig-a as a
    straggler or runs past the actor's timeout and goes there, the actor fails by its
    timeout, and the job ends with the single-machine run's weights."""
    ds = load_dataset(write_frames(tmp_path / "frames.json", 8, 17))
    cfg = _config(farm)
    cfg = replace(cfg, simulator=replace(cfg.simulator, timeout=3.0))
    pool = ActorPool(build_actors(cfg), backoff_first=0.2, backoff_max=1.0)
    victim = pool.actors["rig-b-reference0"]
    stopped: list[int] = []

    def cut_off() -> None:
        if not stopped and victim.stats.jobs >= 1 and victim._backend is not None:
            stopped.append(victim._backend.info["pid"])  # type: ignore[attr-defined]
            os.kill(stopped[0], signal.SIGSTOP)

    try:
        status = _farmed_watching(tmp_path / "farm.db", ds, cfg, pool, cut_off, 0.01)
    finally:
        for pid in stopped:  # whatever Ray did meanwhile, the process goes
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert stopped and status == "finished"
    assert victim.stats.errors.get("TimeoutError", 0) >= 1  # found out by its timeout
    assert _weights(tmp_path / "farm.db") == _local(tmp_path, ds, cfg)


K = 4
SWEEP = 1024


def _evaluate_on(pool: ActorPool, actor: str, reqs: list[EvalRequest], limit: float) -> Any:
    """Run the pool and evaluate ``reqs`` on one actor (within ``limit`` seconds)."""

    async def main() -> list[Any]:
        async with anyio.create_task_group() as tg:
            await tg.start(pool.run)
            with anyio.fail_after(limit):
                got = await pool.evaluate_on(actor, reqs)
            tg.cancel_scope.cancel()
        return got

    return anyio.run(main)


def _chip_requests() -> list[EvalRequest]:
    rng = np.random.default_rng(11)
    frames = rng.integers(0, 2**32, size=(8, 12), dtype=np.uint64).astype(np.uint32)
    mem = JitterMemory(frames)
    seeds = rng.integers(0, 256, size=(2, 32), dtype=np.uint8)
    return [make_request(frames[i], seeds, mem, 2, K, trace=True) for i in range(2)]


def test_a_chip_chain_on_a_labelled_node_serves_from_there(farm: Farm) -> None:
    with ChainEmulator(2, K, sweep_limit=SWEEP) as emu:
        table = {
            "name": "chain0",
            "path": emu.slave_path,
            "zero_bits": K,
            "chips": 2,
            "nonces_per_chip": SWEEP,
            "sweep_time": "100ms",
            "quiet": "50ms",
            "node": "rig-a",
        }
        pool = build_pool(_config(farm, [table], cpu_actors_per_node=0))
        reqs = _chip_requests()

        got = _evaluate_on(pool, "chain0", reqs, 60)
    snap = pool.actors["chain0"].snapshot()
    assert snap["node"] == "rig-a" and snap["device"]["device"]["chips"] == 2
    assert snap["device"]["device"]["jobs"] > 0  # the chain's counters, read on its node
    ref = ReferenceEvaluator()
    for g, r in zip(got, reqs, strict=True):
        want = ref.evaluate_request(r)
        for name in ("output", "golden_nonce", "final_digest", "last_key"):
            assert np.array_equal(getattr(g, name), getattr(want, name)), name


def test_a_node_killed_mid_job_loses_nothing_and_its_actors_return_with_it(
    farm: Farm, tmp_path: Path
) -> None:
    """rig-b's plug is pulled after its first batch: the job finishes on rig-a with the
    weights of the single-machine run; rig-b's actor fails, and once a node named rig-b
    joins again its pending start places it there and it serves. (A Ray node is added
    from the main thread only, so the daemon's side runs on a thread of its own.)"""
    ds = load_dataset(write_frames(tmp_path / "frames.json", 8, 17))
    cfg = _config(farm)
    pool = ActorPool(build_actors(cfg), backoff_first=0.2, backoff_max=1.0)
    victim = pool.actors["rig-b-reference0"]
    finished, outcome = threading.Event(), {}

    async def pull_the_plug() -> None:
        while victim.stats.jobs < 1:
            await anyio.sleep(0.02)
        pid = victim._backend.info["pid"]  # type: ignore[union-attr]
        await anyio.to_thread.run_sync(farm.kill, "rig-b", [pid])
        outcome["unplugged"] = True

    async def head() -> None:
        async with Store.connect(tmp_path / "farm.db") as store, anyio.create_task_group() as tg:
            await tg.start(pool.run)
            tg.start_soon(pull_the_plug)
            lease = pool.lease(1, zero_bits=0, passes=cfg.training.passes)
            outcome["status"] = (await Trainer(store, ds, cfg, lease, batch=4).run()).status
            outcome["job_failures"] = victim.stats.failures
            outcome["redispatched"] = pool.redispatched
            lease.close()
            finished.set()
            with anyio.fail_after(90):
                while victim.state != ActorState.READY:
                    await anyio.sleep(0.1)
                got = await pool.evaluate_on(victim.name, _chip_requests()[:1])
            outcome["served"] = len(got)
            tg.cancel_scope.cancel()

    def serve() -> None:
        try:
            anyio.run(head)
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            finished.set()

    thread = threading.Thread(target=serve)
    thread.start()
    finished.wait(timeout=120)
    try:
        if "error" not in outcome:
            farm.nodes["rig-b"] = farm.add("rig-b")
        thread.join()
    finally:
        if "rig-b" in farm.nodes:  # the node this test started goes with it
            farm.cluster.remove_node(farm.nodes.pop("rig-b"))
    assert "error" not in outcome, outcome["error"]
    assert outcome["unplugged"] and outcome["status"] == "finished"
    assert outcome["job_failures"] >= 1 and outcome["redispatched"] >= 1
    assert _weights(tmp_path / "farm.db") == _local(tmp_path, ds, cfg)
    assert outcome["served"] == 1 and victim.stats.restarts >= 1
