"""``hasherd``: the daemon and its offline commands.

Each command lives in its own module with ``register(subparsers)``, which adds its parser
and sets ``handler`` (a function of the parsed arguments returning the exit status).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from hasherd import __version__
from hasherd.cli import cmd_bench, cmd_export, cmd_train, cmd_vectors, cmd_verify
from hasherd.errors import HasherError

COMMANDS = (cmd_train, cmd_export, cmd_verify, cmd_vectors, cmd_bench)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hasherd", description="HASHER trainer and daemon for retired mining hardware."
    )
    parser.add_argument("--version", action="version", version=f"hasherd {__version__}")
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log level for messages on stderr (default WARNING)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        status: int = args.handler(args)
    except HasherError as exc:
        print(f"hasherd {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    return status


if __name__ == "__main__":
    raise SystemExit(main())
