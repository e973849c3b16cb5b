"""The daemon's training jobs: submitted, queued, run (several at once, each with a
priority), paused, cancelled."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from hasherd.errors import InputError
from hasherd.storage.core import StoreCore
from hasherd.storage.status import JobStatus

# Which status may follow which (anything else is refused with a clear message); a
# finished job may be queued again: extended (more epochs) and re-run.
_MOVES: dict[JobStatus, set[JobStatus]] = {
    JobStatus.QUEUED: {JobStatus.RUNNING, JobStatus.PAUSED, JobStatus.CANCELLED},
    JobStatus.RUNNING: {
        JobStatus.QUEUED,
        JobStatus.PAUSED,
        JobStatus.CANCELLED,
        JobStatus.FINISHED,
        JobStatus.FAILED,
    },
    JobStatus.PAUSED: {JobStatus.QUEUED, JobStatus.CANCELLED},
    JobStatus.FAILED: {JobStatus.QUEUED, JobStatus.CANCELLED},
    JobStatus.FINISHED: {JobStatus.QUEUED},
    JobStatus.CANCELLED: set(),
}
_COLS = (
    "id, name, data_path, options, status, run_id, dataset_id, error, created_at, updated_at,"
    " priority"
)
DEFAULT_PRIORITY = 10  # the jobs table's default (schema 0005): a share weight in 1..1000


@dataclass(frozen=True)
class JobRow:
    id: int
    name: str
    data_path: str
    options: dict[str, Any]
    status: JobStatus
    run_id: int | None
    dataset_id: int | None
    error: str | None
    created_at: float
    updated_at: float
    priority: int = DEFAULT_PRIORITY

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "data": self.data_path,
            "status": self.status,
            "options": self.options,
            "run_id": self.run_id,
            "dataset_id": self.dataset_id,
            "error": self.error,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "priority": self.priority,
        }


def _job(row: Any) -> JobRow:
    return JobRow(
        int(row[0]),
        row[1],
        row[2],
        json.loads(row[3]),
        JobStatus(row[4]),
        row[5],
        row[6],
        row[7],
        float(row[8]),
        float(row[9]),
        int(row[10]),
    )


class JobsMixin(StoreCore):
    async def add_job(
        self,
        name: str,
        data_path: str,
        options: dict[str, Any],
        priority: int = DEFAULT_PRIORITY,
    ) -> JobRow:
        now = time.time()
        text = json.dumps(options, sort_keys=True)
        async with self.transaction() as conn:
            cursor = await conn.execute(
                "INSERT INTO jobs (name, data_path, options, status, created_at, updated_at,"
                " priority) VALUES (?, ?, ?, 'queued', ?, ?, ?)",
                (name, data_path, text, now, now, priority),
            )
            job_id = int(cursor.lastrowid or 0)
            await cursor.close()
        return await self.job(job_id)

    async def job(self, job_id: int) -> JobRow:
        rows = await self._fetchall(f"SELECT {_COLS} FROM jobs WHERE id = ?", (job_id,))
        if not rows:
            raise InputError("id", f"no job {job_id}")
        return _job(rows[0])

    async def jobs(self, status: str | None = None) -> list[JobRow]:
        """Every job, or those in ``status`` (none for a string that is no status)."""
        if status is None:
            rows = await self._fetchall(f"SELECT {_COLS} FROM jobs ORDER BY id")
        else:
            rows = await self._fetchall(
                f"SELECT {_COLS} FROM jobs WHERE status = ? ORDER BY id", (status,)
            )
        return [_job(r) for r in rows]

    async def next_queued_job(self) -> JobRow | None:
        rows = await self._fetchall(
            f"SELECT {_COLS} FROM jobs WHERE status = 'queued' ORDER BY id LIMIT 1"
        )
        return _job(rows[0]) if rows else None

    async def move_job(
        self, job_id: int, status: JobStatus, *, error: str | None = None, **links: int | None
    ) -> JobRow:
        """Change a job's status (only along the allowed moves), with its error text and
        run/dataset links when given."""
        if status not in _MOVES:
            raise InputError("status", f"{status!r} is not one of {', '.join(JobStatus)}")
        unknown = set(links) - {"run_id", "dataset_id"}
        if unknown:
            raise InputError("links", f"unknown: {', '.join(sorted(unknown))}")
        job = await self.job(job_id)
        if status != job.status and status not in _MOVES[job.status]:
            raise InputError("status", f"job {job_id} is {job.status}; it cannot become {status}")
        sets = ["status = ?", "updated_at = ?", "error = ?"]
        params: list[Any] = [status, time.time(), error]
        for key, value in links.items():
            sets.append(f"{key} = ?")
            params.append(value)
        async with self.transaction() as conn:
            # only from the status just read: a move made meanwhile (the scheduler starting
            # the job as a client cancels it) is not overwritten
            cursor = await conn.execute(
                f"UPDATE jobs SET {', '.join(sets)} WHERE id = ? AND status = ?",
                (*params, job_id, job.status),
            )
            changed = cursor.rowcount
            await cursor.close()
        if changed != 1:
            now = await self.job(job_id)  # InputError when it vanished
            raise InputError("status", f"job {job_id} became {now.status}; not moved to {status}")
        return await self.job(job_id)

    async def set_job_priority(self, job_id: int, priority: int) -> JobRow:
        """Store a job's priority (any status: it applies whenever the job runs)."""
        async with self.transaction() as conn:
            cursor = await conn.execute(
                "UPDATE jobs SET priority = ?, updated_at = ? WHERE id = ?",
                (priority, time.time(), job_id),
            )
            changed = cursor.rowcount
            await cursor.close()
        if changed != 1:
            raise InputError("id", f"no job {job_id}")
        return await self.job(job_id)

    async def requeue_interrupted_jobs(self) -> list[int]:
        """At start: jobs left 'running' by a stopped or killed daemon go back to the queue
        (their runs resume from the last committed generation)."""
        async with self.transaction() as conn:
            cursor = await conn.execute(
                "UPDATE jobs SET status = 'queued', updated_at = ? WHERE status = 'running'"
                " RETURNING id",
                (time.time(),),
            )
            ids = [int(r[0]) for r in await cursor.fetchall()]
            await cursor.close()
        return ids
