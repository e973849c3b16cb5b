"""The evaluator actors a config asks for: ``devices.cpu_actors`` CPU simulators,
``devices.gpu_actors`` CUDA actors and one actor per ``[[devices.chips]]`` chain."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

from hasherd.actors.backend import Backend
from hasherd.actors.evaluator import EvaluatorActor
from hasherd.backends import create
from hasherd.backends.choice import cpu_actor_spec
from hasherd.config import ChipDeviceConfig, Config
from hasherd.errors import ConfigError
from hasherd.kernel.evaluators.base import Evaluator


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
    actors = [simulator(f"{kind}{i}", kind, _factory(cpu_name)) for i in range(n_cpu)]
    for i in range(n_gpu):
        name = f"cuda:{cfg.simulator.gpu_device + i}"
        actors.append(simulator(f"cuda{cfg.simulator.gpu_device + i}", "cuda", _factory(name)))
    names = {a.name for a in actors}
    for chip in cfg.devices.chips:
        if chip.name in names:
            raise ConfigError("devices.chips", f"actor name {chip.name!r} is taken", cfg.source)
        actors.append(chip_actor(chip))
    return actors


def chip_actor(chip: ChipDeviceConfig) -> EvaluatorActor:
    """A chip chain as an actor: it serves its ``zero_bits`` only, one batch at a time; a
    restart (after a failure) reopens the port and runs the init sequence again. The chain
    is driven on the event loop that runs the actor (the daemon's), with no thread."""
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
    )


def _factory(name: str) -> Callable[[], Evaluator]:
    def make() -> Evaluator:
        return create(name)

    return make
