"""The numba kernel's zone-2 nearest search (branch-free) against a brute-force one."""

from __future__ import annotations

import numpy as np

from hasherd.kernel.evaluators.numba_cpu import kernels


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
        search = np.zeros(2 * lanes + 1, dtype=np.int64)
        search[2 * lanes] = kn.search_steps(ranges)
        kn.zone2_lanes(buf, jit, found, ranges, keys, vals, pos, search)
        for j in range(lanes):
            lo, hi = int(ranges[nib[j]]), int(ranges[16 + nib[j]])
            if lo == hi:
                assert found[j] == 0 and jit[j] == kn.miss(probe[j]), j
            else:
                assert found[j] == 1 and jit[j] == vals[_brute(keys, pos, lo, hi, int(probe[j]))], j
