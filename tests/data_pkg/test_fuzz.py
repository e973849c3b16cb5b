"""Fuzzing the JSON, JSON Lines and CSV readers: every input either loads (with its invalid
rows recorded) or raises DataError; no other exception escapes."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hasherd.data import DataError, Dataset, load_dataset

SUFFIXES = (".json", ".jsonl", ".csv")
FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.integers(min_value=-(2**40), max_value=2**40),
    st.integers(min_value=0, max_value=2**17),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.none(),
    st.booleans(),
)
slot_lists = st.one_of(
    st.lists(st.integers(min_value=0, max_value=2**32 - 1), min_size=12, max_size=12),
    st.lists(scalars, min_size=0, max_size=14),
    scalars,
    st.dictionaries(st.text(max_size=3), scalars, max_size=3),
)
frame = st.fixed_dictionaries(
    {},
    optional={
        "feature_vector": slot_lists,
        "asic_slots": slot_lists,
        "target_token": scalars,
        "target_token_id": scalars,
        "context_hash": scalars,
        "token_sequence": st.lists(scalars, max_size=3),
    },
)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3), max_leaves=6)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _load(path: Path, data: bytes, **kwargs: Any) -> Dataset | None:
    path.write_bytes(data)
    try:
        ds = load_dataset(path, **kwargs)
    except DataError:
        return None
    report = ds.report
    assert report.rows_loaded == len(ds) > 0
    assert report.rows_read == report.rows_loaded + len(report.errors)
    assert all(e.file == str(path) and e.location and e.reason for e in report.errors)
    report.summary()
    return ds


@FUZZ
@given(data=st.binary(max_size=300), suffix=st.sampled_from(SUFFIXES))
def test_random_bytes(folder: Path, data: bytes, suffix: str) -> None:
    _load(folder / f"random{suffix}", data)


@FUZZ
@given(frames=st.lists(st.one_of(frame, json_values), max_size=6), strict=st.booleans())
def test_mutated_json_frames(folder: Path, frames: list[Any], strict: bool) -> None:
    _load(folder / "frames.json", json.dumps(frames).encode(), strict=strict)
    _load(folder / "wrapped.json", json.dumps({"frames": frames}).encode(), strict=strict)
    lines = "\n".join(json.dumps(f) for f in frames).encode()
    _load(folder / "frames.jsonl", lines, strict=strict)


@FUZZ
@given(
    frames=st.lists(st.one_of(frame, json_values), max_size=6),
    cut=st.integers(min_value=0, max_value=400),
    flip=st.integers(min_value=0, max_value=255),
)
def test_corrupted_jsonl(folder: Path, frames: list[Any], cut: int, flip: int) -> None:
    data = bytearray("\n".join(json.dumps(f) for f in frames).encode())
    if data:
        data[cut % len(data)] ^= flip
    _load(folder / "corrupt.jsonl", bytes(data))


cells = st.one_of(
    st.integers(min_value=-5, max_value=2**33).map(str),
    st.text(max_size=5),
    st.just(""),
    st.just("4294967295"),
)


@FUZZ
@given(
    header=st.sampled_from(["slot_", "s"]),
    rows=st.lists(st.lists(cells, min_size=10, max_size=15), max_size=6),
    strict=st.booleans(),
)
def test_mutated_csv_rows(folder: Path, header: str, rows: list[list[str]], strict: bool) -> None:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([f"{header}{i}" for i in range(12)] + ["target", "context_hash"])
    writer.writerows(rows)
    _load(folder / "rows.csv", out.getvalue().encode(), strict=strict)


def test_deep_nesting_and_huge_numbers(folder: Path) -> None:
    assert _load(folder / "deep.json", b"[" * 100_000 + b"]" * 100_000) is None
    assert _load(folder / "deep.jsonl", b"[" * 100_000 + b"\n") is None
    huge = b'[{"feature_vector": [' + b"9" * 5000 + b'], "target_token": 1}]'
    assert _load(folder / "huge.json", huge) is None
