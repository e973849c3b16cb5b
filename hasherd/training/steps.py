"""One record's generation step, compiled with numba: score, select, breed, deduplicate.

Everything a generation does after the evaluator has run happens in one call here, so a
training batch spends its time in the kernel and not in Python: the seen-seed table is
updated with the seeds just evaluated, every member is scored (the rewards of kernel.md,
bit for bit the same as ``hasherd.kernel.reward.group_rewards``) and its GRPO advantage
taken, the best member and the winners are found, the elite is kept with its results, and
the children and fresh seeds of the next generation are drawn and checked against every
seed evaluated so far.

Random numbers come from a counter-based generator: the stream for generation ``g`` of a
record is SplitMix64 started at a hash of (record key, g), and the record key is derived
from the run's seed and the record's index with numpy's SeedSequence. A generation's
draws therefore depend only on the run seed, the record and the generation number: no
RNG state needs saving, and a record's search is the same whichever records share its
batch or however often the run was stopped and resumed.

The seen table is open addressing over uint64 (0 marks an empty slot, a hash of 0 is
stored as 1); the caller keeps it at most half full.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.cpython.unsafe.numbers import leading_zeros
from numba.extending import intrinsic

from hasherd.kernel import numba_setup

# The code-generation settings must be in place before this process compiles or loads
# anything: numba fixes its target machine at the first compile, for every function.
numba_setup.configure()

MAX_FLIPS = 10
NONCE_FIRST_BIT = 224  # seed[28:32] holds bits 224..255 (bit 0 = the first byte's MSB)
NONCE_SHARE = 0.7  # share of mutation flips that land in seed[28:32]
DEDUP_TRIES = 64  # further one-bit mutants tried before a duplicate becomes a fresh seed
STD_EPSILON = 1e-12
TOKEN_MAP_BITS = 22  # token widths up to this are looked up in a bitmap (512 KiB at 22)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_H0 = np.uint64(0x9E3779B97F4A7C15)
_H1 = np.uint64(0xC2B2AE3D27D4EB4F)
_H2 = np.uint64(0x165667B19E3779F9)
_H3 = np.uint64(0xD6E8FEB86659FD93)
_S27 = np.uint64(27)
_S29 = np.uint64(29)
_S30 = np.uint64(30)
_S31 = np.uint64(31)
_S32 = np.uint64(32)
_S11 = np.uint64(11)
_S3 = np.uint64(3)
_S6 = np.uint64(6)
_S7 = np.uint64(7)
_S8 = np.uint64(8)
_NONCE_BITS = np.uint64(256 - NONCE_FIRST_BIT)
_ONE = np.uint64(1)
_ZERO = np.uint64(0)


@njit(cache=True, nogil=True)
def mix64(z: np.uint64) -> np.uint64:
    """SplitMix64's finaliser."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(cache=True, nogil=True)
def _next(st: np.ndarray) -> np.uint64:
    st[0] += _GOLDEN
    return mix64(st[0])


@njit(cache=True, nogil=True)
def _below(st: np.ndarray, n: int) -> np.int64:
    """A draw in [0, n) (multiply-shift on 32 bits; bias below n / 2^32)."""
    return np.int64(((_next(st) >> _S32) * np.uint64(n)) >> _S32)


@njit(cache=True, nogil=True)
def _unit(st: np.ndarray) -> float:
    return float(_next(st) >> _S11) * (1.0 / 9007199254740992.0)


@njit(cache=True, nogil=True)
def stream(key: np.uint64, generation: int) -> np.ndarray:
    """The RNG state for one record's generation."""
    st = np.empty(1, dtype=np.uint64)
    st[0] = mix64(key ^ mix64(np.uint64(generation) * _GOLDEN + _ONE))
    return st


@njit(cache=True, nogil=True)
def seed_hash(w: np.ndarray) -> np.uint64:
    """The 64-bit hash of one seed given as its 4 little-endian uint64 words."""
    return _hash4(w[0], w[1], w[2], w[3])


@njit(cache=True, nogil=True)
def _hash4(a: np.uint64, b: np.uint64, c: np.uint64, d: np.uint64) -> np.uint64:
    h: np.uint64 = (a * _H0) ^ (b * _H1) ^ (c * _H2) ^ (d * _H3)
    h ^= h >> _S31
    h *= _M1
    h ^= h >> _S29
    return h


@njit(cache=True, nogil=True)
def _row_hash(words: np.ndarray, i: int) -> np.uint64:
    """``seed_hash`` of row ``i`` of (N, 4) seed words (scalar reads: no row view made,
    which costs more than the hash in a loop)."""
    return _hash4(words[i, 0], words[i, 1], words[i, 2], words[i, 3])


@njit(cache=True, nogil=True)
def seed_hashes(words: np.ndarray) -> np.ndarray:
    """Hashes of (N, 4) seed words (a (N, 32) uint8 seed array viewed as uint64)."""
    out = np.empty(words.shape[0], dtype=np.uint64)
    for i in range(words.shape[0]):
        out[i] = _row_hash(words, i)
    return out


@intrinsic
def _prefetch(typingctx: Any, arr: Any, idx: Any) -> Any:
    """Ask for the cache line of ``arr[idx]`` (LLVM's prefetch: a hint, no effect on any
    value)."""
    sig = types.void(arr, idx)

    def codegen(context: Any, builder: ir.IRBuilder, signature: Any, args: Any) -> Any:
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        get = cgutils.get_item_pointer
        ptr = get(context, builder, aryty, ary, [args[1]], wraparound=False)  # type: ignore[no-untyped-call]
        byte_ptr = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [byte_ptr, i32, i32, i32])
        insert = cgutils.get_or_insert_function
        name = "llvm.prefetch." + byte_ptr.intrinsic_name  # p0, or p0i8 on typed pointers
        fn = insert(builder.module, fnty, name)  # type: ignore[no-untyped-call]
        # a read, to be kept in every cache level, of data
        builder.call(fn, [builder.bitcast(ptr, byte_ptr), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, nogil=True)
def _prefetch_slot(table: np.ndarray, h: np.uint64) -> None:
    """Start fetching the slot where ``_slot`` begins its search for ``h``."""
    key = h if h != _ZERO else _ONE
    _prefetch(table, np.int64(mix64(key) & np.uint64(table.shape[0] - 1)))  # type: ignore[call-arg]


@njit(cache=True, nogil=True)
def _slot(table: np.ndarray, h: np.uint64) -> np.int64:
    """Where ``h`` is, or the empty slot where it would go (linear probing)."""
    key = h if h != _ZERO else _ONE
    mask = np.int64(table.shape[0] - 1)
    i = np.int64(mix64(key) & np.uint64(mask))
    while table[i] != _ZERO and table[i] != key:
        i = (i + 1) & mask
    return i


@njit(cache=True, nogil=True)
def _has(table: np.ndarray, h: np.uint64) -> bool:
    return bool(table[_slot(table, h)] != _ZERO)


@njit(cache=True, nogil=True)
def _add(table: np.ndarray, h: np.uint64) -> bool:
    """Insert ``h``; False when it was there already."""
    i = _slot(table, h)
    if table[i] != _ZERO:
        return False
    table[i] = h if h != _ZERO else _ONE
    return True


@njit(cache=True, nogil=True)
def table_insert(table: np.ndarray, hashes: np.ndarray) -> int:
    """Insert hashes; returns how many were new."""
    new = 0
    for h in hashes:
        new += _add(table, h)
    return new


@njit(cache=True, nogil=True)
def table_contains(table: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    out = np.empty(hashes.shape[0], dtype=np.bool_)
    for i in range(hashes.shape[0]):
        out[i] = _has(table, hashes[i])
    return out


@njit(cache=True, nogil=True)
def table_rehash(old: np.ndarray, new: np.ndarray) -> None:
    for h in old:
        if h != _ZERO:
            new[_slot(new, h)] = h


@njit(cache=True, nogil=True)
def _flip_bit(st: np.ndarray) -> np.int64:
    """The position of one mutation flip: about 70 % in the nonce bytes."""
    if _unit(st) < NONCE_SHARE:
        return NONCE_FIRST_BIT + _below(st, 256 - NONCE_FIRST_BIT)
    return _below(st, NONCE_FIRST_BIT)


@njit(cache=True, nogil=True)
def _bit_mask(b: np.int64) -> np.uint64:
    """Seed bit ``b`` (bit 0 = the first byte's MSB) within its little-endian word."""
    byte = b >> 3
    return _ONE << np.uint64(8 * (byte & 7) + 7 - (b & 7))


@njit(cache=True, nogil=True)
def _random_row(words: np.ndarray, i: int, st: np.ndarray) -> None:
    for j in range(4):
        words[i, j] = _next(st)


@njit(cache=True, nogil=True)
def _unique(
    words: np.ndarray, i: int, table: np.ndarray, local: np.ndarray, st: np.ndarray
) -> None:
    """Make seed ``i`` of ``words`` ((N, 4)) one neither evaluated before (``table``) nor
    already drawn for this generation (``local``): further one-bit mutants, then fresh
    seeds. The seed is added to ``local``."""
    tries = 0
    h = _row_hash(words, i)
    while _has(table, h) or _has(local, h):
        tries += 1
        if tries < DEDUP_TRIES:
            b = _flip_bit(st)
            words[i, b >> 6] ^= _bit_mask(b)
        else:
            _random_row(words, i, st)
        h = _row_hash(words, i)
    _add(local, h)


@njit(cache=True, nogil=True)
def fresh_population(
    seeds: np.ndarray, table: np.ndarray, local: np.ndarray, key: np.uint64, generation: int
) -> None:
    """Fill ``seeds`` ((N, 4) words) with distinct random seeds never evaluated before."""
    st = stream(key, generation)
    local[:] = _ZERO
    for i in range(seeds.shape[0]):
        _random_row(seeds, i, st)
        _unique(seeds, i, table, local, st)


def token_map(token_set: np.ndarray, token_bits: int) -> np.ndarray:
    """The token set as a bitmap over the ``token_bits``-bit values (bit ``t`` of word
    ``t >> 6`` set when ``t`` is a token), which the step reads with one load per member;
    empty when ``token_bits`` exceeds ``TOKEN_MAP_BITS`` (the map would not stay in the
    cache: the step then searches the sorted set). Tokens too wide for ``token_bits``
    never match an output, so they are left out."""
    if token_bits > TOKEN_MAP_BITS:
        return np.zeros(0, dtype=np.uint64)
    tokens = np.asarray(token_set, dtype=np.uint64)
    tokens = tokens[tokens < np.uint64(1 << token_bits)]
    out = np.zeros(max(1, (1 << token_bits) >> 6), dtype=np.uint64)
    np.bitwise_or.at(out, tokens >> np.uint64(6), np.uint64(1) << (tokens & np.uint64(63)))
    return out


@njit(cache=True, nogil=True)
def rewards(
    outputs: np.ndarray,
    last_keys: np.ndarray,
    target: np.uint32,
    token_bits: int,
    difficulty: int,
    token_set: np.ndarray,
    weights: np.ndarray,
    reward: np.ndarray,
    prefix: np.ndarray,
) -> int:
    """kernel.md's reward of every member (same operations, in the same order, as
    ``group_rewards``); fills ``reward`` and ``prefix``, returns the number of winners.
    ``weights`` = (alignment, stability, format, match_scale, winner_bonus)."""
    no_map = np.zeros(0, dtype=np.uint64)
    return _scores(
        outputs,
        last_keys,
        target,
        token_bits,
        difficulty,
        token_set,
        no_map,
        weights,
        reward,
        prefix,
    )


@njit(cache=True, nogil=True)
def _scores(
    outputs: np.ndarray,
    last_keys: np.ndarray,
    target: np.uint32,
    token_bits: int,
    difficulty: int,
    token_set: np.ndarray,
    tokens: np.ndarray,
    weights: np.ndarray,
    reward: np.ndarray,
    prefix: np.ndarray,
) -> int:
    """``rewards``, with the token set also given as a bitmap (``token_map``) when
    ``tokens`` is not empty: one load instead of a binary search per member."""
    winners = 0
    n_tokens = token_set.shape[0]
    shift = np.uint32(32 - token_bits)
    for i in range(outputs.shape[0]):
        out = np.uint32(outputs[i])
        xor = out ^ target
        matching = 32 - _popcount(xor)
        p = _clz32(xor)
        winner = p >= difficulty
        winners += winner
        if out == target:
            alignment = 1.0
        else:
            alignment = weights[3] * matching / 32 + (weights[4] if winner else 0.0)
        stability = 1 - _popcount(np.uint32(last_keys[i]) ^ out) / 32
        fmt = 0.0
        decoded = out >> shift
        if tokens.shape[0]:
            fmt = 1.0 if (tokens[decoded >> _S6] >> (decoded & np.uint32(63))) & _ONE else 0.0
        elif n_tokens:
            fmt = 1.0 if _member(token_set, decoded) else 0.0
        reward[i] = weights[0] * alignment + weights[1] * stability + weights[2] * fmt
        prefix[i] = p
    return winners


@njit(cache=True, nogil=True)
def _popcount(x: np.uint32) -> int:
    x = x - ((x >> np.uint32(1)) & np.uint32(0x55555555))
    x = (x & np.uint32(0x33333333)) + ((x >> np.uint32(2)) & np.uint32(0x33333333))
    x = (x + (x >> np.uint32(4))) & np.uint32(0x0F0F0F0F)
    return int(((x * np.uint32(0x01010101)) >> np.uint32(24)) & np.uint32(0xFF))


@njit(cache=True, nogil=True)
def _clz32(v: np.uint32) -> int:
    """Leading zero bits of a 32-bit value (32 for 0): LLVM's ctlz, one instruction where
    a chain of compares was five unpredictable branches."""
    return int(leading_zeros(np.uint32(v)))  # type: ignore[call-arg]


@njit(cache=True, nogil=True)
def _member(token_set: np.ndarray, v: np.uint32) -> bool:
    """Whether ``v`` is in ``token_set`` (sorted, distinct, not empty): a binary search
    whose steps are selects, not branches. Random outputs make every branch of a plain
    search a coin toss, and the mispredictions cost more than the rest of the reward."""
    base = 0
    size = token_set.shape[0]
    while size > 1:
        half = size >> 1
        base += half * int(token_set[base + half] <= v)
        size -= half
    return bool(token_set[base] == v)


@njit(cache=True, nogil=True)
def advantages(reward: np.ndarray) -> np.ndarray:
    """GRPO: (r - mean) / std with the population std; 0 for all when std < 1e-12."""
    n = reward.shape[0]
    mean = reward.sum() / n
    var = 0.0
    for r in reward:
        var += (r - mean) * (r - mean)
    std = np.sqrt(var / n)
    out = np.zeros(n)
    if std >= STD_EPSILON:
        for i in range(n):
            out[i] = (reward[i] - mean) / std
    return out


@njit(cache=True, nogil=True)
def step(
    seeds: np.ndarray,
    results: np.ndarray,
    carried: np.ndarray,
    out_output: np.ndarray,
    out_last_key: np.ndarray,
    out_golden: np.ndarray,
    out_roll: np.ndarray,
    table: np.ndarray,
    pending_seen: bool,
    target: np.uint32,
    token_bits: int,
    difficulty: int,
    token_set: np.ndarray,
    tokens: np.ndarray,
    weights: np.ndarray,
    key: np.uint64,
    generation: int,
    n_elite: int,
    n_fresh: int,
    next_seeds: np.ndarray,
    next_results: np.ndarray,
    next_carried: np.ndarray,
    new_hashes: np.ndarray,
) -> tuple[int, int, float, float, int, int, int, int, int]:
    """One generation of one record (see the module docstring).

    ``seeds`` and ``next_seeds`` are (N, 4) uint64 words (the (N, 32) seed bytes viewed as
    little-endian words). ``out_*`` (M,) hold output, last key, golden nonce and ntime
    roll of the M members not carried, in member order (the evaluator's result). The next
    population goes to ``next_*``: the elite first (carried, with their results), then the
    children, then fresh seeds. ``new_hashes`` (M,) receives the hashes of the seeds just
    evaluated. ``tokens``: the token set as a ``token_map`` bitmap, or empty (then
    ``token_set`` is searched). ``pending_seen``: those seeds are in ``table`` already
    (they were bred by the last step, which adds every child to the table as it draws
    it: one probe of a large, uncached table per child instead of two); otherwise (a
    fresh or restored population) they are added here. The table then holds every seed
    evaluated, plus the next population's children.

    Returns (best member, its prefix bits, its reward, the mean reward, winners, new
    seeds in the table, the best member's output, last key and golden nonce)."""
    n = seeds.shape[0]
    m = _take(seeds, results, carried, out_output, out_last_key, out_golden, out_roll, new_hashes)
    inserted = 0 if pending_seen else table_insert(table, new_hashes[:m])
    reward = np.empty(n)
    prefix = np.empty(n, dtype=np.int64)
    winners = _scores(
        results[:, 0],
        results[:, 1],
        target,
        token_bits,
        difficulty,
        token_set,
        tokens,
        weights,
        reward,
        prefix,
    )
    best = 0
    for i in range(1, n):
        if prefix[i] > prefix[best] or (prefix[i] == prefix[best] and reward[i] > reward[best]):
            best = i
    adv = advantages(reward)
    elite = top_members(reward, n_elite)
    for j in range(n_elite):
        for q in range(4):
            next_seeds[j, q] = seeds[elite[j], q]
        for q in range(next_results.shape[1]):
            next_results[j, q] = results[elite[j], q]
        next_carried[j] = True
    _breed(seeds, elite, adv, table, stream(key, generation + 1), n_fresh, next_seeds)
    next_carried[n_elite:] = False
    next_results[n_elite:] = 0
    inserted += n - n_elite
    r = results[best]
    return best, prefix[best], reward[best], reward.sum() / n, winners, inserted, r[0], r[1], r[2]


@njit(cache=True, nogil=True)
def _take(
    seeds: np.ndarray,
    results: np.ndarray,
    carried: np.ndarray,
    out_output: np.ndarray,
    out_last_key: np.ndarray,
    out_golden: np.ndarray,
    out_roll: np.ndarray,
    new_hashes: np.ndarray,
) -> int:
    """The evaluator's results into the members not carried, in member order, and those
    members' hashes into ``new_hashes``; returns how many."""
    m = 0
    for i in range(seeds.shape[0]):
        if not carried[i]:
            results[i, 0] = out_output[m]
            results[i, 1] = out_last_key[m]
            results[i, 2] = out_golden[m]
            results[i, 3] = out_roll[m]
            new_hashes[m] = _row_hash(seeds, i)
            m += 1
    return m


@njit(cache=True, nogil=True)
def top_members(reward: np.ndarray, k: int) -> np.ndarray:
    """The first ``k`` of ``np.argsort(-reward, kind="mergesort")`` (the ``k`` best
    members, ties in member order), without sorting the whole group: the k-th best value
    is selected, the members above it and then enough of those equal to it are taken in
    member order, and only those ``k`` are sorted (stably)."""
    n = reward.shape[0]
    neg = -reward
    if 2 * k >= n:
        return np.argsort(neg, kind="mergesort")[:k]
    kth = np.partition(neg, k - 1)[k - 1]
    picked = np.empty(k, dtype=np.int64)
    c = 0
    for i in range(n):
        if neg[i] < kth:
            picked[c] = i
            c += 1
    for i in range(n):
        if c == k:
            break
        if neg[i] == kth:
            picked[c] = i
            c += 1
    return picked[np.argsort(neg[picked], kind="mergesort")]


@njit(cache=True, nogil=True)
def _breed(
    seeds: np.ndarray,
    elite: np.ndarray,
    adv: np.ndarray,
    table: np.ndarray,
    st: np.ndarray,
    n_fresh: int,
    next_seeds: np.ndarray,
) -> None:
    """The children (mutants of the elite, fewer flips the larger the parent's |advantage|)
    and fresh seeds after the elite in ``next_seeds``, none evaluated before nor twice;
    each is added to ``table``.

    Exactly as if each were drawn one by one (the plain draw: a parent by ``_below``, then
    its flips one ``_flip_bit`` at a time), then checked against the table (and
    replaced while a duplicate, ``_unique_seen``), then added, one after the other; but
    done in two passes: every member is drawn first as if none were a duplicate (the
    random stream's position after each is kept), then all are checked and added in
    order. The table is large and seldom in the cache: the first pass asks for each
    member's slot as soon as its hash is known, so the fetches overlap the drawing, and
    the second pass's lookups do not wait for one another, where the one-by-one order
    waits for each (measured: about a tenth of the step's CPU). At the first
    duplicate the stream goes back to where that member's draws ended, and the rest is
    done one by one."""
    n, n_elite = seeds.shape[0], elite.shape[0]
    flips = _flips(elite, adv)
    hashes = np.empty(n, dtype=np.uint64)
    after = np.empty(n, dtype=np.uint64)
    c = st[0]
    for j in range(n_elite, n):
        c = _draw_at(seeds, elite, flips, c, n_fresh, j, next_seeds)
        hashes[j] = _row_hash(next_seeds, j)
        _prefetch_slot(table, hashes[j])
        after[j] = c
    st[0] = c
    for j in range(n_elite, n):
        if not _add(table, hashes[j]):  # a duplicate: from here on, one by one
            st[0] = after[j]
            _unique_seen(next_seeds, j, table, st)
            for k in range(j + 1, n):
                st[0] = _draw_at(seeds, elite, flips, st[0], n_fresh, k, next_seeds)
                _unique_seen(next_seeds, k, table, st)
            return


@njit(cache=True, nogil=True)
def _flips(elite: np.ndarray, adv: np.ndarray) -> np.ndarray:
    """The number of flips of each elite member's children: MAX_FLIPS / (|advantage| + 1),
    within 1..MAX_FLIPS."""
    out = np.empty(elite.shape[0], dtype=np.int64)
    for e in range(elite.shape[0]):
        a = adv[elite[e]]
        out[e] = int(min(max(MAX_FLIPS / (abs(a) + 1.0), 1.0), float(MAX_FLIPS)))
    return out


@njit(cache=True, nogil=True)
def _draw_at(
    seeds: np.ndarray,
    elite: np.ndarray,
    flips: np.ndarray,
    c: np.uint64,
    n_fresh: int,
    j: int,
    next_seeds: np.ndarray,
) -> np.uint64:
    """Member ``j`` drawn from the stream whose counter is ``c``; returns the counter after
    the draws. The same draws in the same order as the plain draw (a parent, then one
    flip at a time: the reference in tests/training/test_batching.py), made cheap. The
    stream is counter-based, so the draws of flip ``f`` are known without the ones
    before: every child computes ``MAX_FLIPS`` flips, with no branch on the random draws
    (a loop whose length is the parent's random pick, and a branch on each flip's random
    region, mispredict about once a child), and only its first ``flips`` count. The flips
    are gathered in a mask (a bit drawn twice flips once: the child is the parent XOR the
    union of its bits)."""
    n, n_elite = seeds.shape[0], elite.shape[0]
    if j >= n - n_fresh:
        for q in range(4):
            c += _GOLDEN
            next_seeds[j, q] = mix64(c)
        return c
    c += _GOLDEN
    e = np.int64(((mix64(c) >> _S32) * np.uint64(n_elite)) >> _S32)
    count = np.uint64(flips[e])
    m0 = m1 = m2 = m3 = _ZERO
    for f in range(MAX_FLIPS):
        live = np.uint64(np.uint64(f) < count)
        unit = float(mix64(c + np.uint64(2 * f + 1) * _GOLDEN) >> _S11) * (1.0 / 9007199254740992.0)
        hi = mix64(c + np.uint64(2 * f + 2) * _GOLDEN) >> _S32
        nonce = np.uint64(unit < NONCE_SHARE)
        in_nonce = np.uint64(NONCE_FIRST_BIT) + ((hi * _NONCE_BITS) >> _S32)
        b = nonce * in_nonce + (_ONE - nonce) * ((hi * np.uint64(NONCE_FIRST_BIT)) >> _S32)
        bit = live << (((b >> _S3) & _S7) * _S8 + _S7 - (b & _S7))
        word = b >> _S6
        m0 |= bit * np.uint64(word == 0)
        m1 |= bit * np.uint64(word == 1)
        m2 |= bit * np.uint64(word == 2)
        m3 |= bit * np.uint64(word == 3)
    parent = elite[e]
    next_seeds[j, 0] = seeds[parent, 0] ^ m0
    next_seeds[j, 1] = seeds[parent, 1] ^ m1
    next_seeds[j, 2] = seeds[parent, 2] ^ m2
    next_seeds[j, 3] = seeds[parent, 3] ^ m3
    return c + np.uint64(2) * count * _GOLDEN


@njit(cache=True, nogil=True)
def _unique_seen(words: np.ndarray, i: int, table: np.ndarray, st: np.ndarray) -> None:
    """``_unique`` against ``table`` alone, which holds this generation's earlier draws
    too; the seed is added to it."""
    tries = 0
    h = _row_hash(words, i)
    while _has(table, h):
        tries += 1
        if tries < DEDUP_TRIES:
            b = _flip_bit(st)
            words[i, b >> 6] ^= _bit_mask(b)
        else:
            _random_row(words, i, st)
        h = _row_hash(words, i)
    _add(table, h)
