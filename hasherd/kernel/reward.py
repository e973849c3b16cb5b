"""Rewards and the GRPO advantage (kernel.md, "Reward and advantage").

Scalar functions follow the text; ``batch_rewards`` computes the same for a whole group
with numpy, since training scores every candidate of every generation.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from hasherd.errors import InputError
from hasherd.kernel import spec

STD_EPSILON = 1e-12


@dataclass(frozen=True, slots=True)
class RewardWeights:
    """The reward's weights; the defaults are kernel v1's."""

    alignment: float = 0.6
    stability: float = 0.3
    format: float = 0.1
    match_scale: float = 0.85
    winner_bonus: float = 0.10

    def __post_init__(self) -> None:
        for name in ("alignment", "stability", "format", "match_scale", "winner_bonus"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
                raise InputError(f"reward.{name}", f"{value!r} is not a finite number >= 0")


DEFAULT_WEIGHTS = RewardWeights()


@dataclass(frozen=True, slots=True)
class Reward:
    target_word: int
    matching_bits: int
    prefix_bits: int
    winner: bool
    alignment: float
    stability: float
    format: float
    reward: float


def reward(
    output: int,
    last_pass_key: int,
    token: int,
    token_bits: int,
    difficulty_bits: int,
    token_map: Iterable[int],
    weights: RewardWeights = DEFAULT_WEIGHTS,
) -> Reward:
    """The reward of one candidate's output for ``token`` at ``difficulty_bits``."""
    out = spec.check_u32(output, "output")
    key = spec.check_u32(last_pass_key, "last_pass_key")
    target = spec.target_word(token, token_bits)
    matching = spec.matching_bits(out, target)
    prefix = spec.prefix_bits(out, target)
    winner = prefix >= difficulty_bits
    if out == target:
        alignment = 1.0
    else:
        alignment = weights.match_scale * matching / 32 + (weights.winner_bonus if winner else 0.0)
    stability = 1 - (key ^ out).bit_count() / 32
    fmt = 1.0 if spec.decode(out, token_bits) in set(token_map) else 0.0
    total = weights.alignment * alignment + weights.stability * stability + weights.format * fmt
    return Reward(target, matching, prefix, winner, alignment, stability, fmt, total)


def _popcount32(x: np.ndarray) -> np.ndarray:
    return np.bitwise_count(x.astype(np.uint32)).astype(np.int64)


def _clz32(x: np.ndarray) -> np.ndarray:
    # frexp's exponent is the bit length, exactly, for integers below 2^53 (0 gives 0).
    _, length = np.frexp(x.astype(np.uint32).astype(np.float64))
    return (32 - length).astype(np.int64)


@dataclass(frozen=True)
class BatchRewards:
    """Per-candidate reward parts for one group (arrays of shape (N,))."""

    prefix_bits: np.ndarray
    matching_bits: np.ndarray
    winner: np.ndarray
    reward: np.ndarray

    def row(self, k: int) -> BatchRewards:
        return BatchRewards(
            self.prefix_bits[k], self.matching_bits[k], self.winner[k], self.reward[k]
        )


def batch_rewards(
    outputs: np.ndarray,
    last_keys: np.ndarray,
    token: int,
    token_bits: int,
    difficulty_bits: int,
    token_set: np.ndarray,
    weights: RewardWeights = DEFAULT_WEIGHTS,
) -> BatchRewards:
    """``reward`` for every candidate of a group; ``token_set`` is a sorted uint32 array."""
    target = np.array([spec.target_word(token, token_bits)], dtype=np.uint32)
    return group_rewards(
        outputs[None, :],
        last_keys[None, :],
        target,
        token_bits,
        difficulty_bits,
        token_set,
        weights,
    ).row(0)


def group_rewards(
    outputs: np.ndarray,
    last_keys: np.ndarray,
    targets: np.ndarray,
    token_bits: int,
    difficulty_bits: int,
    token_set: np.ndarray,
    weights: RewardWeights = DEFAULT_WEIGHTS,
) -> BatchRewards:
    """``reward`` for (K, N) candidates of K groups at once; ``targets`` holds each group's
    target word (K,), ``token_set`` is a sorted uint32 array."""
    out = outputs.astype(np.uint32)
    target = targets.astype(np.uint32)[:, None]
    xor = out ^ target
    matching = 32 - _popcount32(xor)
    prefix = _clz32(xor)
    winner = prefix >= difficulty_bits
    alignment = np.where(
        out == target,
        1.0,
        weights.match_scale * matching / 32 + np.where(winner, weights.winner_bonus, 0.0),
    )
    stability = 1 - _popcount32(last_keys.astype(np.uint32) ^ out) / 32
    decoded = out >> np.uint32(32 - token_bits)
    if len(token_set):
        at = np.minimum(np.searchsorted(token_set, decoded), len(token_set) - 1)
        fmt = (token_set[at] == decoded).astype(np.float64)
    else:
        fmt = np.zeros(out.shape)
    total = weights.alignment * alignment + weights.stability * stability + weights.format * fmt
    return BatchRewards(prefix, matching, winner, total)


def group_advantages(rewards: np.ndarray) -> np.ndarray:
    """``advantages`` of each row of a (K, N) array (each row is one group)."""
    std = rewards.std(axis=1, keepdims=True)
    centred = rewards - rewards.mean(axis=1, keepdims=True)
    out: np.ndarray = np.where(
        std < STD_EPSILON, 0.0, centred / np.where(std < STD_EPSILON, 1.0, std)
    )
    return out


def advantages(rewards: Sequence[float] | np.ndarray) -> np.ndarray:
    """GRPO advantage: ``(r - mean) / std`` with the population std; 0 when std < 1e-12."""
    r = np.asarray(rewards, dtype=np.float64)
    if r.ndim != 1 or r.size == 0:
        raise InputError("rewards", "expected a non-empty list of numbers")
    if not np.all(np.isfinite(r)):
        raise InputError("rewards", "every reward must be finite")
    out: np.ndarray = group_advantages(r[None, :])[0]
    return out
