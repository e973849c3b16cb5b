"""The jitter memory: frames, their ``memory_id``, and the indices that make lookup cheap.

A memory is an ordered list of 12-slot frames (kernel.md, "The jitter memory"). Order
matters: zone 1 takes the *first* frame whose slot 0 matches, zone 2 the *first* of the
nearest frames. The indices below are built once per memory and keep those rules:

* zone 1: ``z1_keys`` (sorted distinct slot-0 values) and ``z1_vals`` (slot 1 of the first
  frame with that slot 0); a binary search answers a lookup.
* zone 2: frames are grouped by ``g = ((f[10] >> 12) & 0xF) << 8 | (f[4] & 0xFF)``, a
  dense 12-bit form of ``(f[10] & 0xF000) | (f[4] & 0xFF)``. Group ``g`` occupies
  ``z2_keys[z2_start[g]:z2_start[g+1]]``: its distinct slot-1 values, sorted, each carrying
  the slot 2 (``z2_vals``) and memory position (``z2_pos``) of its first frame. The nearest
  slot 1 is one of the two neighbours of the key's insertion point; on equal distance the
  smaller memory position wins.

``memory_id`` is the lowercase hex SHA-256 of the frames in order, each frame as 12
little-endian u32 (48 bytes); the empty memory hashes no bytes.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable, Sequence
from functools import cached_property
from typing import Any

import numpy as np

from hasherd.errors import InputError
from hasherd.kernel import spec

N_GROUPS = 1 << 12
RECORD_CACHE_SIZE = 4096


def group_index(slot4: int, slot10: int) -> int:
    """Dense zone-2 group number of a frame or header (0..4095)."""
    return (((slot10 >> 12) & 0xF) << 8) | (slot4 & 0xFF)


class JitterMemory:
    """An immutable jitter memory with its zone indices."""

    __slots__ = ("__dict__", "frames")

    def __init__(self, frames: np.ndarray) -> None:
        arr = np.ascontiguousarray(frames, dtype=np.uint32)
        if arr.ndim != 2 or arr.shape[1] != spec.N_SLOTS:
            raise InputError("memory", f"expected an (M, {spec.N_SLOTS}) array, got {arr.shape}")
        arr.setflags(write=False)
        self.frames = arr

    @classmethod
    def from_frames(cls, frames: Iterable[Sequence[int]], field: str = "memory") -> JitterMemory:
        """Validate every frame (12 values in 0..2^32-1) and build the memory."""
        rows = [spec.check_slots(f, f"{field}[{i}]") for i, f in enumerate(frames)]
        if not rows:
            return cls(np.zeros((0, spec.N_SLOTS), dtype=np.uint32))
        return cls(np.array(rows, dtype=np.uint32))

    @classmethod
    def empty(cls) -> JitterMemory:
        return cls(np.zeros((0, spec.N_SLOTS), dtype=np.uint32))

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    def __repr__(self) -> str:
        return f"JitterMemory({len(self)} frames, id={self.memory_id[:12]})"

    @cached_property
    def memory_id(self) -> str:
        return hashlib.sha256(self.frames.astype("<u4", copy=False).tobytes()).hexdigest()

    # -- zone 1 ---------------------------------------------------------------------------

    @cached_property
    def _zone1(self) -> tuple[np.ndarray, np.ndarray]:
        keys = self.frames[:, 0]
        uniq, first = np.unique(keys, return_index=True)  # return_index gives first occurrence
        return uniq.astype(np.uint32), self.frames[first, 1].astype(np.uint32)

    @property
    def z1_keys(self) -> np.ndarray:
        return self._zone1[0]

    @property
    def z1_vals(self) -> np.ndarray:
        return self._zone1[1]

    def zone1(self, slot0: int) -> tuple[int, bool]:
        """Slot 1 of the first frame whose slot 0 is ``slot0``, if any."""
        keys, vals = self._zone1
        i = int(np.searchsorted(keys, np.uint32(slot0)))
        if i < len(keys) and int(keys[i]) == slot0:
            return int(vals[i]), True
        return 0, False

    # -- zone 2 ---------------------------------------------------------------------------

    @cached_property
    def _zone2(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        f = self.frames
        m = len(self)
        groups = ((f[:, 10].astype(np.int64) >> 12) & 0xF) << 8 | (f[:, 4].astype(np.int64) & 0xFF)
        pos = np.arange(m, dtype=np.int64)
        # Sort by (group, slot 1, position); then keep the first row of each (group, slot 1).
        order = np.lexsort((pos, f[:, 1].astype(np.int64), groups))
        g_sorted = groups[order]
        k_sorted = f[order, 1].astype(np.int64)
        keep = np.ones(m, dtype=bool)
        if m > 1:
            keep[1:] = (g_sorted[1:] != g_sorted[:-1]) | (k_sorted[1:] != k_sorted[:-1])
        order = order[keep]
        g_kept = g_sorted[keep]
        start = np.searchsorted(g_kept, np.arange(N_GROUPS + 1, dtype=np.int64)).astype(np.int64)
        return (
            start,
            f[order, 1].astype(np.uint32),
            f[order, 2].astype(np.uint32),
            order.astype(np.int64),
        )

    @property
    def z2_start(self) -> np.ndarray:
        return self._zone2[0]

    @property
    def z2_keys(self) -> np.ndarray:
        return self._zone2[1]

    @property
    def z2_vals(self) -> np.ndarray:
        return self._zone2[2]

    @property
    def z2_pos(self) -> np.ndarray:
        return self._zone2[3]

    @cached_property
    def z2_cut(self) -> np.ndarray:
        """Zone 2's answers as cut points, for searches that need no comparison of two
        neighbours: ``z2_cut[1 + i]`` is the largest key that still takes entry i of its
        group over entry i + 1 (the midpoint of the two keys, a tie going to the smaller
        memory position), 0xFFFFFFFF for the last entry of a group. The nearest entry of
        a group is then simply the first whose cut is >= the key. ``z2_cut[0]`` is a pad
        (0), so a search may read one entry before a group's first."""
        start, keys, _, pos = self._zone2
        k = keys.astype(np.int64)
        n = len(k)
        cut = np.full(n + 1, 0xFFFFFFFF, dtype=np.int64)
        cut[0] = 0
        if n > 1:
            last = np.zeros(n, dtype=bool)
            last[start[1:][start[1:] > start[:-1]] - 1] = True  # the last entry of each group
            i = np.flatnonzero(~last[:-1])
            total = k[i] + k[i + 1]
            # The first key taking entry i + 1: above the midpoint, or on it when i + 1 is
            # the earlier frame.
            first_next = np.where(total % 2 == 1, (total + 1) // 2, total // 2)
            first_next += (total % 2 == 0) & (pos[i] < pos[i + 1])
            cut[1 + i] = first_next - 1
        out = cut.astype(np.uint32)
        out.setflags(write=False)
        return out

    def zone2_ranges(self, slot4: int) -> np.ndarray:
        """For a record's slot 4: ``[lo_0..lo_15, hi_0..hi_15]``, where group q (slot 10's
        top nibble) spans ``z2_keys[lo_q:hi_q]``. Slot 4 never changes within a loop, so
        only these 16 groups can be asked for."""
        g = (np.arange(16, dtype=np.int64) << 8) | (slot4 & 0xFF)
        start = self.z2_start
        return np.concatenate([start[g], start[g + 1]])

    def set_record_cache_size(self, size: int) -> None:
        """How many records' ``record_view`` answers to keep (``simulator.cache_size``)."""
        self.__dict__["record_cache_size"] = max(1, size)

    def record_view(self, slot0: int, slot4: int) -> tuple[int, bool, np.ndarray]:
        """Zone 1's answer and ``zone2_ranges`` for a record, cached: a scheduler evaluates
        the same record generation after generation."""
        cache: dict[tuple[int, int], tuple[int, bool, np.ndarray]] = self.__dict__.setdefault(
            "_record_cache", {}
        )
        hit = cache.get((slot0, slot4))
        if hit is None:
            if len(cache) >= self.__dict__.get("record_cache_size", RECORD_CACHE_SIZE):
                cache.clear()
            value, found = self.zone1(slot0)
            hit = (value, found, self.zone2_ranges(slot4))
            cache[(slot0, slot4)] = hit
        return hit

    @cached_property
    def _zone2_lists(self) -> dict[int, tuple[list[int], list[int], list[int]]]:
        """Zone 2 as Python lists per group, for the plain-Python reference evaluator."""
        start, keys, vals, pos = self._zone2
        out: dict[int, tuple[list[int], list[int], list[int]]] = {}
        for g in np.nonzero(start[1:] > start[:-1])[0]:
            lo, hi = int(start[g]), int(start[g + 1])
            out[int(g)] = (keys[lo:hi].tolist(), vals[lo:hi].tolist(), pos[lo:hi].tolist())
        return out

    def zone2(self, slot4: int, slot10: int, key: int) -> tuple[int, bool]:
        """Slot 2 of the nearest-slot-1 frame of the group (first frame on a tie)."""
        entry = self._zone2_lists.get(group_index(slot4, slot10))
        if entry is None:
            return 0, False
        keys, vals, pos = entry
        i = bisect.bisect_left(keys, key)
        if i == 0:
            return vals[0], True
        if i == len(keys):
            return vals[-1], True
        below, above = key - keys[i - 1], keys[i] - key
        if below < above or (below == above and pos[i - 1] < pos[i]):
            return vals[i - 1], True
        return vals[i], True

    # -- the lookup ---------------------------------------------------------------------

    def lookup(self, slots: Sequence[int], key: int, pass_no: int) -> tuple[int, bool]:
        """``lookup(S, key, p)`` through the indices; equal to ``spec.lookup_linear``."""
        if pass_no <= spec.ZONE1_LAST_PASS:
            j, found = self.zone1(slots[0])
        elif pass_no <= spec.ZONE2_LAST_PASS:
            j, found = self.zone2(slots[4], slots[10], key)
        else:
            diff = key ^ slots[3]
            if diff >> (32 - spec.ZONE3_MIN_LEADING_ZEROS) == 0:
                return diff ^ spec.ZONE3_XOR, True
            found = False
        if found:
            return j, True
        return spec.miss_jitter(key), False


def as_memory(memory: Any, field: str = "memory") -> JitterMemory:
    """Accept a JitterMemory, an (M, 12) array or a list of frames."""
    if isinstance(memory, JitterMemory):
        return memory
    if isinstance(memory, np.ndarray):
        if memory.ndim != 2 or memory.shape[1] != spec.N_SLOTS:
            raise InputError(field, f"expected an (M, {spec.N_SLOTS}) array, got {memory.shape}")
        if memory.size and (memory.min() < 0 or memory.max() > spec.MASK32):
            raise InputError(field, "values outside 0..4294967295")
        return JitterMemory(memory)
    if isinstance(memory, (str, bytes)) or not hasattr(memory, "__iter__"):
        raise InputError(field, "expected a list of frames")
    return JitterMemory.from_frames(memory, field)
