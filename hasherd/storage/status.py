"""Job statuses: one enum for the database, the control socket, the metrics and hasherctl.

A module of its own, importing nothing, so that ``hasherctl`` can name a status without
loading the database layer.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """A job's status: the value stored in ``jobs.status``, sent on the control socket and
    used as the ``status`` label of ``hasherd_job_status`` (the schema's CHECK lists the
    same strings)."""

    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"
    CANCELLED = "cancelled"
    FAILED = "failed"
