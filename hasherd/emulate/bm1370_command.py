"""``hasherd emulate bm1370``: a BM1370 chain on a pty (docs/emulator.md).

``hasherd emulate bm1370 --chips N --zero-bits K`` prints the pty path on stdout (one line)
and answers on it until SIGINT or SIGTERM. Exit status 0 on a signal. The ``bm1370``
driver (``devices/bm1370.py``) names this module for the command.
"""

from __future__ import annotations

import argparse
import logging

from hasherd.emulate.bm1370 import FAULTS, ChainEmulator
from hasherd.emulate.serve import add_emulator_args, serve_until_signal

__all__ = ["DESCRIPTION", "add_arguments", "run"]

LOGGER = logging.getLogger(__name__)

DESCRIPTION = (
    "Emulate a chain of BM1370 chips on a pty; print its path and run until SIGINT or SIGTERM."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_emulator_args(
        parser,
        FAULTS,
        sizes=[("--chips", 1, "chips in the chain (default 1)")],
        difficulty="the ticket mask",
        unit="job",
    )


def run(args: argparse.Namespace) -> int:
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
