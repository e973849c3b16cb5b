"""Schema 0005: a job's priority, the default for the jobs of an older database, and its
bounds enforced by the table itself."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from hasherd.errors import InputError
from hasherd.storage import Store
from hasherd.storage.migrations import migrations


def _database_at_schema_4(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        for migration in migrations()[:4]:
            for statement in migration.statements:
                conn.execute(statement)
        conn.execute("PRAGMA user_version = 4")
        conn.execute(
            "INSERT INTO jobs (name, data_path, options, status, created_at, updated_at)"
            " VALUES ('old', '/srv/a.md', '{}', 'queued', 1.0, 1.0)"
        )
    conn.close()


@pytest.mark.anyio
async def test_existing_jobs_get_the_default_priority(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    _database_at_schema_4(db)
    async with await Store.open(db) as store:
        old = await store.job(1)
        assert (old.name, old.priority) == ("old", 10)
        new = await store.add_job("new", "/srv/b.md", {}, priority=1000)
        assert new.priority == 1000 and new.to_json()["priority"] == 1000
        assert (await store.set_job_priority(1, 3)).priority == 3
        with pytest.raises(InputError, match="no job 7"):
            await store.set_job_priority(7, 3)
    with sqlite3.connect(db) as conn, pytest.raises(sqlite3.IntegrityError):
        conn.execute("UPDATE jobs SET priority = 0 WHERE id = 1")
    conn.close()
