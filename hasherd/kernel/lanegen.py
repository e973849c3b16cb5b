"""Generator of ``hasherd/kernel/_lanes.py``, the straight-line SHA-256 lane kernels.

The numba evaluator gets its speed from one pattern (docs/kernel.md, "The numba
evaluator"): a single ``for j in range(L)`` loop whose body is a whole double SHA-256
written out as scalar code over ``np.uint32`` values, reading and writing a flat buffer
with literal row offsets (``buf[k*L + j]``). LLVM vectorises that loop across lanes
(16 candidates per 512-bit register). Writing 3 x 64 rounds by hand is error-prone, so
this module emits them, folding every value known at generation time (IVs, round
constants, padding words and what depends only on them).

Run ``python -m hasherd.kernel.lanegen`` (or ``make lanes``) to rewrite the module; a test
checks that the committed file equals the generator's output. The output is a real module
(not ``exec``) so numba's on-disk cache can keep the compiled kernels.
"""

from __future__ import annotations

import sys
from pathlib import Path

LANES = 16
MASK = 0xFFFFFFFF

K = (
    0x428A2F98,
    0x71374491,
    0xB5C0FBCF,
    0xE9B5DBA5,
    0x3956C25B,
    0x59F111F1,
    0x923F82A4,
    0xAB1C5ED5,
    0xD807AA98,
    0x12835B01,
    0x243185BE,
    0x550C7DC3,
    0x72BE5D74,
    0x80DEB1FE,
    0x9BDC06A7,
    0xC19BF174,
    0xE49B69C1,
    0xEFBE4786,
    0x0FC19DC6,
    0x240CA1CC,
    0x2DE92C6F,
    0x4A7484AA,
    0x5CB0A9DC,
    0x76F988DA,
    0x983E5152,
    0xA831C66D,
    0xB00327C8,
    0xBF597FC7,
    0xC6E00BF3,
    0xD5A79147,
    0x06CA6351,
    0x14292967,
    0x27B70A85,
    0x2E1B2138,
    0x4D2C6DFC,
    0x53380D13,
    0x650A7354,
    0x766A0ABB,
    0x81C2C92E,
    0x92722C85,
    0xA2BFE8A1,
    0xA81A664B,
    0xC24B8B70,
    0xC76C51A3,
    0xD192E819,
    0xD6990624,
    0xF40E3585,
    0x106AA070,
    0x19A4C116,
    0x1E376C08,
    0x2748774C,
    0x34B0BCB5,
    0x391C0CB3,
    0x4ED8AA4A,
    0x5B9CCA4F,
    0x682E6FF3,
    0x748F82EE,
    0x78A5636F,
    0x84C87814,
    0x8CC70208,
    0x90BEFFFA,
    0xA4506CEB,
    0xBEF9A3F7,
    0xC67178F2,
)
IV = (
    0x6A09E667,
    0xBB67AE85,
    0x3C6EF372,
    0xA54FF53A,
    0x510E527F,
    0x9B05688C,
    0x1F83D9AB,
    0x5BE0CD19,
)

# Row layout of a chunk's flat buffer (rows of LANES uint32 each).
ROW_HDR = 0  # 20 rows: the header as big-endian words
ROW_MID9 = 20  # 8 rows: block-1 state after rounds 0..8 (pass-invariant: words 0..8 never change)
ROW_KW2 = 28  # 64 rows: K[t] + W[t] of block 2 (pass-invariant: words 16..19 never change)
ROW_OUT = 92  # 8 rows: the pass's digest words
ROW_INV1 = 100  # block 1's pass-invariant schedule parts and K+W (see ``invariant_terms``)

# Block-1 words that never change across passes: slots 8..11 (words 9..12) take the
# jitter, everything else is the record's slots or the seed.
VARIANT1 = frozenset(range(9, 13))

# Block 2 and block 3 padding (80-byte and 32-byte messages).
PAD80 = {4: 0x80000000, 15: 640}
PAD32 = {8: 0x80000000, 15: 256}

Value = int | str


class Emitter:
    """Emits SSA lines of ``np.uint32`` arithmetic, folding constants as it goes."""

    def __init__(self, indent: str) -> None:
        self.indent = indent
        self.lines: list[str] = []
        self.count = 0
        self.rounds = 0  # compression rounds emitted: the work the kernel really does

    def line(self, text: str) -> None:
        self.lines.append(self.indent + text)

    def let(self, expr: str) -> str:
        name = f"v{self.count}"
        self.count += 1
        self.line(f"{name} = np.uint32({expr})")
        return name

    @staticmethod
    def lit(v: Value) -> str:
        return f"np.uint32({v:#010x})" if isinstance(v, int) else v

    def add(self, *xs: Value) -> Value:
        const = sum(x for x in xs if isinstance(x, int)) & MASK
        names = [x for x in xs if isinstance(x, str)]
        if not names:
            return const
        if const == 0 and len(names) == 1:
            return names[0]
        parts = names + ([self.lit(const)] if const else [])
        return self.let(" + ".join(parts))

    def rotr(self, x: Value, n: int) -> Value:
        if isinstance(x, int):
            return ((x >> n) | (x << (32 - n))) & MASK
        return self.let(f"({x} >> {self.lit(n)}) | ({x} << {self.lit(32 - n)})")

    def shr(self, x: Value, n: int) -> Value:
        if isinstance(x, int):
            return x >> n
        return self.let(f"{x} >> {self.lit(n)}")

    def xor(self, *xs: Value) -> Value:
        const = 0
        for x in xs:
            if isinstance(x, int):
                const ^= x
        names = [x for x in xs if isinstance(x, str)]
        if not names:
            return const
        if const == 0 and len(names) == 1:
            return names[0]
        parts = names + ([self.lit(const)] if const else [])
        return self.let(" ^ ".join(parts))

    def ch(self, e: Value, f: Value, g: Value) -> Value:
        if all(isinstance(v, int) for v in (e, f, g)):
            return (g ^ (e & (f ^ g))) & MASK  # type: ignore[operator]
        return self.let(f"{self.lit(g)} ^ ({self.lit(e)} & ({self.lit(f)} ^ {self.lit(g)}))")

    def maj(self, a: Value, b: Value, c: Value) -> Value:
        if all(isinstance(v, int) for v in (a, b, c)):
            return ((a & b) | (c & (a | b))) & MASK  # type: ignore[operator]
        la, lb, lc = self.lit(a), self.lit(b), self.lit(c)
        return self.let(f"({la} & {lb}) | ({lc} & ({la} | {lb}))")

    def big_sigma0(self, x: Value) -> Value:
        return self.xor(self.rotr(x, 2), self.rotr(x, 13), self.rotr(x, 22))

    def big_sigma1(self, x: Value) -> Value:
        return self.xor(self.rotr(x, 6), self.rotr(x, 11), self.rotr(x, 25))

    def small_sigma0(self, x: Value) -> Value:
        return self.xor(self.rotr(x, 7), self.rotr(x, 18), self.shr(x, 3))

    def small_sigma1(self, x: Value) -> Value:
        return self.xor(self.rotr(x, 17), self.rotr(x, 19), self.shr(x, 10))

    def schedule(self, w: list[Value], t: int) -> Value:
        """W[t] for t >= 16, appended to ``w``."""
        v = self.add(self.small_sigma1(w[t - 2]), w[t - 7], self.small_sigma0(w[t - 15]), w[t - 16])
        w.append(v)
        return v

    def round(self, st: list[Value], *kw: Value) -> list[Value]:
        """One compression round; the ``kw`` terms add up to K[t] + W[t]."""
        a, b, c, d, e, f, g, h = st
        self.rounds += 1
        t1 = self.add(h, self.big_sigma1(e), self.ch(e, f, g), *kw)
        t2 = self.add(self.big_sigma0(a), self.maj(a, b, c))
        return [self.add(t1, t2), a, b, c, self.add(d, t1), e, f, g]

    def compress(
        self, st: list[Value], w: list[Value], first: int = 0, last: int = 64
    ) -> list[Value]:
        """Rounds ``first..last-1``; the schedule is extended just before each round."""
        for t in range(first, last):
            if t >= len(w):
                self.schedule(w, t)
            st = self.round(st, K[t], w[t])
        return st


def _row(r: int) -> str:
    return f"buf[{r * LANES} + j]"


def _lane_function(name: str, args: str, doc: str, body: Emitter, pre: str = "") -> str:
    head = [
        "@njit(cache=True, nogil=True, fastmath=False, boundscheck=False)",
        f"def {name}({args}):  # pragma: no cover - compiled",
        f'    """{doc}"""',
    ]
    if pre:
        head.append(pre)
    head.append(f"    for j in range({LANES}):")
    return "\n".join(head + body.lines) + "\n"


def _schedule_terms(t: int) -> list[tuple[str, int]]:
    """The four summands of W[t] (t >= 16) as (function, source word index)."""
    return [("s1", t - 2), ("w", t - 7), ("s0", t - 15), ("w", t - 16)]


def _invariant(i: int) -> bool:
    return i < 16 and i not in VARIANT1


def invariant_terms() -> dict[int, int]:
    """Block-1 rounds whose pass-invariant work prep computes once per candidate, each
    with its buffer row (from ``ROW_INV1``).

    For 16 <= t < 64 that is the sum of W[t]'s summands that depend only on invariant
    words, where there are at least two or one is a sigma (a lone word is a plain load
    either way); for 13 <= t < 16, where W[t] itself is invariant, it is K[t] + W[t]."""
    ts = [t for t in range(13, 16)]
    for t in range(16, 64):
        inv = [(f, i) for f, i in _schedule_terms(t) if _invariant(i)]
        if len(inv) >= 2 or any(f != "w" for f, _ in inv):
            ts.append(t)
    return {t: ROW_INV1 + n for n, t in enumerate(ts)}


INV1 = invariant_terms()
ROWS = ROW_INV1 + len(INV1)


def _term(em: Emitter, w: list[Value], f: str, i: int) -> Value:
    if f == "s0":
        return em.small_sigma0(w[i])
    if f == "s1":
        return em.small_sigma1(w[i])
    return w[i]


def gen_prep() -> tuple[str, int]:
    """Per candidate, once per call: block-1 state after round 8, block 1's invariant
    schedule parts, and block 2's K+W."""
    em = Emitter(" " * 8)
    w: list[Value] = [em.let(_row(ROW_HDR + i)) if _invariant(i) else "" for i in range(16)]
    st = em.compress(list(IV), w, 0, 9)
    for i, v in enumerate(st):
        em.line(f"{_row(ROW_MID9 + i)} = {em.lit(v)}")
    for t, row in INV1.items():
        if t < 16:
            part = em.add(K[t], w[t])
        else:
            part = em.add(*(_term(em, w, f, i) for f, i in _schedule_terms(t) if _invariant(i)))
        em.line(f"{_row(row)} = {em.lit(part)}")
    w2: list[Value] = [em.let(_row(ROW_HDR + 16 + i)) for i in range(4)]
    w2 += [PAD80.get(i, 0) for i in range(4, 16)]
    for t in range(64):
        if t >= 16:
            em.schedule(w2, t)
        em.line(f"{_row(ROW_KW2 + t)} = {em.lit(em.add(K[t], w2[t]))}")
    return _lane_function("prep", "buf", gen_prep.__doc__ or "", em), em.rounds


def _block1(em: Emitter) -> list[Value]:
    """Block 1, rounds 9..63, from the state after round 8, with the invariant parts of
    its schedule and K+W read from the rows prep wrote."""
    w: list[Value] = [em.let(_row(ROW_HDR + i)) if i in VARIANT1 else "" for i in range(16)]
    st: list[Value] = [em.let(_row(ROW_MID9 + i)) for i in range(8)]
    for t in range(9, 64):
        if t >= 16:
            terms = [_term(em, w, f, i) for f, i in _schedule_terms(t) if not _invariant(i)]
            if t in INV1:
                terms.append(em.let(_row(INV1[t])))
            else:
                terms += [em.let(_row(ROW_HDR + i)) for f, i in _schedule_terms(t) if _invariant(i)]
            w.append(em.add(*terms))
        kw: tuple[Value, ...] = (em.let(_row(INV1[t])),) if t < 16 and t in INV1 else (K[t], w[t])
        st = em.round(st, *kw)
    return st


def gen_pass() -> tuple[str, int]:
    """One k = 0 pass for every lane: dsha256 of the header, digest words to ROW_OUT."""
    em = Emitter(" " * 8)
    st = _block1(em)
    mid = [em.add(IV[i], st[i]) for i in range(8)]
    st2 = list(mid)
    for t in range(64):
        st2 = em.round(st2, em.let(_row(ROW_KW2 + t)))
    d1 = [em.add(mid[i], st2[i]) for i in range(8)]
    w3: list[Value] = d1 + [PAD32.get(i, 0) for i in range(8, 16)]
    st3 = em.compress(list(IV), w3)
    for i in range(8):
        em.line(f"{_row(ROW_OUT + i)} = {em.lit(em.add(IV[i], st3[i]))}")
    return _lane_function("pass_k0", "buf", gen_pass.__doc__ or "", em), em.rounds


def gen_scan() -> str:
    """Nonce lanes at k > 0: H7 of dsha256 for nonces nbase .. nbase+L-1 (mod 2^32).

    ``mid`` is the block-1 midstate, ``w0..w2`` block 2's words 0..2 (header words 16..18);
    lane j's nonce is written little-endian, so block 2's word 3 is its byte swap. Only
    H7 is needed to test ``meets`` (it is e after round 60 plus IV[7]), so block 3 stops
    there. Everything that does not depend on j is hoisted out of the loop by LLVM.
    """
    em = Emitter(" " * 8)
    em.line("n = np.uint32(nbase + np.uint32(j))")
    sw = em.let(
        "(n >> np.uint32(24)) | ((n >> np.uint32(8)) & np.uint32(0xFF00))"
        " | ((n << np.uint32(8)) & np.uint32(0xFF0000)) | (n << np.uint32(24))"
    )
    mid: list[Value] = [f"m{i}" for i in range(8)]
    w: list[Value] = ["w0", "w1", "w2", sw] + [PAD80.get(i, 0) for i in range(4, 16)]
    st = em.compress(list(mid), w)
    d1 = [em.add(mid[i], st[i]) for i in range(8)]
    w3: list[Value] = d1 + [PAD32.get(i, 0) for i in range(8, 16)]
    st3 = em.compress(list(IV), w3, 0, 61)
    em.line(f"out[j] = {em.lit(em.add(IV[7], st3[4]))}")
    pre = "\n".join(
        [f"    m{i} = np.uint32(mid[{i}])" for i in range(8)]
        + [f"    w{i} = np.uint32(w[{i}])" for i in range(3)]
    )
    doc = (gen_scan.__doc__ or "").strip().splitlines()[0]
    return _lane_function("scan_h7", "mid, w, nbase, out", doc, em, pre)


HEADER = '''"""Straight-line SHA-256 lane kernels. GENERATED by hasherd.kernel.lanegen: do not edit.

Regenerate with ``python -m hasherd.kernel.lanegen``. Lanes: {lanes}. Buffer rows:
header words at {hdr}, block-1 state after round 8 at {mid9}, block-2 K+W at {kw2},
digest at {out}, block 1's invariant schedule parts at {inv1}; {rows} rows in all.
Rounds run: {prep_rounds} once per candidate (prep), {pass_rounds} per pass (of 192).
"""
# ruff: noqa
# mypy: ignore-errors
# fmt: off

import numpy as np
from numba import njit

LANES = {lanes}
ROWS = {rows}
ROW_HDR = {hdr}
ROW_MID9 = {mid9}
ROW_KW2 = {kw2}
ROW_OUT = {out}
ROW_INV1 = {inv1}
PREP_ROUNDS = {prep_rounds}
PASS_ROUNDS = {pass_rounds}

'''


def generate() -> str:
    prep, prep_rounds = gen_prep()
    pass_k0, pass_rounds = gen_pass()
    head = HEADER.format(
        lanes=LANES,
        hdr=ROW_HDR,
        mid9=ROW_MID9,
        kw2=ROW_KW2,
        out=ROW_OUT,
        inv1=ROW_INV1,
        rows=ROWS,
        prep_rounds=prep_rounds,
        pass_rounds=pass_rounds,
    )
    return head + "\n\n".join([prep, pass_k0, gen_scan()])


TARGET = Path(__file__).with_name("_lanes.py")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    text = generate()
    if args == ["--check"]:
        if TARGET.read_text() != text:
            print(f"{TARGET.name} is out of date; run python -m hasherd.kernel.lanegen")
            return 1
        return 0
    TARGET.write_text(text)
    print(f"wrote {TARGET} ({text.count(chr(10))} lines)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
