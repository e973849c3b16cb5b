"""``hasherd emulate``: chip emulators on a pty, for bench work without hardware.

One subcommand per registered chip driver that has an emulator (``devices.registry``):
``hasherd emulate bm1370 --chips N --zero-bits K`` prints the pty path on stdout (one
line) and answers on it until SIGINT or SIGTERM (docs/emulator.md, docs/s3.md). Exit
status 0 on a signal.
"""

from __future__ import annotations

from typing import Any

from hasherd.devices import registry


def register(sub: Any) -> None:
    p = sub.add_parser(
        "emulate",
        help="run a chip emulator on a pty",
        description="Run a software chip chain on a pty (docs/emulator.md).",
    )
    esub = p.add_subparsers(dest="model", metavar="MODEL", required=True)
    for name in registry.names():
        driver = registry.driver(name)
        if driver.emulator is None:
            continue
        command = driver.emulator_command()
        model = esub.add_parser(name, help=driver.description, description=command.DESCRIPTION)
        command.add_arguments(model)
        model.set_defaults(handler=command.run)
