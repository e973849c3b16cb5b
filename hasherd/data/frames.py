"""Readers of the prototype's frame formats: JSON, JSON Lines, Arrow IPC, Parquet, CSV.

Each reader takes the file's name (for messages) and its bytes, and yields ``RawRow``s in
file order. A file that cannot be read at all raises DataError; a row that cannot be
parsed is yielded with its ``problem`` set, so the collector can record it and go on.
Locations: ``frame i`` (JSON array index, from 0), ``line n`` (JSON Lines and CSV, from 1),
``row i`` (Arrow and Parquet table row, from 0). The upstream encoder's spellings and its
int32 words are described in ``hasherd.data.upstream``.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from hasherd.data import upstream
from hasherd.data.report import DataError
from hasherd.data.rows import RawRow
from hasherd.kernel import spec

SLOT_LIST_FIELDS = ("feature_vector", "asic_slots")
TARGET_FIELDS = ("target_token", *upstream.TARGET_SPELLINGS)
TABLE_TARGET_FIELDS = (*TARGET_FIELDS, "target")
CONTEXT_FIELD = "context_hash"
SLOT_COLUMN_SETS = (
    tuple(f"slot_{i}" for i in range(spec.N_SLOTS)),
    tuple(f"s{i}" for i in range(spec.N_SLOTS)),
    *upstream.SLOT_SPELLINGS,
)
_INT = re.compile(r"[+-]?[0-9]{1,30}")


# -- JSON objects -------------------------------------------------------------------------


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _first(obj: dict[str, Any], names: Sequence[str]) -> Any:
    for name in names:
        if obj.get(name) is not None:
            return obj[name]
    return None


def row_from_object(obj: Any, location: str) -> RawRow:
    """A frame object: ``feature_vector``/``asic_slots``, or the encoder's 12 int32 fields
    ``asic_slot_N``/``AsicSlotsN`` (read as unsigned, with the target); the target as
    ``target_token``, ``target_token_id`` or ``TargetTokenID``; ``best_seed`` when set."""
    if not isinstance(obj, dict):
        return RawRow(location, problem=f"expected an object, got {_json_type(obj)}")
    slots = _first(obj, SLOT_LIST_FIELDS)
    names = None if slots is not None else upstream.slot_fields(obj)
    if names is not None:
        slots = [upstream.as_u32(obj[n]) for n in names]
    if slots is None:
        return RawRow(location, problem="missing feature_vector / asic_slots / asic_slot_0..11")
    if not isinstance(slots, list):
        return RawRow(location, problem=f"slots: expected an array, got {_json_type(slots)}")
    target = _first(obj, TARGET_FIELDS)
    if target is None:
        return RawRow(location, problem="missing target_token / target_token_id")
    if names is not None:
        target = upstream.as_u32(target)
    seed = _first(obj, upstream.SEED_FIELDS)
    return RawRow(location, slots, target, obj.get(CONTEXT_FIELD), seed=seed, meta=obj)


def _decode(file: str, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(file, "not valid UTF-8", f"byte {exc.start}") from None


def _loads(text: str) -> tuple[Any, str | None]:
    """``(value, None)``, or ``(None, why)`` when ``text`` is not one JSON value."""
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        return None, f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
    except ValueError as exc:  # e.g. an integer longer than Python's conversion limit
        return None, f"invalid JSON: {exc}"
    except RecursionError:
        return None, "invalid JSON: nesting too deep"


def read_json(file: str, data: bytes) -> Iterator[RawRow]:
    """A JSON array of frames, or an object ``{"frames": [...]}``."""
    doc, why = _loads(_decode(file, data))
    if why is not None:
        raise DataError(file, why)
    if isinstance(doc, dict) and isinstance(doc.get("frames"), list):
        frames = doc["frames"]
    elif isinstance(doc, list):
        frames = doc
    else:
        raise DataError(file, 'expected an array of frames or an object with a "frames" array')
    for i, obj in enumerate(frames):
        yield row_from_object(obj, f"frame {i}")


def read_jsonl(file: str, data: bytes) -> Iterator[RawRow]:
    """One frame object per line; blank lines are ignored."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for n, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        location = f"line {n}"
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield RawRow(location, problem=f"not valid UTF-8 at byte {exc.start} of the line")
            continue
        obj, why = _loads(text)
        yield RawRow(location, problem=why) if why else row_from_object(obj, location)


# -- tables -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Columns:
    """Where a table keeps its fields: one list column or 12 scalar slot columns."""

    slots: tuple[str, ...]
    target: str
    context: str | None

    def names(self) -> tuple[str, ...]:
        extra = (self.context,) if self.context else ()
        return (*self.slots, self.target, *extra)


def map_columns(file: str, names: Sequence[str], allow_list: bool = True) -> Columns:
    present = set(names)
    slots: tuple[str, ...] | None = None
    if allow_list:
        slots = next(((n,) for n in SLOT_LIST_FIELDS if n in present), None)
    if slots is None:
        slots = next((s for s in SLOT_COLUMN_SETS if present.issuperset(s)), None)
    if slots is None:
        wanted = "feature_vector / asic_slots, or " if allow_list else ""
        raise DataError(
            file, f"no slot columns ({wanted}slot_0..slot_11, s0..s11 or asic_slot_0..11)"
        )
    target = next((n for n in TABLE_TARGET_FIELDS if n in present), None)
    if target is None:
        raise DataError(
            file, "no target column (target_token, target_token_id, TargetTokenID or target)"
        )
    return Columns(slots, target, CONTEXT_FIELD if CONTEXT_FIELD in present else None)


def _unsigned(column: Any) -> Any:
    """An int32 column viewed as uint32 (the encoder's words, same bits); others as is."""
    import pyarrow as pa

    return column.view(pa.uint32()) if column.type == pa.int32() else column


def _row_meta(batch: Any, names: Sequence[str], i: int) -> dict[str, Any]:
    return {name: _unsigned(batch.column(name))[i].as_py() for name in names}


def _table_rows(file: str, table: Any) -> Iterator[RawRow]:
    cols = map_columns(file, table.column_names)
    seed_col = next((n for n in upstream.SEED_FIELDS if n in table.column_names), None)
    names = [*cols.names(), *([seed_col] if seed_col else [])]
    meta = [n for n in (*upstream.META_FIELDS, *upstream.EXTRA_FIELDS) if n in table.column_names]
    row_no = 0
    for batch in table.select(list(dict.fromkeys([*names, *meta]))).to_batches():
        data = {name: _unsigned(batch.column(name)).to_pylist() for name in names}
        for i in range(batch.num_rows):
            if len(cols.slots) == 1:
                slots = data[cols.slots[0]][i]
            else:
                slots = [data[c][i] for c in cols.slots]
            ctx = data[cols.context][i] if cols.context else None
            seed = data[seed_col][i] if seed_col else None
            # The metadata is read only when a caller keeps it (Collector.keep_meta).
            info = partial(_row_meta, batch, meta, i)
            yield RawRow(f"row {row_no}", slots, data[cols.target][i], ctx, seed=seed, meta=info)
            row_no += 1


def _read_ipc(file: str, data: bytes) -> Any:
    import pyarrow as pa
    import pyarrow.feather
    import pyarrow.ipc

    last: Exception | None = None
    openers = (pa.ipc.open_file, pa.ipc.open_stream, pyarrow.feather.read_table)
    for opener in openers:
        try:
            result = opener(pa.BufferReader(data))
            return result if isinstance(result, pa.Table) else result.read_all()
        except (pa.ArrowException, OSError, ValueError) as exc:
            last = exc
    raise DataError(file, f"not an Arrow IPC file or stream ({last})")


def read_arrow(file: str, data: bytes) -> Iterator[RawRow]:
    """An Arrow IPC file or stream (also Feather)."""
    yield from _table_rows(file, _read_ipc(file, data))


def read_parquet(file: str, data: bytes) -> Iterator[RawRow]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataError(file, f"not a readable Parquet file ({exc})") from None
    yield from _table_rows(file, table)


# -- CSV ----------------------------------------------------------------------------------


def _cell_int(cell: str, column: str) -> tuple[int | None, str | None]:
    """``(value, None)``, ``(None, None)`` for an empty cell, or ``(None, why)``."""
    text = cell.strip()
    if not text:
        return None, None
    if not _INT.fullmatch(text):
        return None, f"{column}: {text[:40]!r} is not an integer"
    return int(text), None


def _csv_row(cells: list[str], index: dict[str, int], cols: Columns, location: str) -> RawRow:
    if len(cells) != len(index):
        return RawRow(location, problem=f"expected {len(index)} fields, got {len(cells)}")
    slots = []
    for name in cols.slots:
        value, why = _cell_int(cells[index[name]], name)
        if value is None:
            return RawRow(location, problem=why or f"{name}: empty")
        slots.append(value)
    target, why = _cell_int(cells[index[cols.target]], cols.target)
    ctx: int | None = None
    if why is None and cols.context:
        ctx, why = _cell_int(cells[index[cols.context]], cols.context)
    if why:
        return RawRow(location, problem=why)
    return RawRow(location, slots, target, ctx)


def read_csv(file: str, data: bytes) -> Iterator[RawRow]:
    """A header row naming the slot, target and optional context_hash columns."""
    reader = csv.reader(io.StringIO(_decode(file, data), newline=""))
    index: dict[str, int] | None = None
    cols: Columns | None = None
    last_error_line = -1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            if reader.line_num == last_error_line:  # the reader no longer advances
                raise DataError(file, f"malformed CSV: {exc}", f"line {reader.line_num}") from None
            last_error_line = reader.line_num
            yield RawRow(f"line {reader.line_num}", problem=f"malformed CSV: {exc}")
            continue
        if not any(c.strip() for c in cells):
            continue
        if index is None or cols is None:
            index = {c.strip().lower(): i for i, c in enumerate(cells)}
            if len(index) != len(cells):
                raise DataError(file, "duplicate column names", f"line {reader.line_num}")
            cols = map_columns(file, list(index), allow_list=False)
            continue
        yield _csv_row(cells, index, cols, f"line {reader.line_num}")
    if index is None:
        raise DataError(file, "no header row")
