"""Datasets and their records, runs, and the event log."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from hasherd.errors import InputError
from hasherd.storage.core import StoreCore, changes, execute_many, insert, where
from hasherd.storage.errors import StorageError
from hasherd.storage.rows import RUN_STATUSES, DatasetRow, Event, RecordRow, RunRow

_DATASET_COLS = "id, name, source, memory_id, token_bits, records_digest, record_count, created_at"
_RUN_COLS = (
    "id, dataset_id, status, config_json, config_digest, rng_seed, versions_json,"
    " created_at, updated_at, epoch, difficulty"
)
EVENT_INSERT = (
    "INSERT INTO events (at, kind, run_id, record_id, payload_json) VALUES (?, ?, ?, ?, ?)"
)


def event_params(event: Event, at: float) -> tuple[Any, ...]:
    try:
        payload = json.dumps(event.payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InputError("payload", f"not JSON: {exc}", where=f"event {event.kind!r}") from exc
    return (at, event.kind, event.run_id, event.record_id, payload)


def _event(row: Sequence[Any]) -> Event:
    id_, at, kind, run_id, record_id, payload = row
    return Event(kind, json.loads(payload), run_id, record_id, id_, at)


class CatalogMixin(StoreCore):
    """What a training run is about, and what happened during it."""

    async def add_dataset(
        self,
        name: str,
        source: str,
        memory_id: str,
        token_bits: int,
        records_digest: str,
        rows: Sequence[tuple[int, int, bytes]],
    ) -> int:
        """Store a dataset and its records (token_id, context_key, slots48) in order.

        Idempotent: a dataset with the same ``records_digest`` is returned, not added again.
        """
        async with self.transaction() as conn:
            found = list(
                await conn.execute_fetchall(
                    "SELECT id, record_count FROM datasets WHERE records_digest = ?",
                    (records_digest,),
                )
            )
            if found:
                return self._same_dataset(found[0], records_digest, len(rows))
            dataset_id = await insert(
                conn,
                "INSERT INTO datasets (name, source, memory_id, token_bits, records_digest,"
                " record_count, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (name, source, memory_id, token_bits, records_digest, len(rows), time.time()),
            )
            await execute_many(
                conn,
                "INSERT INTO records (dataset_id, idx, token_id, context_key, slots)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    (dataset_id, i, tok, key, bytes(slots))
                    for i, (tok, key, slots) in enumerate(rows)
                ),
            )
            return dataset_id

    def _same_dataset(self, found: Sequence[Any], digest: str, count: int) -> int:
        dataset_id, stored_count = int(found[0]), int(found[1])
        if stored_count != count:
            raise StorageError(
                self.path,
                f"dataset {dataset_id} has digest {digest} but {stored_count} records, not {count}",
            )
        return dataset_id

    async def dataset(self, dataset_id: int) -> DatasetRow:
        sql = f"SELECT {_DATASET_COLS} FROM datasets WHERE id = ?"
        return DatasetRow(*await self._fetchone(sql, (dataset_id,), f"dataset {dataset_id}"))

    async def datasets(self) -> list[DatasetRow]:
        rows = await self._fetchall(f"SELECT {_DATASET_COLS} FROM datasets ORDER BY id")
        return [DatasetRow(*row) for row in rows]

    async def records(self, dataset_id: int) -> list[RecordRow]:
        """The dataset's records in dataset order."""
        rows = await self._fetchall(
            "SELECT id, dataset_id, idx, token_id, context_key, slots FROM records"
            " WHERE dataset_id = ? ORDER BY idx",
            (dataset_id,),
        )
        return [RecordRow(*row) for row in rows]

    async def create_run(
        self,
        dataset_id: int,
        config_json: str,
        config_digest: str,
        rng_seed: int,
        versions_json: str,
    ) -> int:
        """A new run in status 'running', at epoch 0 and difficulty 0."""
        now = time.time()
        async with self.transaction() as conn:
            return await insert(
                conn,
                "INSERT INTO runs (dataset_id, status, config_json, config_digest, rng_seed,"
                " versions_json, created_at, updated_at, epoch, difficulty)"
                " VALUES (?, 'running', ?, ?, ?, ?, ?, ?, 0, 0)",
                (dataset_id, config_json, config_digest, rng_seed, versions_json, now, now),
            )

    async def resumable_run(self, dataset_id: int, config_digest: str) -> RunRow | None:
        """The newest run of this dataset and config that did not fail, if any: an
        unfinished one resumes, a finished one continues (more epochs, or nothing to do)."""
        rows = await self._fetchall(
            f"SELECT {_RUN_COLS} FROM runs WHERE dataset_id = ? AND config_digest = ?"
            " AND status IN ('running', 'stopped', 'finished') ORDER BY id DESC LIMIT 1",
            (dataset_id, config_digest),
        )
        return RunRow(*rows[0]) if rows else None

    async def set_run_status(self, run_id: int, status: str) -> None:
        """Set the run's status: one of 'running', 'finished', 'stopped', 'failed'."""
        if status not in RUN_STATUSES:
            raise InputError("status", f"{status!r} is not one of {sorted(RUN_STATUSES)}")
        await self._update_run(run_id, "status = ?", (status,))

    async def set_run_progress(self, run_id: int, epoch: int, difficulty: int) -> None:
        await self._update_run(run_id, "epoch = ?, difficulty = ?", (epoch, difficulty))

    async def _update_run(self, run_id: int, assignments: str, params: tuple[Any, ...]) -> None:
        async with self.transaction() as conn:
            sql = f"UPDATE runs SET {assignments}, updated_at = ? WHERE id = ?"
            if await changes(conn, sql, (*params, time.time(), run_id)) != 1:
                raise StorageError(self.path, f"no run {run_id}")

    async def run(self, run_id: int) -> RunRow:
        sql = f"SELECT {_RUN_COLS} FROM runs WHERE id = ?"
        return RunRow(*await self._fetchone(sql, (run_id,), f"run {run_id}"))

    async def runs(self) -> list[RunRow]:
        return [RunRow(*row) for row in await self._fetchall(f"SELECT {_RUN_COLS} FROM runs")]

    async def add_event(
        self,
        kind: str,
        payload: Mapping[str, Any],
        run_id: int | None = None,
        record_id: int | None = None,
    ) -> int:
        """Log one event; its id."""
        params = event_params(Event(kind, dict(payload), run_id, record_id), time.time())
        async with self.transaction() as conn:
            return await insert(conn, EVENT_INSERT, params)

    async def events(self, run_id: int | None = None, kind: str | None = None) -> list[Event]:
        """Logged events, oldest first, optionally only those of a run and/or a kind."""
        clause, params = where(run_id=run_id, kind=kind)
        sql = (
            f"SELECT id, at, kind, run_id, record_id, payload_json FROM events{clause} ORDER BY id"
        )
        return [_event(row) for row in await self._fetchall(sql, params)]
