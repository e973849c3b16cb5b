"""``hasherd export``: stored weights to layer files (CSV, Parquet or JSON).

A layer holds ``storage.layer_size`` tokens (layer = token_id // layer_size). The columns
are the prototype's (token_id, best_seed as hex, fitness_score, generation, context_key)
plus ours, the kernel included (passes, zero_bits, token_bits, memory_id): a seed is only
meaningful with it. A layer file holds one kernel: a layer with weights of several kernels
is refused until ``--kernel``, ``--run`` or ``--job`` picks one. ``--out`` names a file
with ``--layer`` (an existing directory is refused) and a directory without. Files are
written atomically: a temporary file in the same directory, fsync, then rename, so a
reader never sees half a layer. The database is ``--db``, else
``<storage.base_path>/hasherd.db`` of ``--config``; it is only read (no writer lock), so
this works beside a running daemon or ``hasherd train``.
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
from hasherd.cli.common import add_config_args, add_db_arg, add_selection_args, db_path
from hasherd.cli.writer import command_line
from hasherd.errors import InputError
from hasherd.fileio import write_atomic
from hasherd.storage import Store
from hasherd.storage.rows import Kernel, WeightRow
from hasherd.storage.selection import kernel_choice

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
    "passes",
    "zero_bits",
    "token_bits",
)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="write stored weights as layer files",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    add_db_arg(p)
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
    add_selection_args(
        p,
        run_help="only weights of the kernel this run trains",
        job_help="only weights of the kernel this job trains",
    )
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
        "passes": w.passes,
        "zero_bits": w.zero_bits,
        "token_bits": w.token_bits,
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


async def _weights(db: Path, command: str, args: argparse.Namespace) -> list[WeightRow]:
    # No lock (works beside a writer); ``command`` names us if an old schema needs it.
    async with await Store.open_reader(db, command=command) as store:
        spec = await kernel_choice(store, args.kernel, args.run, args.job)
        weights = await store.weights()
    return [w for w in weights if spec is None or spec.matches(w.kernel)]


def check_out(out: Path, layer: int | None) -> None:
    """InputError when ``out`` cannot be what it names: a file with ``--layer``, else a
    directory."""
    if layer is not None and out.is_dir():
        raise InputError("--out", f"{out} is a directory; with --layer it names a file")
    if layer is None and out.exists() and not out.is_dir():
        raise InputError("--out", f"{out} is not a directory; without --layer it names one")


def one_kernel(layer: int, weights: list[WeightRow]) -> None:
    """InputError when the layer's weights belong to several kernels (a layer is exported,
    and deployed, for one kernel)."""
    kernels: dict[Kernel, int] = {}
    for w in weights:
        kernels[w.kernel] = kernels.get(w.kernel, 0) + 1
    if len(kernels) > 1:
        held = ", ".join(f"{k.label} ({n})" for k, n in kernels.items())
        raise InputError(
            "--kernel",
            f"layer {layer} holds weights of {len(kernels)} kernels: {held}; "
            "export one with --kernel, --run or --job",
        )


def run_export(args: argparse.Namespace) -> int:
    cfg = config_mod.load(args.config)
    size = cfg.storage.layer_size
    out = Path(args.out)
    if args.format == export_frames.FORMAT:
        weights = anyio.run(_weights, db_path(args, cfg), command_line(args), args)
        return export_frames.run(args, cfg, weights)
    check_out(out, args.layer)
    weights = anyio.run(_weights, db_path(args, cfg), command_line(args), args)
    by_layer: dict[int, list[WeightRow]] = defaultdict(list)
    for w in sorted(weights, key=lambda w: (w.token_id, w.context_key, w.record_id)):
        by_layer[w.token_id // size].append(w)
    for layer, rows in by_layer.items():
        if args.layer in (None, layer):
            one_kernel(layer, rows)
    layers = {n: [row_of(w, size) for w in rows] for n, rows in by_layer.items()}
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
