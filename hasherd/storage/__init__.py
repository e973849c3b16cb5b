"""SQLite persistence (aiosqlite): schema files, migrations, one writer.

See ``Store`` for the API and ``schema/`` for the tables.
"""

from __future__ import annotations

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
