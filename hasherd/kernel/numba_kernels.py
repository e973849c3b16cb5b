"""The numba drivers of the CPU evaluator: the pass loop around the generated lane kernels.

Two layouts (docs/kernel.md in the project, "The numba evaluator"):

* k = 0: lanes are candidates. Each chunk of ``LANES`` candidates lives in one flat
  buffer; ``prep`` computes the pass-invariant work once, then each pass runs
  ``pass_k0`` (vectorised) and a short scalar step per lane for the jitter lookup and
  ``apply``. Chunks run in parallel (``prange``).
* k > 0: lanes are nonces. Each candidate runs its passes alone (candidates in parallel);
  a pass computes block 1's midstate once and sweeps nonces ``LANES`` at a time with
  ``scan_h7``, taking the first that meets k in scan order, rolling ntime after a whole
  nonce space without one.

``run_scan`` takes ``abort``, a one-byte array another thread may set: it looks at it per
pass and every ``ABORT_SWEEPS`` sweeps of a nonce scan (a candidate at a high k may take
hours), never inside the generated lane code, and returns early with meaningless
outputs, which the caller then discards (``Evaluator.abort``). ``run_k0`` needs no flag: a
candidate costs at most ``passes + 1`` hashes, so its caller cuts a long call into several
and looks at the flag between them.

The code-generation settings (``hasherd.kernel.numba_setup``) are applied on import,
before anything here compiles: a process that imported this module first would otherwise
compile, and cache, a second version for numba's default target.
"""

# mypy: ignore-errors
from __future__ import annotations

import numpy as np
from numba import njit, prange

from hasherd.kernel import lanegen, numba_setup
from hasherd.kernel._lanes import LANES, ROW_HDR, ROW_OUT, ROWS, pass_k0, prep, scan_h7

numba_setup.configure()  # before the first compile (decorating compiles nothing)

L = LANES
_K = np.array(lanegen.K, dtype=np.uint32)
_IV = np.array(lanegen.IV, dtype=np.uint32)
_U8 = np.uint32(8)
_U16 = np.uint32(16)
_U24 = np.uint32(24)

# Header word positions (kernel.md, "The header"): slot i is word 1 + i.
W_SLOT3, W_SLOT4, W_SLOT10 = 4, 5, 11
W_JITTER = 9  # words 9..12 are slots 8..11, the ones apply() changes
W_NTIME, W_NONCE = 17, 19
ABORT_SWEEPS = 256  # nonce sweeps of LANES between two looks at the abort flag
ABORTED = np.int64(-2)  # scan_first's answer once the abort flag is seen
_NEVER = np.zeros(1, dtype=np.uint8)  # the abort flag of a scan nobody aborts


@njit(cache=True, nogil=True, inline="always")
def bswap32(x):  # pragma: no cover - compiled
    return np.uint32(
        (x >> _U24)
        | ((x >> _U8) & np.uint32(0xFF00))
        | ((x << _U8) & np.uint32(0xFF0000))
        | (x << _U24)
    )


@njit(cache=True, nogil=True, inline="always")
def rotl32(x, n):  # pragma: no cover - compiled
    if n == 0:
        return np.uint32(x)
    return np.uint32((x << np.uint32(n)) | (x >> np.uint32(32 - n)))


@njit(cache=True, nogil=True)
def compress(state, w16, out):  # pragma: no cover - compiled
    """One SHA-256 compression of the 16 words ``w16`` onto ``state`` (loop form)."""
    w = np.empty(64, dtype=np.uint32)
    for t in range(16):
        w[t] = w16[t]
    for t in range(16, 64):
        x, y = w[t - 15], w[t - 2]
        s0 = (
            ((x >> np.uint32(7)) | (x << np.uint32(25)))
            ^ ((x >> np.uint32(18)) | (x << np.uint32(14)))
            ^ (x >> np.uint32(3))
        )
        s1 = (
            ((y >> np.uint32(17)) | (y << np.uint32(15)))
            ^ ((y >> np.uint32(19)) | (y << np.uint32(13)))
            ^ (y >> np.uint32(10))
        )
        w[t] = np.uint32(np.uint32(s1) + w[t - 7] + np.uint32(s0) + w[t - 16])
    a, b, c, d = state[0], state[1], state[2], state[3]
    e, f, g, h = state[4], state[5], state[6], state[7]
    for t in range(64):
        s1 = np.uint32(
            ((e >> np.uint32(6)) | (e << np.uint32(26)))
            ^ ((e >> np.uint32(11)) | (e << np.uint32(21)))
            ^ ((e >> np.uint32(25)) | (e << np.uint32(7)))
        )
        ch = np.uint32(g ^ (e & (f ^ g)))
        t1 = np.uint32(h + s1 + ch + _K[t] + w[t])
        s0 = np.uint32(
            ((a >> np.uint32(2)) | (a << np.uint32(30)))
            ^ ((a >> np.uint32(13)) | (a << np.uint32(19)))
            ^ ((a >> np.uint32(22)) | (a << np.uint32(10)))
        )
        mj = np.uint32((a & b) | (c & (a | b)))
        t2 = np.uint32(s0 + mj)
        h, g, f, e = g, f, e, np.uint32(d + t1)
        d, c, b, a = c, b, a, np.uint32(t1 + t2)
    out[0] = np.uint32(state[0] + a)
    out[1] = np.uint32(state[1] + b)
    out[2] = np.uint32(state[2] + c)
    out[3] = np.uint32(state[3] + d)
    out[4] = np.uint32(state[4] + e)
    out[5] = np.uint32(state[5] + f)
    out[6] = np.uint32(state[6] + g)
    out[7] = np.uint32(state[7] + h)


@njit(cache=True, nogil=True, inline="always")
def nearest(lo, hi, keys, pos, key):  # pragma: no cover - compiled
    """Index of the key nearest ``key`` in the sorted ``keys[lo:hi]`` (non-empty range);
    on equal distance the one with the smaller memory position."""
    k = np.int64(key)
    # Branch-free lower bound (first index with keys[i] >= key): the trip count depends
    # only on the range size, and the step is a conditional move, so random keys cost no
    # branch mispredictions.
    base, n = lo, hi - lo
    while n > 1:
        half = n >> 1
        base = base + half if np.int64(keys[base + half - 1]) < k else base
        n -= half
    a = base + 1 if np.int64(keys[base]) < k else base
    # The nearest is a - 1 or a, clamped into the range (both the same index at its
    # ends). Chosen without a branch: which side is nearer is a coin toss for random
    # keys, and a mispredicted branch per lane cost more than the comparisons.
    i0 = max(a - 1, lo)
    i1 = min(a, hi - 1)
    d0 = abs(k - np.int64(keys[i0]))
    d1 = abs(np.int64(keys[i1]) - k)
    take0 = (d0 < d1) | ((d0 == d1) & (pos[i0] < pos[i1]))
    return i0 if take0 else i1


@njit(cache=True, nogil=True, inline="always")
def miss(key):  # pragma: no cover - compiled
    return np.uint32(key ^ np.uint32(0x9E3779B9) ^ (key >> _U16))


@njit(cache=True, nogil=True)
def lookup(
    p, z1_hit, z1_val, z2_start, z2_keys, z2_vals, z2_pos, s3, s4, s10, key
):  # pragma: no cover - compiled
    """``lookup(S, key, p)`` of kernel.md for one header; zone 1 is resolved per record."""
    if p <= 7:
        if z1_hit:
            return np.uint32(z1_val), True
    elif p <= 14:
        g = ((np.int64(s10) >> 12) & 0xF) << 8 | (np.int64(s4) & 0xFF)
        lo, hi = z2_start[g], z2_start[g + 1]
        if lo < hi:
            return z2_vals[nearest(lo, hi, z2_keys, z2_pos, key)], True
    else:
        diff = np.uint32(key ^ s3)
        if (diff >> np.uint32(20)) == 0:
            return np.uint32(diff ^ np.uint32(0xFEEDFACE)), True
    return miss(key), False


@njit(cache=True, nogil=True, inline="always")
def xor_lane(buf, j, x):  # pragma: no cover - compiled
    """apply(H, x) to lane j: XOR rotl32(x, 8w) into header words 9..12."""
    r = (ROW_HDR + W_JITTER) * L + j
    buf[r] ^= x
    buf[r + L] ^= np.uint32((x << _U8) | (x >> _U24))
    buf[r + 2 * L] ^= np.uint32((x << _U16) | (x >> _U16))
    buf[r + 3 * L] ^= np.uint32((x << _U24) | (x >> _U8))


@njit(cache=True, nogil=True, inline="always")
def search_steps(z2_range):  # pragma: no cover - compiled
    """Halvings that bring the largest zone-2 group of a record down to one key."""
    m = 1
    for q in range(16):
        m = max(m, z2_range[16 + q] - z2_range[q])
    steps = 0
    while m > 1:
        m -= m >> 1
        steps += 1
    return steps


@njit(cache=True, nogil=True, inline="always")
def zone2_lanes(buf, jit, found, z2_range, z2_cut, z2_vals, search):
    """Zone 2's jitter for every lane: the nearest key of the lane's group.

    Searches the group's cut points (``JitterMemory.z2_cut``): the answer is the first
    entry whose cut is >= the key, so no lane compares two neighbours or their memory
    positions. All lanes search in lock-step, ``search[2L]`` halvings (``search_steps``)
    of a branch-free lower bound on 32-bit values (``search[:L]`` the bases,
    ``search[L:2L]`` the counts), so no lane's group size or key costs a mispredicted
    branch and each halving is one 16-lane gather; a lane whose group is empty searches
    entry 0 for nothing and takes the miss value."""
    key_row = ROW_OUT * L
    s10_row = (ROW_HDR + W_SLOT10) * L
    if z2_vals.shape[0] == 0:
        for j in range(L):
            jit[j] = miss(buf[key_row + j])
            found[j] = 0
        return
    for j in range(L):
        q = (buf[s10_row + j] >> np.uint32(12)) & np.uint32(0xF)
        lo, hi = z2_range[q], z2_range[16 + q]
        ok = lo < hi
        search[j] = lo if ok else 0
        search[L + j] = hi - lo if ok else 1
    for _ in range(search[2 * L]):
        for j in range(L):
            base, n = search[j], search[L + j]
            half = n >> 1
            # z2_cut[base + half] is the cut of entry base + half - 1 (z2_cut has a pad)
            search[j] = base + half * np.int32(z2_cut[base + half] < buf[key_row + j])
            search[L + j] = n - half
    for j in range(L):
        q = (buf[s10_row + j] >> np.uint32(12)) & np.uint32(0xF)
        ok = z2_range[q] < z2_range[16 + q]
        jit[j] = z2_vals[search[j]] if ok else miss(buf[key_row + j])
        found[j] = ok


@njit(cache=True, nogil=True, inline="always")
def jitter_lanes(
    p, buf, jit, found, z1_hit, z1_val, z2_range, z2_cut, z2_vals, s3, search
):  # pragma: no cover - compiled
    """Pass p's jitter for every lane, applied to the lane's header.

    ``z2_range[q]`` / ``z2_range[16 + q]`` bound the zone-2 group of this record for
    slot 10's top nibble q (slot 4, the rest of the group, is the record's). Zones 1 and 3
    are branch-free per lane, so LLVM vectorises their loops; zone 2 is ``zone2_lanes``.
    """
    key_row = ROW_OUT * L
    if p <= 7:
        if z1_hit:
            for j in range(L):
                jit[j] = z1_val
                found[j] = 1
                xor_lane(buf, j, z1_val)
        else:
            for j in range(L):
                x = miss(buf[key_row + j])
                jit[j] = x
                found[j] = 0
                xor_lane(buf, j, x)
    elif p <= 14:
        zone2_lanes(buf, jit, found, z2_range, z2_cut, z2_vals, search)
        for j in range(L):
            xor_lane(buf, j, jit[j])
    else:
        for j in range(L):
            key = buf[key_row + j]
            diff = np.uint32(key ^ s3)
            close = (diff >> np.uint32(20)) == 0
            x = np.uint32(diff ^ np.uint32(0xFEEDFACE)) if close else miss(key)
            jit[j] = x
            found[j] = close
            xor_lane(buf, j, x)


@njit(cache=True, nogil=True, inline="always")
def apply_words(h, j):  # pragma: no cover - compiled
    """apply(H, j) on a header held as 20 big-endian words."""
    for w in range(4):
        h[W_JITTER + w] = np.uint32(h[W_JITTER + w] ^ rotl32(j, 8 * w))


@njit(cache=True, nogil=True, inline="always")
def seed_word(seeds, i, w):  # pragma: no cover - compiled
    """Big-endian word w (0..7) of seed i."""
    b = 4 * w
    return np.uint32(
        (np.uint32(seeds[i, b]) << _U24)
        | (np.uint32(seeds[i, b + 1]) << _U16)
        | (np.uint32(seeds[i, b + 2]) << _U8)
        | np.uint32(seeds[i, b + 3])
    )


@njit(cache=True, nogil=True, parallel=True)
def run_k0(
    seeds,
    rec_slots,
    passes,
    chunk_start,
    chunk_len,
    chunk_rec,
    rec_start_pass,
    rec_start_jitter,
    rec_z1_hit,
    rec_z1_val,
    rec_z2_range,
    z2_cut,
    z2_vals,
    trace,
    out_word,
    out_nonce,
    out_bytes,
    out_last_key,
    tr_keys,
    tr_jit,
    tr_found,
    tr_final,
):  # pragma: no cover - compiled
    """k = 0: every candidate's loop; lanes are candidates, chunks run in parallel.

    Chunk c holds candidates ``chunk_start[c] .. + chunk_len[c]`` (at most LANES, all of
    record ``chunk_rec[c]``), so one call can carry several records of one memory; the
    ``rec_*`` arrays hold each record's slots, zone-1 answer, zone-2 groups and shortcut.
    Each chunk builds its headers from the seed bytes and writes its outputs (the output
    word, the nonce, the final digest's bytes, the last pass's key) itself, so no
    per-candidate array work is left to the caller."""
    for c in prange(chunk_start.shape[0]):
        buf = np.empty(ROWS * L, dtype=np.uint32)
        jit = np.empty(L, dtype=np.uint32)
        found = np.empty(L, dtype=np.uint8)
        search = np.empty(2 * L + 1, dtype=np.int32)
        base = chunk_start[c]
        m = chunk_len[c]
        rec = chunk_rec[c]
        for j in range(L):
            i = base + min(j, m - 1)
            buf[ROW_HDR * L + j] = seed_word(seeds, i, 0)
            for w in range(1, 8):
                buf[(ROW_HDR + 12 + w) * L + j] = seed_word(seeds, i, w)
        for r in range(12):
            x = rec_slots[rec, r]
            for j in range(L):
                buf[(ROW_HDR + 1 + r) * L + j] = x
        start_jitter = rec_start_jitter[rec]
        if start_jitter != 0:
            for j in range(L):
                xor_lane(buf, j, start_jitter)
        s3 = buf[(ROW_HDR + W_SLOT3) * L]  # slot 3 is the record's, the same in every lane
        z1_hit, z1_val, z2_range = rec_z1_hit[rec], rec_z1_val[rec], rec_z2_range[rec]
        search[2 * L] = search_steps(z2_range)
        prep(buf)
        for p in range(rec_start_pass[rec], passes):
            pass_k0(buf)
            if p == passes - 1:
                for j in range(m):
                    out_last_key[base + j] = buf[ROW_OUT * L + j]
            jitter_lanes(p, buf, jit, found, z1_hit, z1_val, z2_range, z2_cut, z2_vals, s3, search)
            if trace:
                for j in range(m):
                    tr_keys[base + j, p] = buf[ROW_OUT * L + j]
                    tr_jit[base + j, p] = jit[j]
                    tr_found[base + j, p] = found[j] != 0
        pass_k0(buf)
        for j in range(m):
            i = base + j
            out_word[i] = buf[ROW_OUT * L + j]
            out_nonce[i] = bswap32(buf[(ROW_HDR + W_NONCE) * L + j])
            for r in range(8):
                x = buf[(ROW_OUT + r) * L + j]
                out_bytes[i, 4 * r] = np.uint8(x >> _U24)
                out_bytes[i, 4 * r + 1] = np.uint8((x >> _U16) & np.uint32(0xFF))
                out_bytes[i, 4 * r + 2] = np.uint8((x >> _U8) & np.uint32(0xFF))
                out_bytes[i, 4 * r + 3] = np.uint8(x & np.uint32(0xFF))
            if trace:
                for r in range(20):
                    tr_final[i, r] = buf[(ROW_HDR + r) * L + j]


@njit(cache=True, nogil=True)
def first_meeting(mid, w, n0, nonce_space, zero_bits, h7):  # pragma: no cover - compiled
    """Offset t of the first nonce n0 + t (t < nonce_space) meeting zero_bits, else -1."""
    return scan_first(mid, w, n0, nonce_space, zero_bits, h7, _NEVER)


@njit(cache=True, nogil=True)
def scan_first(mid, w, n0, nonce_space, zero_bits, h7, abort):  # pragma: no cover - compiled
    """``first_meeting``, or ABORTED once the abort flag is seen."""
    shift = np.uint32(32 - zero_bits)
    t = np.int64(0)
    sweeps = 0
    while t < nonce_space:
        sweeps += 1
        if sweeps == ABORT_SWEEPS:
            sweeps = 0
            if abort[0] != 0:
                return ABORTED
        scan_h7(mid, w, np.uint32((np.int64(n0) + t) & 0xFFFFFFFF), h7)
        m = min(np.int64(L), nonce_space - t)
        for j in range(m):
            if (bswap32(h7[j]) >> shift) == 0:
                return t + j
        t += L
    return np.int64(-1)


@njit(cache=True, nogil=True)
def golden(h, zero_bits, nonce_space, mid, blk, dig, h7, abort):  # pragma: no cover - compiled
    """One pass at k > 0 over header words ``h``; digest words to ``dig``.

    Returns (nonce, ntime roll, nonces scanned); a roll of -1 once aborted."""
    compress(_IV, h[0:16], mid)
    n0 = bswap32(h[W_NONCE])
    ntime0 = bswap32(h[W_NTIME])
    w = np.empty(3, dtype=np.uint32)
    w[0] = h[16]
    w[2] = h[18]
    roll = np.int64(0)
    while True:
        w[1] = bswap32(np.uint32((np.int64(ntime0) + roll) & 0xFFFFFFFF))
        t = scan_first(mid, w, n0, nonce_space, zero_bits, h7, abort)
        if t >= 0:
            break
        if t == ABORTED:
            return np.uint32(0), np.int64(-1), np.int64(0)
        roll += 1
    nonce = np.uint32((np.int64(n0) + t) & 0xFFFFFFFF)
    scanned = roll * nonce_space + t + 1
    for r in range(16):
        blk[r] = 0
    blk[0], blk[1], blk[2], blk[3] = w[0], w[1], w[2], bswap32(nonce)
    blk[4] = np.uint32(0x80000000)
    blk[15] = np.uint32(640)
    d1 = np.empty(8, dtype=np.uint32)
    compress(mid, blk, d1)
    for r in range(16):
        blk[r] = 0
    for r in range(8):
        blk[r] = d1[r]
    blk[8] = np.uint32(0x80000000)
    blk[15] = np.uint32(256)
    compress(_IV, blk, dig)
    return nonce, roll, scanned


@njit(cache=True, nogil=True, parallel=True)
def run_scan(
    hdr,
    passes,
    start_pass,
    start_jitter,
    z1_hit,
    z1_val,
    z2_start,
    z2_keys,
    z2_vals,
    z2_pos,
    zero_bits,
    nonce_space,
    trace,
    out_digest,
    out_nonce,
    out_roll,
    out_last_key,
    out_scanned,
    tr_keys,
    tr_nonce,
    tr_jit,
    tr_found,
    tr_final,
    abort,
):  # pragma: no cover - compiled
    """k > 0: lanes are nonces; candidates run in parallel."""
    n = hdr.shape[0]
    for i in prange(n):
        h = hdr[i].copy()
        if start_jitter != 0:
            apply_words(h, np.uint32(start_jitter))
        mid = np.empty(8, dtype=np.uint32)
        blk = np.empty(16, dtype=np.uint32)
        dig = np.empty(8, dtype=np.uint32)
        h7 = np.empty(L, dtype=np.uint32)
        total = np.int64(0)
        mids = np.int64(passes - start_pass + 1)
        for p in range(start_pass, passes):
            if abort[0] != 0:
                break
            nonce, roll, scanned = golden(h, zero_bits, nonce_space, mid, blk, dig, h7, abort)
            total += scanned
            mids += roll
            key = dig[0]
            jit, found = lookup(
                p,
                z1_hit,
                z1_val,
                z2_start,
                z2_keys,
                z2_vals,
                z2_pos,
                h[W_SLOT3],
                h[W_SLOT4],
                h[W_SLOT10],
                key,
            )
            apply_words(h, jit)
            if p == passes - 1:
                out_last_key[i] = key
            if trace:
                tr_keys[i, p] = key
                tr_nonce[i, p] = nonce
                tr_jit[i, p] = jit
                tr_found[i, p] = found
        if abort[0] != 0:
            continue
        nonce, roll, scanned = golden(h, zero_bits, nonce_space, mid, blk, dig, h7, abort)
        out_scanned[i, 0] = total + scanned
        out_scanned[i, 1] = mids + roll
        for r in range(8):
            out_digest[i, r] = dig[r]
        out_nonce[i] = nonce
        out_roll[i] = roll
        if trace:
            for r in range(20):
                tr_final[i, r] = h[r]
