"""The actor pool: evaluator actors shared between jobs, sized by rate, and supervised.

Work comes in batches through leases (``actors/lease.py``: one per running job, plus the
pool's own for ``evaluate``, ``evaluate_then`` and ``evaluate_on``). Whenever an actor has
room in its mailbox, the pool's ``Dispatcher`` (``actors/dispatcher.py``) fills it: a
batch pinned to it first, else the front of a batch of the lease it should serve next
(weighted fair queueing on busy time, among the leases with work it can run), cut to the
part its measured rate calls for (``actors/sizing.py``: at most ``max_batch_seconds`` of
work, none when a far faster actor serves it). The pieces' results are reassembled in
request order.

Bounds, so that nothing hangs and nothing loops (``actors/work.py`` keeps the record):

* every actor call is bounded by the actor's timeout; a failed or timed-out piece goes to
  another actor, cut in halves first after a timeout, and fails its batch with a
  ``BatchFailed`` naming the actor, the zero bits and the cause after ``max_attempts``;
* a piece running ``straggler_factor`` times past its expected time is copied to an idle
  actor that serves it, the first answer winning (a later one is dropped and counted in
  ``duplicates``), and the late actor's queued pieces go back to be served elsewhere. No
  step waits on an actor's answer, so the same holds for actors that answer slowly;
* a closed lease fails its batches at once, takes its queued pieces back and aborts its
  running ones (the numba kernel stops at its next look at the abort flag).

An actor that fails a call is restarted after an exponential backoff, its unstarted work
served by the others meanwhile; ``healthy()`` reports degraded while an actor keeps
failing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import anyio
import anyio.abc

from hasherd.actors.base import (
    ActorError,
    ActorState,
    ActorTimeout,
    BatchFailed,
    EvalJob,
    NoActorError,
)
from hasherd.actors.dispatcher import Dispatcher
from hasherd.actors.evaluator import EvaluatorActor
from hasherd.actors.lease import Decaying, JobLease
from hasherd.actors.work import Batch, Piece, Post
from hasherd.kernel.evaluators.base import EvalRequest, EvalResult

LOGGER = logging.getLogger(__name__)
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 60.0
MAX_ATTEMPTS = 3
MAX_BATCH_SECONDS = 5.0
STRAGGLER_FACTOR = 4.0
STRAGGLER_FLOOR = 0.5  # seconds: an expected time below this counts as this much
TICK = 0.1  # seconds between two looks for stragglers
PROBE_EVERY = 5.0  # seconds between two probes of an idle actor (``Backend.probe``)
LANE_SPEED_RATIO = 100.0  # an actor this much slower than the fastest adds no lane
DEGRADED_AFTER = 3  # failures in a row that make an actor degrade the pool's health
DEGRADED_FOR = 300.0  # seconds after the last of them that it stays degraded


class ActorPool:
    """Evaluator actors under one supervisor (see the module docstring)."""

    def __init__(
        self,
        actors: Sequence[EvaluatorActor],
        *,
        backoff_first: float = BACKOFF_FIRST,
        backoff_max: float = BACKOFF_MAX,
        max_attempts: int = MAX_ATTEMPTS,
        max_batch_seconds: float = MAX_BATCH_SECONDS,
        straggler_factor: float = STRAGGLER_FACTOR,
        straggler_floor: float = STRAGGLER_FLOOR,
        tick: float = TICK,
        probe_every: float = PROBE_EVERY,
    ) -> None:
        if not actors:
            raise ValueError("an actor pool needs at least one actor")
        self.actors = {a.name: a for a in actors}
        self.backoff_first = backoff_first
        self.backoff_max = backoff_max
        self.max_attempts = max_attempts
        self.max_batch_seconds = max_batch_seconds
        self.straggler_factor = straggler_factor
        self.straggler_floor = straggler_floor
        self.tick = tick
        self.probe_every = probe_every
        self._probing: set[str] = set()  # actors with a probe in flight
        self._tg: anyio.abc.TaskGroup | None = None
        self._closing = False
        self.dispatch = Dispatcher(
            actors,
            max_batch_seconds=max_batch_seconds,
            straggler_factor=straggler_factor,
            straggler_floor=straggler_floor,
        )
        self._busy = {name: Decaying() for name in self.actors}  # recent busy time
        self._own = self.lease("pool", zero_bits=0, passes=0)
        self.redispatched = 0
        self.duplicates = 0

    # -- lifecycle ------------------------------------------------------------------------

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Start every actor and supervise them until cancelled. Reports started once
        every actor has had its first start (an actor that fails it is retried later)."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            async with anyio.create_task_group() as first:
                for actor in self.actors.values():
                    first.start_soon(self._first_start, actor)
            tg.start_soon(self._watch)
            task_status.started()
            try:
                await anyio.sleep_forever()
            finally:
                self._closing = self.dispatch.closing = True
                with anyio.CancelScope(shield=True):  # devices close even when cancelled
                    for actor in self.actors.values():
                        await actor.stop()
                self.dispatch.fail_everything(NoActorError("the daemon is stopping"))

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
        self.dispatch.pump()

    async def _work(self, actor: EvaluatorActor, incarnation: int) -> None:
        """The actor's loops: one job at a time from its mailbox, or as many side by side
        as its device holds (``EvaluatorActor.depth``: the next batch waits on a remote
        node while one runs, instead of after a round trip)."""
        depth = actor.depth
        if depth == 1:
            await self._serve(actor, incarnation)
            return
        async with anyio.create_task_group() as tg:
            for _ in range(depth):
                tg.start_soon(self._serve, actor, incarnation)

    async def _serve(self, actor: EvaluatorActor, incarnation: int) -> None:
        """One loop of ``_work``: a job from the mailbox, run, its outcome taken."""
        while True:
            job = await actor.next_job(incarnation)
            if job is None:
                return
            try:
                results = await actor.run_job(job)
            except ActorError as exc:
                self._spent(actor, job)
                if job.withdrawn and not isinstance(exc, ActorTimeout):
                    self._dropped(job)  # aborted on purpose: not the actor's failure
                    continue
                await self._failed(actor, job, exc, incarnation)
                return
            finally:
                self.dispatch.late.discard(actor.name)
            self._spent(actor, job)
            if actor.post_apart and job.post is not None:
                # The device takes its next batch while this one's post step runs on a
                # worker thread: a remote node or a chip chain does not wait for it.
                assert self._tg is not None
                self._tg.start_soon(self._finish, actor, job, results)
                self.dispatch.pump()
            else:
                await self._finish(actor, job, results)

    async def _finish(self, actor: EvaluatorActor, job: EvalJob, results: list[EvalResult]) -> None:
        await self._finished(actor, job, results)
        self.dispatch.pump()

    def _schedule_restart(self, actor: EvaluatorActor) -> None:
        """Restart ``actor`` (FAILED: its start or a job failed) after the backoff."""
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
            self.dispatch.requeue(job)
        try:
            await actor.start()
        except ActorError:
            self._schedule_restart(actor)
            raise
        self._launch(actor)

    # -- the callers' side ----------------------------------------------------------------

    def lease(
        self, job_id: int | str, *, zero_bits: int, passes: int, priority: int = 1
    ) -> JobLease:
        """A running job's handle on the pool (``actors/lease.py``); ``close()`` it."""
        lease = JobLease(self, job_id, zero_bits, passes, priority)
        self.dispatch.leases.append(lease)
        return lease

    async def evaluate(self, reqs: list[EvalRequest]) -> list[EvalResult]:
        """Evaluate one batch on whichever actors suit it (see the module docstring)."""
        return await self._own.evaluate(reqs)

    async def evaluate_then(
        self, reqs: list[EvalRequest], post: Post | None
    ) -> tuple[list[EvalResult], Any]:
        """``evaluate``, then ``post(results)`` off the event loop: on the actor's thread
        when one actor ran the whole batch, else on a worker thread. An error in ``post``
        fails the batch, not the actor."""
        return await self._own.evaluate_then(reqs, post)

    async def evaluate_on(self, name: str, reqs: list[EvalRequest]) -> list[EvalResult]:
        """Evaluate on the actor ``name`` only (the validator's chip lane), whole: waits
        for room in its mailbox, and for its restart when it has failed; ``ActorError``
        when it fails the batch (no other actor takes it: that actor's answer was asked
        for). A caller that stops waiting (a timeout) takes the batch back."""
        if name not in self.actors:
            raise KeyError(name)
        batch = self.dispatch.enter(self._own, list(reqs), None, pinned=name)
        try:
            results, _, _ = await batch.future
        except BaseException:
            self.abandon(batch)
            raise
        finally:
            self._own.batches.discard(batch)
        return results

    def submit(self, lease: JobLease, reqs: list[EvalRequest], post: Post | None) -> Batch:
        """A lease's batch, queued for the actors (``NoActorError`` when none can run it)."""
        return self.dispatch.enter(lease, reqs, post)

    def abandon(self, batch: Batch) -> None:
        """Nobody waits for ``batch`` any more: its queued pieces dropped, running ones
        aborted."""
        self.dispatch.abandon(batch)

    def withdraw(self, lease: JobLease) -> None:
        """``lease.close()``: every batch of it fails at once with ``JobWithdrawn``."""
        self.dispatch.withdraw(lease)

    # -- outcomes -------------------------------------------------------------------------

    def _spent(self, actor: EvaluatorActor, job: EvalJob) -> None:
        """Charge the call's busy time to its job, correcting the estimate charged."""
        lease: JobLease = job.piece.batch.owner
        if not job.started:
            lease.charge(-job.expected)  # it never ran
            return
        seconds = time.monotonic() - job.started
        lease.spent(actor.name, seconds, job.expected)
        self._busy[actor.name].add(seconds)

    async def _finished(
        self, actor: EvaluatorActor, job: EvalJob, results: list[EvalResult]
    ) -> None:
        piece: Piece = job.piece
        batch, lease = piece.batch, piece.batch.owner
        piece.copies -= 1
        if piece.answered:
            actor.stats.duplicates += 1
            lease.duplicates += 1
            self.duplicates += 1
            return
        piece.land(results)
        if batch.done or not batch.complete:
            return
        full: list[EvalResult] = [r for r in batch.results if r is not None]
        if job.post is None:
            batch.answer((full, None, False))
            return
        try:
            after = await actor.run_post(job, full)
        except Exception as exc:  # the caller's own code: its error is the caller's
            batch.fail(exc)
        else:
            batch.answer((full, after, True))

    def _dropped(self, job: EvalJob) -> None:
        piece: Piece = job.piece
        piece.copies -= 1

    async def _failed(
        self, actor: EvaluatorActor, job: EvalJob, exc: ActorError, incarnation: int
    ) -> None:
        if actor.incarnation != incarnation or actor.state == ActorState.FAILED:
            # A job given beside the one that failed this incarnation: the actor is
            # failed and its restart scheduled already; only the job goes elsewhere.
            self._retry(actor, job, exc)
            self.dispatch.pump()
            return
        LOGGER.warning("%s; re-dispatching its work", exc)
        await self._fail_actor(actor, exc)
        self._retry(actor, job, exc)
        self.dispatch.pump()

    async def _fail_actor(self, actor: EvaluatorActor, exc: ActorError) -> None:
        """``actor`` failed: its unstarted jobs go to the others (a pinned one fails with
        it), and it restarts after the backoff."""
        for j in await actor.fail(exc):
            if j.pinned:
                j.piece.copies -= 1
                j.piece.batch.owner.charge(-j.expected)
                j.piece.batch.fail(exc)
            else:
                self.dispatch.requeue(j)
        self._schedule_restart(actor)

    def _retry(self, actor: EvaluatorActor, job: EvalJob, exc: ActorError) -> None:
        """The failed piece again, elsewhere if possible: cut in halves after a timeout,
        given up after ``max_attempts`` failed calls."""
        piece: Piece = job.piece
        piece.copies -= 1
        batch = piece.batch
        if batch.done or piece.answered:
            return
        if job.pinned:
            batch.fail(exc)
            return
        piece.tried.add(actor.name)
        if piece.copies > 0:
            return  # its copy on another actor may still answer
        self.redispatched += 1
        if isinstance(exc, ActorTimeout) and len(piece) > 1:
            self.dispatch.give_back(piece, piece.halves())
            return
        piece.attempts += 1
        if piece.attempts >= self.max_attempts:
            tries = f"{piece.attempts} attempt{'s' if piece.attempts > 1 else ''}"
            failed = BatchFailed(actor.name, batch.zero_bits, f"{exc.problem} ({tries})")
            failed.__cause__ = exc
            batch.fail(failed)
            return
        self.dispatch.give_back(piece, [piece])

    # -- stragglers -----------------------------------------------------------------------

    async def _watch(self) -> None:
        next_probe = time.monotonic() + self.probe_every
        while True:
            await anyio.sleep(self.tick)
            self.dispatch.stragglers()
            if time.monotonic() >= next_probe:
                next_probe = time.monotonic() + self.probe_every
                self._probe_idle()

    def _probe_idle(self) -> None:
        """Probe every idle actor (one probe each at a time): an actor whose device is
        gone (its node died or is cut off) fails now rather than at its next batch."""
        assert self._tg is not None
        for actor in self.actors.values():
            idle = actor.state == ActorState.READY and not actor.running
            if idle and actor.name not in self._probing:
                self._probing.add(actor.name)
                self._tg.start_soon(self._probe, actor, actor.incarnation)

    async def _probe(self, actor: EvaluatorActor, incarnation: int) -> None:
        try:
            await actor.probe()
        except ActorError as exc:
            if actor.incarnation == incarnation and actor.state != ActorState.FAILED:
                LOGGER.warning("%s; it is failed until it restarts", exc)
                await self._fail_actor(actor, exc)
                self.dispatch.pump()
        finally:
            self._probing.discard(actor.name)

    # -- reporting ------------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        """Jobs that can be in flight at once (every mailbox full)."""
        return sum(a.capacity for a in self.actors.values())

    def capacity_for(self, zero_bits: int) -> int:
        """Jobs at ``zero_bits`` that can be in flight at once (at least 1)."""
        able = [a for a in self.actors.values() if a.serves_bits(zero_bits)]
        return max(1, sum(a.capacity for a in able))

    def lanes_for(self, zero_bits: int, passes: int) -> int:
        """Groups a job keeps in flight (at least 1): the mailbox slots of the actors
        serving ``zero_bits``, less those ``LANE_SPEED_RATIO`` times slower than the
        fastest of them, which the sizing gives (next to) nothing of a batch, so that
        more, smaller groups would only cost calls."""
        able = [a for a in self.actors.values() if a.serves_bits(zero_bits)]
        costs = {a.name: a.rates.seconds_per_candidate(zero_bits, passes) for a in able}
        fastest = min(costs.values(), default=0.0)
        near = [a for a in able if costs[a.name] <= LANE_SPEED_RATIO * fastest]
        return max(1, sum(a.capacity for a in near))

    def can_serve(self, zero_bits: int, passes: int) -> str | None:
        """None when some configured actor serves ``zero_bits`` (any actor serves any
        passes), else why not, naming the limits."""
        if any(a.serves_bits(zero_bits) for a in self.actors.values()):
            return None
        sims = [a for a in self.actors.values() if a.zero_bits is None]
        chips = [a for a in self.actors.values() if a.zero_bits is not None]
        parts = []
        if sims:
            top = max(a.max_zero_bits for a in sims)
            parts.append(f"simulators up to devices.simulator_max_zero_bits = {top}")
        if chips:
            parts.append("chips " + ", ".join(f"{a.name} at {a.zero_bits}" for a in chips))
        return f"no actor serves zero_bits {zero_bits}: " + ", ".join(parts)

    def busy_of(self, actors: list[str]) -> float:
        """The recent busy time of ``actors`` (the denominator of a lease's share)."""
        busy = dict(self._busy)  # one step: the metrics thread reads this too
        return sum(busy[name].value() for name in actors if name in busy)

    def snapshot(self) -> list[dict[str, Any]]:
        return [a.snapshot() for a in self.actors.values()]

    def healthy(self) -> tuple[bool, str]:
        """Unhealthy when no actor works, degraded while one keeps failing (naming it
        and its failures in a row); else how many work."""
        working = [a for a in self.actors.values() if a.working]
        if not working:
            states = ", ".join(f"{a.name} {a.state}" for a in self.actors.values())
            return False, f"no evaluator actor is working ({states})"
        failing = [a for a in self.actors.values() if _failing(a)]
        if failing:
            why = "; ".join(
                f"actor {a.name} failed {a.stats.failing} times in a row ({a.stats.last_error})"
                for a in failing
            )
            return False, f"degraded: {why}"
        return True, f"{len(working)} of {len(self.actors)} actors working"


def _failing(actor: EvaluatorActor) -> bool:
    """Whether ``actor`` keeps failing: ``DEGRADED_AFTER`` failures without a success in
    between, the last within ``DEGRADED_FOR`` (an actor left idle after them, its job
    gone, cannot show a success)."""
    s = actor.stats
    return s.failing >= DEGRADED_AFTER and time.monotonic() - s.failed_at < DEGRADED_FOR
