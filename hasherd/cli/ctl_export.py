"""``hasherctl weights export``: the daemon's weights written as ``hasherd export`` writes
them (same columns, same file naming, atomic writes), with cmd_export's own writers.

The daemon sends weights as JSON objects with the ``WeightRow`` fields (seed and slots as
hex). They are turned back into ``WeightRow`` objects and handed to ``cmd_export.row_of``;
the layer is the one the daemon stored (``token_id // storage.layer_size`` of the daemon's
config, which this client does not read), not one recomputed here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from hasherd.cli import cmd_export
from hasherd.errors import InputError
from hasherd.fileio import write_atomic
from hasherd.storage.rows import WeightRow

FORMATS = cmd_export.FORMATS
_FIELDS = frozenset(f.name for f in fields(WeightRow))
_BYTES = {"seed": 32, "slots": 48}


class MalformedWeight(ValueError):
    """A weight from the daemon lacks a field or has one of the wrong form."""


def weight_row(w: Mapping[str, Any]) -> WeightRow:
    """The ``WeightRow`` a ``weights.list`` item describes (unknown keys are ignored)."""
    values = {k: v for k, v in w.items() if k in _FIELDS}
    for name, size in _BYTES.items():
        raw = values.get(name)
        try:
            values[name] = bytes.fromhex(raw) if isinstance(raw, str) else None
        except ValueError:
            values[name] = None
        if values[name] is None or len(values[name]) != size:
            raise MalformedWeight(f"weight {w.get('id')}: {name!r} is not {size} bytes of hex")
    try:
        return WeightRow(**values)
    except TypeError as exc:
        raise MalformedWeight(f"weight {w.get('id')}: {exc}") from None


def export_row(w: WeightRow) -> dict[str, Any]:
    """``cmd_export.row_of`` with the stored layer (row_of derives it from a layer size;
    with a size of 1 its value is replaced, and the column keeps its place)."""
    return {**cmd_export.row_of(w, 1), "layer": w.layer}


def layers_of(weights: Iterable[WeightRow]) -> dict[int, list[dict[str, Any]]]:
    """Export rows by layer, in ``hasherd export``'s order."""
    layers: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for w in sorted(weights, key=lambda w: (w.token_id, w.context_key, w.record_id)):
        layers[w.layer].append(export_row(w))
    return dict(layers)


def check_out(out: Path, layer: int | None) -> str | None:
    """Why ``out`` cannot be written (None when it can): ``hasherd export``'s rule, a
    file with ``--layer``, else a directory."""
    try:
        cmd_export.check_out(out, layer)
    except InputError as exc:
        return f"--out {exc.problem}"
    return None


def export(
    weights: Iterable[WeightRow],
    fmt: str,
    out: Path,
    layer: int | None,
    say: Callable[[str], None] = print,
) -> int:
    """Write the layer files; returns how many were written. Lines as ``hasherd export``.
    A layer of several kernels is refused (InputError), as ``hasherd export`` refuses it."""
    weights = list(weights)
    by_layer: dict[int, list[WeightRow]] = defaultdict(list)
    for w in weights:
        by_layer[w.layer].append(w)
    for n, stored in by_layer.items():
        if layer in (None, n):
            cmd_export.one_kernel(n, stored)
    layers = layers_of(weights)
    if layer is not None:
        rows = layers.get(layer, [])
        write_atomic(out, cmd_export.encode(rows, fmt))
        say(f"layer {layer}: {len(rows)} weights -> {out}")
        return 1
    for n in sorted(layers):
        target = out / f"layer_{n}.{fmt}"
        write_atomic(target, cmd_export.encode(layers[n], fmt))
        say(f"layer {n}: {len(layers[n])} weights -> {target}")
    if not layers:
        say("no weights stored")
    return len(layers)
