"""``hasherd db``: the database itself. ``hasherd db stats`` says how big it is and what
fills it: the file (and its ``-wal``), each table's rows and bytes, and the seen history's
share. It only reads, so it works beside a running daemon or ``hasherd train``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import anyio

from hasherd import config as config_mod
from hasherd.cli.common import add_config_args
from hasherd.storage.sizes import DatabaseSize, human_bytes


def register(sub: Any) -> None:
    p = sub.add_parser(
        "db",
        help="inspect the database",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    db_sub = p.add_subparsers(dest="db_command", metavar="COMMAND", required=True)
    stats = db_sub.add_parser(
        "stats",
        help="the database's size, table by table",
        description="The database file's size (with its -wal), the rows and bytes of each "
        "table, and the seen history's share of the file.",
    )
    stats.add_argument(
        "--db",
        metavar="PATH",
        help="the database (default: the daemon's, daemon.database or "
        "<storage.base_path>/hasherd.db)",
    )
    add_config_args(stats)
    stats.add_argument("--json", action="store_true", help="print the figures as JSON")
    stats.set_defaults(handler=run_stats)


def database(args: argparse.Namespace) -> Path:
    """``--db``, else the daemon's database of the config."""
    if args.db:
        return Path(args.db)
    from hasherd.daemon.root import database_path

    return database_path(config_mod.load(args.config))


async def _measure(path: Path, command: str) -> DatabaseSize:
    from hasherd.storage import Store

    async with await Store.open_reader(path, command=command) as store:
        return await store.size_stats()


def run_stats(args: argparse.Namespace) -> int:
    command = getattr(args, "command_line", "hasherd db stats")
    size = anyio.run(_measure, database(args), command)
    if args.json:
        print(json.dumps(size.to_json(), indent=1))
    else:
        print(render(size))
    return 0


def render(size: DatabaseSize) -> str:
    """The report as aligned text."""
    lines = [
        f"database      {size.path}",
        f"file          {_bytes(size.file_bytes)} (+ {_bytes(size.wal_bytes)} -wal)",
        f"pages         {size.pages:,} of {size.page_size:,} bytes, {size.free_pages:,} free;"
        f" auto_vacuum {size.auto_vacuum}",
        "",
        f"{'TABLE':<14}{'ROWS':>12}{'BYTES':>16}",
    ]
    for t in size.tables:
        shown = "-" if t.bytes is None else f"{t.bytes:,}"
        lines.append(f"{t.name:<14}{t.rows:>12,}{shown:>16}")
    lines += [
        "",
        f"seen history  {_bytes(size.seen_bytes)}, {100 * size.seen_share:.1f} % of the pages",
    ]
    return "\n".join(lines)


def _bytes(n: int) -> str:
    return f"{n:,} bytes ({human_bytes(n)})" if n >= 1024 else f"{n:,} bytes"
