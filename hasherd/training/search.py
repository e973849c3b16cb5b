"""The evolutionary search for one record: a population, its carried results, selection.

Pure and synchronous: the caller evaluates ``pending()`` with any evaluator and hands the
result to ``absorb``; the search scores the whole group (kernel.md rewards and the GRPO
advantage), checks every member for a win, keeps the elite with their results (the kernel
is deterministic, so an elite is never evaluated again), and breeds the next generation:
bit-flip mutants of the elite, fewer flips the larger the parent's |advantage|
(``clamp(10 / (|A| + 1), 1, 10)``), about 70 % of the flips in the nonce bytes
``seed[28:32]``, plus fresh random seeds. A seed is never evaluated twice for one record
in a run: every evaluated seed's 64-bit hash is remembered (and persisted by the caller).
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
from hasherd.kernel.reward import (
    DEFAULT_WEIGHTS,
    RewardWeights,
    group_advantages,
    group_rewards,
)

NONCE_SHARE = 0.7  # share of mutation flips that land in seed[28:32]
MAX_FLIPS = 10
NONCE_FIRST_BIT = 224  # seed[28:32] holds bits 224..255 (bit 0 = the first byte's MSB)
_HASH_MULT = np.array(
    [0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93],
    dtype=np.uint64,
)
RESULT_FIELDS = 4  # output, last_key, golden_nonce, ntime_roll per member


def seed_hashes(seeds: np.ndarray) -> np.ndarray:
    """64-bit hashes (uint64) of (N, 32) seeds; a collision only ever makes the search skip
    a seed, never evaluate one twice."""
    words = np.ascontiguousarray(seeds).view(np.uint64)
    mixed = words * _HASH_MULT
    h = mixed[:, 0] ^ mixed[:, 1] ^ mixed[:, 2] ^ mixed[:, 3]
    h ^= h >> np.uint64(31)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(29)
    out: np.ndarray = h
    return out


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
    new_hashes: np.ndarray  # uint64 hashes of the seeds evaluated this generation


class RecordSearch:
    """One record's population across generations (see the module docstring)."""

    def __init__(
        self,
        slots: np.ndarray,
        token: int,
        params: SearchParams,
        rng: np.random.Generator,
        seen: set[int] | None = None,
    ) -> None:
        self.slots = np.asarray(slots, dtype=np.uint32)
        self.token = spec.check_u32(token, "token")
        spec.target_word(token, params.token_bits)  # the token must fit token_bits
        self.params = params
        self.rng = rng
        self.seen: set[int] = set() if seen is None else seen
        self.generation = 0
        n = params.population
        self.seeds = np.zeros((n, spec.SEED_BYTES), dtype=np.uint8)
        self.results = np.zeros((n, RESULT_FIELDS), dtype=np.uint32)
        self.carried = np.zeros(n, dtype=bool)
        self.seeds[:] = self._fresh(n)

    # -- evaluation ------------------------------------------------------------------------

    def pending(self) -> np.ndarray:
        """The seeds that still need an evaluation (every member not carried)."""
        return self.seeds[~self.carried]

    def absorb(self, res: EvalResult, difficulty: int, token_set: np.ndarray) -> Generation:
        """Take the evaluation of ``pending()``, score the group, breed the next one."""
        return absorb_many([self], [res], difficulty, token_set)[0]

    def _take(self, res: EvalResult) -> np.ndarray:
        """Store the results of ``pending()``; returns the evaluated seeds' hashes."""
        todo = ~self.carried
        if len(res) != int(todo.sum()):
            raise ValueError(f"expected {int(todo.sum())} results, got {len(res)}")
        self.results[todo] = np.stack(
            [res.output, res.last_key, res.golden_nonce, res.ntime_roll], axis=1
        )
        hashes = seed_hashes(self.seeds[todo])
        self.seen.update(hashes.tolist())
        return hashes

    def _member(self, i: int, prefix: int, reward: float) -> Member:
        return Member(
            seed=self.seeds[i].tobytes(),
            output=int(self.results[i, 0]),
            last_key=int(self.results[i, 1]),
            golden_nonce=int(self.results[i, 2]),
            prefix_bits=prefix,
            reward=reward,
        )

    def _draw(self, n_child: int, n_fresh: int) -> tuple[np.ndarray, ...]:
        """This record's random draws for one breeding, always in the same order."""
        rng, p = self.rng, self.params
        pick = rng.integers(0, p.n_elite, size=n_child)
        in_nonce = rng.random((n_child, MAX_FLIPS)) < NONCE_SHARE
        high = rng.integers(NONCE_FIRST_BIT, 256, size=(n_child, MAX_FLIPS))
        low = rng.integers(0, NONCE_FIRST_BIT, size=(n_child, MAX_FLIPS))
        fresh = rng.integers(0, 256, size=(n_fresh, spec.SEED_BYTES), dtype=np.uint8)
        return pick, np.where(in_nonce, high, low), fresh

    # -- breeding -------------------------------------------------------------------------

    def _mutants(self, parents: np.ndarray, flips: np.ndarray) -> np.ndarray:
        """Each parent with ``flips[i]`` random bits flipped (about 70 % in the nonce; a bit
        drawn twice is flipped once)."""
        n = len(parents)
        in_nonce = self.rng.random((n, MAX_FLIPS)) < NONCE_SHARE
        bits = np.where(
            in_nonce,
            self.rng.integers(NONCE_FIRST_BIT, 256, size=(n, MAX_FLIPS)),
            self.rng.integers(0, NONCE_FIRST_BIT, size=(n, MAX_FLIPS)),
        )
        mask: np.ndarray = parents ^ flip_masks(bits, flips)
        return mask

    def _dedup(self, seeds: np.ndarray, start: int) -> None:
        """Replace, from ``start`` on, every seed already seen (in this run or this batch)
        or equal to its parent, by a further mutant or, failing that, a fresh seed."""
        hashes = seed_hashes(seeds[start:]).tolist()
        taken = set(seed_hashes(seeds[:start]).tolist())
        batch = set(hashes)
        seen = self.seen
        if len(batch) == len(hashes) and seen.isdisjoint(batch) and taken.isdisjoint(batch):
            return  # the usual case, decided by set operations in C
        for i, h in enumerate(hashes):
            row, tries = seeds[start + i], 0
            while h in seen or h in taken:
                tries += 1
                if tries < 64:
                    row[:] = self._mutants(row[None, :], np.array([1]))[0]
                else:
                    row[:] = self.rng.integers(0, 256, size=spec.SEED_BYTES, dtype=np.uint8)
                h = int(seed_hashes(row[None, :])[0])
            taken.add(h)

    def _fresh(self, n: int) -> np.ndarray:
        out = self.rng.integers(0, 256, size=(n, spec.SEED_BYTES), dtype=np.uint8)
        self._dedup(out, 0)
        return out

    # -- checkpoints ------------------------------------------------------------------------

    def state(self, **extra: Any) -> tuple[bytes, bytes, str]:
        """(population bytes, carried results, state JSON) for a checkpoint. The results
        are those of the carried members only (the elite), as rows of little-endian u32
        ``[member index, output, last key, golden nonce, ntime roll]``; ``extra`` keys (the
        caller's own, such as the epoch's first generation) go into the JSON."""
        idx = np.nonzero(self.carried)[0]
        table = np.column_stack([idx.astype(np.uint32), self.results[idx]]).astype("<u4")
        state = {"generation": self.generation, "bit_generator": _jsonable(self.rng), **extra}
        return self.seeds.tobytes(), table.tobytes(), json.dumps(state)

    def restore(self, population: bytes, results: bytes, rng_state: str) -> None:
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
        self.seeds = seeds.reshape(n, spec.SEED_BYTES).copy()
        self.results = np.zeros((n, RESULT_FIELDS), dtype=np.uint32)
        self.carried = np.zeros(n, dtype=bool)
        self.results[rows[:, 0]] = rows[:, 1:]
        self.carried[rows[:, 0]] = True
        state = json.loads(rng_state)
        self.generation = int(state["generation"])
        self.rng.bit_generator.state = state["bit_generator"]


def _jsonable(rng: np.random.Generator) -> Any:
    state: Any = rng.bit_generator.state
    return state


def record_rng(run_seed: int, record_idx: int) -> np.random.Generator:
    """The RNG stream of one record in a run: reproducible whatever the record order."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([run_seed, record_idx])))


def absorb_many(
    searches: list[RecordSearch], results: list[EvalResult], difficulty: int, token_set: np.ndarray
) -> list[Generation]:
    """``absorb`` for several records at once (same parameters): the scoring and breeding
    run as (K, N) array operations, while each record keeps its own RNG stream, so a
    record's search is the same whichever records share its batch."""
    p = searches[0].params
    if any(s.params != p for s in searches):
        raise ValueError("absorb_many needs searches with the same parameters")
    hashes = [s._take(r) for s, r in zip(searches, results, strict=True)]
    table = np.stack([s.results for s in searches])
    targets = np.array([spec.target_word(s.token, p.token_bits) for s in searches], dtype=np.uint32)
    sc = group_rewards(table[:, :, 0], table[:, :, 1], targets, p.token_bits, difficulty,
                       token_set, p.weights)  # fmt: skip
    adv = group_advantages(sc.reward)
    n = p.population
    ties = np.broadcast_to(-np.arange(n), sc.reward.shape)
    best = np.lexsort((ties, sc.reward, sc.prefix_bits), axis=-1)[:, -1]
    gens = []
    for k, s in enumerate(searches):
        i = int(best[k])
        gens.append(Generation(
            number=s.generation, evaluated=len(hashes[k]), dsha=results[k].dsha,
            best=s._member(i, int(sc.prefix_bits[k, i]), float(sc.reward[k, i])),
            winners=int(sc.winner[k].sum()), mean_reward=float(sc.reward[k].mean()),
            new_hashes=hashes[k],
        ))  # fmt: skip
    _breed_many(searches, sc.reward, adv)
    return gens


def _breed_many(searches: list[RecordSearch], reward: np.ndarray, adv: np.ndarray) -> None:
    """The next generation of every record: elite (carried), mutants of the elite (fewer
    flips the larger |advantage|), fresh seeds; then the per-record duplicate check."""
    p = searches[0].params
    n = reward.shape[1]
    n_child = n - p.n_elite - p.n_fresh
    elite = np.argsort(-reward, axis=1, kind="stable")[:, : p.n_elite]
    draws = [s._draw(n_child, p.n_fresh) for s in searches]
    parents = np.take_along_axis(elite, np.stack([d[0] for d in draws]), axis=1)
    flips = np.clip(
        MAX_FLIPS / (np.abs(np.take_along_axis(adv, parents, axis=1)) + 1), 1, MAX_FLIPS
    )
    flipped = flip_masks(np.stack([d[1] for d in draws]), flips.astype(np.int64))
    for k, s in enumerate(searches):
        seeds = np.empty_like(s.seeds)
        results = np.zeros_like(s.results)
        carried = np.zeros_like(s.carried)
        seeds[: p.n_elite] = s.seeds[elite[k]]
        results[: p.n_elite] = s.results[elite[k]]
        carried[: p.n_elite] = True
        seeds[p.n_elite : p.n_elite + n_child] = s.seeds[parents[k]] ^ flipped[k]
        seeds[p.n_elite + n_child :] = draws[k][2]
        s._dedup(seeds, p.n_elite)
        s.seeds, s.results, s.carried = seeds, results, carried
        s.generation += 1


def flip_masks(bits: np.ndarray, flips: np.ndarray) -> np.ndarray:
    """XOR masks (..., 32 bytes) setting the first ``flips[...]`` of the drawn ``bits[..., f]``
    (bit 0 is the first byte's most significant bit; a bit drawn twice is set once)."""
    shape = bits.shape[:-1]
    rows = bits.reshape(-1, MAX_FLIPS)
    counts = np.broadcast_to(flips, shape).reshape(-1)
    out = np.zeros((rows.shape[0], spec.SEED_BYTES), dtype=np.uint8)
    every = np.arange(rows.shape[0])
    for f in range(MAX_FLIPS):
        on = every[counts > f]
        b = rows[on, f]
        out[on, b >> 3] |= (0x80 >> (b & 7)).astype(np.uint8)
    return out.reshape(*shape, spec.SEED_BYTES)
