"""The seam under an evaluator actor: the thread-backed backend of an in-process evaluator,
and the actor's lifecycle and mailbox as the pool drives them.

Every result comes from the real reference evaluator; ``Recorder`` wraps it to note the
thread of each call (and to fail or hold a call on request: fault injection).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import anyio
import numpy as np
import pytest

from hasherd.actors.backend import ThreadBackend
from hasherd.actors.base import ActorError, ActorState, EvalJob
from hasherd.actors.evaluator import EvaluatorActor
from hasherd.actors.pool import ActorPool
from hasherd.kernel.evaluators.base import EvalRequest, EvalResult, make_request
from hasherd.kernel.evaluators.reference import ReferenceEvaluator
from hasherd.kernel.memory import JitterMemory

pytestmark = pytest.mark.anyio


class Recorder(ReferenceEvaluator):
    """The reference evaluator, noting the thread of each call; ``warm_up`` raises when
    ``broken``, and a batch waits for ``go`` when ``hold`` (fault injection)."""

    def __init__(self, *, broken: bool = False, hold: bool = False) -> None:
        self.calls: list[tuple[str, str]] = [("init", threading.current_thread().name)]
        self.broken = broken
        self.go = threading.Event()
        if not hold:
            self.go.set()

    def _note(self, what: str) -> None:
        self.calls.append((what, threading.current_thread().name))

    def warm_up(self) -> float:
        self._note("warm_up")
        if self.broken:
            raise RuntimeError("no device here")
        return 0.0

    def evaluate_many(self, reqs: Sequence[EvalRequest]) -> list[EvalResult]:
        self._note("evaluate")
        self.go.wait(30)
        return super().evaluate_many(reqs)

    def close(self) -> None:
        self._note("close")


def _requests(n: int = 2) -> list[EvalRequest]:
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 2**32, size=(8, 12), dtype=np.uint64).astype(np.uint32)
    mem = JitterMemory(frames)
    seeds = rng.integers(0, 256, size=(3, 32), dtype=np.uint8)
    return [make_request(frames[i], seeds, mem, 2) for i in range(n)]


def _job(reqs: list[EvalRequest]) -> EvalJob:
    return EvalJob(reqs, asyncio.get_running_loop().create_future())


async def _closed(thread_name: str) -> None:
    with anyio.fail_after(10):
        while any(t.name == thread_name for t in threading.enumerate()):
            await anyio.sleep(0.01)


async def test_a_thread_backend_runs_every_call_on_its_own_thread() -> None:
    made: list[Recorder] = []

    def make() -> Recorder:
        made.append(Recorder())
        return made[-1]

    backend = ThreadBackend("hasherd-t0", make)
    assert backend.threads == 0 and backend.device_stats() is None
    await backend.start()
    reqs = _requests()
    results = await backend.evaluate_many(reqs)
    want = ReferenceEvaluator().evaluate_many(reqs)
    assert all(np.array_equal(g.output, w.output) for g, w in zip(results, want, strict=True))
    thread = await backend.run_post(lambda _: threading.current_thread().name, results)
    assert backend.threads == 1 and backend.supports(32) and not backend.supports(33)
    await backend.close()
    await backend.close()  # idempotent
    await _closed("hasherd-t0")
    assert thread == "hasherd-t0"
    (ev,) = made
    assert [c for c, _ in ev.calls] == ["init", "warm_up", "evaluate", "close"]
    assert {t for _, t in ev.calls} == {"hasherd-t0"}
    with pytest.raises(ActorError, match="not started"):
        await backend.evaluate_many(reqs)


async def test_a_failed_start_closes_what_it_opened() -> None:
    ev = Recorder(broken=True)
    actor = EvaluatorActor("t1", "reference", lambda: ev)
    with pytest.raises(ActorError, match="cannot start: no device here"):
        await actor.start()
    await _closed("hasherd-t1")
    assert [c for c, _ in ev.calls] == ["init", "warm_up", "close"]
    assert actor.state == ActorState.FAILED and actor.stats.failures == 1
    assert actor.snapshot()["threads"] == 0


async def test_an_actor_is_built_from_exactly_one_source() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        EvaluatorActor("t2", "reference")
    with pytest.raises(ValueError, match="exactly one"):
        EvaluatorActor(
            "t2",
            "reference",
            ReferenceEvaluator,
            backend=lambda: ThreadBackend("x", ReferenceEvaluator),
        )


async def test_the_mailbox_gives_back_unstarted_jobs_only() -> None:
    actor = EvaluatorActor("t3", "reference", backend=lambda: ThreadBackend("t3", Recorder))
    await actor.start()
    first, second, third = (_job(_requests(1)) for _ in range(3))
    for job in (first, second, third):
        actor.give(job)
    assert await actor.next_job(actor.incarnation) is first
    assert actor.withdraw(second) and not actor.withdraw(second)
    assert actor.queued == [third] and actor.load == 1
    assert await actor.run_job(first)
    exc = ActorError("t3", "injected")
    assert await actor.fail(exc) == [third]  # what it had not started, to re-dispatch
    assert actor.state == ActorState.FAILED and actor.stats.last_error.endswith("injected")
    assert await actor.next_job(actor.incarnation) is None  # its work loop ends
    await actor.start()
    assert (actor.snapshot()["state"], actor.snapshot()["restarts"]) == ("ready", 1)
    assert await actor.stop() == [] and actor.snapshot()["state"] == "stopped"


async def test_a_restart_on_request_lets_the_running_job_finish() -> None:
    held = Recorder(hold=True)
    actor = EvaluatorActor("t4", "reference", lambda: held)
    pool = ActorPool([actor])
    reqs = _requests(1)
    got: list[EvalResult] = []

    async def one() -> None:
        got.extend(await pool.evaluate(reqs))

    async with anyio.create_task_group() as tg:
        await tg.start(pool.run)
        tg.start_soon(one)
        with anyio.fail_after(30):
            while actor.current is None:
                await anyio.sleep(0.01)
            tg.start_soon(pool.restart, "t4")
            await anyio.sleep(0.2)
            assert actor.snapshot()["state"] == "busy" and actor.stats.restarts == 0  # waits
            held.go.set()
            while (actor.snapshot()["state"], actor.snapshot()["restarts"]) != ("ready", 1):
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    assert np.array_equal(got[0].output, ReferenceEvaluator().evaluate_many(reqs)[0].output)
    assert actor.stats.jobs == 1 and actor.stats.restarts == 1
    assert actor.state == ActorState.STOPPED
