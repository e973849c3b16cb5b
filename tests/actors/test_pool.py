"""The actor pool: dispatch, re-dispatch of a failed actor's work, restarts, bounds.

Every result comes from the real numba evaluator. Failures are injected by wrapping it
(``Flaky``, ``Stuck``): a fault injector, not a fake, since the work it lets through is
the real evaluator's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import anyio
import numpy as np
import pytest

from hasherd.actors.base import ActorError, ActorState, NoActorError
from hasherd.actors.evaluator import EvaluatorActor
from hasherd.actors.pool import ActorPool
from hasherd.backends import create
from hasherd.kernel.evaluators.base import EvalRequest, EvalResult, Evaluator, make_request
from hasherd.kernel.memory import JitterMemory

pytestmark = pytest.mark.anyio


class Flaky(Evaluator):
    """The numba evaluator, except that calls listed in ``fail_on`` raise (fault injection)."""

    def __init__(self, fail_on: Sequence[int] = (), stuck_on: Sequence[int] = ()) -> None:
        self.inner = create("numba:1")
        self.fail_on, self.stuck_on = set(fail_on), set(stuck_on)
        self.calls = 0
        self.release = threading.Event()

    def warm_up(self) -> float:
        return self.inner.warm_up()

    def evaluate_many(self, reqs: Sequence[EvalRequest]) -> list[EvalResult]:
        self.calls += 1
        if self.calls in self.fail_on:
            raise RuntimeError(f"injected failure on call {self.calls}")
        if self.calls in self.stuck_on:
            self.release.wait(10)  # a hung device
        return self.inner.evaluate_many(reqs)

    def _evaluate(self, req: EvalRequest) -> EvalResult:
        return self.inner.evaluate_request(req)


def _batches(n: int) -> tuple[list[list[EvalRequest]], JitterMemory]:
    rng = np.random.default_rng(7)
    frames = rng.integers(0, 2**32, size=(32, 12), dtype=np.uint64).astype(np.uint32)
    mem = JitterMemory(frames)
    out = []
    for i in range(n):
        seeds = rng.integers(0, 256, size=(24, 32), dtype=np.uint8)
        out.append([make_request(frames[i % 32], seeds, mem), make_request(frames[3], seeds, mem)])
    return out, mem


def _same(a: list[EvalResult], b: list[EvalResult]) -> bool:
    return all(np.array_equal(x.output, y.output) for x, y in zip(a, b, strict=True))


async def _run_pool(
    pool: ActorPool, batches: list[list[EvalRequest]], until: Callable[[], bool] = lambda: True
) -> list[list[EvalResult]]:
    """Run the batches concurrently on a running pool, then wait for ``until()``."""
    results: list[list[EvalResult]] = [[] for _ in batches]
    async with anyio.create_task_group() as tg:
        await tg.start(pool.run)

        async def one(i: int) -> None:
            results[i] = await pool.evaluate(batches[i])

        async with anyio.create_task_group() as jobs:
            for i in range(len(batches)):
                jobs.start_soon(one, i)
        with anyio.fail_after(30):
            while not until():
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    return results


async def test_batches_spread_over_actors_and_agree_with_direct_evaluation() -> None:
    batches, _ = _batches(12)
    direct = create("numba:1")
    want = [direct.evaluate_many(b) for b in batches]
    actors = [EvaluatorActor(f"cpu{i}", "numba", lambda: create("numba:1")) for i in range(2)]
    got = await _run_pool(ActorPool(actors), batches)
    assert all(_same(g, w) for g, w in zip(got, want, strict=True))
    jobs = [a.stats.jobs for a in actors]
    assert sum(jobs) == 12 and min(jobs) >= 1  # work-conserving: both took work
    assert all(a.state == ActorState.STOPPED for a in actors)  # stopped with the pool


async def test_a_failed_actor_loses_nothing_and_is_restarted() -> None:
    batches, _ = _batches(10)
    want = [create("numba:1").evaluate_many(b) for b in batches]
    flaky = Flaky(fail_on=[2, 3])
    actors = [
        EvaluatorActor("bad", "numba", lambda: flaky),
        EvaluatorActor("good", "numba", lambda: create("numba:1")),
    ]
    pool = ActorPool(actors, backoff_first=0.01)
    got = await _run_pool(pool, batches, until=lambda: actors[0].state == ActorState.READY)
    assert all(_same(g, w) for g, w in zip(got, want, strict=True))
    bad = actors[0].stats
    assert bad.failures >= 1 and bad.restarts >= 1
    assert "RuntimeError" in bad.errors and "injected failure" in bad.last_error
    assert pool.redispatched >= 1


async def test_a_hung_actor_times_out_and_its_batch_moves() -> None:
    batches, _ = _batches(4)
    want = [create("numba:1").evaluate_many(b) for b in batches]
    stuck = Flaky(stuck_on=[1])  # its first batch (it is picked first: equal loads)
    actors = [
        EvaluatorActor("stuck", "numba", lambda: stuck, timeout=0.5),
        EvaluatorActor("good", "numba", lambda: create("numba:1")),
    ]
    pool = ActorPool(actors, backoff_first=60)
    try:
        got = await _run_pool(pool, batches)
    finally:
        stuck.release.set()
    assert all(_same(g, w) for g, w in zip(got, want, strict=True))
    assert actors[0].stats.failures == 1
    assert "longer than 0.5 s" in actors[0].stats.last_error


async def test_when_every_actor_fails_the_caller_gets_a_typed_error() -> None:
    batches, _ = _batches(1)
    flaky = Flaky(fail_on=range(1, 100))
    pool = ActorPool(
        [EvaluatorActor("bad", "numba", lambda: flaky)], backoff_first=0.01, max_attempts=3
    )
    async with anyio.create_task_group() as tg:
        await tg.start(pool.run)
        with pytest.raises(ActorError, match="injected failure on call 3"):
            await pool.evaluate(batches[0][:1])
        tg.cancel_scope.cancel()
    assert flaky.calls == 3  # tried max_attempts times, then gave up


async def test_mailboxes_bound_the_work_in_flight() -> None:
    batches, _ = _batches(20)
    actors = [EvaluatorActor("cpu", "numba", lambda: create("numba:1"), mailbox=2)]
    pool = ActorPool(actors)
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, actors[0].load)
            await anyio.sleep(0)

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        got = await _run_pool(pool, batches)
        tg.cancel_scope.cancel()
    assert len(got) == 20 and all(len(g) == 2 for g in got)
    assert 1 <= peak <= 2


async def test_restart_on_request_moves_queued_work() -> None:
    batches, _ = _batches(6)
    actors = [EvaluatorActor(f"cpu{i}", "numba", lambda: create("numba:1")) for i in range(2)]
    pool = ActorPool(actors)
    async with anyio.create_task_group() as tg:
        await tg.start(pool.run)
        await pool.restart("cpu0")
        assert actors[0].stats.restarts == 1 and actors[0].state == ActorState.READY
        got = [await pool.evaluate(b) for b in batches]
        tg.cancel_scope.cancel()
    assert len(got) == 6
    with pytest.raises(KeyError):
        await pool.restart("nope")


async def test_a_stopped_pool_refuses_work() -> None:
    batches, _ = _batches(1)
    pool = ActorPool([EvaluatorActor("cpu", "numba", lambda: create("numba:1"))])
    async with anyio.create_task_group() as tg:
        await tg.start(pool.run)
        tg.cancel_scope.cancel()
    with pytest.raises(NoActorError), anyio.fail_after(10):  # refused, not left waiting
        await pool.evaluate(batches[0])
