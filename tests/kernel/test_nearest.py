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
