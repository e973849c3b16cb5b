"""The abort flag: a numba call nobody waits for stops at its next look at the flag, so an
abandoned call's thread does not keep spinning. What is observed is the thread finishing
(a call that would run for minutes or hours), never a duration."""

from __future__ import annotations

import threading

import anyio
import numpy as np
import pytest

from hasherd.actors.backend import ThreadBackend
from hasherd.backends import create
from hasherd.errors import EvaluatorError
from hasherd.kernel.evaluators.base import EvalRequest, Evaluator, make_request
from hasherd.kernel.memory import JitterMemory
from tests.actors.faults import requests, same


def _endless(zero_bits: int) -> list[EvalRequest]:
    """A call of hours: k = 0 with the most passes, or a scan at 31 zero bits."""
    rng = np.random.default_rng(2)
    mem = JitterMemory(rng.integers(0, 2**32, size=(16, 12), dtype=np.uint64).astype(np.uint32))
    if zero_bits == 0:
        seeds = rng.integers(0, 256, size=(4096, 32), dtype=np.uint8)
        return [make_request([1] * 12, seeds, mem, 1 << 16, 0) for _ in range(8)]
    seeds = rng.integers(0, 256, size=(64, 32), dtype=np.uint8)
    return [make_request([1] * 12, seeds, mem, 22, zero_bits)]


def _started(ev: Evaluator, reqs: list[EvalRequest]) -> tuple[threading.Thread, list[object]]:
    outcome: list[object] = []

    def call() -> None:
        try:
            outcome.append(ev.evaluate_many(reqs))
        except EvaluatorError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=call, name="hasherd-abort-test")
    thread.start()
    return thread, outcome


@pytest.mark.parametrize("zero_bits", [0, 31])
def test_an_aborted_numba_call_returns_and_its_thread_ends(zero_bits: int) -> None:
    ev = create("numba")
    ev.warm_up()
    thread, outcome = _started(ev, _endless(zero_bits))
    thread.join(0.5)  # in the kernel by now (it would run for hours)
    assert thread.is_alive()
    ev.abort()
    thread.join(60)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], EvaluatorError)
    assert str(outcome[0]) == "evaluator 'numba': aborted"
    ev.clear_abort()  # the next call runs normally
    reqs = requests(2)
    assert same(ev.evaluate_many(reqs), reqs)


@pytest.mark.anyio
async def test_a_thread_backend_aborts_the_calls_given_and_runs_the_next() -> None:
    backend = ThreadBackend("hasherd-abort-backend", lambda: create("numba:1"))
    await backend.start()
    try:
        outcomes: list[object] = []

        async def endless() -> None:
            try:
                await backend.evaluate_many(_endless(31))
            except EvaluatorError as exc:
                outcomes.append(exc)

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(endless)
                tg.start_soon(endless)  # queued behind the first on the thread
                await anyio.sleep(0.5)
                backend.abort()
            reqs = requests(2)
            got = await backend.evaluate_many(reqs)  # given after the abort: runs
    finally:
        await backend.close()
    assert [str(e) for e in outcomes] == ["evaluator 'numba': aborted"] * 2
    assert same(got, reqs)
