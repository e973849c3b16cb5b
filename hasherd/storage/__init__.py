"""SQLite persistence (aiosqlite): schema files, migrations, one writer.

See ``Store`` for the API and ``schema/`` for the tables.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hasherd.storage.errors import StorageError
    from hasherd.storage.migrations import newest_version
    from hasherd.storage.rows import (
        Checkpoint,
        DatasetRow,
        Event,
        RecordRow,
        RunRow,
        RunStatus,
        Validation,
        WeightRow,
    )
    from hasherd.storage.store import Store
    from hasherd.storage.training import GenerationWrite

# Names load on first use (PEP 562): importing ``hasherd.storage.status`` (hasherctl)
# must not load aiosqlite and numpy.
_HOME = {
    "StorageError": "hasherd.storage.errors",
    "newest_version": "hasherd.storage.migrations",
    "Checkpoint": "hasherd.storage.rows",
    "DatasetRow": "hasherd.storage.rows",
    "Event": "hasherd.storage.rows",
    "RecordRow": "hasherd.storage.rows",
    "RunRow": "hasherd.storage.rows",
    "RunStatus": "hasherd.storage.rows",
    "Validation": "hasherd.storage.rows",
    "WeightRow": "hasherd.storage.rows",
    "Store": "hasherd.storage.store",
    "GenerationWrite": "hasherd.storage.training",
}

__all__ = [
    "Checkpoint",
    "DatasetRow",
    "Event",
    "GenerationWrite",
    "RecordRow",
    "RunRow",
    "RunStatus",
    "StorageError",
    "Store",
    "Validation",
    "WeightRow",
    "newest_version",
]


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOME[name]), name)
    globals()[name] = value
    return value
