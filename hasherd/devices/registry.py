"""The chip drivers: one line per driver, its name and the module that exports its
``DRIVER`` (``devices.chain.Driver``).

Lookup is lazy: importing this module imports no driver, so the config validator can
name the drivers without loading serial or USB code; ``driver(name)`` imports the one
asked for. The daemon, the validator, the ``asic:`` backend and ``hasherd emulate`` all
find drivers here.
"""

from __future__ import annotations

import importlib

from hasherd.devices.chain import Driver
from hasherd.errors import InputError

__all__ = ["driver", "names"]

_MODULES = {
    "bm1370": "hasherd.devices.bm1370",
    "s3": "hasherd.devices.s3",
}


def names() -> tuple[str, ...]:
    """The driver names, sorted (as config errors and ``hasherd emulate`` list them)."""
    return tuple(sorted(_MODULES))


def driver(name: str) -> Driver:
    """The ``DRIVER`` of driver ``name``; ``InputError`` for a name not registered."""
    if name not in _MODULES:
        raise InputError("driver", f"{name!r} is not one of {', '.join(names())}")
    found = importlib.import_module(_MODULES[name]).DRIVER
    if not isinstance(found, Driver) or found.name != name:
        raise InputError("driver", f"{_MODULES[name]} does not export the DRIVER of {name!r}")
    return found
