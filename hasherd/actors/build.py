"""The evaluator actors a config asks for: ``devices.cpu_actors`` CPU simulators,
``devices.gpu_actors`` CUDA actors and one actor per ``[[devices.chips]]`` chain, and the
pool over them with the ``devices`` dispatch settings."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from hasherd.actors.backend import Backend
from hasherd.actors.evaluator import EvaluatorActor
from hasherd.actors.pool import ActorPool
from hasherd.actors.rates import CostModel
from hasherd.backends import create
from hasherd.backends.choice import cpu_actor_spec
from hasherd.config import ChipDeviceConfig, Config
from hasherd.errors import ConfigError
from hasherd.kernel.evaluators.base import Evaluator

if TYPE_CHECKING:
    from hasherd.backends.cluster import RayCluster

# First estimates, pessimistic (docs/perf.md measures several times these): double
# SHA-256 a second per numba thread, for the reference evaluator, and per GPU.
NUMBA_THREAD_HASHES = 1e6
REFERENCE_HASHES = 1e5
GPU_HASHES = 1e7


def build_pool(cfg: Config) -> ActorPool:
    """The daemon's pool: ``build_actors`` under the ``devices`` dispatch settings."""
    return ActorPool(
        build_actors(cfg),
        max_batch_seconds=cfg.devices.max_batch_seconds,
        straggler_factor=cfg.devices.straggler_factor,
    )


def cpu_threads(cfg: Config) -> int:
    """Threads per CPU actor: ``simulator.max_concurrency`` (0 = every core) shared out."""
    total = cfg.simulator.max_concurrency or (os.cpu_count() or 1)
    return max(1, total // max(1, cfg.devices.cpu_actors))


def build_actors(cfg: Config) -> list[EvaluatorActor]:
    """``devices.cpu_actors`` CPU simulators (numba, or the reference evaluator when
    ``simulator.device_type`` says so) and ``devices.gpu_actors`` CUDA evaluators, one per
    GPU from ``simulator.gpu_device`` on."""
    n_cpu, n_gpu = cfg.devices.cpu_actors, cfg.devices.gpu_actors
    remote = remote_actors(cfg)
    if n_cpu + n_gpu + len(cfg.devices.chips) + len(remote) < 1:
        raise ConfigError("devices.cpu_actors", "at least one evaluator actor is needed")
    timeout, mailbox = cfg.simulator.timeout, cfg.devices.mailbox
    cpu_name = cpu_actor_spec(cfg, cpu_threads(cfg))
    kind = cpu_name.partition(":")[0]
    simulator = functools.partial(
        EvaluatorActor,
        timeout=timeout,
        mailbox=mailbox,
        max_zero_bits=cfg.devices.simulator_max_zero_bits,
    )
    rate = NUMBA_THREAD_HASHES * cpu_threads(cfg) if kind == "numba" else REFERENCE_HASHES
    cpu_cost = CostModel(hashes_per_second=rate)
    actors = [
        simulator(f"{kind}{i}", kind, _factory(cpu_name), cost=cpu_cost) for i in range(n_cpu)
    ]
    gpu_cost = CostModel(hashes_per_second=GPU_HASHES)
    for i in range(n_gpu):
        device = cfg.simulator.gpu_device + i
        actors.append(simulator(f"cuda{device}", "cuda", _factory(f"cuda:{device}"), cost=gpu_cost))
    names = {a.name for a in actors}
    for chip in cfg.devices.chips:
        if chip.name in names:
            raise ConfigError("devices.chips", f"actor name {chip.name!r} is taken", cfg.source)
        names.add(chip.name)
        if not chip.node:
            actors.append(chip_actor(chip))
    for actor in remote:
        if actor.zero_bits is None and actor.name in names:  # a node's simulator
            raise ConfigError("cluster.nodes", f"actor name {actor.name!r} is taken", cfg.source)
    return actors + remote


def remote_actors(cfg: Config) -> list[EvaluatorActor]:
    """The actors on ``cluster.nodes`` (docs/scale-out.md): on each node
    ``cluster.cpu_actors_per_node`` simulators (``<node>-numba<i>``) and
    ``cluster.gpu_actors_per_node`` CUDA actors (``<node>-cuda<i>``) on each of
    ``cluster.gpu_nodes`` (all of them when empty), and each chip chain
    whose table names a ``node``. None without ``cluster.address``."""
    if not cfg.cluster.address:
        return []
    from hasherd.backends.cluster import RayBackend, RayCluster, check_ray

    check_ray()
    cluster, cl = RayCluster(cfg.cluster), cfg.cluster
    threads = cl.cpu_threads
    kind = cpu_actor_spec(cfg, 1).partition(":")[0]
    spec = f"numba:{threads}" if kind == "numba" else kind
    rate = NUMBA_THREAD_HASHES * max(1, threads) if kind == "numba" else REFERENCE_HASHES

    def sim(node: str, name: str, kind: str, spec: str, gpus: float, rate: float) -> EvaluatorActor:
        def make() -> Backend:
            share = cl.cpu_actors_per_node
            return RayBackend(cluster, name, node, spec=spec, gpus=gpus, share=share)

        return EvaluatorActor(
            name,
            kind,
            backend=make,
            timeout=cfg.simulator.timeout,
            mailbox=cfg.devices.mailbox,
            max_zero_bits=cfg.devices.simulator_max_zero_bits,
            cost=CostModel(hashes_per_second=rate),
            node=node,
        )

    actors = []
    gpu_nodes = cl.gpu_nodes or cl.nodes
    for node in cl.nodes:
        for i in range(cl.cpu_actors_per_node):
            actors.append(sim(node, f"{node}-{kind}{i}", kind, spec, 0, rate))
        for i in range(cl.gpu_actors_per_node if node in gpu_nodes else 0):
            actors.append(sim(node, f"{node}-cuda{i}", "cuda", "cuda:0", 1, GPU_HASHES))
    for chip in cfg.devices.chips:
        if chip.node:
            actors.append(_remote_chip(cluster, chip))
    return actors


def _remote_chip(cluster: RayCluster, chip: ChipDeviceConfig) -> EvaluatorActor:
    """A chip chain on its node: the same actor as ``chip_actor``, its backend there."""
    from hasherd.backends.cluster import RayBackend

    def make() -> Backend:
        return RayBackend(cluster, chip.name, chip.node, chip=chip)

    return _chip_evaluator(chip, make, node=chip.node)


def chip_actor(chip: ChipDeviceConfig) -> EvaluatorActor:
    """A chip chain as an actor: it serves its ``zero_bits`` only, one batch at a time; a
    restart (after a failure) reopens the port and runs the init sequence again. The chain
    is driven on the event loop that runs the actor (the daemon's), with no thread. Until
    measured, a candidate costs it one job (its sweep and quiet time) per search."""
    from hasherd.backends.asic import chip_backend

    def make() -> Backend:
        return chip_backend(chip)

    return _chip_evaluator(chip, make)


def _chip_evaluator(
    chip: ChipDeviceConfig, make: Callable[[], Backend], node: str = ""
) -> EvaluatorActor:
    """The actor of a chip chain, whatever runs its backend: its zero bits only, one batch
    at a time, a job's sweep and quiet time per candidate until measured."""
    return EvaluatorActor(
        chip.name,
        chip.driver,
        backend=make,
        timeout=chip.timeout,
        mailbox=1,
        zero_bits=chip.zero_bits,
        cost=CostModel(job_seconds=chip.sweep_time + chip.quiet),
        node=node,
    )


def _factory(name: str) -> Callable[[], Evaluator]:
    def make() -> Evaluator:
        return create(name)

    return make
