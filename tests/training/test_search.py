"""The per-record evolutionary search, run against the real evaluators."""

from __future__ import annotations

import numpy as np
import pytest

from hasherd.kernel import spec
from hasherd.kernel.evaluators.base import EvalResult, Evaluator
from hasherd.kernel.memory import JitterMemory
from hasherd.kernel.reward import group_advantages, group_rewards
from hasherd.training import steps
from hasherd.training.search import RecordSearch, SearchParams, record_key, seed_hashes

TOKEN = 4242
TOKENS = np.array([7, TOKEN], dtype=np.uint32)


def _record(seed: int = 3) -> tuple[np.ndarray, JitterMemory]:
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 2**32, size=(64, 12), dtype=np.uint64).astype(np.uint32)
    return frames[5].copy(), JitterMemory(frames)


def _run(ev: Evaluator, search: RecordSearch, mem: JitterMemory, gens: int, d: int) -> list[int]:
    """Evaluate ``gens`` generations; returns the count evaluated per generation."""
    counts = []
    for _ in range(gens):
        batch = search.pending()
        res = ev.evaluate(search.slots, batch, mem, 21, 0)
        counts.append(search.absorb(res, d, TOKENS).evaluated)
    return counts


def test_elite_is_carried_and_no_seed_is_evaluated_twice(numba_eval: Evaluator) -> None:
    slots, mem = _record()
    params = SearchParams(population=64, elite_ratio=0.25, mutation_rate=0.1)
    search = RecordSearch(slots, TOKEN, params, record_key(1, 0))
    evaluated: list[np.ndarray] = []
    for g in range(30):
        batch = search.pending()
        evaluated.append(seed_hashes(batch))
        gen = search.absorb(numba_eval.evaluate(slots, batch, mem), 32, TOKENS)
        assert gen.evaluated == (64 if g == 0 else 64 - params.n_elite)
    allh = np.concatenate(evaluated)
    assert len(np.unique(allh)) == len(allh) == 64 + 29 * 48
    assert search.seen == set(allh.tolist())


def test_best_member_is_really_what_the_kernel_says(reference: Evaluator) -> None:
    slots, mem = _record(4)
    search = RecordSearch(slots, TOKEN, SearchParams(population=16), record_key(2, 0))
    for _ in range(3):
        gen = search.absorb(reference.evaluate(slots, search.pending(), mem), 12, TOKENS)
        again = reference.evaluate(slots, [gen.best.seed], mem)
        assert int(again.output[0]) == gen.best.output
        target = spec.target_word(TOKEN, 17)
        assert gen.best.prefix_bits == spec.prefix_bits(gen.best.output, target)


def test_search_finds_low_difficulty_winners(numba_eval: Evaluator) -> None:
    slots, mem = _record(5)
    search = RecordSearch(slots, TOKEN, SearchParams(population=128), record_key(3, 0))
    best = 0
    for _ in range(40):
        gen = search.absorb(numba_eval.evaluate(slots, search.pending(), mem), 8, TOKENS)
        best = max(best, gen.best.prefix_bits)
        if gen.winners:
            break
    assert best >= 8  # 2^8 expected candidates per win; 40 x 128 drawn: a miss is ~1e-8


def test_checkpoint_round_trip_continues_identically(numba_eval: Evaluator) -> None:
    slots, mem = _record(6)
    params = SearchParams(population=32)
    a = RecordSearch(slots, TOKEN, params, record_key(9, 1))
    _run(numba_eval, a, mem, 3, 32)
    population, results, rng_state = a.state()
    b = RecordSearch(
        slots, TOKEN, params, record_key(9, 1), seen=np.array(sorted(a.seen), dtype=np.uint64)
    )
    b.restore(population, results, rng_state)
    assert b.generation == a.generation
    for _ in range(3):
        ra = a.absorb(numba_eval.evaluate(slots, a.pending(), mem), 32, TOKENS)
        rb = b.absorb(numba_eval.evaluate(slots, b.pending(), mem), 32, TOKENS)
        assert ra.best == rb.best and ra.evaluated == rb.evaluated
        np.testing.assert_array_equal(a.seeds, b.seeds)


def test_bad_checkpoint_and_token_are_refused() -> None:
    slots, _ = _record()
    search = RecordSearch(slots, TOKEN, SearchParams(population=8), record_key(0, 0))
    population, results, state = search.state()
    with pytest.raises(ValueError, match="population size"):
        search.restore(b"\x00" * 32, b"", state)
    with pytest.raises(ValueError, match="search version"):
        search.restore(population, results, '{"generation": 3, "bit_generator": {}}')
    with pytest.raises(Exception, match="token"):
        RecordSearch(slots, 1 << 17, SearchParams(), record_key(0, 0))


def _flat_step(search: RecordSearch) -> np.ndarray:
    """One step where every member scored the same (all advantages 0, so 10 flips each);
    returns the next population."""
    m = int((~search.carried).sum())
    same = np.zeros(m, dtype=np.uint32)
    res = EvalResult(same, same, same, np.zeros((m, 32), np.uint8), same, m, m)
    search.absorb(res, 32, TOKENS)
    return search.seeds


def test_mutation_flips_at_most_ten_bits_mostly_in_the_nonce() -> None:
    slots, _ = _record()
    params = SearchParams(population=2048, elite_ratio=0.25, mutation_rate=0.05)
    search = RecordSearch(slots, TOKEN, params, record_key(0, 0))
    before = search.seeds.copy()
    after = _flat_step(search)
    elite, n_child = params.n_elite, 2048 - params.n_elite - params.n_fresh
    parents = before[np.isin(seed_hashes(before), seed_hashes(after[:elite]))]
    assert len(parents) == elite  # the elite are members of the last generation
    children = after[elite : elite + n_child]
    bits = np.unpackbits(children[:, None, :] ^ parents[None, :, :], axis=2)
    distance = bits.sum(axis=2)  # (child, parent) Hamming distances
    nearest = distance.argmin(axis=1)
    flips = distance[np.arange(n_child), nearest]
    assert flips.min() >= 1 and flips.max() <= 10  # unrelated seeds differ by ~128 bits
    assert np.mean(flips) > 9  # 10 draws, a repeated bit flips once
    diff = bits[np.arange(n_child), nearest]  # (child, 256) flipped bits
    share = diff[:, 224:].sum() / diff.sum()
    assert 0.65 < share < 0.75


def test_one_flip_children_of_one_parent_are_all_distinct(numba_eval: Evaluator) -> None:
    # One elite with a large advantage: its children get a single flip each, mostly among
    # 32 nonce bits, so duplicates are drawn all the time and must be replaced.
    slots, mem = _record(8)
    params = SearchParams(population=64, elite_ratio=0.01, mutation_rate=0.0)
    search = RecordSearch(slots, TOKEN, params, record_key(5, 5))
    evaluated = []
    for _ in range(25):
        batch = search.pending()
        evaluated.append(seed_hashes(batch))
        search.absorb(numba_eval.evaluate(slots, batch, mem), 32, TOKENS)
    allh = np.concatenate(evaluated)
    assert len(np.unique(allh)) == len(allh)


def test_fresh_seeds_avoid_everything_seen() -> None:
    slots, _ = _record()
    first = RecordSearch(slots, TOKEN, SearchParams(population=64), record_key(1, 2))
    seen = seed_hashes(first.seeds)
    again = RecordSearch(slots, TOKEN, SearchParams(population=64), record_key(1, 2), seen)
    assert not np.isin(seed_hashes(again.seeds), seen).any()
    same = RecordSearch(slots, TOKEN, SearchParams(population=64), record_key(1, 2))
    np.testing.assert_array_equal(same.seeds, first.seeds)  # the stream is reproducible


def test_compiled_rewards_equal_the_numpy_ones() -> None:
    rng = np.random.default_rng(11)
    token_set = np.unique(rng.integers(0, 1 << 17, 300)).astype(np.uint32)
    weights = SearchParams().weight_array
    for d in (0, 4, 12, 32):
        target = np.uint32(spec.target_word(int(token_set[7]), 17))
        out = rng.integers(0, 2**32, 500, dtype=np.uint64).astype(np.uint32)
        out[:20] = target ^ (rng.integers(0, 2**12, 20).astype(np.uint32))  # near misses
        out[20] = target
        keys = rng.integers(0, 2**32, 500, dtype=np.uint64).astype(np.uint32)
        want = group_rewards(out[None], keys[None], np.array([target]), 17, d, token_set)
        reward, prefix = np.empty(500), np.empty(500, dtype=np.int64)
        winners = steps.rewards(out, keys, target, 17, d, token_set, weights, reward, prefix)
        np.testing.assert_array_equal(reward, want.reward[0])
        np.testing.assert_array_equal(prefix, want.prefix_bits[0])
        assert winners == int(want.winner.sum())
        np.testing.assert_allclose(
            steps.advantages(reward), group_advantages(want.reward)[0], atol=1e-9
        )
    assert not steps.advantages(np.full(8, 0.25)).any()


def test_the_token_bitmap_scores_as_the_sorted_set_does() -> None:
    """The step reads the token set from a bitmap; the rewards are those of the sorted
    set's search, tokens too wide for ``token_bits`` never match, and a width past
    ``TOKEN_MAP_BITS`` gets no map (the step then searches the set)."""
    rng = np.random.default_rng(12)
    weights = SearchParams().weight_array
    for bits in (1, 6, 7, 17):
        token_set = np.unique(rng.integers(0, 1 << bits, 40)).astype(np.uint32)
        wide = np.append(token_set, np.uint32(1 << bits)).astype(np.uint32)  # does not fit
        target = np.uint32(spec.target_word(int(token_set[0]), bits))
        out = rng.integers(0, 2**32, 700, dtype=np.uint64).astype(np.uint32)
        low = rng.integers(0, 1 << (32 - bits), 300).astype(np.uint32)
        out[:300] = (token_set[rng.integers(0, len(token_set), 300)] << np.uint32(32 - bits)) | low
        keys = rng.integers(0, 2**32, 700, dtype=np.uint64).astype(np.uint32)
        want = group_rewards(out[None], keys[None], np.array([target]), bits, 8, token_set)
        reward, prefix = np.empty(700), np.empty(700, dtype=np.int64)
        tokens = steps.token_map(wide, bits)
        steps._scores(out, keys, target, bits, 8, wide, tokens, weights, reward, prefix)
        np.testing.assert_array_equal(reward, want.reward[0])
        np.testing.assert_array_equal(prefix, want.prefix_bits[0])
        no_tokens = np.empty(700)
        steps.rewards(out, keys, target, bits, 8, token_set[:0], weights, no_tokens, prefix)
        assert (reward > no_tokens).sum() >= 300  # the matches were scored as tokens
    assert len(steps.token_map(np.arange(4, dtype=np.uint32), steps.TOKEN_MAP_BITS + 1)) == 0


def test_a_new_epoch_remembers_only_the_carried_members(numba_eval: Evaluator) -> None:
    """A search restored for a new epoch starts its seen table at its carried members
    (not the earlier epochs' history), and hands their hashes out once, with the next
    generation's, for the caller to store."""
    slots, mem = _record(7)
    params = SearchParams(population=32)
    a = RecordSearch(slots, TOKEN, params, record_key(5, 2))
    _run(numba_eval, a, mem, 4, 32)
    population, results, state = a.state()
    b = RecordSearch(slots, TOKEN, params, record_key(5, 2))
    b.restore(population, results, state)
    b.remember_carried()
    carried = seed_hashes(b.seeds[b.carried])
    assert len(carried) == params.n_elite and b.seen == set(carried.tolist())
    first = b.absorb(numba_eval.evaluate(slots, b.pending(), mem), 32, TOKENS)
    assert first.new_hashes[: len(carried)].tolist() == carried.tolist()
    assert len(first.new_hashes) == len(carried) + first.evaluated
    second = b.absorb(numba_eval.evaluate(slots, b.pending(), mem), 32, TOKENS)
    assert len(second.new_hashes) == second.evaluated  # handed out once
    kept = np.concatenate([first.new_hashes, second.new_hashes])
    assert len(np.unique(kept)) == len(kept) and b.seen == set(kept.tolist())
