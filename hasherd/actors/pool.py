"""The actor pool: work-conserving dispatch over evaluator actors, and their supervisor.

``await pool.evaluate(reqs)`` hands a batch to an actor that serves its zero bits and has
room in its mailbox: a free chip chain that serves exactly those zero bits first, else
the least-loaded actor (waiting while every mailbox is full: that is the bound on work in
flight), and returns its results. ``evaluate_on`` pins a batch to one actor. When an
actor fails a job, the job goes to another actor (up to ``max_attempts`` tries), the jobs
waiting in the failed actor's mailbox are dispatched again, and the supervisor restarts
the actor after an exponential backoff. Nothing given to the pool is lost while at least
one actor works; when none can, ``evaluate`` raises ``NoActorError`` (so does a batch at
zero bits no actor serves).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import anyio.abc

from hasherd.actors.base import ActorError, ActorState, EvalJob, NoActorError
from hasherd.actors.evaluator import EvaluatorActor
from hasherd.kernel.evaluators.base import EvalRequest, EvalResult

LOGGER = logging.getLogger(__name__)
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 60.0
MAX_ATTEMPTS = 3


class ActorPool:
    """Evaluator actors under one supervisor (see the module docstring)."""

    def __init__(
        self,
        actors: Sequence[EvaluatorActor],
        *,
        backoff_first: float = BACKOFF_FIRST,
        backoff_max: float = BACKOFF_MAX,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> None:
        if not actors:
            raise ValueError("an actor pool needs at least one actor")
        self.actors = {a.name: a for a in actors}
        self.backoff_first = backoff_first
        self.backoff_max = backoff_max
        self.max_attempts = max_attempts
        self._room = anyio.Event()  # set whenever a mailbox slot may have opened
        self._tg: anyio.abc.TaskGroup | None = None
        self._closing = False
        self.redispatched = 0

    # -- lifecycle ------------------------------------------------------------------------

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Start every actor and supervise them until cancelled. Reports started once
        every actor has had its first start (an actor that fails it is retried later)."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            starts = [a for a in self.actors.values()]
            async with anyio.create_task_group() as first:
                for actor in starts:
                    first.start_soon(self._first_start, actor)
            task_status.started()
            try:
                await anyio.sleep_forever()
            finally:
                self._closing = True
                with anyio.CancelScope(shield=True):  # devices close even when cancelled
                    for actor in self.actors.values():
                        for job in await actor.stop():
                            _fail(job, NoActorError("the daemon is stopping"))
                self._signal()

    async def _first_start(self, actor: EvaluatorActor) -> None:
        try:
            await actor.start()
        except ActorError as exc:
            LOGGER.error("%s", exc)
            self._schedule_restart(actor)
            return
        self._launch(actor)

    def _launch(self, actor: EvaluatorActor) -> None:
        assert self._tg is not None
        self._tg.start_soon(self._work, actor, actor.incarnation)
        self._signal()

    async def _work(self, actor: EvaluatorActor, incarnation: int) -> None:
        """The actor's loop: one job at a time from its mailbox."""
        while True:
            job = await actor.next_job(incarnation)
            if job is None:
                return
            try:
                results = await actor.run_job(job)
            except ActorError as exc:
                await self._failed(actor, job, exc)
                return
            try:
                after = await actor.run_post(job, results)
            except Exception as exc:  # the caller's own code: its error is the caller's
                _fail(job, exc)
            else:
                if not job.future.done():
                    job.future.set_result((results, after))
            self._signal()

    async def _failed(self, actor: EvaluatorActor, job: EvalJob, exc: ActorError) -> None:
        LOGGER.warning("%s; re-dispatching its work", exc)
        job.tried.add(actor.name)
        left = await actor.fail(exc)
        for j in [job, *left]:
            self._redispatch(j, exc)
        self._schedule_restart(actor)

    def _redispatch(self, job: EvalJob, exc: ActorError) -> None:
        job.attempts += 1
        if job.attempts >= self.max_attempts or job.pinned:
            _fail(job, exc)
            return
        self.redispatched += 1
        assert self._tg is not None
        self._tg.start_soon(self._dispatch, job)

    def _schedule_restart(self, actor: EvaluatorActor) -> None:
        """Restart ``actor`` (FAILED: its start or a job failed) after the backoff."""
        self._signal()
        if not self._closing:
            assert self._tg is not None
            self._tg.start_soon(self._restart, actor)

    async def _restart(self, actor: EvaluatorActor) -> None:
        delay = min(self.backoff_max, self.backoff_first * 2 ** min(actor.stats.restarts, 16))
        await anyio.sleep(delay)
        try:
            await actor.start()
        except ActorError as exc:
            LOGGER.error("%s (restart %d)", exc, actor.stats.restarts)
            self._schedule_restart(actor)
            return
        LOGGER.info("actor %s restarted", actor.name)
        self._launch(actor)

    async def restart(self, name: str) -> None:
        """Restart one actor now (``hasherctl actors restart``): its queued jobs move to
        other actors, the job it is running finishes first."""
        actor = self.actors.get(name)
        if actor is None:
            raise KeyError(name)
        await actor.idle()
        for job in await actor.stop(restarting=True):
            assert self._tg is not None
            self._tg.start_soon(self._dispatch, job)
        try:
            await actor.start()
        except ActorError:
            self._schedule_restart(actor)
            raise
        self._launch(actor)

    # -- dispatch -------------------------------------------------------------------------

    async def evaluate(self, reqs: list[EvalRequest]) -> list[EvalResult]:
        """Evaluate one batch on whichever actor has room (see the module docstring)."""
        results, _ = await self.evaluate_then(reqs, None)
        return results

    async def evaluate_then(
        self, reqs: list[EvalRequest], post: Callable[[list[EvalResult]], Any] | None
    ) -> tuple[list[EvalResult], Any]:
        """``evaluate``, then ``post(results)`` on the same actor's thread (the trainer
        scores and breeds there, so that work never competes with a kernel for the cores).
        An error in ``post`` fails the job, not the actor."""
        job = EvalJob(list(reqs), asyncio.get_running_loop().create_future(), post)
        await self._dispatch(job)
        return await job.future

    async def evaluate_on(self, name: str, reqs: list[EvalRequest]) -> list[EvalResult]:
        """Evaluate on the actor ``name`` only (the validator's chip lane): waits for room
        in its mailbox, and for its restart when it has failed; ``ActorError`` when it
        fails the batch (no other actor takes it: that actor's answer was asked for). A
        caller that stops waiting (a timeout) takes the batch back unless it has started."""
        actor = self.actors.get(name)
        if actor is None:
            raise KeyError(name)
        job = EvalJob(list(reqs), asyncio.get_running_loop().create_future(), pinned=name)
        try:
            await self._dispatch(job)
            results, _ = await job.future
        except BaseException:  # cancelled (a caller's timeout): drop it if not yet started
            if actor.withdraw(job):
                self._signal()
            raise
        return results

    async def _dispatch(self, job: EvalJob) -> None:
        while True:
            if self._closing:
                _fail(job, NoActorError("the daemon is stopping"))
                return
            actor = self._pick(job)
            if actor is not None:
                actor.give(job)
                return
            able = [a for a in self.actors.values() if a.serves(job) and job.pinned in ("", a.name)]
            if not able:
                bits = sorted({r.zero_bits for r in job.reqs})
                _fail(job, NoActorError(f"no evaluator actor serves zero_bits {bits}"))
                return
            if not any(a.state != ActorState.STOPPED for a in able):
                _fail(job, NoActorError("no evaluator actor is running"))
                return
            if self._room.is_set():  # one event shared by every waiter until it fires
                self._room = anyio.Event()
            await self._room.wait()

    def _pick(self, job: EvalJob) -> EvaluatorActor | None:
        free = [
            a
            for a in self.actors.values()
            if a.can_take() and a.serves(job) and job.pinned in ("", a.name)
        ]
        fresh = [a for a in free if a.name not in job.tried] or free
        # a free chip that serves exactly these zero bits first, then the least loaded
        return min(fresh, key=lambda a: (a.zero_bits is None, a.load), default=None)

    def _signal(self) -> None:
        self._room.set()

    # -- reporting ------------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        """Jobs that can be in flight at once (every mailbox full)."""
        return sum(a.capacity for a in self.actors.values())

    def capacity_for(self, zero_bits: int) -> int:
        """Jobs at ``zero_bits`` that can be in flight at once (at least 1)."""
        able = [a for a in self.actors.values() if a.serves_bits(zero_bits)]
        return max(1, sum(a.capacity for a in able))

    def snapshot(self) -> list[dict[str, Any]]:
        return [a.snapshot() for a in self.actors.values()]

    def healthy(self) -> tuple[bool, str]:
        working = [
            a for a in self.actors.values() if a.state in (ActorState.READY, ActorState.BUSY)
        ]
        if not working:
            states = ", ".join(f"{a.name} {a.state}" for a in self.actors.values())
            return False, f"no evaluator actor is working ({states})"
        return True, f"{len(working)} of {len(self.actors)} actors working"


def _fail(job: EvalJob, exc: BaseException) -> None:
    if not job.future.done():
        job.future.set_exception(exc)
