"""Pieces the commands share: the config option, the evaluator choice, logging setup."""

from __future__ import annotations

import argparse

from hasherd.backends.choice import evaluator_for
from hasherd.logs import JsonFormatter, setup_logging

__all__ = ["JsonFormatter", "add_config_args", "evaluator_for", "setup_logging"]


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        metavar="FILE",
        help="config file: the original JSON format or TOML (see docs/configuration.md)",
    )
