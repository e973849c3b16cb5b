"""The evolutionary search for one record: a population, its carried results, selection.

Pure and synchronous: the caller evaluates ``pending()`` with any evaluator and hands the
result to ``absorb``; the search scores the whole group (kernel.md rewards and the GRPO
advantage), checks every member for a win, keeps the elite with their results (the kernel
is deterministic, so an elite is never evaluated again), and breeds the next generation:
bit-flip mutants of the elite, fewer flips the larger the parent's |advantage|
(``clamp(10 / (|A| + 1), 1, 10)``), about 70 % of the flips in the nonce bytes
``seed[28:32]``, plus fresh random seeds. A seed is never evaluated twice for one record
within one epoch: every evaluated seed's 64-bit hash is remembered (and persisted by the
caller) until the record's epoch ends. A search that starts a new epoch from a checkpoint
remembers only its carried members (``remember_carried``), so what a record keeps is
bounded by one epoch's generations, not by all the work ever done for it.

The work of a generation runs in one compiled call (``hasherd.training.steps``); random
draws come from a counter-based stream keyed by (run seed, record, generation), so a
checkpoint needs no RNG state and a resumed run draws exactly what the uninterrupted run
would have drawn.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from hasherd.kernel import spec
from hasherd.kernel.evaluators.base import EvalResult
from hasherd.kernel.reward import DEFAULT_WEIGHTS, RewardWeights
from hasherd.training import steps

RESULT_FIELDS = 4  # output, last_key, golden_nonce, ntime_roll per member
SEARCH_VERSION = 2  # part of a run's identity: a run is only resumed by the same search
_MIN_TABLE = 1024


def seed_hashes(seeds: np.ndarray) -> np.ndarray:
    """64-bit hashes (uint64) of (N, 32) seeds; a collision only ever makes the search skip
    a seed, never evaluate one twice."""
    words = np.ascontiguousarray(seeds, dtype=np.uint8).view(np.uint64)
    out: np.ndarray = steps.seed_hashes(words)
    return out


def record_key(run_seed: int, record_idx: int) -> int:
    """The random-stream key of one record in a run: reproducible whatever the order."""
    ss = np.random.SeedSequence([run_seed, record_idx])
    return int(ss.generate_state(1, dtype=np.uint64)[0])


@dataclass(frozen=True)
class SearchParams:
    population: int = 128
    elite_ratio: float = 0.25
    mutation_rate: float = 0.05  # share of each generation that is fresh random seeds
    passes: int = spec.DEFAULT_PASSES
    zero_bits: int = 0
    token_bits: int = 17
    weights: RewardWeights = DEFAULT_WEIGHTS

    @cached_property
    def n_elite(self) -> int:
        return max(1, min(self.population - 1, math.ceil(self.elite_ratio * self.population)))

    @cached_property
    def n_fresh(self) -> int:
        return min(self.population - self.n_elite, round(self.mutation_rate * self.population))

    @cached_property
    def weight_array(self) -> np.ndarray:
        w = self.weights
        return np.array(
            [w.alignment, w.stability, w.format, w.match_scale, w.winner_bonus], dtype=np.float64
        )


@dataclass(frozen=True)
class Member:
    """The best member of a generation: what a weight is made of."""

    seed: bytes
    output: int
    last_key: int
    golden_nonce: int
    prefix_bits: int
    reward: float


@dataclass(frozen=True)
class Generation:
    """What one generation found."""

    number: int
    evaluated: int  # candidates evaluated this generation (the rest were carried)
    dsha: int
    best: Member
    winners: int  # members with prefix_bits >= difficulty
    mean_reward: float
    # uint64 hashes the search remembered this generation: the seeds evaluated, after
    # the carried members ``remember_carried`` added since the last generation
    new_hashes: np.ndarray


class RecordSearch:
    """One record's population across generations (see the module docstring)."""

    def __init__(
        self,
        slots: np.ndarray,
        token: int,
        params: SearchParams,
        key: int,
        seen: np.ndarray | None = None,
        expect: int = 0,
    ) -> None:
        """``seen``: the hashes already remembered (this epoch's history); ``expect``: about
        how many more the search will remember, so that its table is sized for them at
        once instead of being rehashed each time it doubles (only a size: what the
        search draws does not depend on it)."""
        self.slots = np.asarray(slots, dtype=np.uint32)
        self.token = spec.check_u32(token, "token")
        self.target = np.uint32(spec.target_word(token, params.token_bits))  # token must fit
        self.params = params
        self.key = np.uint64(key)
        self.generation = 0
        n = params.population
        self.table = np.zeros(_MIN_TABLE, dtype=np.uint64)
        self.count = 0
        self._unsaved = np.zeros(0, dtype=np.uint64)  # remembered, not yet handed out
        self._local = np.zeros(_pow2(4 * n), dtype=np.uint64)
        self._pending_seen = False  # the members not carried are in the table already
        self._k = 0  # carried members when they are exactly the first ones, else -1
        if seen is not None and len(seen):
            self._reserve(len(seen))
            self.count += steps.table_insert(self.table, np.asarray(seen, dtype=np.uint64))
        self._reserve(max(n, expect))
        self.seeds = np.zeros((n, spec.SEED_BYTES), dtype=np.uint8)
        self.results = np.zeros((n, RESULT_FIELDS), dtype=np.uint32)
        self.carried = np.zeros(n, dtype=bool)
        self._spare = (
            np.empty_like(self.seeds),
            np.empty_like(self.results),
            np.empty_like(self.carried),
        )
        steps.fresh_population(_words(self.seeds), self.table, self._local, self.key, 0)

    def plant(self, seed: bytes) -> None:
        """Make a given seed (a frame's ``best_seed``) the first member of the first
        generation, in place of a random one, so that a seed which already wins is found
        and stored by that generation. Call it on a fresh search only (no generation run,
        no history); a seed the population already holds changes nothing."""
        if self.generation or self.count:
            raise ValueError("plant: only a fresh search (no generation run, no history)")
        row = np.frombuffer(spec.check_seed(seed), dtype=np.uint8)
        if not (self.seeds == row).all(axis=1).any():
            self.seeds[0] = row

    @property
    def seen(self) -> set[int]:
        """The hashes of every seed evaluated for this record (a 0 hash reads as 1). The
        table also holds the children bred for the next evaluation: they are left out."""
        held = set(self.table[self.table != 0].tolist())
        if self._pending_seen:
            held -= set(seed_hashes(self.pending()).tolist())
        return held

    def remember_carried(self) -> None:
        """Remember the carried members (the elite, evaluated before) as seen: a search
        that starts a new epoch from a checkpoint remembers only them, so that no child
        repeats a member the population already holds. Their hashes come out with the
        next generation's ``new_hashes``, so the caller persists them with it."""
        hashes = seed_hashes(self.seeds[self.carried])
        self._reserve(len(hashes))
        self.count += steps.table_insert(self.table, hashes)
        self._unsaved = np.concatenate([self._unsaved, hashes])

    def _reserve(self, extra: int) -> None:
        """Keep the seen table at most half full after ``extra`` more hashes."""
        need = 2 * (self.count + extra)
        if need <= len(self.table):
            return
        bigger = np.zeros(_pow2(need), dtype=np.uint64)
        steps.table_rehash(self.table, bigger)
        self.table = bigger

    # -- evaluation ------------------------------------------------------------------------

    def pending(self) -> np.ndarray:
        """The seeds that still need an evaluation (every member not carried). The carried
        members come first (the elite), so this is usually a view, not a copy."""
        k = self._k
        if k < 0:
            return self.seeds[~self.carried]
        return self.seeds[k:]

    def _first_carried(self) -> int:
        """How many members are carried when they are exactly the first ones, else -1
        (kept in ``_k``: after a generation the elite are the first members)."""
        k = int(np.count_nonzero(self.carried))
        return k if k == 0 or (bool(self.carried[k - 1]) and not self.carried[k:].any()) else -1

    def absorb(
        self,
        res: EvalResult,
        difficulty: int,
        token_set: np.ndarray,
        tokens: np.ndarray | None = None,
    ) -> Generation:
        """Take the evaluation of ``pending()``, score the group, breed the next one.
        ``tokens``: ``token_map(token_set, params.token_bits)``, made once by a caller
        that absorbs many generations (made here when not given)."""
        p = self.params
        if tokens is None:
            tokens = steps.token_map(token_set, p.token_bits)
        k = self._k
        m = len(self.carried) - (k if k >= 0 else int(np.count_nonzero(self.carried)))
        if len(res) != m:
            raise ValueError(f"expected {m} results, got {len(res)}")
        self._reserve(m + len(self.carried))  # evaluated ones, then the children bred
        seeds, results = self.seeds, self.results
        nxt_seeds, nxt_results, nxt_carried = self._spare
        new_hashes = np.empty(m, dtype=np.uint64)
        best, prefix, reward, mean, winners, inserted, output, last_key, golden = steps.step(
            _words(seeds),
            results,
            self.carried,
            np.ascontiguousarray(res.output, dtype=np.uint32),
            np.ascontiguousarray(res.last_key, dtype=np.uint32),
            np.ascontiguousarray(res.golden_nonce, dtype=np.uint32),
            np.ascontiguousarray(res.ntime_roll, dtype=np.uint32),
            self.table,
            self._pending_seen,
            self.target,
            p.token_bits,
            difficulty,
            token_set,
            tokens,
            p.weight_array,
            self.key,
            self.generation,
            p.n_elite,
            p.n_fresh,
            _words(nxt_seeds),
            nxt_results,
            nxt_carried,
            new_hashes,
        )
        self.count += inserted
        member = Member(seeds[best].tobytes(), output, last_key, golden, prefix, reward)
        if len(self._unsaved):
            new_hashes = np.concatenate([self._unsaved, new_hashes])
            self._unsaved = self._unsaved[:0]
        gen = Generation(self.generation, m, res.dsha, member, winners, mean, new_hashes)
        self._spare = (seeds, results, self.carried)
        self.seeds, self.results, self.carried = nxt_seeds, nxt_results, nxt_carried
        self._pending_seen = True
        self._k = p.n_elite
        self.generation += 1
        return gen

    # -- checkpoints ------------------------------------------------------------------------

    def state(self, **extra: Any) -> tuple[bytes, bytes, str]:
        """(population bytes, carried results, state JSON) for a checkpoint. The results
        are those of the carried members only (the elite), as rows of little-endian u32
        ``[member index, output, last key, golden nonce, ntime roll]``; ``extra`` keys (the
        caller's own, such as the epoch's first generation) go into the JSON."""
        idx = np.nonzero(self.carried)[0]
        table = np.empty((len(idx), RESULT_FIELDS + 1), dtype="<u4")
        table[:, 0] = idx
        table[:, 1:] = self.results[idx]
        state = json.dumps({"generation": self.generation, "search": SEARCH_VERSION, **extra})
        return self.seeds.tobytes(), table.tobytes(), state

    def restore(self, population: bytes, results: bytes, state_json: str) -> None:
        """Continue from a checkpoint written by ``state`` (extra keys are ignored)."""
        n = self.params.population
        seeds = np.frombuffer(population, dtype=np.uint8)
        table = np.frombuffer(results, dtype="<u4")
        width = RESULT_FIELDS + 1
        if seeds.size != n * spec.SEED_BYTES or table.size % width:
            raise ValueError("checkpoint population size differs from the configuration")
        rows = table.reshape(-1, width).astype(np.uint32)
        if len(rows) and int(rows[:, 0].max()) >= n:
            raise ValueError("checkpoint names a member outside the population")
        state = json.loads(state_json)
        if state.get("search") != SEARCH_VERSION:
            raise ValueError(f"checkpoint was written by search version {state.get('search')}")
        self.seeds = seeds.reshape(n, spec.SEED_BYTES).copy()
        self.results = np.zeros((n, RESULT_FIELDS), dtype=np.uint32)
        self.carried = np.zeros(n, dtype=bool)
        self.results[rows[:, 0]] = rows[:, 1:]
        self.carried[rows[:, 0]] = True
        self._k = self._first_carried()
        self._pending_seen = False
        self.generation = int(state["generation"])


def _words(seeds: np.ndarray) -> np.ndarray:
    """(N, 32) seed bytes as (N, 4) little-endian uint64 words (a view, not a copy)."""
    words: np.ndarray = seeds.view("<u8")
    return words


def _pow2(n: int) -> int:
    return max(_MIN_TABLE, 1 << (max(1, n) - 1).bit_length())


def absorb_many(
    searches: list[RecordSearch],
    results: list[EvalResult],
    difficulty: int,
    token_set: np.ndarray,
    tokens: np.ndarray | None = None,
) -> list[Generation]:
    """``absorb`` for several records (each record keeps its own random stream, so its
    search is the same whichever records share its batch); ``tokens`` as for ``absorb``
    (made once here when not given)."""
    bits = {s.params.token_bits for s in searches}
    if tokens is None and len(bits) == 1:
        tokens = steps.token_map(token_set, bits.pop())
    return [
        s.absorb(r, difficulty, token_set, tokens) for s, r in zip(searches, results, strict=True)
    ]


def warm_up() -> None:
    """Load (or, on a cold cache, compile) every compiled step a training calls, with the
    argument types a training passes them: a record's search built with a history (its
    table grown), its carried members remembered, and taken through one generation. A
    first compile takes about a minute; the daemon runs this on a thread of its own at
    start, so a job's first search does not wait for it."""
    params = SearchParams(population=8)
    tokens = np.arange(4, dtype=np.uint32)
    tokens.setflags(write=False)  # as a dataset's token set: numba types it apart
    seen = np.arange(1, 2 * _MIN_TABLE, dtype=np.uint64)  # enough to grow the table
    search = RecordSearch(np.zeros(spec.N_SLOTS, dtype=np.uint32), 1, params, 1, seen)
    search.remember_carried()
    n = len(search.pending())
    zeros = np.zeros(n, dtype=np.uint32)
    res = EvalResult(zeros, zeros, zeros, np.zeros((n, 32), dtype=np.uint8), zeros)
    search.absorb(res, 8, tokens)
