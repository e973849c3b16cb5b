"""``hasherd emulate s3``: an Antminer S3 controller on a pty (docs/s3.md).

``hasherd emulate s3 --chips N --zero-bits K`` prints the pty path on stdout (one line) and
answers S2/S3 tokens on it until SIGINT or SIGTERM (exit status 0). ``--bench WORKS``
instead hashes that many works without a pty and prints the hash rate.
"""

from __future__ import annotations

import argparse
import logging
import random
import signal
import threading
import time
from types import FrameType
from typing import Any

from hasherd.emulate.s3 import FAULTS, S3Emulator, S3Engine
from hasherd.protocol.s3 import TxTask, Work

__all__ = ["register_s3", "run_s3"]

LOGGER = logging.getLogger(__name__)

EXIT_OK = 0


def register_s3(esub: Any) -> None:
    """Add ``s3`` to the ``emulate`` subparsers."""
    p = esub.add_parser(
        "s3",
        help="an Antminer S3 controller (S2/S3 tokens)",
        description="Emulate an Antminer S3 controller and its BM1382 chains on a pty; print "
        "its path and run until SIGINT or SIGTERM.",
    )
    p.add_argument("--chips", type=int, default=32, help="ASICs in all (default 32)")
    p.add_argument("--chains", type=int, default=1, help="chains they sit on (default 1)")
    p.add_argument(
        "--zero-bits",
        type=int,
        default=16,
        help="leading zero bits a reported nonce needs before the work's diff "
        "(a real chip has 32; default 16)",
    )
    p.add_argument(
        "--fault",
        dest="faults",
        action="append",
        default=[],
        choices=sorted(FAULTS),
        help="inject a fault; repeat for several",
    )
    p.add_argument(
        "--sweep-limit",
        type=int,
        default=65536,
        help="nonces each chip hashes per work (default 65536)",
    )
    p.add_argument(
        "--late-delay", type=float, default=0.5, help="seconds the 'late' fault waits (default 0.5)"
    )
    p.add_argument(
        "--bench",
        type=int,
        default=0,
        metavar="WORKS",
        help="hash WORKS random works without a pty, print nonces/s and exit",
    )
    p.set_defaults(handler=run_s3)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    return {"chains": args.chains, "sweep_limit": args.sweep_limit,
            "late_delay": args.late_delay}  # fmt: skip


def bench(args: argparse.Namespace) -> int:
    engine = S3Engine(args.chips, args.zero_bits, set(args.faults), **_options(args))
    engine.warm_up()
    rng = random.Random(0)
    began = time.perf_counter()
    for wid in range(1, args.bench + 1):
        work = Work(wid, rng.randbytes(32), rng.randbytes(12))
        engine.feed(TxTask((work,)).to_bytes())
    wall = time.perf_counter() - began
    s = engine.stats()
    print(
        f"{s.works} works x {args.chips} chips x {args.sweep_limit} nonces: "
        f"{s.hash_rate:,.0f} nonces/s hashing, {s.hashes / wall:,.0f} nonces/s end to end, "
        f"{s.nonces_found} nonces found at {args.zero_bits} zero bits",
        flush=True,
    )
    return EXIT_OK


def run_s3(args: argparse.Namespace) -> int:
    """Serve until a signal; ``InputError`` on bad arguments propagates to main (exit 2)."""
    if args.bench > 0:
        return bench(args)
    emulator = S3Emulator(args.chips, args.zero_bits, set(args.faults), **_options(args))
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with emulator:
            print(emulator.slave_path, flush=True)
            LOGGER.info("S3 controller with %d ASICs on %s", args.chips, emulator.slave_path)
            while not done.wait(0.5):
                pass
            s = emulator.stats()
            LOGGER.info("%d works, %d nonces sent, %.0f nonces/s hashing",
                        s.works, s.nonces_sent, s.hash_rate)  # fmt: skip
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return EXIT_OK
