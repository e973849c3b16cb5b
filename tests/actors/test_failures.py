"""Bounded failure in the pool: straggler copies, timeouts cut in halves, a typed error
after the bounded retries, a withdrawn job while its piece is stuck, and the health check.

Every result comes from the real numba evaluator behind a fault injector
(tests/actors/faults.py); a "hung" device waits until released or aborted.
"""

from __future__ import annotations

import anyio
import pytest

from hasherd.actors.base import ActorError, ActorState, BatchFailed, JobWithdrawn
from hasherd.actors.pool import ActorPool
from hasherd.kernel.evaluators.base import EvalResult
from tests.actors.faults import FailsAlways, HangsOn, Wrapped, actor, requests, same

pytestmark = pytest.mark.anyio


async def test_a_straggler_is_copied_the_first_answer_wins_and_the_later_is_counted() -> None:
    late = HangsOn(lambda call, _: call == 1)  # its first call hangs until released
    good = Wrapped()
    actors = [actor("late", late, timeout=60), actor("good", good)]
    pool = ActorPool(actors, straggler_factor=2, straggler_floor=0.05, tick=0.01)
    reqs = requests(3)
    lease = pool.lease(1, zero_bits=0, passes=21)
    async with anyio.create_task_group() as tg:
        await tg.start(pool.run)
        with anyio.fail_after(60):
            got = await lease.evaluate(reqs)  # "late" took it first (listed first)
            assert late.calls == [3] and good.calls == [3]  # the same piece, twice
            assert pool.duplicates == 0  # the late copy has not answered yet
            late.release.set()
            while pool.duplicates == 0:
                await anyio.sleep(0.01)
        snap = lease.snapshot()
        lease.close()
        tg.cancel_scope.cancel()
    assert same(got, reqs)
    assert snap["duplicates"] == 1 and actors[0].stats.duplicates == 1
    assert actors[0].stats.failures == 0  # late, not failed


async def test_a_timed_out_piece_is_cut_in_halves_before_it_is_retried() -> None:
    big = HangsOn(lambda _, n: n > 2)  # a device that cannot finish more than 2 records
    actors = [actor("cpu", big, timeout=0.3)]
    pool = ActorPool(actors, backoff_first=0.01, straggler_floor=60)
    reqs = requests(8)
    async with anyio.create_task_group() as tg:
        await tg.start(pool.run)
        with anyio.fail_after(60):
            got = await pool.evaluate(reqs)
        tg.cancel_scope.cancel()
    assert same(got, reqs)
    assert big.calls[0] == 8 and sorted(big.calls) == [2, 2, 2, 2, 4, 4, 8]
    assert actors[0].stats.failures == 3 and actors[0].stats.abandoned == 3


async def test_a_record_that_keeps_timing_out_fails_its_batch_naming_device_bits_cause() -> None:
    stuck = HangsOn(lambda *_: True)
    pool = ActorPool(
        [actor("cpu0", stuck, timeout=0.2)], backoff_first=0.01, max_attempts=3, straggler_floor=60
    )
    async with anyio.create_task_group() as tg:
        await tg.start(pool.run)
        with anyio.fail_after(60), pytest.raises(BatchFailed) as caught:
            await pool.evaluate(requests(2))
        tg.cancel_scope.cancel()
    exc = caught.value
    assert str(exc) == "actor cpu0 at zero_bits 0: a batch took longer than 0.2 s (3 attempts)"
    assert (exc.actor, exc.zero_bits) == ("cpu0", 0)
    assert stuck.calls == [2, 1, 1, 1, 1] or stuck.calls[:3] == [2, 1, 1]  # cut, then bounded


async def test_closing_a_lease_fails_its_work_at_once_while_a_piece_is_stuck() -> None:
    stuck = HangsOn(lambda call, _: call == 1)
    actors = [actor("cpu", stuck, timeout=60, mailbox=2)]
    pool = ActorPool(actors, straggler_floor=60)
    lease = pool.lease(5, zero_bits=0, passes=21)
    other = pool.lease(6, zero_bits=0, passes=21)
    outcomes: list[BaseException] = []

    async def one() -> None:
        try:
            await lease.evaluate(requests(2))
        except JobWithdrawn as exc:
            outcomes.append(exc)

    async with anyio.create_task_group() as tg:
        await tg.start(pool.run)
        with anyio.fail_after(60):
            tg.start_soon(one)  # runs, and hangs
            tg.start_soon(one)  # waits in the mailbox
            while actors[0].current is None or not actors[0].queued:
                await anyio.sleep(0.01)
            with anyio.fail_after(1):  # at once, not after the device's 60 s timeout
                lease.close()
                while len(outcomes) < 2:
                    await anyio.sleep(0.001)
            assert actors[0].queued == []  # the waiting piece was taken back
            while actors[0].load:  # the hung call saw the abort flag and returned
                await anyio.sleep(0.01)
            got: list[EvalResult] = await other.evaluate(requests(1))  # the actor serves on
        other.close()
        tg.cancel_scope.cancel()
    assert [str(e) for e in outcomes] == ["job 5 was withdrawn from the actor pool"] * 2
    assert len(got) == 1 and stuck.calls == [2, 1]
    s = actors[0].stats
    assert (s.failures, s.abandoned, actors[0].state) == (0, 1, ActorState.STOPPED)


async def test_health_is_degraded_while_an_actor_keeps_failing() -> None:
    bad = FailsAlways()
    actors = [actor("bad", bad), actor("good", Wrapped())]
    pool = ActorPool(actors, backoff_first=0.01, backoff_max=0.01)
    async with anyio.create_task_group() as tg:
        await tg.start(pool.run)
        with anyio.fail_after(60):
            assert pool.healthy() == (True, "2 of 2 actors working")
            while len(bad.calls) < 3:  # pinned to "bad": it fails each
                with pytest.raises(ActorError, match="injected failure"):
                    await pool.evaluate_on("bad", requests(1))
            ok, why = pool.healthy()
            assert not ok
            assert why.startswith("degraded: actor bad failed 3 times in a row (RuntimeError: ")
            assert same(await pool.evaluate(requests(2)), requests(2))  # "good" serves on
        tg.cancel_scope.cancel()
    assert actors[0].snapshot()["failing"] >= 3
