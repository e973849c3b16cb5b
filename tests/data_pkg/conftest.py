"""Fixtures for the data package tests: a few valid records and writers for each format."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any

import pytest

MAX = 2**32 - 1
RECORDS: list[tuple[list[int], int]] = [
    ([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], 0),
    ([MAX] * 12, 100_276),
    ([i * 0x01234567 % 2**32 for i in range(12)], 42),
    ([7] * 11 + [MAX - 7], 2**17 - 1),
]


def frame_objects(variant: int = 0) -> list[dict[str, Any]]:
    slots_key = ("feature_vector", "asic_slots")[variant]
    target_key = ("target_token", "target_token_id")[variant]
    return [{slots_key: s, target_key: t} for s, t in RECORDS]


def write_json(path: Path, variant: int = 0, wrapped: bool = False) -> Path:
    objs: Any = frame_objects(variant)
    path.write_text(json.dumps({"frames": objs} if wrapped else objs))
    return path


def write_jsonl(path: Path, variant: int = 0) -> Path:
    path.write_text("".join(json.dumps(o) + "\n" for o in frame_objects(variant)))
    return path


def write_csv(path: Path, prefix: str = "slot_", target: str = "target_token") -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow([f"{prefix}{i}" for i in range(12)] + [target])
        for s, t in RECORDS:
            w.writerow([*s, t])
    return path


def arrow_table(list_column: bool = True) -> Any:
    import pyarrow as pa

    targets = pa.array([t for _, t in RECORDS], pa.uint32())
    if list_column:
        slots = pa.array([s for s, _ in RECORDS], pa.list_(pa.int64()))
        return pa.table({"asic_slots": slots, "target_token_id": targets})
    cols = {f"slot_{i}": pa.array([s[i] for s, _ in RECORDS], pa.uint32()) for i in range(12)}
    return pa.table({**cols, "target": targets})


def write_arrow(path: Path, stream: bool = False, list_column: bool = True) -> Path:
    import pyarrow as pa

    table = arrow_table(list_column)
    opener = pa.ipc.new_stream if stream else pa.ipc.new_file
    with pa.OSFile(str(path), "wb") as sink, opener(sink, table.schema) as writer:
        writer.write_table(table)
    return path


def write_parquet(path: Path, list_column: bool = True) -> Path:
    import pyarrow.parquet as pq

    pq.write_table(arrow_table(list_column), str(path))
    return path


def _pdf_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def make_pdf(pages: list[list[str]]) -> bytes:
    """A minimal valid PDF, one text object per page, with a correct xref table."""
    n_pages = len(pages)
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids ["
        + " ".join(f"{4 + 2 * i} 0 R" for i in range(n_pages))
        + f"] /Count {n_pages} >>",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for i, lines in enumerate(pages):
        body = " ".join(f"({_pdf_escape(line)}) Tj T*" for line in lines)
        content = f"BT /F1 12 Tf 14 TL 72 720 Td {body} ET"
        objects.append(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            f"/Contents {5 + 2 * i} 0 R /Resources << /Font << /F1 3 0 R >> >> >>"
        )
        objects.append(f"<< /Length {len(content)} >>\nstream\n{content}\nendstream")
    out = b"%PDF-1.4\n"
    offsets = []
    for i, obj in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n{obj}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{o:010d} 00000 n \n" for o in offsets).encode()
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return out


@pytest.fixture
def expected() -> tuple[list[list[int]], list[int]]:
    return [s for s, _ in RECORDS], [t for _, t in RECORDS]


@pytest.fixture
def w() -> Any:
    """This module: the writers above, for tests (conftest is not importable by name)."""
    return sys.modules[__name__]
