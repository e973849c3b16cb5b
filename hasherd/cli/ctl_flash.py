"""``hasherctl flash``: deploy a layer through the daemon, show what is live, roll back.

    hasherctl flash --layer N [--dry-run] [--target-fitness F] [--min-difficulty D]
    hasherctl flash status
    hasherctl flash rollback

The views here also print ``hasherd flash`` (the same results, without a daemon).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from typing import Any

from hasherd.cli import ctl_views as views
from hasherd.control.client import ControlClient
from hasherd.control.params import DeployLayer
from hasherd.storage.rows import Kernel

ACTIONS = ("status", "rollback")
# A deployment may retry for up to deployment_timeout (300 s by default) on the daemon's
# side; the client waits at least this long for its answer.
FLASH_WAIT_S = 900.0
EXIT_USAGE = 2

Command = Callable[[ControlClient, argparse.Namespace], int]
View = Callable[[Mapping[str, Any]], list[views.Section]]


# -- views ---------------------------------------------------------------------------------


def layer_text(info: Mapping[str, Any] | None) -> str:
    if info is None:
        return "-"
    since = views.when(info["deployed_at"])
    return f"layer {info['layer']}, {info['count']} weights, since {since}"


def kernel_text(kernel: Mapping[str, Any] | None) -> str:
    """A kernel as ``Kernel.label`` writes it (``-``: unknown, as in an ABI 1 meta)."""
    return "-" if kernel is None else Kernel(**kernel).label


def rejected_text(rejected: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in sorted(rejected.items())) or "-"


def deploy_view(r: Mapping[str, Any]) -> list[views.Section]:
    if r["dry_run"]:
        head = f"dry run: layer {r['layer']} would go live at {r['map_path']} (nothing changed)"
    else:
        head = f"layer {r['layer']} is live at {r['map_path']}"
    sel = r["selection"]
    rows = [
        ("weights", str(r["count"])),
        ("kernel", kernel_text(r.get("kernel"))),
        ("checksum", r["checksum"]),
        ("added", str(r["added"])),
        ("changed", str(r["changed"])),
        ("removed", str(r["removed"])),
        ("unchanged", str(r["unchanged"])),
        ("replaces" if r["dry_run"] else "replaced", layer_text(r["previous"])),
        ("stored", str(sel["stored"])),
        ("rejected", rejected_text(sel["rejected"])),
        ("duplicate keys", str(sel["duplicates"])),
    ]
    if not r["dry_run"]:
        rows += [("backup", views.cell(r["backup"])), ("attempts", str(r["attempts"]))]
    return [views.Line(head), views.Pairs(rows)]


def status_view(r: Mapping[str, Any]) -> list[views.Section]:
    live = r["live"]
    rows = [("map", r["map_path"]), ("live", layer_text(live) if live else "nothing")]
    if live:
        state = "intact" if live["intact"] else "DIFFERS FROM ITS META"
        rows += [
            ("kernel", kernel_text(live.get("kernel"))),
            ("checksum", live["checksum"]),
            ("map id", f"{live['map_id']} ({live['entries']} entries, {state})"),
        ]
    rows += [
        ("previous", layer_text(r["previous"])),
        ("latest backup", views.cell(r["latest_backup"])),
    ]
    return [views.Pairs(rows)]


def rollback_view(r: Mapping[str, Any]) -> list[views.Section]:
    live = r["live"]
    head = f"rolled back {r['map_path']}: layer {live['layer']} is live again (from {r['source']})"
    rows = [
        ("live", layer_text(live)),
        ("checksum", live["checksum"]),
        ("replaced", layer_text(r["previous"])),
        ("backup", views.cell(r["backup"])),
    ]
    return [views.Line(head), views.Pairs(rows)]


# -- the command ---------------------------------------------------------------------------


def deploy_request(args: argparse.Namespace) -> DeployLayer:
    return DeployLayer(
        args.layer,
        args.dry_run,
        args.target_fitness,
        args.min_difficulty,
        kernel=args.kernel,
        run=args.run_id,
        job=args.job_id,
    )


def usage_problem(args: argparse.Namespace) -> str | None:
    deploying = (
        *(args.layer, args.dry_run or None, args.target_fitness, args.min_difficulty),
        *(args.kernel, args.run_id, args.job_id),
    )
    if args.action is None and args.layer is None:
        return "flash: give --layer N to deploy, or `status`, or `rollback`"
    if args.action is not None and any(v is not None for v in deploying):
        return f"flash {args.action}: --layer and the deploy options do not apply"
    return None


def _natural(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is below 0")
    return value


def add_deploy_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "action",
        nargs="?",
        choices=ACTIONS,
        help="status: what is live; rollback: the previous layer back",
    )
    p.add_argument("--layer", type=_natural, metavar="N", help="the layer to deploy")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print what would change (added, changed, removed) and touch nothing",
    )
    p.add_argument(
        "--target-fitness",
        type=float,
        metavar="F",
        help="deploy only weights with at least this fitness",
    )
    p.add_argument(
        "--min-difficulty",
        type=_natural,
        metavar="D",
        help="deploy only weights with at least D leading zero bits",
    )
    p.add_argument(
        "--kernel",
        metavar="SPEC",
        help="the kernel to deploy when the layer holds several: zb=K/p=P/tb=B/mem=HEX, "
        "any of the parts",
    )
    p.add_argument(
        "--run", dest="run_id", type=_natural, metavar="ID", help="the kernel this run trains"
    )
    p.add_argument(
        "--job", dest="job_id", type=_natural, metavar="ID", help="the kernel this job trains"
    )


def register(
    sub: Any,
    reader: Callable[[Any, str, str, Command], argparse.ArgumentParser],
    call_and_show: Callable[..., Command],
) -> None:
    """Add ``flash`` to hasherctl (``reader`` is ctl's ``_reader``)."""
    commands: dict[str | None, Command] = {
        None: call_and_show("flash.deploy", deploy_view, deploy_request),
        "status": call_and_show("flash.status", status_view),
        "rollback": call_and_show("flash.rollback", rollback_view),
    }

    def run(client: ControlClient, args: argparse.Namespace) -> int:
        problem = usage_problem(args)
        if problem:
            print(f"hasherctl: error: {problem}", file=sys.stderr)
            return EXIT_USAGE
        if args.action != "status":
            client.timeout = max(client.timeout, FLASH_WAIT_S)
        return commands[args.action](client, args)

    p = reader(sub, "flash", "deploy a layer into the BPF maps; status; rollback", run)
    add_deploy_options(p)
