"""``hasherd``: the daemon and its offline commands.

Each command lives in its own module with ``register(subparsers)``, which adds its parser
and sets ``handler`` (a function of the parsed arguments returning the exit status).
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import shlex
import sys
from collections.abc import Sequence

from hasherd import __version__
from hasherd.cli import (
    cmd_bench,
    cmd_daemon,
    cmd_db,
    cmd_emulate,
    cmd_export,
    cmd_flash,
    cmd_train,
    cmd_validate,
    cmd_vectors,
    cmd_verify,
)
from hasherd.errors import HasherError, first_hasher_error
from hasherd.logs import journal_prefix, setup_basic_logging

COMMANDS = (
    cmd_daemon,
    cmd_train,
    cmd_export,
    cmd_flash,
    cmd_verify,
    cmd_validate,
    cmd_vectors,
    cmd_bench,
    cmd_emulate,
    cmd_db,
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hasherd", description="HASHER trainer and daemon for retired mining hardware."
    )
    parser.add_argument("--version", action="version", version=f"hasherd {__version__}")
    parser.add_argument(
        "--log-level",
        type=log_level,
        choices=LOG_LEVELS,
        help="debug, info, warning or error, in any case: the level of messages on stderr "
        "(default WARNING); for train it replaces logging.level",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.register(sub)
    return parser


def log_level(text: str) -> str:
    """``--log-level`` in any case, as the config file's ``logging.level`` is written."""
    level = text.upper()
    return "WARNING" if level == "WARN" else level


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas, as ``MALLOC_ARENA_MAX`` would (unless that is set).

    glibc gives each busy thread an arena of its own, and hasherd runs several (the kernel
    threads, the kernel caller, the database writer); their half-empty arenas add about
    5 MiB to the peak RSS of a training run for no speed gain (measured with
    ``tools/bench_train.py``). Returns whether the cap was applied."""
    if os.environ.get("MALLOC_ARENA_MAX") or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        m_arena_max = -8  # from malloc.h
        return bool(libc.mallopt(m_arena_max, arenas))
    except (OSError, AttributeError):  # not glibc (musl has no mallopt): nothing to cap
        return False


def main(argv: Sequence[str] | None = None) -> int:
    limit_malloc_arenas()
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(words)
    args.command_line = "hasherd " + shlex.join(words)  # what a writer's lock file names
    setup_basic_logging(args.log_level)
    try:
        status: int = args.handler(args)
    except KeyboardInterrupt:
        return 130
    except (HasherError, BaseExceptionGroup) as exc:
        return failed(args.command, exc)
    return status


def failed(command: str, exc: BaseException) -> int:
    """The exit status for a command that raised ``exc``, after one line on stderr.

    A HasherError is the command's own refusal (bad input, a storage error, a database in
    use): one line, exit 2. anyio's task groups wrap what their tasks raise in an
    ExceptionGroup, so the HasherError is looked for inside one; a group of interrupts is
    an interrupt (130); anything else is a bug and keeps its traceback."""
    error = first_hasher_error(exc)
    if error is not None:
        prefix = journal_prefix(logging.ERROR)
        print(f"{prefix}hasherd {command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    if isinstance(exc, BaseExceptionGroup) and exc.split(KeyboardInterrupt)[1] is None:
        return 130
    raise exc


if __name__ == "__main__":
    raise SystemExit(main())
