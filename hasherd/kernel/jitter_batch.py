"""``lookup(S, key, p)`` for many records at once, with numpy (kernel.md, "The jitter memory").

The jitter RPC service answers batches of up to 65,536 records; a Python loop over
``JitterMemory.lookup`` costs a few microseconds a record, these array operations well
under one. Same rules as ``spec.lookup_linear``, through the memory's own indices:

* zone 1: a binary search of slot 0 in ``z1_keys`` (first frame per slot-0 value);
* zone 2: one global binary search. Group g's distinct slot-1 values sit, sorted, at
  ``z2_keys[z2_start[g]:z2_start[g+1]]`` and groups are in order, so ``g << 32 | slot1``
  is sorted over the whole array and ``searchsorted`` lands on the record's lower bound
  inside its own group; the nearest is that entry or the one before (smaller memory
  position on a tie), as in ``numba_kernels.nearest``;
* zone 3 and misses: element-wise.
"""

from __future__ import annotations

import numpy as np

from hasherd.errors import InputError
from hasherd.kernel import spec
from hasherd.kernel.memory import N_GROUPS, JitterMemory

RECORD_WORDS = 14  # slots 0..11, key, pass
_FAR = np.int64(1) << 40  # a distance larger than any two u32 can have


class BatchIndex:
    """A memory's zone indices in the form ``lookup_many`` searches (built once)."""

    __slots__ = (
        "memory",
        "z1_keys",
        "z1_vals",
        "z2_comp",
        "z2_keys",
        "z2_pos",
        "z2_start",
        "z2_vals",
    )

    def __init__(self, memory: JitterMemory) -> None:
        self.memory = memory
        self.z1_keys, self.z1_vals = memory.z1_keys, memory.z1_vals
        self.z2_start = memory.z2_start
        groups = np.repeat(np.arange(N_GROUPS, dtype=np.int64), np.diff(self.z2_start))
        self.z2_keys = memory.z2_keys.astype(np.int64)
        self.z2_comp = (groups << 32) | self.z2_keys
        self.z2_vals = memory.z2_vals
        self.z2_pos = memory.z2_pos


def as_records(records: np.ndarray) -> np.ndarray:
    """An (N, 14) uint32 view or copy of ``records`` (slots 0..11, key, pass)."""
    arr = np.asarray(records)
    if arr.ndim != 2 or arr.shape[1] != RECORD_WORDS or arr.dtype.kind not in "ui":
        raise InputError("records", f"expected an (N, {RECORD_WORDS}) integer array")
    if arr.dtype != np.uint32 and arr.size and (arr.min() < 0 or arr.max() > spec.MASK32):
        raise InputError("records", "values outside 0..4294967295")
    return arr.astype(np.uint32, copy=False)


def lookup_many(
    index: BatchIndex | JitterMemory, records: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(jitter uint32[N], found bool[N]) of ``lookup`` for every record row."""
    idx = index if isinstance(index, BatchIndex) else BatchIndex(index)
    rec = as_records(records)
    key = rec[:, 12]
    p = rec[:, 13]
    jit = key ^ np.uint32(spec.MISS_XOR) ^ (key >> np.uint32(16))
    found = np.zeros(rec.shape[0], dtype=bool)
    _zone1(idx, rec, np.nonzero(p <= spec.ZONE1_LAST_PASS)[0], jit, found)
    zone2 = (p > spec.ZONE1_LAST_PASS) & (p <= spec.ZONE2_LAST_PASS)
    _zone2(idx, rec, np.nonzero(zone2)[0], jit, found)
    rows = np.nonzero(p > spec.ZONE2_LAST_PASS)[0]
    diff = key[rows] ^ rec[rows, 3]
    close = (diff >> np.uint32(32 - spec.ZONE3_MIN_LEADING_ZEROS)) == 0
    jit[rows[close]] = diff[close] ^ np.uint32(spec.ZONE3_XOR)
    found[rows[close]] = True
    return jit.astype(np.uint32, copy=False), found


def _zone1(
    idx: BatchIndex, rec: np.ndarray, rows: np.ndarray, jit: np.ndarray, found: np.ndarray
) -> None:
    if not rows.size or not idx.z1_keys.size:
        return
    s0 = rec[rows, 0]
    i = np.minimum(np.searchsorted(idx.z1_keys, s0), idx.z1_keys.size - 1)
    hit = idx.z1_keys[i] == s0
    jit[rows[hit]] = idx.z1_vals[i[hit]]
    found[rows[hit]] = True


def _zone2(
    idx: BatchIndex, rec: np.ndarray, rows: np.ndarray, jit: np.ndarray, found: np.ndarray
) -> None:
    size = idx.z2_comp.size
    if not rows.size or not size:
        return
    g = ((rec[rows, 10].astype(np.int64) >> 12) & 0xF) << 8 | (rec[rows, 4].astype(np.int64) & 0xFF)
    lo, hi = idx.z2_start[g], idx.z2_start[g + 1]
    k = rec[rows, 12].astype(np.int64)
    a = np.searchsorted(idx.z2_comp, (g << 32) | k)  # lower bound, within [lo, hi]
    below = np.clip(a - 1, 0, size - 1)
    above = np.clip(a, 0, size - 1)
    keys = idx.z2_keys
    d_below = np.where(a > lo, k - keys[below], _FAR)
    d_above = np.where(a < hi, keys[above] - k, _FAR)
    tie_below = (d_below == d_above) & (idx.z2_pos[below] < idx.z2_pos[above])
    choice = np.where((d_below < d_above) | tie_below, below, above)
    hit = lo < hi
    jit[rows[hit]] = idx.z2_vals[choice[hit]]
    found[rows[hit]] = True
