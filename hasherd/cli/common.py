"""Pieces the commands share: the config option, the database option, the evaluator
choice, logging setup."""

from __future__ import annotations

import argparse
from pathlib import Path

from hasherd.backends.choice import evaluator_for
from hasherd.config import Config
from hasherd.logs import JsonFormatter, setup_logging

__all__ = [
    "DB_NAME",
    "JsonFormatter",
    "add_config_args",
    "add_db_arg",
    "add_selection_args",
    "db_path",
    "evaluator_for",
    "setup_logging",
]

DB_NAME = "hasherd.db"


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        metavar="FILE",
        help="config file: the original JSON format or TOML (see docs/configuration.md)",
    )


def add_db_arg(p: argparse.ArgumentParser, help: str = "the training database") -> None:
    """``--db``, optional: without it the database is ``<storage.base_path>/hasherd.db``
    of ``--config`` (as for ``hasherd train``)."""
    p.add_argument("--db", metavar="PATH", help=f"{help} (default: <storage.base_path>/{DB_NAME})")


def db_path(args: argparse.Namespace, cfg: Config) -> Path:
    """``--db``, else the database ``hasherd train`` writes with this config."""
    return Path(args.db) if args.db else Path(cfg.storage.base_path) / DB_NAME


def add_selection_args(p: argparse.ArgumentParser, *, run_help: str, job_help: str) -> None:
    """``--run``, ``--job`` and ``--kernel``: which stored weights (storage/selection.py)."""
    p.add_argument("--run", type=int, metavar="ID", help=run_help)
    p.add_argument("--job", type=int, metavar="ID", help=job_help)
    p.add_argument(
        "--kernel",
        metavar="SPEC",
        help="only weights of this kernel: zb=K/p=P/tb=B/mem=HEX (zero bits, passes, "
        "token bits, a prefix of the memory id), any of the parts",
    )
