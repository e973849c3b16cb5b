"""``load_dataset``: files, a directory or the embedded sample, into one Dataset."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path

import numpy as np

from hasherd.data import frames, text
from hasherd.data.report import DataError, IngestReport
from hasherd.data.rows import Collector, RawRow
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
    """Training records in dataset order; their slots are also the jitter memory."""

    name: str
    source: str
    slots: np.ndarray  # (N, 12) uint32
    targets: np.ndarray  # (N,) uint32
    context_keys: np.ndarray  # (N,) uint32
    token_bits: int
    report: IngestReport

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


@dataclass(frozen=True)
class _Entry:
    """One file to read: its name for messages, its extension and how to get its bytes."""

    file: str
    suffix: str
    read: Callable[[], bytes]


def _rows(entry: _Entry, context: int) -> Iterator[RawRow]:
    try:
        data = entry.read()
    except OSError as exc:
        raise DataError(entry.file, f"cannot read ({exc.strerror or exc})") from None
    if entry.suffix in TEXT_READERS:
        return TEXT_READERS[entry.suffix](entry.file, data, context)
    return FRAME_READERS[entry.suffix](entry.file, data)


def _sample_entries() -> list[_Entry]:
    root = resources.files("hasherd.data").joinpath("sample")
    items = sorted((t for t in root.iterdir() if t.is_file()), key=lambda t: t.name)
    return [
        _Entry(f"sample:{t.name}", Path(t.name).suffix.lower(), t.read_bytes)
        for t in items
        if Path(t.name).suffix.lower() in SUPPORTED
    ]


def _path_entries(given: str) -> tuple[str, list[_Entry]]:
    """The dataset's name and its files, for a file or a directory path."""
    path = Path(given)
    name = path.name or path.resolve().name
    if path.is_dir():
        entries = []
        for child in sorted(path.iterdir(), key=lambda p: p.name):
            suffix = child.suffix.lower()
            if child.name.startswith(".") or not child.is_file():
                continue
            if suffix not in SUPPORTED:
                LOGGER.info("%s: skipped, not a supported format", child.name)
                continue
            entries.append(_Entry(os.path.join(given, child.name), suffix, child.read_bytes))
        if not entries:
            raise DataError(given, f"no supported files ({', '.join(sorted(SUPPORTED))})")
        return name, entries
    if not path.exists():
        raise DataError(given, "no such file or directory")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED:
        raise DataError(given, f"unsupported format {suffix or '(no extension)'!r}")
    return name, [_Entry(given, suffix, path.read_bytes)]


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
) -> Dataset:
    """Load a file, every supported file of a directory, or (``None``) the sample.

    Invalid rows are recorded in ``report`` and skipped, or with ``strict`` raise DataError
    at the first one. A load that keeps no record raises DataError.
    """
    bits = check_token_bits(token_bits)
    _check_params(context, max_records)
    if path is None:
        name, source, entries = SAMPLE_NAME, SAMPLE_SOURCE, _sample_entries()
    else:
        source = os.fspath(path)
        name, entries = _path_entries(source)
    collector = Collector(bits, strict, max_records)
    for entry in entries:
        if collector.is_full():
            break
        collector.take(entry.file, _rows(entry, context))
    report = collector.report()
    if report.rows_loaded == 0:
        first = f"; first error: {report.errors[0]}" if report.errors else ""
        raise DataError(source, f"no valid records ({report.rows_read} rows read){first}")
    slots, targets, keys = collector.arrays()
    LOGGER.info("%s: %d records loaded, %d skipped", source, len(targets), report.rows_skipped)
    return Dataset(name, source, slots, targets, keys, bits, report)
