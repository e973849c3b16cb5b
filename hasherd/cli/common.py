"""Pieces the commands share: the config option, the evaluator choice, logging setup."""

from __future__ import annotations

import argparse

from hasherd import backends
from hasherd.config import DEVICE_EVALUATORS, Config
from hasherd.kernel.evaluators.base import Evaluator
from hasherd.logs import JsonFormatter, setup_logging

__all__ = ["JsonFormatter", "add_config_args", "evaluator_for", "setup_logging"]


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        metavar="FILE",
        help="config file: the original JSON format or TOML (see docs/configuration.md)",
    )


def evaluator_for(cfg: Config, name: str | None = None) -> Evaluator:
    """The evaluator named on the command line, else the one ``simulator`` selects."""
    if name is None:
        kind = DEVICE_EVALUATORS[cfg.simulator.device_type]
        threads = cfg.simulator.max_concurrency
        name = f"{kind}:{threads}" if kind == "numba" and threads else kind
    return backends.create(name)
