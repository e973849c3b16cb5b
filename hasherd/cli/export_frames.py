"""``hasherd export --format frames``: a dataset's frames with their best seeds, written as
the prototype's Go trainer writes ``training_frames_with_seeds.json`` for the next
upstream stage.

The records are those of ``--data`` (the frames the weights were trained on), in dataset
order, each in the encoder's layout (``hasherd.data.upstream.frame_object``: its
metadata, ``asic_slot_0..11`` and ``target_token_id`` as int32, ``best_seed`` in base64),
with the seed of the best stored weight (most prefix bits, then fitness) of the same
record (slots, token and context key) trained with the same jitter memory; a record
without one has no ``best_seed`` (Go omits the empty field). ``--out`` is the file, or a
directory that receives ``<stem>_with_seeds.json`` (``training_frames_with_seeds.json``
for the encoder's ``training_frames.*``); a later ``hasherd train --data`` on the same
folder then reads it for its seeds only (docs/data.md).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from pathlib import Path

from hasherd.config import Config
from hasherd.data import Dataset, load_dataset
from hasherd.data.upstream import frame_object, seeds_stem
from hasherd.errors import InputError
from hasherd.fileio import write_atomic
from hasherd.storage.rows import WeightRow

FORMAT = "frames"
_Key = tuple[bytes, int, int]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        metavar="PATH",
        help="with --format frames: the frames the weights were trained on (file or folder)",
    )


def run(args: argparse.Namespace, cfg: Config, weights: list[WeightRow]) -> int:
    """Write the frames file; ``weights`` are every stored weight."""
    if args.data is None:
        raise InputError("--data", "--format frames needs the frames the weights were trained on")
    if args.layer is not None:
        raise InputError("--layer", "does not apply to --format frames (one file of records)")
    ds = load_dataset(
        args.data, token_bits=cfg.training.token_bits, init_seeds=False, keep_meta=True
    )
    mine = [w for w in weights if w.memory_id == ds.memory_id]
    check_one_kernel(mine)
    seeds = best_seeds(mine, ds.memory_id)
    frames, found = frames_of(ds, seeds)
    out = target(Path(args.out), ds)
    write_atomic(out, (json.dumps(frames, indent=2) + "\n").encode())
    print(f"{len(frames)} frames, {found} with a seed -> {out}")
    return 0


def check_one_kernel(weights: list[WeightRow]) -> None:
    """InputError when the dataset's weights belong to several kernels: a seed is only
    meaningful with its kernel, and the frames file has no column for it."""
    kernels = sorted({w.kernel.label for w in weights})
    if len(kernels) > 1:
        raise InputError(
            "--kernel",
            f"the weights of this dataset belong to {len(kernels)} kernels "
            f"({', '.join(kernels)}); pick one with --kernel, --run or --job",
        )


def best_seeds(weights: Iterable[WeightRow], memory_id: str) -> dict[_Key, bytes]:
    """The seed of the best weight of each record trained with ``memory_id``."""
    best: dict[_Key, WeightRow] = {}
    for w in weights:
        if w.memory_id != memory_id:
            continue
        key = (bytes(w.slots), w.token_id, w.context_key)
        old = best.get(key)
        if old is None or (w.prefix_bits, w.fitness) > (old.prefix_bits, old.fitness):
            best[key] = w
    return {key: w.seed for key, w in best.items()}


def frames_of(ds: Dataset, seeds: dict[_Key, bytes]) -> tuple[list[dict[str, object]], int]:
    """The dataset's records as frame objects, and how many carry a seed."""
    frames, found = [], 0
    meta = ds.meta or (None,) * len(ds)
    for i in range(len(ds)):
        key = (ds.slots[i].astype("<u4").tobytes(), int(ds.targets[i]), int(ds.context_keys[i]))
        seed = seeds.get(key)
        found += seed is not None
        frames.append(frame_object(ds.slots[i].tolist(), int(ds.targets[i]), meta[i], seed))
    return frames, found


def target(out: Path, ds: Dataset) -> Path:
    """``out``, or in an existing directory the ``_with_seeds`` name of the data's file."""
    if not out.is_dir():
        return out
    return out / f"{seeds_stem(Path(ds.report.files[0]).stem)}.json"
