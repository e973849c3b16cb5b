"""Rewards and the GRPO advantage."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hasherd.errors import InputError
from hasherd.kernel import reward as R


def test_reward_vectors(kernel_vectors: dict[str, Any]) -> None:
    for case in kernel_vectors["reward"]:
        got = R.reward(
            case["output"],
            case["last_pass_key"],
            case["token"],
            case["token_bits"],
            case["difficulty_bits"],
            case["token_map"],
        )
        for field, want in case["expect"].items():
            assert getattr(got, field) == pytest.approx(want, abs=1e-9), field


def test_advantage_vectors(kernel_vectors: dict[str, Any]) -> None:
    for case in kernel_vectors["advantage"]:
        got = R.advantages(case["rewards"])
        np.testing.assert_allclose(got, case["advantages"], atol=1e-9, rtol=0)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=40),
    st.integers(1, 32),
    st.integers(1, 32),
    st.data(),
)
def test_batch_rewards_equal_the_scalar_reward(
    outputs: list[int], token_bits: int, difficulty: int, data: st.DataObject
) -> None:
    token = data.draw(st.integers(0, 2**token_bits - 1))
    keys = data.draw(
        st.lists(st.integers(0, 2**32 - 1), min_size=len(outputs), max_size=len(outputs))
    )
    token_map = sorted({token, 3, outputs[0] >> (32 - token_bits)})
    batch = R.batch_rewards(
        np.array(outputs, dtype=np.uint32),
        np.array(keys, dtype=np.uint32),
        token,
        token_bits,
        difficulty,
        np.array(token_map, dtype=np.uint32),
    )
    for i, (out, key) in enumerate(zip(outputs, keys, strict=True)):
        one = R.reward(out, key, token, token_bits, difficulty, token_map)
        assert batch.reward[i] == pytest.approx(one.reward, abs=1e-12)
        assert batch.prefix_bits[i] == one.prefix_bits
        assert batch.matching_bits[i] == one.matching_bits
        assert bool(batch.winner[i]) == one.winner


def test_exact_output_gets_full_alignment() -> None:
    target = 5 << 15
    got = R.reward(target, target, 5, 17, 32, [5])
    assert got.alignment == 1.0 and got.stability == 1.0 and got.format == 1.0
    assert got.reward == pytest.approx(1.0)


def test_weights_are_configurable_and_checked() -> None:
    w = R.RewardWeights(alignment=1.0, stability=0.0, format=0.0)
    assert R.reward(0, 0, 0, 17, 12, []).reward == pytest.approx(0.9)  # token 0 not in the map
    assert R.reward(0, 0, 0, 17, 12, [], w).reward == pytest.approx(1.0)
    assert R.reward(1, 0, 0, 17, 12, [], w).reward == pytest.approx(0.85 * 31 / 32 + 0.1)
    with pytest.raises(InputError, match=r"reward\.stability"):
        R.RewardWeights(stability=-1.0)
    with pytest.raises(InputError, match=r"reward\.format"):
        R.RewardWeights(format=float("nan"))


def test_advantages_edge_cases() -> None:
    assert R.advantages([0.3] * 5).tolist() == [0.0] * 5
    assert R.advantages([1.0]).tolist() == [0.0]
    a = R.advantages([0.0, 1.0])
    assert a.tolist() == [-1.0, 1.0]
    for bad in ([], [float("inf")], [[1.0, 2.0]]):
        with pytest.raises(InputError, match="rewards"):
            R.advantages(bad)
