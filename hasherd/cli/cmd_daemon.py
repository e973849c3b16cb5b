"""``hasherd run`` (the daemon, as systemd starts it) and ``hasherd check-config``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import anyio

from hasherd import config as config_mod
from hasherd.cli.writer import command_line
from hasherd.config import Config
from hasherd.logs import setup_logging

SYSTEM_CONFIG = Path("/etc/hasherd/hasherd.toml")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="run the daemon in the foreground (systemd starts it this way)",
        description="Run the hasherd daemon: evaluator actors, the job scheduler, the control "
        "socket and the metrics endpoint. Without --config it reads /etc/hasherd/hasherd.toml "
        "when that exists, else the defaults.",
    )
    p.add_argument("--config", metavar="FILE", help="config file (TOML, or the original JSON)")
    p.set_defaults(handler=run_daemon)
    c = sub.add_parser(
        "check-config",
        help="validate a config file and print the effective config",
        description="Read a config file, check every key, and print the effective config "
        "(the file's values over the defaults) as TOML, or JSON with --json. Exit 0 when "
        "valid, 2 with the offending key otherwise.",
    )
    c.add_argument("file", nargs="?", help=f"config file (default: {SYSTEM_CONFIG})")
    c.add_argument("--json", action="store_true", help="print JSON instead of TOML")
    c.set_defaults(handler=check_config)


def load_daemon_config(path: str | None) -> tuple[Config, str | None]:
    if path is None and SYSTEM_CONFIG.exists():
        path = str(SYSTEM_CONFIG)
    return config_mod.load(path), path


def run_daemon(args: argparse.Namespace) -> int:
    cfg, path = load_daemon_config(args.config)
    setup_logging(cfg)
    from hasherd.daemon.root import Daemon

    daemon = Daemon(cfg, path, command=command_line(args))
    status: int = anyio.run(daemon.run)
    return status


def check_config(args: argparse.Namespace) -> int:
    path = args.file if args.file else str(SYSTEM_CONFIG)
    cfg = config_mod.load(path)
    data = cfg.to_dict()
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(f"# effective config of {path}")
        print(to_toml(data))
    return 0


def to_toml(data: dict[str, dict[str, Any]]) -> str:
    """The config as TOML: tables of scalars, and arrays of tables (``devices.chips``)."""
    out = []
    for section, keys in data.items():
        out.append(f"[{section}]")
        tables = {k: v for k, v in keys.items() if isinstance(v, list)}
        for key, value in keys.items():
            if value is None:
                out.append(f"# {key} is unset")
            elif key not in tables:
                out.append(f"{key} = {_toml_value(value)}")
        out.append("")
        for key, rows in tables.items():  # [[devices.chips]]: after the section's scalars
            for row in rows:
                out.append(f"[[{section}.{key}]]")
                out += [f"{k} = {_toml_value(v)}" for k, v in row.items()]
                out.append("")
    return "\n".join(out)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))
