"""Jobs sharing the pool through leases: fair share by priority, sizing by measured rate,
pieces reassembled in order, and the lease's handle (lanes, snapshot, can_serve).

Every result comes from the real numba evaluator; a slow device is ``DeliberatelySlow``
(tests/actors/faults.py), which sleeps before evaluating.
"""

from __future__ import annotations

import threading

import anyio
import pytest

from hasherd.actors.base import JobWithdrawn
from hasherd.actors.evaluator import EvaluatorActor
from hasherd.actors.lease import JobLease
from hasherd.actors.pool import ActorPool
from hasherd.actors.rates import CostModel
from hasherd.backends import create
from hasherd.errors import InputError
from hasherd.kernel.evaluators.base import EvalResult, make_request
from tests.actors.faults import DeliberatelySlow, Wrapped, actor, requests, same

pytestmark = pytest.mark.anyio


async def _share_out(priorities: tuple[int, int], total: int) -> list[int]:
    """Two leases keep the one actor busy until ``total`` batches are done between them;
    the batches each lease got done."""
    pool = ActorPool([EvaluatorActor("cpu", "numba", lambda: create("numba:1"), mailbox=1)])
    done = [0, 0]
    reqs = requests(4, seeds=1024)  # milliseconds of kernel a batch: more than the overheads
    async with anyio.create_task_group() as tg:
        await tg.start(pool.run)
        leases = [
            pool.lease(i, zero_bits=0, passes=21, priority=p) for i, p in enumerate(priorities)
        ]

        async def feed(i: int, lease: JobLease) -> None:
            while sum(done) < total:
                await lease.evaluate(reqs)
                done[i] += 1

        with anyio.fail_after(120):
            async with anyio.create_task_group() as feeders:
                for i, lease in enumerate(leases):
                    for _ in range(3):  # more batches waiting than the actor holds
                        feeders.start_soon(feed, i, lease)
        shares = [lease.snapshot()["share"] for lease in leases]
        for lease in leases:
            lease.close()
        tg.cancel_scope.cancel()
    assert 0.99 <= sum(shares) <= 1.01  # they shared the one actor between them
    return done


async def test_two_leases_both_progress_and_priority_changes_the_split() -> None:
    even = await _share_out((1, 1), 60)
    weighted = await _share_out((1, 4), 60)
    assert min(even) >= 15  # both progress, about half each
    assert weighted[0] >= 3 and weighted[1] >= 2 * weighted[0]  # 4:1 gives the second more


async def test_a_slow_actor_gets_no_work_a_fast_idle_one_would_finish_first() -> None:
    slow = DeliberatelySlow(per_request=0.2)
    fast = Wrapped()
    actors = [actor("slow", slow), actor("fast", fast)]
    pool = ActorPool(actors, max_batch_seconds=1.0, straggler_floor=60)  # no copies
    batches = [requests(6, seed=i) for i in range(8)]
    got: list[list[EvalResult]] = []
    async with anyio.create_task_group() as tg:
        await tg.start(pool.run)
        with anyio.fail_after(60):
            for reqs in batches:  # one at a time: the fast actor is idle at each
                got.append(await pool.evaluate(reqs))
        tg.cancel_scope.cancel()
    assert all(same(g, r) for g, r in zip(got, batches, strict=True))
    # the slow actor took its first piece unmeasured (an equal first estimate), and no
    # more once measured: a fast actor finishes a whole batch before it finishes one record
    assert len(slow.calls) <= 1 and sum(fast.calls) + sum(slow.calls) == 6 * 8
    assert actors[0].snapshot()["rates"] and actors[1].snapshot()["rates"]


async def test_a_batch_cut_between_actors_comes_back_in_order_and_posts_off_the_loop() -> None:
    # two equally fast actors and a batch far over the bound: cut, served by both
    a, b = Wrapped(), Wrapped()
    actors = [actor("a", a), actor("b", b)]
    pool = ActorPool(actors, max_batch_seconds=0.1)
    for x in actors:  # a measured rate: a record of 2048 candidates takes about 0.05 s
        x.rates.record(requests(1, seeds=64), 0.05 * 64 / 2048)
    reqs = requests(24, seeds=2048)
    async with anyio.create_task_group() as tg:
        await tg.start(pool.run)
        with anyio.fail_after(120):
            got, where = await pool.evaluate_then(
                reqs, lambda results: (len(results), threading.current_thread().name)
            )
        tg.cancel_scope.cancel()
    assert same(got, reqs)
    assert where[0] == 24 and where[1] != threading.main_thread().name
    assert len(a.calls) + len(b.calls) >= 4 and max(a.calls + b.calls) < 24  # cut
    assert a.calls and b.calls  # both served it


async def test_the_lease_handle() -> None:
    pool = ActorPool([actor("cpu", Wrapped(), max_zero_bits=6)])
    lease = pool.lease(7, zero_bits=0, passes=21, priority=5)
    assert lease.lanes == 2  # the mailbox of the one actor serving it
    assert pool.can_serve(6, 21) is None
    assert pool.can_serve(9, 21) == (
        "no actor serves zero_bits 9: simulators up to devices.simulator_max_zero_bits = 6"
    )
    with pytest.raises(InputError, match="priority"):
        lease.set_priority(0)
    lease.set_priority(1000)
    async with anyio.create_task_group() as tg:
        await tg.start(pool.run)
        with anyio.fail_after(60):
            results, after = await lease.evaluate_then(requests(2), lambda r: len(r))
        snap = lease.snapshot()
        lease.close()
        lease.close()  # idempotent
        with pytest.raises(JobWithdrawn, match="job 7"):
            await lease.evaluate(requests(1))
        tg.cancel_scope.cancel()
    assert after == 2 and len(results) == 2
    assert snap == {
        "priority": 1000,
        "share": 1.0,
        "in_flight": 0,
        "candidates": 32,
        "duplicates": 0,
    }


async def test_a_chip_only_job_and_a_simulator_job_never_wait_on_each_other() -> None:
    chip = DeliberatelySlow(per_request=0.3)  # stands for a chain at zero bits 4: slow
    cpu = Wrapped()
    actors = [
        actor("chain0", chip, zero_bits=4, mailbox=1),
        actor("cpu", cpu, max_zero_bits=2),  # a simulator that does not serve 4
    ]
    pool = ActorPool(actors)
    chip_job = pool.lease(1, zero_bits=4, passes=2)
    sim_job = pool.lease(2, zero_bits=0, passes=21)
    chip_reqs = [make_request(r.slots, r.seeds[:2], r.memory, 2, 4) for r in requests(2)]
    sim_done = 0
    async with anyio.create_task_group() as tg:
        await tg.start(pool.run)
        with anyio.fail_after(60):
            async with anyio.create_task_group() as jobs:
                jobs.start_soon(chip_job.evaluate, chip_reqs)
                while not chip.calls:  # the chain is busy with the chip job
                    await anyio.sleep(0.01)
                while actors[0].current is not None:  # meanwhile the simulator serves
                    await sim_job.evaluate(requests(2))
                    sim_done += 1
        for lease in (chip_job, sim_job):
            lease.close()
        tg.cancel_scope.cancel()
    assert sim_done >= 2 and chip.calls == [2] and cpu.calls.count(2) == sim_done


def test_lanes_leave_out_an_actor_far_slower_than_the_fastest() -> None:
    chain = CostModel(job_seconds=0.15)  # the first estimate of a chain at 0.15 s a job
    cpu = actor("cpu", Wrapped())
    slow_chain = actor("chain0", Wrapped(), zero_bits=4, mailbox=1, cost=chain)
    pool = ActorPool([cpu, slow_chain])
    assert pool.lease(1, zero_bits=4, passes=21).lanes == 2  # the simulator's mailbox only
    assert pool.capacity_for(4) == 3
    alone = ActorPool([actor("cpu", Wrapped(), max_zero_bits=2), slow_chain])
    assert alone.lease(2, zero_bits=4, passes=21).lanes == 1  # the chain, the only one
