"""How much of a batch an actor takes (``actors/sizing.py``) and what its rates say
(``actors/rates.py``): pure functions, checked on numbers."""

from __future__ import annotations

import pytest

from hasherd.actors.rates import CostModel, RateBook
from hasherd.actors.sizing import portion
from tests.actors.faults import requests


def test_a_device_far_slower_than_another_takes_nothing() -> None:
    # the rig: a chain at 2 s a record beside numba at 1 ms a record, 64 records
    assert portion([2.0] * 64, [0.064], bound=5) == 0
    # even one record past the bound, while a faster actor serves it
    assert portion([6.0] * 2, [11.0], bound=5) == 0


def test_the_only_or_fastest_actor_takes_at_least_one_record_even_past_the_bound() -> None:
    assert portion([110.0] * 3, [], bound=5) == 1
    assert portion([110.0] * 3, [400.0], bound=5) == 1


def test_small_work_is_not_cut_and_large_work_is_shared_by_rate_within_the_bound() -> None:
    assert portion([0.001] * 2, [], bound=5) == 2  # alone: all of it
    assert portion([0.0005] * 2, [0.001], bound=5) == 2  # a cut would save under 20 ms
    assert portion([0.1] * 64, [6.4], bound=5) == 32  # two equal actors: half each
    assert portion([0.01] * 100, [1.0], bound=5) == 50
    assert portion([0.1] * 64, [], bound=1) == 10  # never more than the bound
    assert portion([], [1.0], bound=5) == 0


def test_rates_start_pessimistic_and_follow_measurements() -> None:
    chip = RateBook(CostModel(job_seconds=0.15))
    assert chip.seconds_per_candidate(4, 22) == pytest.approx(23 * 0.15)
    sim = RateBook(CostModel(hashes_per_second=1e6))
    reqs = requests(2, seeds=100)  # k = 0, 21 passes
    first = sim.seconds(reqs)
    assert first == [pytest.approx(100 * 22 / 1e6)] * 2
    sim.record(reqs, 0.0011)  # measured: 200 candidates in 1.1 ms, 4x the model's speed
    assert sim.seconds_per_candidate(0, 21) == pytest.approx(0.0011 / 200)
    # another setting: the model scaled by how the measurement compared with it
    assert sim.seconds_per_candidate(8, 21) == pytest.approx(22 * 256 / 1e6 / 4)
    sim.record(reqs, 0.0022)  # a moving average, not the last value
    assert 0.0011 / 200 < sim.seconds_per_candidate(0, 21) < 0.0022 / 200
    assert list(sim.snapshot()) == ["k=0,p=21"]
