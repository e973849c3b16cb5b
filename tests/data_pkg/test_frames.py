"""Frame formats: JSON, JSON Lines, Arrow IPC, Parquet and CSV load the same records."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hasherd.data import DataError, Dataset, IngestReport, RowError, load_dataset
from hasherd.errors import HasherError, InputError


def _check(ds: Dataset, expected: tuple[list[list[int]], list[int]]) -> None:
    slots, targets = expected
    assert ds.slots.dtype == np.uint32 and ds.slots.shape == (len(targets), 12)
    assert ds.targets.dtype == np.uint32 and ds.context_keys.dtype == np.uint32
    assert ds.slots.tolist() == slots
    assert ds.targets.tolist() == targets
    assert len(ds) == len(targets)
    assert ds.report.rows_read == ds.report.rows_loaded == len(targets)
    assert ds.report.errors == ()


def test_every_format_loads_the_same_records(tmp_path: Path, w: Any, expected: Any) -> None:
    files = [
        w.write_json(tmp_path / "a.json"),
        w.write_json(tmp_path / "b.json", variant=1, wrapped=True),
        w.write_jsonl(tmp_path / "c.jsonl"),
        w.write_jsonl(tmp_path / "d.ndjson", variant=1),
        w.write_arrow(tmp_path / "e.arrow"),
        w.write_arrow(tmp_path / "f.ipc", stream=True),
        w.write_arrow(tmp_path / "g.feather", list_column=False),
        w.write_parquet(tmp_path / "h.parquet"),
        w.write_parquet(tmp_path / "i.parquet", list_column=False),
        w.write_csv(tmp_path / "j.csv"),
        w.write_csv(tmp_path / "k.csv", prefix="s", target="target_token_id"),
        w.write_csv(tmp_path / "l.CSV", target="target"),
    ]
    loaded = [load_dataset(f) for f in files]
    for ds in loaded:
        _check(ds, expected)
        assert np.array_equal(ds.context_keys, loaded[0].context_keys)
        assert ds.memory_id == loaded[0].memory_id
    assert loaded[0].name == "a.json" and loaded[0].source == str(files[0])


def test_context_key_defaults_to_sha256_of_slots(tmp_path: Path, w: Any) -> None:
    ds = load_dataset(w.write_json(tmp_path / "a.json"))
    for slots, key in zip(ds.slots.tolist(), ds.context_keys.tolist(), strict=True):
        raw = b"".join(v.to_bytes(4, "little") for v in slots)
        assert key == int.from_bytes(hashlib.sha256(raw).digest()[:4], "big")


def test_context_hash_field_is_used(tmp_path: Path, w: Any) -> None:
    objs = w.frame_objects()
    for i, obj in enumerate(objs):
        obj.update(context_hash=1000 + i, token_sequence=[1, 2], source_file="x", chunk_id=3)
    path = tmp_path / "a.json"
    path.write_text(json.dumps(objs))
    assert load_dataset(path).context_keys.tolist() == [1000, 1001, 1002, 1003]
    csv_path = tmp_path / "b.csv"
    csv_path.write_text(
        "s0,s1,s2,s3,s4,s5,s6,s7,s8,s9,s10,s11,target,context_hash\n" + "1," * 13 + "7\n"
    )
    assert load_dataset(csv_path).context_keys.tolist() == [7]


def test_dataset_properties(tmp_path: Path, w: Any) -> None:
    ds = load_dataset(w.write_json(tmp_path / "a.json"), token_bits=17)
    assert ds.token_set.tolist() == sorted({t for _, t in w.RECORDS})
    assert ds.token_set.dtype == np.uint32
    assert ds.memory is ds.memory and len(ds.memory) == len(ds)
    assert ds.memory_id == hashlib.sha256(ds.slots.astype("<u4").tobytes()).hexdigest()
    assert ds.token_bits == 17
    with pytest.raises(ValueError):
        ds.slots[0, 0] = 1  # read-only


BAD_LINES = [
    ('{"feature_vector": [1,2,3,4,5,6,7,8,9,10,11,12], "target_token": 5}', None),
    ("{not json", "invalid JSON"),
    ('{"feature_vector": [1,2,3,4,5,6,7,8,9,10,11], "target_token": 5}', "expected 12 values"),
    ('{"asic_slots": [1,2,3,4,5,6,7,8,9,10,11,4294967296], "target_token": 5}', "slots[11]"),
    ('{"asic_slots": [1.5,2,3,4,5,6,7,8,9,10,11,12], "target_token": 5}', "expected an integer"),
    ('{"asic_slots": [1,2,3,4,5,6,7,8,9,10,11,"12"], "target_token": 5}', "got str"),
    ('{"asic_slots": [-1,2,3,4,5,6,7,8,9,10,11,12], "target_token": 5}', "outside"),
    ('{"asic_slots": [1,2,3,4,5,6,7,8,9,10,11,12]}', "missing target_token"),
    ('{"target_token": 5}', "missing feature_vector"),
    ('{"asic_slots": [1,2,3,4,5,6,7,8,9,10,11,12], "target_token": 131072}', "token_bits=17"),
    ('{"asic_slots": "123456789012", "target_token": 5}', "expected an array"),
    ("[1, 2]", "expected an object"),
    ("", None),  # blank lines are not rows
    (
        '{"asic_slots": [1,2,3,4,5,6,7,8,9,10,11,12], "target_token": 1, "context_hash": -3}',
        "context_hash",
    ),
    ('{"asic_slots": [1,2,3,4,5,6,7,8,9,10,11,12], "target_token_id": true}', "target"),
    ('{"feature_vector": [0,0,0,0,0,0,0,0,0,0,0,0], "target_token_id": 131071}', None),
]


def _bad_jsonl(tmp_path: Path) -> Path:
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(line for line, _ in BAD_LINES) + "\n")
    return path


def test_invalid_rows_are_recorded_and_skipped(tmp_path: Path) -> None:
    path = _bad_jsonl(tmp_path)
    ds = load_dataset(path)
    rows = [n for n, (line, _) in enumerate(BAD_LINES, start=1) if line]
    bad = {f"line {n}": why for n, (_, why) in enumerate(BAD_LINES, start=1) if why}
    assert len(ds) == 2 and ds.targets.tolist() == [5, 131071]
    report = ds.report
    assert report.rows_read == len(rows) and report.rows_loaded == 2
    assert report.rows_skipped == len(bad)
    assert [e.location for e in report.errors] == list(bad)
    for err in report.errors:
        assert err.file == str(path)
        assert bad[err.location] in err.reason, err
    summary = report.summary()
    assert f"{len(rows)} read, 2 loaded, {len(bad)} skipped" in summary
    assert f"{path}:line 2: invalid JSON" in summary


def test_strict_raises_at_the_first_invalid_row(tmp_path: Path) -> None:
    path = _bad_jsonl(tmp_path)
    with pytest.raises(DataError) as info:
        load_dataset(path, strict=True)
    assert info.value.file == str(path) and info.value.location == "line 2"
    assert str(info.value).startswith(f"{path}:line 2: invalid JSON")
    assert isinstance(info.value, HasherError)


def test_json_and_csv_row_locations(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    good = {"feature_vector": [1] * 12, "target_token": 2}
    path.write_text(json.dumps({"frames": [good, {"feature_vector": [1] * 13, "target_token": 2}]}))
    assert [(e.location, e.reason) for e in load_dataset(path).report.errors] == [
        ("frame 1", "slots: expected 12 values, got 13")
    ]
    csv_path = tmp_path / "b.csv"
    header = ",".join(f"slot_{i}" for i in range(12)) + ",target_token\n"
    csv_path.write_text(
        header + "1,2,3,4,5,6,7,8,9,10,11,12,5\n\n1,2,3\n1,2,3,4,5,6,7,8,9,10,11,x,5\n"
        "1,2,3,4,5,6,7,8,9,10,11,12,\n1,2,3,4,5,6,7,8,9,10,11,,3\n"
    )
    errors = load_dataset(csv_path).report.errors
    assert [e.location for e in errors] == ["line 4", "line 5", "line 6", "line 7"]
    assert "expected 13 fields, got 3" in errors[0].reason
    assert "slot_11: 'x' is not an integer" in errors[1].reason
    assert "target: missing" in errors[2].reason
    assert "slot_11: empty" in errors[3].reason


def test_token_bits(tmp_path: Path, w: Any) -> None:
    path = w.write_json(tmp_path / "a.json")
    ds = load_dataset(path, token_bits=7)
    assert ds.targets.tolist() == [0, 42]
    assert all("does not fit in token_bits=7" in e.reason for e in ds.report.errors)
    assert load_dataset(path, token_bits=32).token_bits == 32
    for bad in (0, 33, True, "17"):
        with pytest.raises(InputError):
            load_dataset(path, token_bits=bad)  # type: ignore[arg-type]


def test_file_level_errors(tmp_path: Path, w: Any) -> None:
    cases: dict[str, bytes] = {
        "x.yaml": b"a: 1",
        "noext": b"",
        "a.json": b'{"frames": 3}',
        "b.json": b"[1, 2",
        "c.json": b"\xff\xfe",
        "d.csv": b"a,b,c\n1,2,3\n",
        "e.csv": b"",
        "f.arrow": b"not arrow at all",
        "g.parquet": b"PAR1 nope",
        "h.pdf": b"%PDF-1.4 broken",
        "i.json": b"[]",
        "j.txt": b"too short",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DataError) as info:
            load_dataset(tmp_path / name)
        assert info.value.file == str(tmp_path / name), name
    with pytest.raises(DataError, match="no such file"):
        load_dataset(tmp_path / "missing.json")
    with pytest.raises(DataError, match="no valid records"):
        load_dataset(_only_bad(tmp_path))


def _only_bad(tmp_path: Path) -> Path:
    path = tmp_path / "bad-only.jsonl"
    path.write_text('{"feature_vector": [1], "target_token": 1}\n')
    return path


def test_directory_loads_supported_files_in_name_order(tmp_path: Path, w: Any) -> None:
    folder = tmp_path / "set"
    folder.mkdir()
    w.write_csv(folder / "b.csv")
    w.write_json(folder / "a.json")
    (folder / "notes.yaml").write_text("ignored")
    (folder / ".hidden.json").write_text("garbage")
    (folder / "sub").mkdir()
    w.write_json(folder / "sub" / "c.json")
    ds = load_dataset(folder)
    assert ds.name == "set" and ds.source == str(folder)
    assert [Path(f).name for f in ds.report.files] == ["a.json", "b.csv"]
    assert len(ds) == 2 * len(w.RECORDS)
    assert ds.targets.tolist() == [t for _, t in w.RECORDS] * 2
    assert load_dataset(folder, max_records=5).targets.tolist() == ds.targets.tolist()[:5]
    first = load_dataset(folder, max_records=2)
    assert len(first) == 2 and [Path(f).name for f in first.report.files] == ["a.json"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no supported files"):
        load_dataset(empty)


def test_parameters_are_checked(tmp_path: Path, w: Any) -> None:
    path = w.write_json(tmp_path / "a.json")
    for kwargs in ({"context": 0}, {"max_records": 0}, {"context": 2.0}):
        with pytest.raises(InputError):
            load_dataset(path, **kwargs)


def test_summary_lists_the_first_20_errors() -> None:
    errors = tuple(RowError("f.jsonl", f"line {i}", "bad") for i in range(25))
    text = IngestReport(("f.jsonl",), 30, 5, errors).summary()
    assert "30 read, 5 loaded, 25 skipped" in text
    assert "f.jsonl:line 19: bad" in text and "line 20:" not in text
    assert text.endswith("... and 5 more")
