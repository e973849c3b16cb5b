"""Write the upstream-format test fixtures: the same six records in each of the formats
the prototype's stage-2 encoder (``pipeline/2_DATA_ENCODER``) writes, in its exact layout.

    .venv/bin/python tools/make_upstream_fixtures.py [--out tests/data/upstream]

The schema is the encoder's ``TrainingFrame`` (``pkg/schema/output.go``; ``arrow.go`` for
the Arrow schema), fields in this order:

| field | type | here |
|---|---|---|
| ``source_file`` | string | ``corpus/upstream-fixture.txt`` |
| ``chunk_id`` | int32 | 0 |
| ``window_start`` | int32 | index of the first context token |
| ``window_end`` | int32 | index of the target (the window's exclusive end) |
| ``context_length`` | int32 | 8 |
| ``asic_slot_0`` .. ``_11`` | int32 | ``int32(uint32(word))``: a word >= 2^31 is negative |
| ``target_token_id`` | int32 | a token id below 2^17 |
| ``best_seed`` | bytes | JSON: omitted while empty; Arrow: null; Parquet: ``""`` |

Files written (all hold the same records in the same order):

- ``training_frames.json``: one JSON array of records, no wrapper (as the encoder writes
  ``DATA/frames/training_frames.json``);
- ``training_frames.arrow``: an Arrow IPC **stream**, one record batch, every column
  non-null except ``best_seed`` (the encoder's ``DATA/frames/training_frames.arrow``);
- ``training_frames_ipcfile.arrow``: the same table as an Arrow IPC **file**;
- ``training_frames.parquet``: the older encoders' Parquet output (SNAPPY, ``best_seed``
  an empty byte string).

The feature words are BE32 words of SHA-256 over a fixed label, so every run writes the
same values; the script checks that every record holds words >= 2^31. The JSON is written
byte for byte the same every time; the Arrow and Parquet files hold the same table every
time (their bytes may differ between pyarrow versions, which stamp the Parquet footer).
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc
import pyarrow.parquet as pq

N_SLOTS = 12
CONTEXT = 8
TOKENS = (464, 3290, 318, 257, 1332, 13)  # six token ids below 2^17
SOURCE = "corpus/upstream-fixture.txt"
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "upstream"
INT32 = pa.int32()
SCHEMA = pa.schema(
    [
        pa.field("source_file", pa.string(), nullable=False),
        *(
            pa.field(n, INT32, nullable=False)
            for n in ("chunk_id", "window_start", "window_end", "context_length")
        ),
        *(pa.field(f"asic_slot_{i}", INT32, nullable=False) for i in range(N_SLOTS)),
        pa.field("target_token_id", INT32, nullable=False),
        pa.field("best_seed", pa.binary(), nullable=True),
    ]
)


def words(record: int) -> list[int]:
    """The record's 12 feature words (u32), from SHA-256 of a fixed label."""
    label = f"hasherd/upstream-fixture\0{record}".encode()
    digest = hashlib.sha256(label).digest() + hashlib.sha256(label + b"\1").digest()
    return [int.from_bytes(digest[4 * i : 4 * i + 4], "big") for i in range(N_SLOTS)]


def as_int32(word: int) -> int:
    """``int32(uint32(word))``, as the encoder's ``SetAsicSlots`` stores a word."""
    return word - 2**32 if word >= 2**31 else word


def records() -> list[dict[str, Any]]:
    """The records in the encoder's field order (``best_seed`` empty: omitted)."""
    out = []
    for i, token in enumerate(TOKENS):
        slots = words(i)
        if not any(w >= 2**31 for w in slots):
            raise SystemExit(f"record {i}: no word >= 2^31; change the label")
        frame: dict[str, Any] = {
            "source_file": SOURCE,
            "chunk_id": 0,
            "window_start": i,
            "window_end": i + CONTEXT,
            "context_length": CONTEXT,
        }
        frame.update((f"asic_slot_{j}", as_int32(w)) for j, w in enumerate(slots))
        frame["target_token_id"] = token
        out.append(frame)
    return out


def table(best_seed: bytes | None) -> pa.Table:
    rows = [{**r, "best_seed": best_seed} for r in records()]
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def write(out: Path) -> list[Path]:
    """Write the four fixture files into ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [
        out / "training_frames.json",
        out / "training_frames.arrow",
        out / "training_frames_ipcfile.arrow",
        out / "training_frames.parquet",
    ]
    paths[0].write_text(json.dumps(records(), indent=2) + "\n")
    t = table(None)
    with pa.OSFile(str(paths[1]), "wb") as f, pa.ipc.new_stream(f, SCHEMA) as w:
        w.write_table(t)
    with pa.OSFile(str(paths[2]), "wb") as f, pa.ipc.new_file(f, SCHEMA) as w:
        w.write_table(t)
    pq.write_table(table(b""), str(paths[3]), compression="snappy")
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    for path in write(parser.parse_args().out):
        print(path)


if __name__ == "__main__":
    main()
