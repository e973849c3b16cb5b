"""Where the numba kernel's time goes on this CPU, one core, in one run.

    .venv/bin/python tools/bench_kernel.py [--seconds S] [--rounds R] [--json]

``hasherd bench`` measures the evaluator as the trainer calls it; this splits it, on one
thread, into what sets its ceiling (every part runs once per round, round-robin, and the
medians of the rounds are printed; candidates of 21 passes, 66 compressions each
nominally; a part's compressions are 3 per double SHA-256 it hashes, and "vs lanes
alone" compares those per second):

* ``lanes, hashing alone``: the generated lane kernel (16 candidates in the lanes of a
  512-bit vector, or 8 of 256) with its pass-invariant work hoisted, 22 passes, the
  jitter applied but not looked up (a key-derived value): the SIMD hashing rate, to set
  beside a peer's (``hasherd bench --against hashcat`` per core);
* ``run_k0, the bench's records``: the whole k = 0 driver on ``hasherd bench``'s ``miss``
  records (32 records x 256 candidates a call, through the evaluator): hashing, the
  jitter lookups and the driver;
* ``run_k0, no zone-2 frame``: the same records and seeds with every frame's slot 4 moved
  out of their zone-2 group: the lookups' share is the difference;
* ``run_k0, training records`` and ``run_k0, training, no zone-2``: the same two for
  ``hasherd bench``'s ``zone1_hit`` records, frames of the memory, as every record of
  ``hasherd train`` is (the memory is the training set): they start at pass 8, so 42
  compressions are hashed per candidate of the nominal 66, and zone 2's lookups are
  half of their passes' jitters;
* ``SHA-NI, 8 interleaved`` (where the CPU has SHA-NI): the three compressions of a pass
  for 8 candidates at once through ``sha256rnds2``/``msg1``/``msg2`` (numba intrinsics
  emitting LLVM IR), the jitter a plain XOR: the rate the CPU's SHA unit gives numba.
  Measured, not used by the evaluator: on the CPUs measured so far it is below the lane
  kernel's.
"""

# mypy: ignore-errors
from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import llvmlite.binding as ll
import numba
import numpy as np
from llvmlite import ir
from numba import njit
from numba.core import cgutils, types
from numba.extending import intrinsic

from hasherd.backends.bench import BenchConfig, make_workload
from hasherd.kernel import lanegen, numba_setup
from hasherd.kernel.evaluators.base import make_request
from hasherd.kernel.evaluators.numba_cpu import NumbaEvaluator
from hasherd.kernel.memory import JitterMemory

numba_setup.configure()  # before anything compiles, as the evaluator does

from hasherd.kernel._lanes import LANES, ROW_OUT, ROWS, pass_k0, prep  # noqa: E402

COMPRESSIONS = 66  # a candidate: 21 passes and the final one, 3 compressions each
TRAINING_COMPRESSIONS = 42  # a record in the memory starts at pass 8: 14 passes performed
RECORDS, POPULATION = 32, 256
STREAMS = 8  # SHA-NI candidates interleaved: fewer leave its unit idle, 16 spill registers
W_JITTER = 9  # header words 9..12 take the jitter


# -- the lane kernel alone ---------------------------------------------------------------


@njit(cache=True, nogil=True)
def lanes_hashing(chunks, passes, hdr):  # pragma: no cover - compiled
    """``chunks`` chunks of LANES candidates, each through prep and passes + 1 lane passes,
    XORing a key-derived word into the jitter words after each."""
    buf = np.empty(ROWS * LANES, dtype=np.uint32)
    acc = np.uint32(0)
    for c in range(chunks):
        for r in range(20):
            for j in range(LANES):
                buf[r * LANES + j] = hdr[(c * LANES + j) % hdr.shape[0], r]
        prep(buf)
        for _ in range(passes + 1):
            pass_k0(buf)
            for j in range(LANES):
                x = np.uint32(buf[ROW_OUT * LANES + j] * np.uint32(0x9E3779B1))
                for w in range(4):
                    buf[(W_JITTER + w) * LANES + j] ^= x
        acc ^= buf[ROW_OUT * LANES]
    return acc


# -- SHA-NI through intrinsics -------------------------------------------------------------

_I32 = ir.IntType(32)
_V4 = ir.VectorType(_I32, 4)


def _const(words: tuple[int, ...] | list[int]) -> ir.Constant:
    return ir.Constant(_V4, [ir.Constant(_I32, w & 0xFFFFFFFF) for w in words])


class _Emit:
    """IR helpers for one call: loads, stores and the SHA instructions."""

    def __init__(self, builder: ir.IRBuilder) -> None:
        self.b = builder
        mod = builder.module
        three = ir.FunctionType(_V4, [_V4, _V4, _V4])
        two = ir.FunctionType(_V4, [_V4, _V4])
        self.rnds2 = cgutils.get_or_insert_function(mod, three, "llvm.x86.sha256rnds2")
        self.msg1 = cgutils.get_or_insert_function(mod, two, "llvm.x86.sha256msg1")
        self.msg2 = cgutils.get_or_insert_function(mod, two, "llvm.x86.sha256msg2")

    def load(self, base: ir.Value, offset: int) -> ir.Value:
        ptr = self.b.gep(base, [ir.Constant(ir.IntType(64), offset)])
        return self.b.load(self.b.bitcast(ptr, _V4.as_pointer()), align=4)

    def store(self, value: ir.Value, base: ir.Value, offset: int) -> None:
        ptr = self.b.gep(base, [ir.Constant(ir.IntType(64), offset)])
        self.b.store(value, self.b.bitcast(ptr, _V4.as_pointer()), align=4)

    def shuffle(self, x: ir.Value, y: ir.Value, mask: list[int]) -> ir.Value:
        return self.b.shuffle_vector(x, y, _const(mask))

    def to_pairs(self, abcd: ir.Value, efgh: ir.Value) -> tuple[ir.Value, ir.Value]:
        """a..h to the instructions' (ABEF, CDGH): lane 0 holds F and H."""
        return self.shuffle(abcd, efgh, [5, 4, 1, 0]), self.shuffle(abcd, efgh, [7, 6, 3, 2])

    def from_pairs(self, abef: ir.Value, cdgh: ir.Value) -> tuple[ir.Value, ir.Value]:
        return self.shuffle(abef, cdgh, [3, 2, 7, 6]), self.shuffle(abef, cdgh, [1, 0, 5, 4])

    def quad(self, abef: ir.Value, cdgh: ir.Value, kw: ir.Value) -> tuple[ir.Value, ir.Value]:
        """Four rounds with the K+W words ``kw``."""
        cdgh = self.b.call(self.rnds2, [cdgh, abef, kw])
        hi = self.shuffle(kw, kw, [2, 3, 0, 1])
        abef = self.b.call(self.rnds2, [abef, cdgh, hi])
        return abef, cdgh

    def schedule(self, w: list[ir.Value], q: int) -> ir.Value:
        """Message words 4q..4q+3 from the four quads before them (``w`` by q mod 4)."""
        x = self.b.call(self.msg1, [w[q % 4], w[(q + 1) % 4]])
        x = self.b.add(x, self.shuffle(w[(q + 2) % 4], w[(q + 3) % 4], [1, 2, 3, 4]))
        return self.b.call(self.msg2, [x, w[(q + 3) % 4]])


def _data(context: Any, builder: ir.IRBuilder, typ: types.Array, value: ir.Value) -> ir.Value:
    return context.make_array(typ)(context, builder, value).data


def make_compress(
    q0: int, q1: int, *, kw: bool, iv_work: bool, feed: str, out_stride: int
) -> Callable[..., Any]:
    """An intrinsic ``f(work, msg, out)`` running round quads q0..q1-1 for STREAMS streams.

    * ``work``: the state before quad q0, 8 words a stream (ignored with ``iv_work``: the IV).
    * ``msg``: 16 message words a stream, or with ``kw`` 64 words of K[t] + W[t] (a message
      known ahead, so no schedule is computed).
    * ``feed``: what is added at the end: ``"none"`` (the bare state after quad q1-1),
      ``"iv"`` or ``"work"`` (the chaining value is the state read from ``work``).
    * ``out``: 8 words a stream at ``out_stride`` words apart.
    """
    iv = _const(lanegen.IV[:4]), _const(lanegen.IV[4:])
    kq = [_const(lanegen.K[4 * q : 4 * q + 4]) for q in range(16)]
    msg_stride = 64 if kw else 16

    def codegen(context: Any, builder: ir.IRBuilder, sig: Any, args: Any) -> Any:
        e = _Emit(builder)
        work, msg, out = (
            _data(context, builder, t, a) for t, a in zip(sig.args, args, strict=True)
        )
        chain, pairs, w = [], [], []
        for s in range(STREAMS):
            abcd_efgh = iv if iv_work else (e.load(work, 8 * s), e.load(work, 8 * s + 4))
            chain.append(abcd_efgh)
            pairs.append(list(e.to_pairs(*abcd_efgh)))
            if not kw:
                w.append([e.load(msg, msg_stride * s + 4 * i) for i in range(4)])
        for q in range(q0, q1):
            for s in range(STREAMS):
                if kw:
                    k = e.load(msg, msg_stride * s + 4 * q)
                else:
                    if q >= 4:
                        w[s][q % 4] = e.schedule(w[s], q)
                    k = builder.add(w[s][q % 4], kq[q])
                pairs[s] = list(e.quad(pairs[s][0], pairs[s][1], k))
        for s in range(STREAMS):
            abcd, efgh = e.from_pairs(*pairs[s])
            if feed != "none":
                base = iv if feed == "iv" else chain[s]
                abcd, efgh = builder.add(abcd, base[0]), builder.add(efgh, base[1])
            e.store(abcd, out, out_stride * s)
            e.store(efgh, out, out_stride * s + 4)
        return context.get_dummy_value()

    @intrinsic
    def compress(typingctx: Any, work: Any, msg: Any, out: Any) -> Any:
        for arr in (work, msg, out):
            if not (isinstance(arr, types.Array) and arr.dtype == types.uint32):
                return None
            if arr.layout != "C" or arr.ndim != 1:
                return None
        return types.void(work, msg, out), codegen

    return compress


block1 = make_compress(0, 16, kw=False, iv_work=True, feed="iv", out_stride=8)
block2 = make_compress(0, 16, kw=True, iv_work=False, feed="work", out_stride=16)
block3 = make_compress(0, 16, kw=False, iv_work=True, feed="iv", out_stride=8)


@njit(cache=False, nogil=True)
def shani_hashing(groups, passes, m1, kw2, st, m3, out):  # pragma: no cover - compiled
    """``groups`` groups of STREAMS candidates, passes + 1 passes each: block 1 (header
    words 0..15), block 2 (its K+W known ahead), the digest's hash; a key-derived XOR."""
    acc = np.uint32(0)
    for _ in range(groups):
        for _ in range(passes + 1):
            block1(st, m1, st)
            block2(st, kw2, m3)
            block3(m3, m3, out)
            for s in range(STREAMS):
                m1[16 * s + W_JITTER] ^= np.uint32(out[8 * s] * np.uint32(0x9E3779B1))
        acc ^= out[0]
    return acc


@njit(cache=False, nogil=True)
def shani_sha256_32(m3, out):  # pragma: no cover - compiled
    block3(m3, m3, out)


def check_shani() -> None:
    """The intrinsics' SHA-256 of STREAMS 32-byte messages equals hashlib's (a rate of
    wrong code would mean nothing)."""
    rng = np.random.default_rng(9)
    msgs = rng.integers(0, 256, (STREAMS, 32), dtype=np.uint8)
    m3 = np.zeros(16 * STREAMS, np.uint32)
    for s in range(STREAMS):
        m3[16 * s : 16 * s + 8] = msgs[s].view(">u4")
        m3[16 * s + 8], m3[16 * s + 15] = 0x80000000, 256
    out = np.zeros(8 * STREAMS, np.uint32)
    shani_sha256_32(m3, out)
    for s in range(STREAMS):
        got = out[8 * s : 8 * s + 8].astype(">u4").tobytes()
        if got != hashlib.sha256(msgs[s].tobytes()).digest():
            raise SystemExit(f"bench_kernel: the SHA-NI intrinsics hash stream {s} wrongly")


# -- the measurements ----------------------------------------------------------------------


def _timed(fn: Callable[[], int], budget: float) -> float:
    """Candidates per second of repeated ``fn()`` (each returns its candidates) over
    about ``budget`` seconds."""
    done, t0 = 0, time.perf_counter()
    while True:
        done += fn()
        dt = time.perf_counter() - t0
        if dt >= budget:
            return done / dt


def _parts() -> dict[str, tuple[Callable[[], int], int]]:
    """Each part as a callable that evaluates a fixed amount and returns its candidates,
    with the compressions it performs per candidate."""
    cfg = replace(BenchConfig(), population=POPULATION, records_per_call=RECORDS)
    wl = make_workload(cfg)
    rng = np.random.default_rng(2)
    seeds = [rng.integers(0, 256, (POPULATION, 32), dtype=np.uint8) for _ in range(RECORDS)]
    moved = wl.memory.frames.copy()
    moved[:, 4] ^= np.uint32(0x80)  # every frame out of the records' zone-2 groups
    far = JitterMemory(moved)
    ev = NumbaEvaluator(1)

    def run_k0(memory: JitterMemory, records: np.ndarray) -> Callable[[], int]:
        reqs = [make_request(r, s, memory, 21, 0) for r, s in zip(records, seeds, strict=True)]

        def call() -> int:
            ev.evaluate_many(reqs)
            return RECORDS * POPULATION

        return call

    hdr = np.random.default_rng(3).integers(0, 1 << 32, (4096, 20), dtype=np.uint32)
    chunks = RECORDS * POPULATION // LANES

    def lanes() -> int:
        lanes_hashing(chunks, 21, hdr)
        return chunks * LANES

    miss, hit = wl.batches["miss"], wl.batches["zone1_hit"]
    parts = {
        "lanes, hashing alone": (lanes, COMPRESSIONS),
        "run_k0, the bench's records": (run_k0(wl.memory, miss), COMPRESSIONS),
        "run_k0, no zone-2 frame": (run_k0(far, miss), COMPRESSIONS),
        "run_k0, training records": (run_k0(wl.memory, hit), TRAINING_COMPRESSIONS),
        "run_k0, training, no zone-2": (run_k0(far, hit), TRAINING_COMPRESSIONS),
    }
    if ll.get_host_cpu_features().get("sha"):
        check_shani()
        m1 = rng.integers(0, 1 << 32, 16 * STREAMS, dtype=np.uint32)
        kw2 = rng.integers(0, 1 << 32, 64 * STREAMS, dtype=np.uint32)
        st, m3 = np.zeros(8 * STREAMS, np.uint32), np.zeros(16 * STREAMS, np.uint32)
        out = np.zeros(8 * STREAMS, np.uint32)
        groups = RECORDS * POPULATION // STREAMS

        def shani() -> int:
            shani_hashing(groups, 21, m1, kw2, st, m3, out)
            return groups * STREAMS

        parts[f"SHA-NI, {STREAMS} interleaved"] = (shani, COMPRESSIONS)
    for fn, _ in parts.values():  # compile or load everything before the clock starts
        fn()
    return parts


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seconds", type=float, default=2.0, help="per part and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    numba.set_num_threads(1)
    parts = _parts()
    rates: dict[str, list[float]] = {name: [] for name in parts}
    for _ in range(args.rounds):
        for name, (fn, _) in parts.items():
            rates[name].append(_timed(fn, args.seconds))
    med = {name: statistics.median(r) for name, r in rates.items()}
    base = med["lanes, hashing alone"] * COMPRESSIONS
    rows = [
        {
            "part": name,
            "candidates_per_s": med[name],
            "compressions_per_candidate": per,
            "compressions_per_s": med[name] * per,
            "vs_lanes_hashing": med[name] * per / base,
            "rounds": rates[name],
        }
        for name, (_, per) in parts.items()
    ]
    info = {"cpu": ll.get_host_cpu_name(), "vector_bits": numba_setup.configure()["vector_bits"]}
    if args.json:
        json.dump({"cpu": info, "threads": 1, "parts": rows}, sys.stdout, indent=2)
        print()
        return 0
    print(
        f"bench_kernel: one thread, {info['cpu']}, vector bits {info['vector_bits']};"
        f" {args.rounds} rounds of {args.seconds:g} s a part, round-robin, medians"
    )
    print(f"{'part':32} {'cand/s':>10} {'compr/cand':>10} {'compr/s':>10} {'vs lanes alone':>15}")
    for r in rows:
        print(
            f"{r['part']:32} {r['candidates_per_s'] / 1e6:9.3f}M"
            f" {r['compressions_per_candidate']:10}"
            f" {r['compressions_per_s'] / 1e6:9.1f}M {r['vs_lanes_hashing']:14.2f}x"
        )
    print(
        "compressions: 66 per candidate nominally (21 passes and the final one, 3 each); the"
        " training records hash 42 (the zone-1 shortcut); set the first line beside"
        " hashcat's per core (hasherd bench --against hashcat, divided by its cores)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
