"""``hasherd emulate``: chip emulators on a pty, for bench work without hardware.

``hasherd emulate bm1370 --chips N --zero-bits K`` prints the pty path on stdout (one line)
and answers on it until SIGINT or SIGTERM (docs/emulator.md). Exit status 0 on a signal.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from hasherd.cli.cmd_emulate_s3 import register_s3
from hasherd.cli.emulate_common import EXIT_OK as EXIT_OK
from hasherd.cli.emulate_common import add_emulator_args, serve_until_signal
from hasherd.emulate import FAULTS, ChainEmulator

LOGGER = logging.getLogger(__name__)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "emulate",
        help="run a chip emulator on a pty",
        description="Run a software chip chain on a pty (docs/emulator.md).",
    )
    esub = p.add_subparsers(dest="model", metavar="MODEL", required=True)
    b = esub.add_parser(
        "bm1370",
        help="a BM1370 chain (full-header jobs)",
        description="Emulate a chain of BM1370 chips on a pty; print its path and run until "
        "SIGINT or SIGTERM.",
    )
    add_emulator_args(
        b,
        FAULTS,
        sizes=[("--chips", 1, "chips in the chain (default 1)")],
        difficulty="the ticket mask",
        unit="job",
    )
    b.set_defaults(handler=run_bm1370)
    register_s3(esub)


def run_bm1370(args: argparse.Namespace) -> int:
    """Serve until a signal; ``InputError`` on bad arguments propagates to main (exit 2)."""
    emulator = ChainEmulator(
        args.chips,
        args.zero_bits,
        set(args.faults),
        sweep_limit=args.sweep_limit,
        late_delay=args.late_delay,
    )
    return serve_until_signal(
        emulator,
        lambda: LOGGER.info("BM1370 chain of %d on %s", args.chips, emulator.slave_path),
    )
