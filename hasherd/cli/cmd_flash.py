"""``hasherd flash``: deploy a layer of stored weights into the BPF maps, without a daemon.

    hasherd flash [--db PATH] --layer N [--map-path PATH] [--validation-mode strict|lenient]
                  [--dry-run] [--target-fitness F] [--min-difficulty D]
                  [--kernel SPEC | --run ID | --job ID]
    hasherd flash status [--map-path PATH]
    hasherd flash rollback [--map-path PATH] [--db PATH]

The database is ``--db``, else ``<storage.base_path>/hasherd.db`` of ``--config``. A layer
goes live for one kernel (its passes, zero bits, token bits and memory, written into
``_meta``): a layer whose weights belong to several kernels is refused until ``--kernel``,
``--run`` or ``--job`` (the kernel that run trains) picks one. The ``deployment`` section
of the config gives the defaults (docs/configuration.md); docs/bpf-abi.md describes the
maps. Exit status: 0 done, 1 the deployment or rollback
failed (the live layer is as it was, unless the message says otherwise), 2 bad input or a
storage error.

A deployment records itself in the database, so it holds the database's writer lock:
beside a running daemon (which holds it for its life) it is refused, and ``hasherctl
flash`` deploys through the daemon. ``--dry-run`` and ``status`` only read. ``rollback``
rolls back even while another process holds the database (the maps matter more than the
event), and says that the event is not recorded.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import anyio

from hasherd import config as config_mod
from hasherd.cli import ctl_flash
from hasherd.cli import ctl_views as views
from hasherd.cli.common import DB_NAME, add_config_args, db_path
from hasherd.cli.writer import command_line, hold_writer_lock
from hasherd.deploy import DeployError, Gates, Settings, flash
from hasherd.storage import Store
from hasherd.storage.lock import DatabaseInUse, DatabaseLock
from hasherd.storage.selection import kernel_choice

EXIT_FAILED = 1
EXIT_USAGE = 2


def register(sub: Any) -> None:
    p = sub.add_parser(
        "flash",
        help="deploy a layer into the BPF maps; status; rollback",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    ctl_flash.add_deploy_options(p)
    p.add_argument(
        "--db",
        metavar="PATH",
        help="the training database: deploy reads it, rollback logs to it "
        f"(default <storage.base_path>/{DB_NAME})",
    )
    p.add_argument(
        "--map-path", metavar="PATH", help="the pinned outer map (default deployment.bpf_map_path)"
    )
    p.add_argument(
        "--validation-mode",
        choices=("strict", "lenient"),
        help="strict: only validated weights (default deployment.validation_mode)",
    )
    p.add_argument(
        "--backup-path",
        metavar="DIR",
        help="where backups of replaced layers go (default deployment.backup_path)",
    )
    p.add_argument(
        "--no-mount",
        action="store_true",
        help="never mount bpffs; fail when the map's directory is not on one",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_config_args(p)
    p.set_defaults(handler=run_flash)


def _show(args: argparse.Namespace, result: dict[str, Any], view: ctl_flash.View) -> None:
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(views.plain(view(result)))


def run_flash(args: argparse.Namespace) -> int:
    problem = ctl_flash.usage_problem(args)
    if problem:
        print(f"hasherd flash: error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    cfg = config_mod.load(args.config)
    settings = Settings.from_config(
        cfg.deployment,
        map_path=args.map_path,
        backup_path=args.backup_path,
        allow_mount=False if args.no_mount else None,
    )
    try:
        if args.action == "status":
            _show(args, anyio.run(flash.status, settings), ctl_flash.status_view)
        elif args.action == "rollback":
            _show(
                args,
                anyio.run(_rollback, settings, db_path(args, cfg), args),
                ctl_flash.rollback_view,
            )
        elif args.dry_run:
            gates = _gates(args, cfg.deployment.validation_mode)
            result = anyio.run(_dry_run, settings, db_path(args, cfg), gates, args)
            _show(args, result, ctl_flash.deploy_view)
        else:
            gates = _gates(args, cfg.deployment.validation_mode)
            db = db_path(args, cfg)
            with hold_writer_lock(db, args, instead="flash"):
                result = anyio.run(_deploy, settings, db, gates, args)
            _show(args, result, ctl_flash.deploy_view)
    except DeployError as exc:
        print(f"hasherd flash: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def _gates(args: argparse.Namespace, default_mode: str) -> Gates:
    return Gates(args.validation_mode or default_mode, args.target_fitness, args.min_difficulty)


async def _deploy(s: Settings, db: Path, gates: Gates, args: argparse.Namespace) -> dict[str, Any]:
    async with Store.connect(db, create=False) as store:
        kernel = await kernel_choice(store, args.kernel, args.run_id, args.job_id)
        return await flash.deploy(store, s, args.layer, gates, kernel=kernel)


async def _dry_run(s: Settings, db: Path, gates: Gates, args: argparse.Namespace) -> dict[str, Any]:
    # No lock (works beside a writer); the command names us if an old schema needs it.
    async with await Store.open_reader(db, command=command_line(args)) as store:
        kernel = await kernel_choice(store, args.kernel, args.run_id, args.job_id)
        return await flash.deploy(store, s, args.layer, gates, dry_run=True, kernel=kernel)


async def _rollback(s: Settings, db: Path, args: argparse.Namespace) -> dict[str, Any]:
    if not db.exists():  # still roll back: the maps matter more than the event
        print(
            f"hasherd flash: note: no database at {db}; the rollback event is not recorded",
            file=sys.stderr,
        )
        return await flash.rollback(s)
    try:
        lock = DatabaseLock.acquire(db, command_line(args))
    except DatabaseInUse as exc:  # the same: roll back, say what is not recorded
        print(
            f"hasherd flash: note: {exc}; the rollback event is not recorded "
            "(hasherctl flash rollback records it)",
            file=sys.stderr,
        )
        return await flash.rollback(s)
    with lock:
        async with Store.connect(db, create=False) as store:
            return await flash.rollback(s, store)
