"""The numba CPU evaluator: SIMD across candidates (k = 0) or nonces (k > 0), all cores.

Work it skips, as kernel.md allows ("an evaluator may skip the hashes whose key it does
not need, as long as every output agrees"):

* zone-1 shortcut: slot 0 never changes, so a record whose slot 0 is in the memory gets
  the same key-independent jitter on passes 0..7; applied an even number of times it
  cancels. Such a record starts at pass 8 (or, with P <= 8, at pass P-1 with the header
  that pass would see). Not taken when a trace is asked for, since the trace reports the
  skipped passes' keys.
* pass-invariant work: header words 0..8 and 13..19 never change across passes, so
  block 1's first 9 rounds and block 2's message schedule are computed once per call.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import numpy as np

from hasherd.errors import EvaluatorError
from hasherd.kernel import numba_setup
from hasherd.kernel.evaluators.base import EvalRequest, EvalResult, Evaluator, Trace
from hasherd.kernel.memory import JitterMemory

_LOCK = threading.Lock()  # numba's default threading layer forbids concurrent parallel calls
_kernels: Any = None


def kernels() -> Any:
    """The compiled kernel module (configured for this CPU on first use)."""
    global _kernels
    if _kernels is None:
        numba_setup.configure()
        from hasherd.kernel import numba_kernels

        _kernels = numba_kernels
    return _kernels


def header_words(slots: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """The (N, 20) big-endian header words of each seed with the record's slots."""
    sw = seeds.view(">u4").astype(np.uint32)
    hdr = np.empty((seeds.shape[0], 20), dtype=np.uint32)
    hdr[:, 0] = sw[:, 0]
    hdr[:, 1:13] = slots
    hdr[:, 13:20] = sw[:, 1:8]
    return hdr


def words_to_bytes(words: np.ndarray) -> np.ndarray:
    """(N, W) uint32 big-endian words to (N, 4W) bytes."""
    return words.astype(">u4").view(np.uint8).reshape(words.shape[0], -1)


class NumbaEvaluator(Evaluator):
    name = "numba"
    description = "numba SoA lane kernels, SIMD across candidates/nonces, all cores"

    def __init__(self, threads: int | None = None) -> None:
        import numba

        limit = int(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]
        want = threads if threads is not None else (os.cpu_count() or 1)
        if want < 1:
            raise EvaluatorError(self.name, f"threads must be >= 1, got {want}")
        self._threads = min(want, limit)

    @property
    def threads(self) -> int:
        return self._threads

    def warm_up(self) -> float:
        """Load (or compile, the first time on this machine) every kernel."""
        t0 = time.perf_counter()
        mem = JitterMemory.empty()
        seeds = np.zeros((1, 32), dtype=np.uint8)
        for k in (0, 1):
            self.evaluate([0] * 12, seeds, mem, 2, k, trace=False)
        return time.perf_counter() - t0

    def _evaluate(self, req: EvalRequest) -> EvalResult:
        import numba

        kn = kernels()
        mem = req.memory
        n, p = req.n, req.passes
        hdr = header_words(req.slots, req.seeds)
        z1_val, z1_hit, z2_range = mem.record_view(int(req.slots[0]), int(req.slots[4]))
        start_pass, start_jitter = 0, 0
        if z1_hit and not req.trace:
            start_pass = min(8, p - 1)
            start_jitter = z1_val if start_pass % 2 else 0
        digest = np.zeros((n, 8), dtype=np.uint32)
        last_key = np.zeros(n, dtype=np.uint32)
        # Without a trace the kernels never touch these; (1, 1) arrays keep the types.
        tn, tp = (n, p) if req.trace else (1, 1)
        tr_keys = np.zeros((tn, tp), dtype=np.uint32)
        tr_nonce = np.zeros((tn, tp), dtype=np.uint32)
        tr_jit = np.zeros((tn, tp), dtype=np.uint32)
        tr_found = np.zeros((tn, tp), dtype=np.bool_)
        tr_final = np.zeros((tn, 20), dtype=np.uint32)
        z1 = (z1_hit, np.uint32(z1_val))
        z2 = (mem.z2_keys, mem.z2_vals, mem.z2_pos)
        with _LOCK:
            numba.set_num_threads(self._threads)
            if req.zero_bits == 0:
                kn.run_k0(
                    hdr, p, start_pass, np.uint32(start_jitter), *z1,
                    z2_range, *z2, req.trace,
                    digest, last_key, tr_keys, tr_jit, tr_found, tr_final,
                )  # fmt: skip
                nonce = hdr[:, 19].byteswap()
                roll = np.zeros(n, dtype=np.uint32)
                dsha = n * (p - start_pass + 1)
                blocks = 3 * dsha
                if req.trace:
                    tr_nonce[:] = nonce[:, None]
            else:
                nonce = np.zeros(n, dtype=np.uint32)
                roll64 = np.zeros(n, dtype=np.int64)
                scanned = np.zeros((n, 2), dtype=np.int64)  # nonces, midstates
                kn.run_scan(
                    hdr, p, start_pass, np.uint32(start_jitter), *z1, mem.z2_start, *z2,
                    req.zero_bits,
                    req.nonce_space, req.trace, digest, nonce, roll64, last_key, scanned,
                    tr_keys, tr_nonce, tr_jit, tr_found, tr_final,
                )  # fmt: skip
                roll = (roll64 & 0xFFFFFFFF).astype(np.uint32)
                dsha = int(scanned[:, 0].sum())
                blocks = 2 * dsha + int(scanned[:, 1].sum())  # 2 blocks a nonce, 1 a midstate
        trace = None
        if req.trace:
            trace = Trace(tr_keys, tr_nonce, tr_jit, tr_found, words_to_bytes(tr_final))
        return EvalResult(
            digest[:, 0].copy(), nonce, roll, words_to_bytes(digest), last_key, dsha, blocks, trace
        )
