"""The upstream encoder's output: its four files (tests/data/upstream, written by
tools/make_upstream_fixtures.py), its spellings and int32 words, and the upstream folder
layout (``DATA/frames``, a copy in another format, a ``_with_seeds`` file, a checkpoint)."""

from __future__ import annotations

import base64
import json
import logging
import runpy
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc
import pyarrow.parquet as pq
import pytest

from hasherd.data import DataError, load_dataset
from hasherd.data.upstream import as_i32, frame_object

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "data" / "upstream"
TOOL = ROOT / "tools" / "make_upstream_fixtures.py"
FILES = (
    "training_frames.json",
    "training_frames.arrow",
    "training_frames_ipcfile.arrow",
    "training_frames.parquet",
)
SEED = bytes(range(32))


@pytest.fixture(scope="module")
def tool() -> dict[str, Any]:
    """The fixture script's functions and constants."""
    return runpy.run_path(str(TOOL))


@pytest.mark.parametrize("name", FILES)
def test_each_encoder_format_loads_with_unsigned_slots(name: str, tool: dict[str, Any]) -> None:
    ds = load_dataset(FIXTURES / name, strict=True)
    assert ds.slots.tolist() == [tool["words"](i) for i in range(6)]
    assert ds.targets.tolist() == list(tool["TOKENS"])
    assert (ds.slots >= 2**31).any(axis=1).all()  # every record holds a negative int32
    assert not ds.init_seeds


def test_the_fixtures_are_what_the_script_writes(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(TOOL), "--out", str(tmp_path)], check=True, timeout=60)
    assert (tmp_path / FILES[0]).read_bytes() == (FIXTURES / FILES[0]).read_bytes()
    stream, ipcfile, parquet = (
        [pa.ipc.open_stream(str(d / FILES[1])).read_all() for d in (tmp_path, FIXTURES)],
        [pa.ipc.open_file(str(d / FILES[2])).read_all() for d in (tmp_path, FIXTURES)],
        [pq.read_table(str(d / FILES[3])) for d in (tmp_path, FIXTURES)],
    )
    for new, old in (stream, ipcfile, parquet):
        assert new.equals(old, check_metadata=True) and new.schema.equals(old.schema)
    assert stream[0].schema.field("asic_slot_0").type == pa.int32()
    assert stream[0].schema.names[-2:] == ["target_token_id", "best_seed"]
    with pytest.raises(pa.ArrowInvalid):
        pa.ipc.open_file(str(FIXTURES / FILES[1]))  # a stream, as the encoder writes


def _frame(slots: list[int], target: int, **extra: Any) -> dict[str, Any]:
    obj = frame_object(slots, target, None, None)
    obj.update(extra)
    return obj


def test_go_spellings_and_int32_words(tmp_path: Path) -> None:
    slots = [2**31, 2**32 - 1, 5, *range(9)]
    go = {f"AsicSlots{i}": as_i32(w) for i, w in enumerate(slots)}
    frames = [
        {**go, "TargetTokenID": 7},
        _frame(slots, 8),
        {**_frame(slots, 9), "asic_slot_3": -(2**31) - 1},  # not an int32
        {"asic_slots": [-1, *range(11)], "target_token": 1},  # lists stay unsigned only
    ]
    path = tmp_path / "f.json"
    path.write_text(json.dumps(frames))
    ds = load_dataset(path)
    assert ds.slots.tolist() == [slots, slots]
    assert ds.targets.tolist() == [7, 8]
    reasons = [e.reason for e in ds.report.errors]
    assert reasons == [
        "slots[3]: -2147483649 is outside 0..4294967295",
        "slots[0]: -1 is outside 0..4294967295",
    ]


def test_best_seed_base64_hex_or_bytes(tmp_path: Path) -> None:
    slots = list(range(12))
    frames = [
        _frame(slots, 1, best_seed=base64.b64encode(SEED).decode()),
        _frame(slots, 2, best_seed=SEED.hex()),
        _frame(slots, 3, best_seed=""),
        _frame(slots, 4, best_seed="not base64!"),
        _frame(slots, 5, best_seed=base64.b64encode(SEED[:8]).decode()),
    ]
    path = tmp_path / "f.json"
    path.write_text(json.dumps(frames))
    ds = load_dataset(path)
    assert ds.targets.tolist() == [1, 2, 3] and dict(ds.init_seeds) == {0: SEED, 1: SEED}
    assert [e.reason for e in ds.report.errors] == [
        "best_seed: neither base64 nor 64 hex digits",
        "best_seed: expected 32 bytes, got 8",
    ]
    assert not load_dataset(path, init_seeds=False).init_seeds
    columns = {f"asic_slot_{i}": pa.array([-1], pa.int32()) for i in range(12)}
    columns["target_token_id"] = pa.array([3], pa.int32())
    columns["best_seed"] = pa.array([SEED], pa.binary())
    table = pa.table(columns)
    pq.write_table(table, tmp_path / "t.parquet")
    ds = load_dataset(tmp_path / "t.parquet", strict=True)
    assert ds.slots.tolist() == [[2**32 - 1] * 12] and dict(ds.init_seeds) == {0: SEED}


def _upstream_folder(tmp_path: Path) -> Path:
    """DATA/frames as the encoder leaves it: JSON, the same records as an Arrow stream,
    and the encoder's checkpoint."""
    frames = tmp_path / "DATA" / "frames"
    frames.mkdir(parents=True)
    for name in FILES[:2]:
        shutil.copy(FIXTURES / name, frames / name)
    (frames / "training_frames.json.checkpoint.json").write_text('{"processed": 6}')
    return tmp_path / "DATA"


def _with_seeds(folder: Path, seeds: dict[int, bytes]) -> Path:
    """The Go trainer's ``training_frames_with_seeds.json``: the records, some seeded."""
    frames = json.loads((folder / "training_frames.json").read_text())
    for i, seed in seeds.items():
        frames[i]["best_seed"] = base64.b64encode(seed).decode()
    path = folder / "training_frames_with_seeds.json"
    path.write_text(json.dumps(frames))
    return path


def test_the_upstream_folder_loads_each_record_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = _upstream_folder(tmp_path)
    frames = data / "frames"
    seeds = _with_seeds(frames, {1: SEED, 4: SEED[::-1]})
    with caplog.at_level(logging.INFO, logger="hasherd.data"):
        ds = load_dataset(data, strict=True)
    assert len(ds) == 6 and ds.name == "DATA"
    assert ds.slots.tolist() == load_dataset(FIXTURES / FILES[0]).slots.tolist()
    assert dict(ds.init_seeds) == {1: SEED, 4: SEED[::-1]}
    report = ds.report
    assert report.files == (str(frames / "training_frames.arrow"),)
    assert report.copies == ((str(frames / FILES[0]), str(frames / FILES[1])),)
    assert report.seed_files == (str(seeds),) and report.seeds == 2
    assert (report.rows_read, report.rows_loaded) == (6, 6)
    assert "initial seeds: 2 records start with a given seed" in report.summary()
    assert "the encoder's checkpoint" in caplog.text
    assert "upstream layout" in caplog.text
    assert not load_dataset(data, init_seeds=False).init_seeds
    # The folder itself, and the original file with its seeds beside it, read the same.
    assert dict(load_dataset(frames).init_seeds) == dict(ds.init_seeds)
    alone = load_dataset(frames / FILES[0])
    assert len(alone) == 6 and dict(alone.init_seeds) == dict(ds.init_seeds)


def test_a_with_seeds_file_without_its_original_is_the_records(tmp_path: Path) -> None:
    frames = json.loads((FIXTURES / FILES[0]).read_text())
    frames[2]["best_seed"] = base64.b64encode(SEED).decode()
    path = tmp_path / "training_frames_with_seeds.json"
    path.write_text(json.dumps(frames))
    ds = load_dataset(tmp_path)
    assert len(ds) == 6 and dict(ds.init_seeds) == {2: SEED} and not ds.report.seed_files


def test_a_same_stem_file_with_other_records_is_loaded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shutil.copy(FIXTURES / FILES[0], tmp_path / "x.json")
    table = pq.read_table(FIXTURES / FILES[3]).slice(0, 4)
    pq.write_table(table, tmp_path / "x.parquet")
    ds = load_dataset(tmp_path)
    assert len(ds) == 10 and not ds.report.copies
    assert "records differ from" in caplog.text
    shutil.copy(FIXTURES / FILES[3], tmp_path / "x.parquet")
    assert len(load_dataset(tmp_path)) == 6
    assert len(load_dataset(tmp_path, max_records=8)) == 6  # a copy cut short is a copy
    # A file between the two in name order (x.md) does not hide the copy.
    words = " ".join(f"word{i}" for i in range(40))
    (tmp_path / "x.md").write_text(f"# Title\n\n{words}\n")
    text = len(load_dataset(tmp_path / "x.md"))
    ds = load_dataset(tmp_path)
    assert len(ds) == 6 + text and ds.report.copies[0][0] == str(tmp_path / "x.parquet")


def test_a_file_named_frames_is_not_the_upstream_layout(tmp_path: Path) -> None:
    (tmp_path / "frames").write_text("")  # a file where the folder should be: not the layout
    shutil.copy(FIXTURES / FILES[0], tmp_path / "f.json")
    assert len(load_dataset(tmp_path)) == 6
    with pytest.raises(DataError, match="no such file or directory"):
        load_dataset(tmp_path / "missing" / "frames")


def test_seeds_for_no_loaded_record_are_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    frames = _upstream_folder(tmp_path) / "frames"
    path = _with_seeds(frames, {0: SEED})
    extra = json.loads(path.read_text())
    extra.append({**extra[0], "target_token_id": 99, "best_seed": extra[0]["best_seed"]})
    path.write_text(json.dumps(extra))
    ds = load_dataset(frames)
    assert len(ds) == 6 and dict(ds.init_seeds) == {0: SEED}
    assert "1 given seeds match no loaded record" in caplog.text
