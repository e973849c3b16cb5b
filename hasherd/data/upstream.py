"""The upstream encoder's record (``TrainingFrame``), field by field, and its encodings.

The prototype's stage-2 encoder writes each record with the slots as 12 scalar int32
fields ``asic_slot_0`` .. ``asic_slot_11`` and the label as int32 ``target_token_id``; its
Go trainer also accepts the struct's own spellings ``AsicSlots0`` .. ``AsicSlots11`` and
``TargetTokenID``. An int32 cannot hold a word >= 2^31, so the encoder stores
``int32(uint32(w))``: a negative int32 is the unsigned word with the same 32 bits, and is
read back as such here (``as_u32``). The trainer's ``best_seed`` is a byte string; Go's
``encoding/json`` writes a ``[]byte`` as standard base64 with padding, and omits the field
while it is empty. See docs/data.md, "The upstream encoder's output".
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import Any

from hasherd.errors import InputError
from hasherd.kernel import spec

SLOT_SPELLINGS = (
    tuple(f"asic_slot_{i}" for i in range(spec.N_SLOTS)),
    tuple(f"AsicSlots{i}" for i in range(spec.N_SLOTS)),
)
TARGET_SPELLINGS = ("target_token_id", "TargetTokenID")
SEED_FIELDS = ("best_seed", "BestSeed")
# The TrainingFrame fields before the slots, in the encoder's order (pkg/schema/output.go).
META_FIELDS = ("source_file", "chunk_id", "window_start", "window_end", "context_length")
# Older frame files' extras, kept with the record when asked (export) and written back.
EXTRA_FIELDS = ("token_sequence", "context_hash")
INT32_MIN = -(2**31)
SEEDS_SUFFIX = "_with_seeds"
SEEDS_NAME = "training_frames" + SEEDS_SUFFIX + ".json"


def as_u32(value: Any) -> Any:
    """An int32 word read as unsigned: -2^31..-1 become 2^31..2^32-1; anything else is
    returned unchanged, for the usual u32 check to accept or name."""
    if isinstance(value, int) and not isinstance(value, bool) and INT32_MIN <= value < 0:
        return value + 2**32
    return value


def as_i32(word: int) -> int:
    """A u32 word as the encoder stores it (``int32(uint32)``)."""
    return word - 2**32 if word >= 2**31 else word


def slot_fields(obj: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The upstream slot spelling ``obj`` uses (all 12 fields present), or None."""
    return next((names for names in SLOT_SPELLINGS if all(n in obj for n in names)), None)


def decode_seed(value: Any, field: str = "best_seed") -> bytes | None:
    """A 32-byte seed from base64 (as Go writes a ``[]byte``), 64 hex digits (hasherd's own
    exports) or raw bytes (Arrow, Parquet); None for an absent or empty seed."""
    if value is None or value in ("", b""):
        return None
    if isinstance(value, str) and len(value) != 2 * spec.SEED_BYTES:
        try:
            value = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise InputError(field, "neither base64 nor 64 hex digits") from None
    return spec.check_seed(value, field)


def encode_seed(seed: bytes) -> str:
    """A seed as Go's ``encoding/json`` writes a ``[]byte``: standard base64, padded."""
    return base64.b64encode(seed).decode("ascii")


def meta_of(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The metadata fields of a frame object that are present, in the encoder's order."""
    return {k: obj[k] for k in (*META_FIELDS, *EXTRA_FIELDS) if obj.get(k) is not None}


def frame_object(
    slots: Sequence[int], target: int, meta: Mapping[str, Any] | None, seed: bytes | None
) -> dict[str, Any]:
    """One record in the encoder's layout: its metadata, ``asic_slot_0..11`` and
    ``target_token_id`` as int32, then ``best_seed`` in base64 (omitted when None), as the
    Go trainer writes ``training_frames_with_seeds.json``."""
    meta = meta or {}
    obj = {k: meta[k] for k in META_FIELDS if k in meta}
    obj.update((name, as_i32(int(w))) for name, w in zip(SLOT_SPELLINGS[0], slots, strict=True))
    obj["target_token_id"] = as_i32(int(target))
    obj.update((k, meta[k]) for k in EXTRA_FIELDS if k in meta)
    if seed is not None:
        obj["best_seed"] = encode_seed(seed)
    return obj


def seeds_stem(stem: str) -> str:
    """The stem of the ``_with_seeds`` file written for frames of stem ``stem``."""
    return stem if stem.endswith(SEEDS_SUFFIX) else stem + SEEDS_SUFFIX
