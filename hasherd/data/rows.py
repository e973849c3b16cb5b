"""Raw rows as the readers find them, and the collector that validates and keeps them."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from hasherd.data import upstream
from hasherd.data.report import DataError, IngestReport, RowError
from hasherd.errors import InputError
from hasherd.kernel import spec


@dataclass(frozen=True, slots=True)
class RawRow:
    """A row before validation. ``problem`` is set when it could not even be parsed;
    ``seed`` is the frame's ``best_seed`` as found, ``meta`` the object the metadata fields
    are taken from when asked (``upstream.meta_of``), or a function that reads them."""

    location: str
    slots: Any = None
    target: Any = None
    context_hash: Any = None
    problem: str | None = None
    seed: Any = None
    meta: Any = None


def context_key_of(slots: tuple[int, ...]) -> int:
    """BE32 of the first 4 bytes of SHA-256 over the 12 slots as little-endian u32."""
    raw = np.asarray(slots, dtype="<u4").tobytes()
    return int.from_bytes(hashlib.sha256(raw).digest()[:4], "big")


def validate(row: RawRow, token_bits: int) -> tuple[tuple[int, ...], int, int]:
    """``(slots, target, context_key)`` of a parsed row; InputError names what is wrong."""
    if row.slots is None:
        raise InputError("slots", "missing")
    slots = spec.check_slots(row.slots, "slots")
    if row.target is None:
        raise InputError("target", "missing")
    target = spec.check_u32(row.target, "target")
    if target >> token_bits:
        raise InputError("target", f"{target} does not fit in token_bits={token_bits}")
    if row.context_hash is None:
        key = context_key_of(slots)
    else:
        key = spec.check_u32(row.context_hash, "context_hash")
    return slots, target, key


@dataclass(frozen=True)
class Mark:
    """How much a Collector held at one moment (``Collector.mark``)."""

    records: int
    errors: int
    rows_read: int


class Collector:
    """Validates rows file by file, keeps the valid ones and records the others. A row's
    ``best_seed`` is kept by record index; its metadata only with ``keep_meta``."""

    def __init__(
        self, token_bits: int, strict: bool, max_records: int | None, keep_meta: bool = False
    ) -> None:
        self.token_bits = token_bits
        self.strict = strict
        self.max_records = max_records
        self.keep_meta = keep_meta
        self.files: list[str] = []
        self.slots: list[tuple[int, ...]] = []
        self.targets: list[int] = []
        self.keys: list[int] = []
        self.seeds: dict[int, bytes] = {}
        self.meta: list[dict[str, Any] | None] = []
        self.errors: list[RowError] = []
        self.rows_read = 0

    def is_full(self) -> bool:
        return self.max_records is not None and len(self.targets) >= self.max_records

    def take(self, file: str, rows: Iterable[RawRow]) -> None:
        """Consume ``rows`` of ``file`` until they end or ``max_records`` is reached."""
        self.files.append(file)
        for row in rows:
            self.rows_read += 1
            if row.problem is not None:
                self.reject(file, row.location, row.problem)
                continue
            try:
                slots, target, key = validate(row, self.token_bits)
                seed = upstream.decode_seed(row.seed)
            except InputError as exc:
                self.reject(file, row.location, f"{exc.field}: {exc.problem}")
                continue
            self._keep(slots, target, key, seed, row.meta)
            if self.is_full():
                return

    def _keep(
        self, slots: tuple[int, ...], target: int, key: int, seed: bytes | None, meta: Any
    ) -> None:
        if seed is not None:
            self.seeds[len(self.targets)] = seed
        if self.keep_meta:
            found = meta() if callable(meta) else meta
            self.meta.append(upstream.meta_of(found) if isinstance(found, dict) else None)
        self.slots.append(slots)
        self.targets.append(target)
        self.keys.append(key)

    def reject(self, file: str, location: str, reason: str) -> None:
        if self.strict:
            raise DataError(file, reason, location)
        self.errors.append(RowError(file, location, reason))

    def mark(self) -> Mark:
        return Mark(len(self.targets), len(self.errors), self.rows_read)

    def same_as(self, first: Mark, end: Mark, start: Mark) -> bool:
        """Whether the records kept since ``start`` repeat those kept from ``first`` to
        ``end`` (the same frames written in another format; a copy cut short by
        ``max_records`` is compared over its length)."""
        n = len(self.targets) - start.records
        if n != end.records - first.records and not self.is_full():
            return False
        a, b = slice(first.records, first.records + n), slice(start.records, None)
        return (
            self.slots[a] == self.slots[b]
            and self.targets[a] == self.targets[b]
            and self.keys[a] == self.keys[b]
        )

    def drop_since(self, first: Mark, start: Mark) -> None:
        """Forget what was read since ``start`` (a copy of the records from ``first``),
        keeping the copy's seeds for the records they repeat when those have none."""
        for index, seed in list(self.seeds.items()):
            if index >= start.records:
                del self.seeds[index]
                self.seeds.setdefault(first.records + index - start.records, seed)
        for items in (self.slots, self.targets, self.keys, self.meta):
            del items[start.records :]
        del self.errors[start.errors :]
        self.rows_read = start.rows_read
        self.files.pop()  # the copy's name: listed in the report's ``copies`` instead

    def report(self, **extra: Any) -> IngestReport:
        return IngestReport(
            files=tuple(self.files),
            rows_read=self.rows_read,
            rows_loaded=len(self.targets),
            errors=tuple(self.errors),
            **extra,
        )

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(slots (N, 12), targets (N,), context_keys (N,))``, uint32 and read-only."""
        slots = np.array(self.slots, dtype=np.uint32).reshape(-1, spec.N_SLOTS)
        targets = np.array(self.targets, dtype=np.uint32)
        keys = np.array(self.keys, dtype=np.uint32)
        for a in (slots, targets, keys):
            a.setflags(write=False)
        return slots, targets, keys
