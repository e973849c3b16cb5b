"""``hasherd emulate s3``: an Antminer S3 controller on a pty (docs/s3.md).

``hasherd emulate s3 --chips N --zero-bits K`` prints the pty path on stdout (one line) and
answers S2/S3 tokens on it until SIGINT or SIGTERM (exit status 0). ``--bench WORKS``
instead hashes that many works without a pty and prints the hash rate. The ``s3`` driver
(``devices/s3.py``) names this module for the command.
"""

from __future__ import annotations

import argparse
import logging
import random
import time
from typing import Any

from hasherd.emulate.s3 import FAULTS, S3Emulator, S3Engine
from hasherd.emulate.serve import EXIT_OK, add_emulator_args, serve_until_signal
from hasherd.protocol.s3 import TxTask, Work

__all__ = ["DESCRIPTION", "add_arguments", "run"]

LOGGER = logging.getLogger(__name__)

DESCRIPTION = (
    "Emulate an Antminer S3 controller and its BM1382 chains on a pty; print its path and "
    "run until SIGINT or SIGTERM."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_emulator_args(
        p,
        FAULTS,
        sizes=[
            ("--chips", 32, "ASICs in all (default 32)"),
            ("--chains", 1, "chains they sit on (default 1)"),
        ],
        difficulty="the work's diff",
        unit="work",
    )
    p.add_argument(
        "--bench",
        type=int,
        default=0,
        metavar="WORKS",
        help="hash WORKS random works without a pty, print nonces/s and exit",
    )


def _options(args: argparse.Namespace) -> dict[str, Any]:
    return {"chains": args.chains, "sweep_limit": args.sweep_limit, "late_delay": args.late_delay}


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


def run(args: argparse.Namespace) -> int:
    """Serve until a signal; ``InputError`` on bad arguments propagates to main (exit 2)."""
    if args.bench > 0:
        return bench(args)
    emulator = S3Emulator(args.chips, args.zero_bits, set(args.faults), **_options(args))

    def finished() -> None:
        s = emulator.stats()
        LOGGER.info(
            "%d works, %d nonces sent, %.0f nonces/s hashing", s.works, s.nonces_sent, s.hash_rate
        )

    return serve_until_signal(
        emulator,
        lambda: LOGGER.info("S3 controller with %d ASICs on %s", args.chips, emulator.slave_path),
        finished,
    )
