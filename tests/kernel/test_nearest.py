"""The numba kernel's zone-2 nearest searches (branch-free) against a brute-force one."""

from __future__ import annotations

import numpy as np

from hasherd.kernel.evaluators.numba_cpu import kernels
from hasherd.kernel.memory import JitterMemory


def _brute(keys: np.ndarray, pos: np.ndarray, lo: int, hi: int, key: int) -> int:
    return min(range(lo, hi), key=lambda i: (abs(int(keys[i]) - key), int(pos[i])))


def test_nearest_matches_brute_force_with_ties_and_ends() -> None:
    nearest = kernels().nearest
    rng = np.random.default_rng(7)
    for _ in range(200):
        m = int(rng.integers(1, 12))
        keys = np.sort(rng.choice(np.arange(0, 200, 2, dtype=np.uint32), m, replace=False))
        pos = rng.permutation(m).astype(np.int64)
        pad = int(rng.integers(0, 3))  # the group sits inside a longer array
        keys = np.concatenate([np.zeros(pad, np.uint32), keys, np.full(2, 999, np.uint32)])
        pos = np.concatenate([np.zeros(pad, np.int64), pos, np.zeros(2, np.int64)])
        lo, hi = pad, pad + m
        # even keys, odd probes: every probe between two keys 2 apart is a tie
        for key in (*range(0, 203), 0xFFFFFFFF):
            got = nearest(lo, hi, keys, pos, np.uint32(key))
            assert got == _brute(keys, pos, lo, hi, key), (keys[lo:hi], pos[lo:hi], key)


def _group_layout(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Sixteen zone-2 groups of 0..5 even keys each, one after the other in one sorted-by-
    group array (as ``JitterMemory`` lays them out), with positions and values."""
    ranges = np.zeros(32, dtype=np.int64)
    keys, pos, vals = [], [], []
    for q in range(16):
        m = int(rng.integers(0, 6)) if q else 0  # group 0 always empty
        ranges[q] = len(keys)
        group = np.sort(rng.choice(np.arange(0, 64, 2), m, replace=False))
        keys += group.tolist()
        pos += rng.permutation(64)[:m].tolist()
        vals += rng.integers(0, 2**32, m).tolist()
        ranges[16 + q] = len(keys)
    return (
        ranges,
        np.array(keys, dtype=np.uint32),
        np.array(vals, dtype=np.uint32),
        np.array(pos, dtype=np.int64),
    )


def _cuts(ranges: np.ndarray, keys: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """``JitterMemory.z2_cut`` for a hand-made layout, from its definition by brute force:
    entry i's cut is the largest key whose nearest entry is i or before (keys < 64)."""
    cut = np.full(len(keys) + 1, 0xFFFFFFFF, dtype=np.uint32)
    cut[0] = 0
    for q in range(16):
        lo, hi = int(ranges[q]), int(ranges[16 + q])
        for i in range(lo, hi - 1):
            cut[1 + i] = max(x for x in range(80) if _brute(keys, pos, lo, hi, x) <= i)
    return cut


def test_memory_cut_points_give_the_nearest_frame_with_ties() -> None:
    """``JitterMemory.z2_cut``: the first entry of a group whose cut is >= the key is the
    nearest frame (the earlier one on a tie), for every key around every group's keys."""
    rng = np.random.default_rng(5)
    frames = rng.integers(0, 2**32, (200, 12), dtype=np.uint64).astype(np.uint32)
    frames[:, 4] &= 0x3  # few groups, many frames each
    frames[:, 10] &= 0x1FFF
    frames[:, 1] = (frames[:, 1] % 32) * 2  # equal keys, and even keys with gaps: ties
    mem = JitterMemory(frames)
    start, keys, pos, cut = mem.z2_start, mem.z2_keys, mem.z2_pos, mem.z2_cut
    assert cut[0] == 0 and len(cut) == len(keys) + 1
    groups = np.flatnonzero(start[1:] > start[:-1])
    assert len(groups) == 8
    for g in groups:
        lo, hi = int(start[g]), int(start[g + 1])
        assert cut[hi] == 0xFFFFFFFF  # the last entry of a group is never passed
        for key in range(0, 70):
            first = next(i for i in range(lo, hi) if cut[1 + i] >= key)
            assert first == _brute(keys, pos, lo, hi, key), (g, key)


def test_every_lane_of_zone2_matches_brute_force_with_empty_groups_and_ties() -> None:
    """``zone2_lanes``: each lane's group (by slot 10's top nibble), nearest key, ties to
    the earlier frame, and the miss value for a lane whose group is empty."""
    kn = kernels()
    lanes = kn.L
    rng = np.random.default_rng(12)
    for _ in range(50):
        ranges, keys, vals, pos = _group_layout(rng)
        buf = np.zeros(kn.ROWS * lanes, dtype=np.uint32)
        nib = rng.integers(0, 16, lanes).astype(np.uint32)
        probe = rng.integers(0, 67, lanes).astype(np.uint32)  # odd probes tie
        buf[(kn.ROW_HDR + kn.W_SLOT10) * lanes : (kn.ROW_HDR + kn.W_SLOT10 + 1) * lanes] = (
            nib << np.uint32(12)
        ) | rng.integers(0, 4096, lanes).astype(np.uint32)
        buf[kn.ROW_OUT * lanes : (kn.ROW_OUT + 1) * lanes] = probe
        jit = np.zeros(lanes, dtype=np.uint32)
        found = np.zeros(lanes, dtype=np.uint8)
        search = np.zeros(2 * lanes + 1, dtype=np.int32)
        search[2 * lanes] = kn.search_steps(ranges)
        kn.zone2_lanes(buf, jit, found, ranges, _cuts(ranges, keys, pos), vals, search)
        for j in range(lanes):
            lo, hi = int(ranges[nib[j]]), int(ranges[16 + nib[j]])
            if lo == hi:
                assert found[j] == 0 and jit[j] == kn.miss(probe[j]), j
            else:
                assert found[j] == 1 and jit[j] == vals[_brute(keys, pos, lo, hi, int(probe[j]))], j
