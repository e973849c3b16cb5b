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
from collections.abc import Sequence
from typing import Any

import numpy as np

from hasherd.errors import EvaluatorError
from hasherd.kernel import numba_setup
from hasherd.kernel.evaluators.base import EvalRequest, EvalResult, Evaluator, Trace
from hasherd.kernel.memory import JitterMemory

_LOCK = threading.Lock()  # numba's default threading layer forbids concurrent parallel calls
# Hashes of one k = 0 kernel call at most (a tenth of a second or so): a longer batch is
# cut into several calls, and an abort (``Evaluator.abort``) is seen between two of them.
K0_CALL_HASHES = 1 << 22
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
    """The (N, 20) big-endian header words of each seed with the record's slots (one
    (12,) row for all seeds, or one (N, 12) row per seed)."""
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

    def evaluate_many(self, reqs: Sequence[EvalRequest]) -> list[EvalResult]:
        """Several records' batches in one kernel call when they share the memory, passes
        and k = 0 (the trainer's case); otherwise one call each."""
        if not reqs:
            return []
        first = reqs[0]
        same = all(
            r.memory is first.memory and r.passes == first.passes and r.zero_bits == 0 for r in reqs
        )
        if not same or len(reqs) == 1:
            return super().evaluate_many(reqs)
        return self._run_k0(list(reqs))

    def _evaluate(self, req: EvalRequest) -> EvalResult:
        if req.zero_bits == 0:
            return self._run_k0([req])[0]
        return self._run_scan(req)

    @staticmethod
    def _record(req: EvalRequest) -> tuple[int, int, bool, int, np.ndarray]:
        """(start pass, start jitter, zone-1 hit, zone-1 value, zone-2 groups) of a record;
        the zone-1 shortcut only without a trace."""
        z1_val, z1_hit, z2_range = req.memory.record_view(int(req.slots[0]), int(req.slots[4]))
        start_pass = start_jitter = 0
        if z1_hit and not req.trace:
            start_pass = min(8, req.passes - 1)
            start_jitter = z1_val if start_pass % 2 else 0
        return start_pass, start_jitter, z1_hit, z1_val, z2_range

    def _run_k0(self, reqs: list[EvalRequest]) -> list[EvalResult]:
        """One k = 0 kernel call (cut in several for a huge batch) for every request.

        Everything around the call is a few array operations per batch, not per
        candidate: the kernel builds the headers from the seed bytes and writes every
        output array itself. At the trainer's 32 records x 256 candidates the kernel takes
        about 2 ms on two cores, and Python work here is serial, so every 0.1 ms of it
        would cost about 5 % of the evaluator's rate."""
        kn = kernels()
        mem, p, trace = reqs[0].memory, reqs[0].passes, any(r.trace for r in reqs)
        sizes = [r.n for r in reqs]
        if len(reqs) == 1:
            offsets: Any = (0, sizes[0])
            seeds = reqs[0].seeds
        else:
            offsets = np.concatenate([[0], np.cumsum(sizes)])
            seeds = np.concatenate([r.seeds for r in reqs])
        n = int(offsets[-1])
        records = [self._record(r) for r in reqs]
        chunks = _chunks(sizes, offsets)
        rec = _record_arrays(records)
        slots = np.stack([r.slots for r in reqs]) if len(reqs) > 1 else reqs[0].slots[None, :]
        word = np.empty(n, dtype=np.uint32)
        nonce = np.empty(n, dtype=np.uint32)
        digest = np.empty((n, 32), dtype=np.uint8)
        last_key = np.empty(n, dtype=np.uint32)
        tr = _trace_arrays(n, p, trace)
        self._call_k0(
            kn, seeds, slots, p, chunks, rec, mem, trace, (word, nonce, digest, last_key), tr
        )
        if trace:
            tr[1][:] = nonce[:, None]
        roll = np.zeros(n, dtype=np.uint32)
        out = []
        for i, r in enumerate(reqs):
            lo, hi = int(offsets[i]), int(offsets[i + 1])
            dsha = r.n * (p - records[i][0] + 1)
            out.append(
                EvalResult(
                    word[lo:hi],
                    nonce[lo:hi],
                    roll[lo:hi],
                    digest[lo:hi],
                    last_key[lo:hi],
                    dsha,
                    3 * dsha,
                    _trace_slice(tr, lo, hi) if r.trace else None,
                )
            )
        return out

    def _call_k0(
        self,
        kn: Any,
        seeds: np.ndarray,
        slots: np.ndarray,
        p: int,
        chunks: tuple[np.ndarray, np.ndarray, np.ndarray],
        rec: tuple[np.ndarray, ...],
        mem: JitterMemory,
        trace: bool,
        outs: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
        tr: tuple[np.ndarray, ...],
    ) -> None:
        """``run_k0`` over the chunks, at most ``K0_CALL_HASHES`` a call, abortable
        between calls."""
        import numba

        chunk_start, chunk_len, chunk_rec = chunks
        per_call = max(self._threads, K0_CALL_HASHES // (kn.L * (p + 1)))
        with _LOCK:
            numba.set_num_threads(self._threads)
            for lo in range(0, len(chunk_start), per_call):
                self.check_abort()
                hi = lo + per_call
                kn.run_k0(
                    seeds,
                    slots,
                    p,
                    chunk_start[lo:hi],
                    chunk_len[lo:hi],
                    chunk_rec[lo:hi],
                    *rec,
                    mem.z2_cut,
                    mem.z2_vals,
                    trace,
                    *outs,
                    tr[0],
                    tr[2],
                    tr[3],
                    tr[4],
                )

    def _run_scan(self, req: EvalRequest) -> EvalResult:
        import numba

        kn = kernels()
        mem, n, p = req.memory, req.n, req.passes
        hdr = header_words(req.slots, req.seeds)
        start_pass, start_jitter, z1_hit, z1_val, _ = self._record(req)
        digest = np.zeros((n, 8), dtype=np.uint32)
        last_key = np.zeros(n, dtype=np.uint32)
        tr = _trace_arrays(n, p, req.trace)
        nonce = np.zeros(n, dtype=np.uint32)
        roll64 = np.zeros(n, dtype=np.int64)
        scanned = np.zeros((n, 2), dtype=np.int64)  # nonces, midstates
        with _LOCK:
            numba.set_num_threads(self._threads)
            kn.run_scan(
                hdr,
                p,
                start_pass,
                np.uint32(start_jitter),
                z1_hit,
                np.uint32(z1_val),
                mem.z2_start,
                mem.z2_keys,
                mem.z2_vals,
                mem.z2_pos,
                req.zero_bits,
                req.nonce_space,
                req.trace,
                digest,
                nonce,
                roll64,
                last_key,
                scanned,
                *tr,
                self.abort_flag,
            )
        self.check_abort()
        roll = (roll64 & 0xFFFFFFFF).astype(np.uint32)
        dsha = int(scanned[:, 0].sum())
        blocks = 2 * dsha + int(scanned[:, 1].sum())  # 2 blocks a nonce, 1 a midstate
        trace = _trace_slice(tr, 0, n) if req.trace else None
        return EvalResult(
            digest[:, 0].copy(), nonce, roll, words_to_bytes(digest), last_key, dsha, blocks, trace
        )


def _chunks(sizes: list[int], offsets: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Chunks of at most LANES candidates, never mixing two records (start, length and
    record of each chunk, built with array operations: a batch has thousands)."""
    lanes = kernels().L
    if len(sizes) == 1:  # one record: the common case, in a few microseconds
        starts = np.arange(0, sizes[0], lanes, dtype=np.int64)
        lens = np.minimum(lanes, sizes[0] - starts)
        return starts, lens, np.zeros(len(starts), dtype=np.int64)
    size = np.asarray(sizes, dtype=np.int64)
    per = -(-size // lanes)  # chunks per record
    recs = np.repeat(np.arange(len(sizes), dtype=np.int64), per)
    first = np.cumsum(per) - per  # index of each record's first chunk
    within = np.arange(int(per.sum()), dtype=np.int64) - first[recs]
    starts = offsets[:-1].astype(np.int64)[recs] + within * lanes
    lens = np.minimum(lanes, size[recs] - within * lanes)
    return starts, lens, recs


def _record_arrays(records: list[tuple[int, int, bool, int, np.ndarray]]) -> tuple[np.ndarray, ...]:
    """The per-record arrays of ``run_k0``: start pass, start jitter, zone-1 hit and
    value, zone-2 groups."""
    cols = list(zip(*records, strict=True))
    return (
        np.array(cols[0], dtype=np.int64),
        np.array(cols[1], dtype=np.uint32),
        np.array(cols[2], dtype=np.bool_),
        np.array(cols[3], dtype=np.uint32),
        records[0][4][None, :] if len(records) == 1 else np.stack(cols[4]),
    )


_NO_TRACE = tuple(
    np.zeros(shape, dtype=dtype)
    for shape, dtype in (
        ((1, 1), np.uint32),
        ((1, 1), np.uint32),
        ((1, 1), np.uint32),
        ((1, 1), np.bool_),
        ((1, 20), np.uint32),
    )
)


def _trace_arrays(n: int, p: int, trace: bool) -> tuple[np.ndarray, ...]:
    """keys, nonces, jitters, found, final header words; shared (1, 1) stand-ins without a
    trace (the kernels never touch them then, and the types stay the same)."""
    if not trace:
        return _NO_TRACE
    tn, tp = n, p
    return (
        np.zeros((tn, tp), dtype=np.uint32),
        np.zeros((tn, tp), dtype=np.uint32),
        np.zeros((tn, tp), dtype=np.uint32),
        np.zeros((tn, tp), dtype=np.bool_),
        np.zeros((tn, 20), dtype=np.uint32),
    )


def _trace_slice(tr: tuple[np.ndarray, ...], lo: int, hi: int) -> Trace:
    keys, nonces, jits, found, final = (a[lo:hi] for a in tr)
    return Trace(keys, nonces, jits, found, words_to_bytes(final))
