"""The evaluator actors a config asks for: ``devices.cpu_actors`` CPU simulators,
``devices.gpu_actors`` CUDA actors and one actor per ``[[devices.chips]]`` chain, and the
pool over them with the ``devices`` dispatch settings."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

from hasherd.actors.backend import Backend
from hasherd.actors.evaluator import EvaluatorActor
from hasherd.actors.pool import ActorPool
from hasherd.actors.rates import CostModel
from hasherd.backends import create
from hasherd.backends.choice import cpu_actor_spec
from hasherd.config import ChipDeviceConfig, Config
from hasherd.errors import ConfigError
from hasherd.kernel.evaluators.base import Evaluator

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
    if n_cpu + n_gpu + len(cfg.devices.chips) < 1:
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
        actors.append(chip_actor(chip))
    return actors


def chip_actor(chip: ChipDeviceConfig) -> EvaluatorActor:
    """A chip chain as an actor: it serves its ``zero_bits`` only, one batch at a time; a
    restart (after a failure) reopens the port and runs the init sequence again. The chain
    is driven on the event loop that runs the actor (the daemon's), with no thread. Until
    measured, a candidate costs it one job (its sweep and quiet time) per search."""
    from hasherd.backends.asic import chip_backend

    def make() -> Backend:
        return chip_backend(chip)

    return EvaluatorActor(
        chip.name,
        chip.driver,
        backend=make,
        timeout=chip.timeout,
        mailbox=1,
        zero_bits=chip.zero_bits,
        cost=CostModel(job_seconds=chip.sweep_time + chip.quiet),
    )


def _factory(name: str) -> Callable[[], Evaluator]:
    def make() -> Evaluator:
        return create(name)

    return make
