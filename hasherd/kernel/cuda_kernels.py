"""numba-cuda device code of the CUDA evaluator: the whole kernel loop on the GPU.

Two kernels (docs/gpu.md):

* ``k0_kernel`` (k = 0): one thread per candidate runs all P + 1 passes. The header is
  20 big-endian words in registers; only words 9..12 (slots 8..11) change between passes,
  so block 1's first 9 rounds are computed once per candidate (``sha_prefix9``) and every
  pass runs ``sha_dsha_mid9``. A candidate whose record hits zone 1 and asks for no trace
  starts at pass 8 (the zone-1 jitters cancel, kernel.md "The jitter memory"), as the
  numba evaluator does.
* ``scan_kernel`` (k > 0): one block per candidate, its threads over nonce lanes. Thread 0
  keeps the header in shared memory and computes block 1's midstate once per pass; each
  round every thread hashes one nonce ``n0 + base + tid`` (block 2 and the second hash);
  ``syncthreads_or`` tells whether any met ``zero_bits`` and a shared ``atomic.min`` picks
  the smallest thread index, i.e. the first nonce in scan order. After a whole nonce space
  without one the ntime word is rolled and the scan starts over from n0.

Several records' candidates go in one launch: each candidate carries its record's index,
and each record its 12 slots and a trace flag ("buffer layouts" below). The jitter memory
is the arrays of ``hasherd.kernel.memory.JitterMemory`` as they are (zone 1
``z1_keys``/``z1_vals``, zone 2 ``z2_start``/``z2_keys``/``z2_vals``/``z2_pos``), searched
on the device.

The SHA-256 compressions are straight-line code generated at import (``generate``): one
call of the inlined ``rnd`` per round and of ``sched`` per schedule word, with round
constants, IVs, padding and every schedule word that depends on them alone folded into
literals, so no constant array is read and every value lives in a register (ptxas 12.9
for sm_90: 165 registers at k = 0, 154 in the scan, no local memory). Additions go through
``np.uint64`` and are truncated with ``np.uint32`` (numba widens uint32 arithmetic to 64
bits anyway; NVVM narrows it back to 32-bit adds and funnel shifts). Under the CUDA
simulator (``NUMBA_ENABLE_CUDASIM=1``) the same code runs as Python over numpy scalars,
where the widening keeps numpy from warning on overflow.
"""

# mypy: ignore-errors
from __future__ import annotations

import numpy as np
from numba import cuda

from hasherd.kernel import lanegen
from hasherd.kernel.lanegen import IV, PAD32, PAD80, Emitter, Value
from hasherd.kernel.memory import N_GROUPS

try:  # numba-cuda keeps its own config; numba's built-in CUDA target had it in numba.core
    from numba.cuda.core import config as _cuda_config
except ImportError:  # pragma: no cover - older layouts
    from numba.core import config as _cuda_config

SIMULATOR = bool(getattr(_cuda_config, "ENABLE_CUDASIM", 0))
# Most threads per block: a thread may use up to 255 registers, and 256 x 255 still fits a
# multiprocessor's 64k, so a block of 256 always launches (ptxas for sm_90: about 165
# registers at k = 0, 154 in the scan; capping them by launch bounds spilled and ran
# slower on an H100).
MAX_BLOCK = 256
SCAN_NONE = np.int32(1 << 30)  # "no thread met zero_bits yet" for the shared atomic min
_M32 = np.int64(0xFFFFFFFF)


def _device(fn):
    """A device function, inlined into its caller (the simulator has no such option)."""
    if SIMULATOR:
        return cuda.jit(device=True)(fn)
    return cuda.jit(device=True, forceinline=True)(fn)


# -- generated SHA-256 ------------------------------------------------------------------------
#
# numba lowers a function in time quadratic in the size of its largest basic block, so the
# generated functions stay small: one call of ``rnd`` per round and of ``sched`` per
# schedule word; the arithmetic lives in those two (inlined by NVVM, forceinline).


@_device
def rnd(a, b, c, d, e, f, g, h, w, k):
    """One SHA-256 round: the new a and e (the other six are renamings)."""
    s1 = np.uint32(
        ((e >> np.uint32(6)) | (e << np.uint32(26)))
        ^ ((e >> np.uint32(11)) | (e << np.uint32(21)))
        ^ ((e >> np.uint32(25)) | (e << np.uint32(7)))
    )
    ch = np.uint32(g ^ (e & (f ^ g)))
    t1 = np.uint32(np.uint64(h) + s1 + ch + k + w)
    s0 = np.uint32(
        ((a >> np.uint32(2)) | (a << np.uint32(30)))
        ^ ((a >> np.uint32(13)) | (a << np.uint32(19)))
        ^ ((a >> np.uint32(22)) | (a << np.uint32(10)))
    )
    mj = np.uint32((a & b) | (c & (a | b)))
    return np.uint32(np.uint64(t1) + s0 + mj), np.uint32(np.uint64(d) + t1)


@_device
def sched(x2, x7, x15, x16):
    """W[t] from W[t-2], W[t-7], W[t-15], W[t-16]."""
    s0 = np.uint32(
        ((x15 >> np.uint32(7)) | (x15 << np.uint32(25)))
        ^ ((x15 >> np.uint32(18)) | (x15 << np.uint32(14)))
        ^ (x15 >> np.uint32(3))
    )
    s1 = np.uint32(
        ((x2 >> np.uint32(17)) | (x2 << np.uint32(15)))
        ^ ((x2 >> np.uint32(19)) | (x2 << np.uint32(13)))
        ^ (x2 >> np.uint32(10))
    )
    return np.uint32(np.uint64(s1) + x7 + s0 + x16)


@_device
def add2(x, y):
    return np.uint32(np.uint64(x) + y)


_FOLD = Emitter("")  # folds values known at generation time (all-literal inputs only)


class _Gen:
    """Emits one generated function's body: calls of rnd/sched/add2 on SSA names, with
    what is known at generation time (IVs, padding, constant schedule words) folded."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.count = 0

    def _name(self) -> str:
        self.count += 1
        return f"v{self.count}"

    @staticmethod
    def lit(v: Value) -> str:
        return f"np.uint32({v:#010x})" if isinstance(v, int) else v

    def call(self, fn: str, *args: Value, outs: int = 1) -> list[str]:
        names = [self._name() for _ in range(outs)]
        self.lines.append(f"    {', '.join(names)} = {fn}({', '.join(map(self.lit, args))})")
        return names

    def add(self, x: Value, y: Value) -> Value:
        if isinstance(x, int) and isinstance(y, int):
            return (x + y) & lanegen.MASK
        return self.call("add2", x, y)[0]

    def compress(self, st: list[Value], w: list[Value], first: int = 0) -> list[Value]:
        """Rounds ``first``..63 on state ``st``; ``w`` holds (at least) words 0..15."""
        w = list(w)
        for t in range(first, 64):
            if t >= len(w):
                args = (w[t - 2], w[t - 7], w[t - 15], w[t - 16])
                if all(isinstance(x, int) for x in args):
                    w.append(_FOLD.schedule(list(w), t))
                else:
                    w.append(self.call("sched", *args)[0])
            a, b, c, d, e, f, g, h = st
            new_a, new_e = self.call("rnd", a, b, c, d, e, f, g, h, w[t], lanegen.K[t], outs=2)
            st = [new_a, a, b, c, new_e, e, f, g]
        return st

    def function(self, name: str, params: list[str], out: list[Value]) -> str:
        ret = ", ".join(self.lit(v) for v in out)
        return "\n".join([f"def {name}({', '.join(params)}):", *self.lines, f"    return {ret}\n"])


def _tail(gen: _Gen, mid: list[Value], w16: list[Value]) -> list[Value]:
    """Block 2 (header words 16..19 and padding) on ``mid``, then the second SHA-256."""
    st = gen.compress(list(mid), w16 + [PAD80.get(i, 0) for i in range(4, 16)])
    d1 = [gen.add(mid[i], st[i]) for i in range(8)]
    st3 = gen.compress(list(IV), d1 + [PAD32.get(i, 0) for i in range(8, 16)])
    return [gen.add(IV[i], st3[i]) for i in range(8)]


def _words(prefix: str, lo: int, hi: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(lo, hi)]


def _gen_prefix9() -> str:
    """Block 1's state after rounds 0..8 (header words 0..8 never change in a loop)."""
    gen = _Gen()
    st = list(IV)
    for t in range(9):
        a, b, c, d, e, f, g, h = st
        new_a, new_e = gen.call("rnd", a, b, c, d, e, f, g, h, f"w{t}", lanegen.K[t], outs=2)
        st = [new_a, a, b, c, new_e, e, f, g]
    return gen.function("sha_prefix9", _words("w", 0, 9), st)


def _gen_dsha_mid9() -> str:
    """dsha256 of the header words w0..w19, block 1 resumed at round 9 from m0..m7."""
    gen = _Gen()
    st = gen.compress(list(_words("m", 0, 8)), list(_words("w", 0, 16)), 9)
    mid = [gen.add(IV[i], st[i]) for i in range(8)]
    out = _tail(gen, mid, list(_words("w", 16, 20)))
    return gen.function("sha_dsha_mid9", _words("m", 0, 8) + _words("w", 0, 20), out)


def _gen_block1() -> str:
    """Block 1's midstate (header words 0..15)."""
    gen = _Gen()
    st = gen.compress(list(IV), list(_words("w", 0, 16)))
    return gen.function("sha_block1", _words("w", 0, 16), [gen.add(IV[i], st[i]) for i in range(8)])


def _gen_tail() -> str:
    """dsha256 from block 1's midstate m0..m7 and header words w16..w19."""
    gen = _Gen()
    out = _tail(gen, list(_words("m", 0, 8)), list(_words("w", 16, 20)))
    return gen.function("sha_tail", _words("m", 0, 8) + _words("w", 16, 20), out)


def generate() -> str:
    """The source of the four SHA-256 device functions (exec'd below)."""
    return "\n".join([_gen_prefix9(), _gen_dsha_mid9(), _gen_block1(), _gen_tail()])


_ns: dict[str, object] = {"np": np, "rnd": rnd, "sched": sched, "add2": add2}
exec(compile(generate(), "<hasherd.kernel.cuda_kernels generated>", "exec"), _ns)
sha_prefix9 = _device(_ns["sha_prefix9"])
sha_dsha_mid9 = _device(_ns["sha_dsha_mid9"])
sha_block1 = _device(_ns["sha_block1"])
sha_tail = _device(_ns["sha_tail"])


# -- buffer layouts ----------------------------------------------------------------------------
#
# Few kernel arguments keep a launch cheap (numba-cuda marshals every array argument in
# Python), so each launch's inputs, the memory and the trace are one flat buffer each:
#
# * ``inp`` (uint32), for n candidates of R records: the seeds' bytes as 8 words a
#   candidate (read little-endian, so ``bswap32`` gives the header's big-endian words) at
#   0, the record of each candidate at 8n, the records' 12 slots at 9n, their flags at
#   9n + 12R;
# * ``mu`` (uint32): zone 1's ``z1_keys`` at 0 and ``z1_vals`` at a, zone 2's ``z2_keys``
#   at 2a and ``z2_vals`` at 2a + b (a = distinct slot-0 values, b = zone-2 entries);
#   ``mi`` (int64): ``z2_start`` (4097 entries) at 0, ``z2_pos`` at 4097;
# * ``tr`` (uint32), candidate i's row of width ``tw`` = 4P + 20 at i * tw: the pass keys,
#   pass nonces, jitters and found flags (P each), then the final header's 20 words;
# * ``out`` (uint32, 13n): the final digests at 0 (8 words a candidate, byte-swapped so
#   that the buffer's bytes are the digests' bytes), then one row of n each: the output
#   word, the last pass key, the golden nonce, the ntime roll, the double SHAs hashed;
#   ``work`` (int64, 2n, scans only): nonces hashed at 0, block-1 midstates at n.
# The host copies whole rows out of these, never columns (strided copies cost more than
# the kernel on a large launch).

OUT_WORDS = 13
ROW_OUTPUT, ROW_KEY, ROW_NONCE, ROW_ROLL, ROW_DSHA = 8, 9, 10, 11, 12
FLAG_TRACE = 1
Z2_STARTS = N_GROUPS + 1  # entries of JitterMemory.z2_start


# -- small helpers ----------------------------------------------------------------------------


@_device
def bswap32(x):
    return np.uint32(
        (x >> np.uint32(24))
        | ((x >> np.uint32(8)) & np.uint32(0xFF00))
        | ((x << np.uint32(8)) & np.uint32(0xFF0000))
        | (x << np.uint32(24))
    )


@_device
def apply4(x9, x10, x11, x12, j):
    """apply(H, j) on header words 9..12: XOR rotl32(j, 8w) into word 9 + w."""
    return (
        np.uint32(x9 ^ j),
        np.uint32(x10 ^ ((j << np.uint32(8)) | (j >> np.uint32(24)))),
        np.uint32(x11 ^ ((j << np.uint32(16)) | (j >> np.uint32(16)))),
        np.uint32(x12 ^ ((j << np.uint32(24)) | (j >> np.uint32(8)))),
    )


@_device
def miss(key):
    return np.uint32(key ^ np.uint32(0x9E3779B9) ^ (key >> np.uint32(16)))


@_device
def zone1(mu, z1_n, slot0):
    """(hit, slot 1 of the first frame whose slot 0 is ``slot0``): a lower bound over the
    sorted distinct slot-0 values ``mu[0:z1_n]``; their slot 1 follows at ``z1_n``."""
    s = np.int64(slot0)
    lo = np.int64(0)
    hi = np.int64(z1_n)
    while lo < hi:
        mid = (lo + hi) >> 1
        if np.int64(mu[mid]) < s:
            lo = mid + 1
        else:
            hi = mid
    if lo < z1_n and np.int64(mu[lo]) == s:
        return True, np.uint32(mu[z1_n + lo])
    return False, np.uint32(0)


@_device
def nearest(lo, hi, mu, keys, mi, key):
    """Index of the key nearest ``key`` in the sorted ``mu[keys + lo : keys + hi]``
    (non-empty); on equal distance the one with the smaller memory position
    (``mi[Z2_STARTS + index]``)."""
    k = np.int64(key)
    a = lo
    b = hi
    while a < b:
        mid = (a + b) >> 1
        if np.int64(mu[keys + mid]) < k:
            a = mid + 1
        else:
            b = mid
    if a == lo:
        return lo
    if a == hi:
        return hi - 1
    below = k - np.int64(mu[keys + a - 1])
    above = np.int64(mu[keys + a]) - k
    if below < above or (below == above and mi[Z2_STARTS + a - 1] < mi[Z2_STARTS + a]):
        return a - 1
    return a


@_device
def lookup(p, key, s3, s4, s10, z1_hit, z1_val, mu, mi, z1_n, z2_n):
    """``lookup(S, key, p)`` of kernel.md; zone 1's answer is the record's (slot 0 is fixed)."""
    if p <= 7:
        if z1_hit:
            return z1_val, True
    elif p <= 14:
        g = ((np.int64(s10) >> 12) & 0xF) << 8 | (np.int64(s4) & 0xFF)
        lo = mi[g]
        hi = mi[g + 1]
        if lo < hi:
            keys = 2 * z1_n
            return np.uint32(mu[keys + z2_n + nearest(lo, hi, mu, keys, mi, key)]), True
    else:
        diff = np.uint32(key ^ s3)
        if (diff >> np.uint32(20)) == np.uint32(0):
            return np.uint32(diff ^ np.uint32(0xFEEDFACE)), True
    return miss(key), False


@_device
def start_pass(passes, z1_hit, trace):
    """First pass to hash: with a zone-1 hit and no trace, passes 0..7 are skipped (their
    identical jitters cancel in pairs); with P <= 8 the last pass P - 1 is kept."""
    if z1_hit and not trace:
        return min(np.int64(8), passes - 1)
    return np.int64(0)


@_device
def header_word(inp, n, i, r, w):
    """Header word w (kernel.md, "The header") of candidate i, of record r."""
    if w == 0:
        return bswap32(inp[8 * i])
    if w <= 12:
        return np.uint32(inp[9 * n + 12 * r + w - 1])
    return bswap32(inp[8 * i + w - 12])


@_device
def record_of(inp, n, nrec, i):
    """(record, trace flag) of candidate i."""
    r = np.int64(inp[8 * n + i])
    return r, (inp[9 * n + 12 * nrec + r] & np.uint32(FLAG_TRACE)) != np.uint32(0)


# -- k = 0: one thread per candidate ---------------------------------------------------------


@cuda.jit
def k0_kernel(n, nrec, inp, passes, mu, mi, z1_n, z2_n, out, tr, tw):
    i = cuda.grid(1)
    if i >= n:
        return
    r, trace = record_of(inp, n, nrec, i)
    w0, w1, w2, w3 = (
        header_word(inp, n, i, r, 0),
        header_word(inp, n, i, r, 1),
        header_word(inp, n, i, r, 2),
        header_word(inp, n, i, r, 3),
    )
    w4, w5, w6, w7 = (
        header_word(inp, n, i, r, 4),
        header_word(inp, n, i, r, 5),
        header_word(inp, n, i, r, 6),
        header_word(inp, n, i, r, 7),
    )
    w8, w9, w10, w11 = (
        header_word(inp, n, i, r, 8),
        header_word(inp, n, i, r, 9),
        header_word(inp, n, i, r, 10),
        header_word(inp, n, i, r, 11),
    )
    w12, w13, w14, w15 = (
        header_word(inp, n, i, r, 12),
        header_word(inp, n, i, r, 13),
        header_word(inp, n, i, r, 14),
        header_word(inp, n, i, r, 15),
    )
    w16, w17, w18, w19 = (
        header_word(inp, n, i, r, 16),
        header_word(inp, n, i, r, 17),
        header_word(inp, n, i, r, 18),
        header_word(inp, n, i, r, 19),
    )
    z1_hit, z1_val = zone1(mu, z1_n, w1)
    first = start_pass(passes, z1_hit, trace)
    if first % 2 == 1:
        w9, w10, w11, w12 = apply4(w9, w10, w11, w12, z1_val)
    m0, m1, m2, m3, m4, m5, m6, m7 = sha_prefix9(w0, w1, w2, w3, w4, w5, w6, w7, w8)
    zero = np.uint32(0)
    d0, d1, d2, d3, d4, d5, d6, d7 = zero, zero, zero, zero, zero, zero, zero, zero
    row = i * tw
    for p in range(first, passes + 1):
        d0, d1, d2, d3, d4, d5, d6, d7 = sha_dsha_mid9(
            m0,
            m1,
            m2,
            m3,
            m4,
            m5,
            m6,
            m7,
            w0,
            w1,
            w2,
            w3,
            w4,
            w5,
            w6,
            w7,
            w8,
            w9,
            w10,
            w11,
            w12,
            w13,
            w14,
            w15,
            w16,
            w17,
            w18,
            w19,
        )
        if p < passes:
            j, found = lookup(p, d0, w4, w5, w11, z1_hit, z1_val, mu, mi, z1_n, z2_n)
            if trace:
                tr[row + p] = d0
                tr[row + passes + p] = bswap32(w19)
                tr[row + 2 * passes + p] = j
                tr[row + 3 * passes + p] = 1 if found else 0
            if p == passes - 1:
                out[ROW_KEY * n + i] = d0
            w9, w10, w11, w12 = apply4(w9, w10, w11, w12, j)
    o = 8 * i
    out[o], out[o + 1], out[o + 2], out[o + 3] = bswap32(d0), bswap32(d1), bswap32(d2), bswap32(d3)
    out[o + 4], out[o + 5], out[o + 6], out[o + 7] = (
        bswap32(d4),
        bswap32(d5),
        bswap32(d6),
        bswap32(d7),
    )
    out[ROW_OUTPUT * n + i] = d0
    out[ROW_NONCE * n + i] = bswap32(w19)
    out[ROW_ROLL * n + i] = 0
    out[ROW_DSHA * n + i] = np.uint32(passes + 1 - first)
    if trace:
        f = row + 4 * passes
        tr[f], tr[f + 1], tr[f + 2], tr[f + 3], tr[f + 4] = w0, w1, w2, w3, w4
        tr[f + 5], tr[f + 6], tr[f + 7], tr[f + 8], tr[f + 9] = w5, w6, w7, w8, w9
        tr[f + 10], tr[f + 11], tr[f + 12], tr[f + 13], tr[f + 14] = w10, w11, w12, w13, w14
        tr[f + 15], tr[f + 16], tr[f + 17], tr[f + 18], tr[f + 19] = w15, w16, w17, w18, w19


# -- k > 0: one block per candidate, threads over nonces -------------------------------------


@cuda.jit
def scan_kernel(
    n, nrec, inp, passes, zero_bits, nonce_space, mu, mi, z1_n, z2_n, out, work, tr, tw
):
    i = cuda.blockIdx.x
    tid = cuda.threadIdx.x
    nt = cuda.blockDim.x
    sh = cuda.shared.array(20, dtype=np.uint32)  # the loop's header words
    mid = cuda.shared.array(8, dtype=np.uint32)  # block 1's midstate of the current pass
    dig = cuda.shared.array(8, dtype=np.uint32)  # the pass's golden digest
    best = cuda.shared.array(1, dtype=np.int32)  # smallest thread index that met zero_bits
    info = cuda.shared.array(2, dtype=np.int64)  # first pass, trace flag
    if tid == 0:
        r0, trace0 = record_of(inp, n, nrec, i)
        for w in range(20):
            sh[w] = header_word(inp, n, i, r0, w)
        hit0, val0 = zone1(mu, z1_n, sh[1])
        first0 = start_pass(passes, hit0, trace0)
        if first0 % 2 == 1:
            sh[9], sh[10], sh[11], sh[12] = apply4(sh[9], sh[10], sh[11], sh[12], val0)
        info[0] = first0
        info[1] = 1 if trace0 else 0
        best[0] = SCAN_NONE
        work[i] = 0
    cuda.syncthreads()
    first = info[0]
    trace = info[1] != 0
    z1_hit, z1_val = zone1(mu, z1_n, sh[1])
    shift = np.uint32(32 - zero_bits)
    n0 = np.int64(bswap32(sh[19]))
    ntime0 = np.int64(bswap32(sh[17]))
    row = i * tw
    hashed = np.int64(0)
    for p in range(first, passes + 1):
        if tid == 0:
            mid[0], mid[1], mid[2], mid[3], mid[4], mid[5], mid[6], mid[7] = sha_block1(
                sh[0],
                sh[1],
                sh[2],
                sh[3],
                sh[4],
                sh[5],
                sh[6],
                sh[7],
                sh[8],
                sh[9],
                sh[10],
                sh[11],
                sh[12],
                sh[13],
                sh[14],
                sh[15],
            )
        cuda.syncthreads()
        m0, m1, m2, m3 = mid[0], mid[1], mid[2], mid[3]
        m4, m5, m6, m7 = mid[4], mid[5], mid[6], mid[7]
        w16 = sh[16]
        w18 = sh[18]
        roll = np.int64(0)
        at = np.int64(-1)
        while at < 0:
            w17 = bswap32(np.uint32((ntime0 + roll) & _M32))
            base = np.int64(0)
            while base < nonce_space:
                t = base + tid
                meets = np.int32(0)  # an int: syncthreads_or takes no bool
                zero = np.uint32(0)
                d0, d1, d2, d3, d4, d5, d6, d7 = zero, zero, zero, zero, zero, zero, zero, zero
                if t < nonce_space:
                    w19 = bswap32(np.uint32((n0 + t) & _M32))
                    d0, d1, d2, d3, d4, d5, d6, d7 = sha_tail(
                        m0, m1, m2, m3, m4, m5, m6, m7, w16, w17, w18, w19
                    )
                    hashed += 1
                    if (bswap32(d7) >> shift) == np.uint32(0):
                        meets = np.int32(1)
                if cuda.syncthreads_or(meets):
                    if meets != 0:
                        cuda.atomic.min(best, 0, np.int32(tid))
                    cuda.syncthreads()
                    won = best[0]
                    if tid == won:
                        dig[0], dig[1], dig[2], dig[3] = d0, d1, d2, d3
                        dig[4], dig[5], dig[6], dig[7] = d4, d5, d6, d7
                    at = base + won
                    break
                base += nt
            if at < 0:
                roll += 1
        cuda.syncthreads()  # dig is written; every thread has read best
        if tid == 0:
            nonce = np.uint32((n0 + at) & _M32)
            key = dig[0]
            if p < passes:
                j, found = lookup(p, key, sh[4], sh[5], sh[11], z1_hit, z1_val, mu, mi, z1_n, z2_n)
                if trace:
                    tr[row + p] = key
                    tr[row + passes + p] = nonce
                    tr[row + 2 * passes + p] = j
                    tr[row + 3 * passes + p] = 1 if found else 0
                if p == passes - 1:
                    out[ROW_KEY * n + i] = key
                sh[9], sh[10], sh[11], sh[12] = apply4(sh[9], sh[10], sh[11], sh[12], j)
            else:
                for w in range(8):
                    out[8 * i + w] = bswap32(dig[w])
                out[ROW_OUTPUT * n + i] = key
                out[ROW_NONCE * n + i] = nonce
                out[ROW_ROLL * n + i] = np.uint32(roll & _M32)
                out[ROW_DSHA * n + i] = 0
                if trace:
                    for w in range(20):
                        tr[row + 4 * passes + w] = sh[w]
            best[0] = SCAN_NONE
        cuda.syncthreads()
    cuda.atomic.add(work, i, hashed)
    if tid == 0:
        work[n + i] = passes + 1 - first  # block-1 midstates: one a pass (ntime is in block 2)
