"""``hasherd export``: stored weights to layer files (CSV, Parquet or JSON).

A layer holds ``storage.layer_size`` tokens (layer = token_id // layer_size). The columns
are the prototype's (token_id, best_seed as hex, fitness_score, generation, context_key)
plus ours. Files are written atomically: a temporary file in the same directory, fsync,
then rename, so a reader never sees half a layer. The database is only read (no writer
lock), so this works beside a running daemon or ``hasherd train``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import anyio

from hasherd import config as config_mod
from hasherd.cli import export_frames
from hasherd.cli.common import add_config_args
from hasherd.cli.writer import command_line
from hasherd.fileio import write_atomic
from hasherd.storage import Store
from hasherd.storage.rows import WeightRow

FORMATS = ("csv", "parquet", "json")
COLUMNS = (
    "token_id",
    "best_seed",
    "fitness_score",
    "generation",
    "context_key",
    "slots",
    "seed",
    "output",
    "golden_nonce",
    "prefix_bits",
    "difficulty_bits",
    "fitness",
    "epoch",
    "memory_id",
    "layer",
    "validation",
)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="write stored weights as layer files",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    p.add_argument("--db", required=True, metavar="PATH", help="the training database")
    p.add_argument(
        "--format", required=True, choices=(*FORMATS, export_frames.FORMAT), help="file format"
    )
    p.add_argument(
        "--layer",
        type=int,
        metavar="N",
        help="only this layer (--out is a file); "
        "without it every layer is written into the --out directory",
    )
    p.add_argument("--out", required=True, metavar="PATH", help="output file or directory")
    export_frames.add_arguments(p)
    add_config_args(p)
    p.set_defaults(handler=run_export)


def row_of(w: WeightRow, layer_size: int) -> dict[str, Any]:
    slots = [int.from_bytes(w.slots[i : i + 4], "little") for i in range(0, 48, 4)]
    return {
        "token_id": w.token_id,
        "best_seed": w.seed.hex(),
        "fitness_score": w.fitness,
        "generation": w.generation,
        "context_key": w.context_key,
        "slots": slots,
        "seed": w.seed.hex(),
        "output": w.output,
        "golden_nonce": w.golden_nonce,
        "prefix_bits": w.prefix_bits,
        "difficulty_bits": w.difficulty_bits,
        "fitness": w.fitness,
        "epoch": w.epoch,
        "memory_id": w.memory_id,
        "layer": w.token_id // layer_size,
        "validation": w.validation,
    }


def encode(rows: list[dict[str, Any]], fmt: str) -> bytes:
    if fmt == "json":
        return (json.dumps(rows, indent=1) + "\n").encode()
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, "slots": " ".join(str(s) for s in r["slots"])})
        return buf.getvalue().encode()
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(rows) if rows else pa.table({c: [] for c in COLUMNS})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    out: bytes = sink.getvalue().to_pybytes()
    return out


async def _weights(db: Path, command: str) -> list[WeightRow]:
    # No lock (works beside a writer); ``command`` names us if an old schema needs it.
    async with await Store.open_reader(db, command=command) as store:
        return await store.weights()


def run_export(args: argparse.Namespace) -> int:
    cfg = config_mod.load(args.config)
    size = cfg.storage.layer_size
    weights = anyio.run(_weights, Path(args.db), command_line(args))
    if args.format == export_frames.FORMAT:
        return export_frames.run(args, cfg, weights)
    layers: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for w in sorted(weights, key=lambda w: (w.token_id, w.context_key, w.record_id)):
        layers[w.token_id // size].append(row_of(w, size))
    out = Path(args.out)
    if args.layer is not None:
        write_atomic(out, encode(layers.get(args.layer, []), args.format))
        print(f"layer {args.layer}: {len(layers.get(args.layer, []))} weights -> {out}")
        return 0
    for layer in sorted(layers):
        target = out / f"layer_{layer}.{args.format}"
        write_atomic(target, encode(layers[layer], args.format))
        print(f"layer {layer}: {len(layers[layer])} weights -> {target}")
    if not layers:
        print("no weights stored")
    return 0
