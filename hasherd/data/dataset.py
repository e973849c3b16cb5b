"""``load_dataset``: files, a directory or the embedded sample, into one Dataset."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any

import numpy as np

from hasherd.data import frames, text
from hasherd.data.layout import Entry, Plan, path_plan, sample_plan
from hasherd.data.report import DataError, IngestReport
from hasherd.data.rows import Collector, Mark, RawRow
from hasherd.errors import InputError
from hasherd.kernel.memory import JitterMemory
from hasherd.kernel.spec import check_token_bits

LOGGER = logging.getLogger(__name__)

SAMPLE_NAME = "sample"
SAMPLE_SOURCE = "builtin:sample"
FRAME_READERS: dict[str, Callable[[str, bytes], Iterator[RawRow]]] = {
    ".json": frames.read_json,
    ".jsonl": frames.read_jsonl,
    ".ndjson": frames.read_jsonl,
    ".arrow": frames.read_arrow,
    ".feather": frames.read_arrow,
    ".ipc": frames.read_arrow,
    ".parquet": frames.read_parquet,
    ".csv": frames.read_csv,
}
TEXT_READERS: dict[str, Callable[[str, bytes, int], Iterator[RawRow]]] = {
    ".txt": text.read_text,
    ".md": text.read_markdown,
    ".markdown": text.read_markdown,
    ".pdf": text.read_pdf,
}
SUPPORTED = frozenset(FRAME_READERS) | frozenset(TEXT_READERS)


@dataclass(frozen=True, eq=False)
class Dataset:
    """Training records in dataset order; their slots are also the jitter memory.
    ``init_seeds`` maps a record's index to the seed its first generation starts with (a
    frame's ``best_seed``); ``meta`` holds each record's upstream metadata, only when the
    load was asked for it (a dict per record costs more than the record itself)."""

    name: str
    source: str
    slots: np.ndarray  # (N, 12) uint32
    targets: np.ndarray  # (N,) uint32
    context_keys: np.ndarray  # (N,) uint32
    token_bits: int
    report: IngestReport
    init_seeds: Mapping[int, bytes] = field(default_factory=lambda: MappingProxyType({}))
    meta: tuple[Mapping[str, Any] | None, ...] | None = None

    @cached_property
    def memory(self) -> JitterMemory:
        return JitterMemory(self.slots)

    @property
    def memory_id(self) -> str:
        return self.memory.memory_id

    @cached_property
    def token_set(self) -> np.ndarray:
        tokens = np.unique(self.targets).astype(np.uint32)
        tokens.setflags(write=False)
        return tokens

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def __repr__(self) -> str:
        return f"Dataset({self.name!r}, {len(self)} records, source={self.source!r})"


def _rows(entry: Entry, context: int) -> Iterator[RawRow]:
    try:
        data = entry.read()
    except OSError as exc:
        raise DataError(entry.file, f"cannot read ({exc.strerror or exc})") from None
    if entry.suffix in TEXT_READERS:
        return TEXT_READERS[entry.suffix](entry.file, data, context)
    return FRAME_READERS[entry.suffix](entry.file, data)


def _check_params(context: object, max_records: object) -> None:
    if isinstance(context, bool) or not isinstance(context, int) or context < 1:
        raise InputError("context", f"{context!r} is not an integer >= 1")
    if max_records is not None and (
        isinstance(max_records, bool) or not isinstance(max_records, int) or max_records < 1
    ):
        raise InputError("max_records", f"{max_records!r} is not an integer >= 1")


def load_dataset(
    path: str | os.PathLike[str] | None = None,
    *,
    token_bits: int = 17,
    strict: bool = False,
    context: int = 8,
    max_records: int | None = None,
    init_seeds: bool = True,
    keep_meta: bool = False,
) -> Dataset:
    """Load a file, every supported file of a directory, or (``None``) the sample.

    Invalid rows are recorded in ``report`` and skipped, or with ``strict`` raise DataError
    at the first one. A load that keeps no record raises DataError. With ``init_seeds``
    the frames' ``best_seed`` (and those of ``*_with_seeds`` files beside them) become
    ``Dataset.init_seeds``; ``keep_meta`` keeps the upstream metadata of each record.
    """
    bits = check_token_bits(token_bits)
    _check_params(context, max_records)
    if path is None:
        source, plan = SAMPLE_SOURCE, sample_plan(SAMPLE_NAME, SUPPORTED)
    else:
        source = os.fspath(path)
        plan = path_plan(source, SUPPORTED, FRAME_READERS)
    collector = Collector(bits, strict, max_records, keep_meta)
    copies = _collect(collector, plan.entries, context)
    seeds = _given_seeds(collector, plan, context, bits, strict) if init_seeds else {}
    report = collector.report(copies=copies, seed_files=_names(plan.seeds), seeds=len(seeds))
    if report.rows_loaded == 0:
        first = f"; first error: {report.errors[0]}" if report.errors else ""
        raise DataError(source, f"no valid records ({report.rows_read} rows read){first}")
    slots, targets, keys = collector.arrays()
    LOGGER.info("%s: %d records loaded, %d skipped", source, len(targets), report.rows_skipped)
    meta = tuple(collector.meta) if keep_meta else None
    return Dataset(
        plan.name, source, slots, targets, keys, bits, report, MappingProxyType(seeds), meta
    )


def _names(entries: list[Entry]) -> tuple[str, ...]:
    return tuple(e.file for e in entries)


def _collect(
    collector: Collector, entries: list[Entry], context: int
) -> tuple[tuple[str, str], ...]:
    """Read ``entries`` into ``collector``; a copy of an earlier file (same stem, same
    records) is compared and dropped. Returns the (copy, original) pairs dropped."""
    spans: dict[str, tuple[Mark, Mark]] = {}
    copies = []
    for entry in entries:
        if collector.is_full():
            break
        start = collector.mark()
        collector.take(entry.file, _rows(entry, context))
        spans[entry.file] = (start, collector.mark())
        original = entry.copy_of or ""
        if original not in spans:
            continue
        first, end = spans[original]
        if collector.same_as(first, end, start):
            collector.drop_since(first, start)
            copies.append((entry.file, original))
            LOGGER.info("%s: the same records as %s, not loaded again", entry.file, original)
        else:
            LOGGER.warning("%s: records differ from %s; both are loaded", entry.file, original)
    return tuple(copies)


def _given_seeds(
    collector: Collector, plan: Plan, context: int, bits: int, strict: bool
) -> dict[int, bytes]:
    """The initial seed of each record: its own ``best_seed``, else the seed a
    ``*_with_seeds`` file gives the same record (same slots, target and context key)."""
    by_record: dict[tuple[tuple[int, ...], int, int], bytes] = {}
    for entry in plan.seeds:
        side = Collector(bits, strict, None)
        side.take(entry.file, _rows(entry, context))
        for index, seed in side.seeds.items():
            by_record.setdefault((side.slots[index], side.targets[index], side.keys[index]), seed)
        for error in side.errors:
            collector.reject(error.file, error.location, error.reason)
    seeds = dict(collector.seeds)
    used = set()
    records = zip(collector.slots, collector.targets, collector.keys, strict=True)
    for i, record in enumerate(records):
        if record in by_record:
            seeds.setdefault(i, by_record[record])
            used.add(record)
    if len(used) < len(by_record) and not collector.is_full():
        LOGGER.warning("%d given seeds match no loaded record", len(by_record) - len(used))
    return seeds
