"""``hasherctl``: the thin client of the daemon's control socket.

The control socket arrives with the daemon; until then only ``version`` exists.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from hasherd import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hasherctl", description="Control a running hasherd.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    sub.add_parser("version", help="print hasherctl's version")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "version":
        print(f"hasherctl {__version__}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
