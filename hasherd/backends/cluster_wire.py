"""A batch and its results as few, large arrays, for the trip to a Ray node and back.

Ray serialises each numpy array of a call as a buffer of its own; a batch of 64 records
is 128 small arrays one way and 320 the other, and the per-buffer cost then dominates a
call of ~1 MB. So the head sends one array of every record's slots and one of all their
seeds (with each record's seed count), and the node answers with one array per result
field; each side splits them back into views. A result with a trace (the validator's)
travels as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from hasherd.kernel.evaluators.base import EvalRequest, EvalResult
from hasherd.kernel.memory import JitterMemory

FIELDS = ("output", "golden_nonce", "ntime_roll", "final_digest", "last_key")
# Memories a node actor keeps built (one per running job, about). The head sends a
# memory's object reference only to a node actor that does not keep it, as far as it
# knows; a node that let one go answers ``missing`` and the head sends the call again
# with the references. A reference inside a call costs Ray a borrow and its release per
# call, more CPU than the rest of the call on the head.
MEMORIES_KEPT = 4


def missing(memory_ids: list[str]) -> dict[str, Any]:
    """A node's answer to a call that names memories it no longer keeps, sent without."""
    return {"missing": memory_ids}


def missing_of(answer: Any) -> list[str] | None:
    """The memories a node asked for, or None for an answer with results."""
    if isinstance(answer, dict) and "missing" in answer:
        return list(answer["missing"])
    return None


def pack_requests(reqs: Sequence[EvalRequest]) -> dict[str, Any]:
    """The requests without their memories (each named by ``memory_id``)."""
    return {
        "slots": np.stack([r.slots for r in reqs]),
        "seeds": np.concatenate([r.seeds for r in reqs]),
        "counts": [r.n for r in reqs],
        "meta": [(r.memory.memory_id, r.passes, r.zero_bits, r.trace, r.nonce_space) for r in reqs],
    }


def memory_ids(packed: dict[str, Any]) -> list[str]:
    return [m[0] for m in packed["meta"]]


def unpack_requests(
    packed: dict[str, Any], memory: Callable[[str], JitterMemory]
) -> list[EvalRequest]:
    """The requests again, their seeds views of the one array, each memory by its id."""
    bounds = np.cumsum(packed["counts"])[:-1]
    seeds = np.split(packed["seeds"], bounds)
    return [
        EvalRequest(slots, s, memory(mid), passes, zero_bits, trace, space)
        for slots, s, (mid, passes, zero_bits, trace, space) in zip(
            packed["slots"], seeds, packed["meta"], strict=True
        )
    ]


def pack_results(results: list[EvalResult]) -> Any:
    """One array per field, with each result's length and counters; with a trace, the
    list itself."""
    if not results or any(r.trace is not None for r in results):
        return results
    return {
        "counts": [len(r) for r in results],
        "dsha": [r.dsha for r in results],
        "compressions": [r.compressions for r in results],
        **{f: np.concatenate([getattr(r, f) for r in results]) for f in FIELDS},
    }


def unpack_results(packed: Any) -> list[EvalResult]:
    if isinstance(packed, list):
        return packed
    bounds = np.cumsum(packed["counts"])[:-1]
    output, nonce, roll, digest, key = (np.split(packed[f], bounds) for f in FIELDS)
    return [
        EvalResult(output[i], nonce[i], roll[i], digest[i], key[i], dsha, compressions)
        for i, (dsha, compressions) in enumerate(
            zip(packed["dsha"], packed["compressions"], strict=True)
        )
    ]
