"""Pieces the ``hasherd emulate`` models share: the emulator options, and serving a pty
until SIGINT or SIGTERM (docs/emulator.md, docs/s3.md). Each model's command module
(``bm1370_command``, ``s3_command``) builds on them; its driver names it."""

from __future__ import annotations

import argparse
import signal
import threading
from collections.abc import Callable, Collection, Sequence
from types import FrameType

from hasherd.emulate.pty import PtyEmulator

__all__ = ["EXIT_OK", "add_emulator_args", "serve_until_signal"]

EXIT_OK = 0


def add_emulator_args(
    p: argparse.ArgumentParser,
    faults: Collection[str],
    *,
    sizes: Sequence[tuple[str, int, str]],
    difficulty: str,
    unit: str,
) -> None:
    """Add the chain's size options (``sizes``: flag, default, help), then ``--zero-bits``
    (on top of ``difficulty``), ``--fault`` (one of ``faults``), ``--sweep-limit`` (nonces
    per ``unit``) and ``--late-delay``."""
    for flag, default, text in sizes:
        p.add_argument(flag, type=int, default=default, help=text)
    p.add_argument(
        "--zero-bits",
        type=int,
        default=16,
        help=f"leading zero bits a reported nonce needs before {difficulty} "
        "(a real chip has 32; default 16)",
    )
    p.add_argument(
        "--fault",
        dest="faults",
        action="append",
        default=[],
        choices=sorted(faults),
        help="inject a fault; repeat for several",
    )
    p.add_argument(
        "--sweep-limit",
        type=int,
        default=65536,
        help=f"nonces each chip hashes per {unit} (default 65536)",
    )
    p.add_argument(
        "--late-delay", type=float, default=0.5, help="seconds the 'late' fault waits (default 0.5)"
    )


def serve_until_signal(
    emulator: PtyEmulator,
    started: Callable[[], None],
    finished: Callable[[], None] = lambda: None,
) -> int:
    """Start ``emulator``, print its pty path on stdout, call ``started``, and serve until
    SIGINT or SIGTERM; call ``finished`` before it stops. The previous handlers come back."""
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with emulator:
            print(emulator.slave_path, flush=True)
            started()
            while not done.wait(0.5):
                pass
            finished()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return EXIT_OK
