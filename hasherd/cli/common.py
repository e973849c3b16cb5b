"""Pieces the commands share: the config option, the evaluator choice, logging setup."""

from __future__ import annotations

import argparse
from dataclasses import replace

from hasherd.backends.choice import evaluator_for
from hasherd.config import Config
from hasherd.logs import JsonFormatter, setup_logging

__all__ = [
    "JsonFormatter",
    "add_config_args",
    "evaluator_for",
    "setup_command_logging",
    "setup_logging",
]


def setup_command_logging(cfg: Config, args: argparse.Namespace) -> None:
    """The ``logging`` section for a command, with ``hasherd --log-level`` in place of
    ``logging.level`` when given and ``--verbose`` (hasherd's own debug lines: one per
    winner) when the command has it."""
    if getattr(args, "log_level", None):
        cfg = replace(cfg, logging=replace(cfg.logging, level=args.log_level.lower()))
    setup_logging(cfg, verbose=getattr(args, "verbose", False))


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        metavar="FILE",
        help="config file: the original JSON format or TOML (see docs/configuration.md)",
    )
