"""Which evaluator a config means: the one place that reads ``simulator.device_type``,
``simulator.max_concurrency`` and the ``[[devices.chips]]`` names for that.

``hasherd train`` takes :func:`simulator_spec` (all of ``max_concurrency``), the daemon's
CPU actors take it with their share of the threads, and the validator resolves a side by
:func:`evaluator_named` (a chip device by its config name, else a spec such as ``numba``).
"""

from __future__ import annotations

from hasherd.backends import registry
from hasherd.config import DEVICE_EVALUATORS, Config
from hasherd.kernel.evaluators.base import Evaluator

# Kinds a CPU simulator can be; GPUs and chips are actors of their own.
CPU_KINDS = ("numba", "reference")


def simulator_spec(cfg: Config, threads: int | None = None) -> str:
    """The evaluator spec of ``simulator.device_type`` (``numba``, ``numba:4``,
    ``reference``, ``cuda``, ...), on ``threads`` threads (default
    ``simulator.max_concurrency``; 0 = every core)."""
    kind = DEVICE_EVALUATORS[cfg.simulator.device_type]
    n = cfg.simulator.max_concurrency if threads is None else threads
    return f"{kind}:{n}" if kind == "numba" and n else kind


def cpu_actor_spec(cfg: Config, threads: int) -> str:
    """The spec of one daemon CPU actor: the simulator's kind when it runs on a CPU (else
    numba), on ``threads`` threads."""
    kind = DEVICE_EVALUATORS[cfg.simulator.device_type]
    if kind not in CPU_KINDS:
        kind = "numba"
    return f"numba:{threads}" if kind == "numba" and threads else kind


def best_simulator() -> str:
    """The fastest simulator available here without an argument: numba, else the
    reference."""
    return "numba" if "numba" in registry.available() else "reference"


def evaluator_for(cfg: Config, name: str | None = None) -> Evaluator:
    """The evaluator named (a spec), else the one ``simulator`` selects."""
    return registry.create(name if name is not None else simulator_spec(cfg))


def evaluator_named(name: str, cfg: Config) -> Evaluator:
    """A configured chip device by its ``[[devices.chips]]`` name, else an evaluator spec
    (``numba``, ``asic:PATH,K``, ...)."""
    for chip in cfg.devices.chips:
        if chip.name == name:
            from hasherd.backends.asic import chip_evaluator  # opens nothing until first use

            return chip_evaluator(chip)
    return registry.create(name)
