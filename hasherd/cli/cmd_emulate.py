"""``hasherd emulate``: chip emulators on a pty, for bench work without hardware.

``hasherd emulate bm1370 --chips N --zero-bits K`` prints the pty path on stdout (one line)
and answers on it until SIGINT or SIGTERM (docs/emulator.md). Exit status 0 on a signal.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from types import FrameType
from typing import Any

from hasherd.cli.cmd_emulate_s3 import register_s3
from hasherd.emulate import FAULTS, ChainEmulator

LOGGER = logging.getLogger(__name__)

EXIT_OK = 0


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
    b.add_argument("--chips", type=int, default=1, help="chips in the chain (default 1)")
    b.add_argument(
        "--zero-bits",
        type=int,
        default=16,
        help="leading zero bits a reported nonce needs before the ticket mask "
        "(a real chip has 32; default 16)",
    )
    b.add_argument(
        "--fault",
        dest="faults",
        action="append",
        default=[],
        choices=sorted(FAULTS),
        help="inject a fault; repeat for several",
    )
    b.add_argument(
        "--sweep-limit",
        type=int,
        default=65536,
        help="nonces each chip hashes per job (default 65536)",
    )
    b.add_argument(
        "--late-delay", type=float, default=0.5, help="seconds the 'late' fault waits (default 0.5)"
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
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with emulator:
            print(emulator.slave_path, flush=True)
            LOGGER.info("BM1370 chain of %d on %s", args.chips, emulator.slave_path)
            while not done.wait(0.5):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return EXIT_OK
