"""Which actor runs which piece of which batch: the pool's queues and its choices.

The ``Dispatcher`` holds the work not yet given to an actor: the leases' queues of batches
(``actors/lease.py``), the batches pinned to one actor, and the actors found late. It
fills mailboxes (``pump``): whenever an actor has room, it gives it a batch pinned to it,
else the front of a batch of the lease it should serve next (weighted fair queueing on
busy time, among the leases with work it can run), cut to the part that the actors'
estimated rates call for (``actors/sizing.py``). Every ``tick`` it looks for stragglers
(``stragglers``): a piece running ``straggler_factor`` times past its expected time is
copied to an idle actor that serves it, and the late actor's queued pieces go back to
the queues. None of it waits: it runs on the event loop between two awaits, so it holds
for actors that answer slowly, or from other machines.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from hasherd.actors.base import ActorState, EvalJob, JobWithdrawn, NoActorError
from hasherd.actors.evaluator import EvaluatorActor
from hasherd.actors.lease import JobLease
from hasherd.actors.sizing import portion
from hasherd.actors.work import Batch, Piece, Post
from hasherd.kernel.evaluators.base import EvalRequest


class Dispatcher:
    """The pool's queues and dispatch decisions (see the module docstring)."""

    def __init__(
        self,
        actors: Sequence[EvaluatorActor],
        *,
        max_batch_seconds: float,
        straggler_factor: float,
        straggler_floor: float,
    ) -> None:
        self.actors = {a.name: a for a in actors}
        self.max_batch_seconds = max_batch_seconds
        self.straggler_factor = straggler_factor
        self.straggler_floor = straggler_floor
        self.closing = False
        self.leases: list[JobLease] = []  # open, oldest first
        self.pinned: list[Batch] = []  # evaluate_on's batches, waiting for their actor
        self.late: set[str] = set()  # actors running a straggler: given nothing more

    def enter(
        self, lease: JobLease, reqs: list[EvalRequest], post: Post | None, pinned: str = ""
    ) -> Batch:
        """A batch queued for the actors (failed at once when none can run it)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        batch = Batch(reqs, post, future, lease, pinned)
        problem = self.refusal(batch)
        if problem is not None:
            batch.fail(problem)
            return batch
        lease.batches.add(batch)
        if pinned:
            self.pinned.append(batch)
        else:
            self.backlog(lease, batch)
        self.pump()
        return batch

    def refusal(self, batch: Batch) -> NoActorError | None:
        if self.closing:
            return NoActorError("the daemon is stopping")
        able = [
            a
            for a in self.actors.values()
            if a.serves_all(batch.reqs) and batch.pinned in ("", a.name)
        ]
        if not able:
            bits = sorted({r.zero_bits for r in batch.reqs})
            return NoActorError(f"no evaluator actor serves zero_bits {bits}")
        if all(a.state == ActorState.STOPPED for a in able):
            return NoActorError("no evaluator actor is running")
        return None

    def backlog(self, lease: JobLease, batch: Batch, *, front: bool = False) -> None:
        """Queue ``batch`` (or its returned pieces) under ``lease``. A lease that had
        nothing waiting catches up with the least served of the waiting ones, so an idle
        spell earns it no credit to monopolise the actors with."""
        if batch in lease.queue:
            return
        if not lease.queue:
            waiting = [x.settled for x in self.leases if x.queue and x is not lease]
            lease.settled = max(lease.settled, min(waiting, default=lease.settled))
        lease.queue.insert(0, batch) if front else lease.queue.append(batch)

    def abandon(self, batch: Batch) -> None:
        """Nobody waits for ``batch`` any more: drop its queued pieces, abort running ones."""
        batch.fail(JobWithdrawn(batch.owner.job_id))
        owner = batch.owner
        owner.batches.discard(batch)
        if batch in owner.queue:
            owner.queue.remove(batch)
        if batch in self.pinned:
            self.pinned.remove(batch)
        for actor in self.actors.values():
            for job in [j for j in actor.queued if batch_of(j) is batch]:
                actor.withdraw(job)
                owner.charge(-job.expected)
            for job in [j for j in actor.running if batch_of(j) is batch]:
                actor.abort(job)
        self.pump()

    def withdraw(self, lease: JobLease) -> None:
        """``lease.close()``: every batch of it fails at once with ``JobWithdrawn``."""
        for batch in list(lease.batches):
            self.abandon(batch)
        lease.queue.clear()
        if lease in self.leases:
            self.leases.remove(lease)

    def fail_everything(self, exc: BaseException) -> None:
        for lease in self.leases:
            for batch in list(lease.batches):
                batch.fail(exc)
            lease.queue.clear()
        self.pinned.clear()

    def pump(self) -> None:
        """Give every actor with room the next piece it should run (see the module
        docstring), until no actor takes anything more."""
        if self.closing:
            return
        order = list(self.actors.values())
        given = True
        while given:
            given = False
            for actor in sorted(order, key=lambda a: a.load):
                if actor.name in self.late or not actor.can_take():
                    continue
                job = self.next_for(actor)
                if job is not None:
                    actor.give(job)
                    given = True

    def next_for(self, actor: EvaluatorActor) -> EvalJob | None:
        for batch in self.pinned:
            if batch.pinned == actor.name and batch.pending:
                self.pinned.remove(batch)
                return self.job(actor, batch.pending.pop())
        for lease in sorted(self.leases, key=lambda x: x.vtime):
            job = self.from_lease(actor, lease)
            if job is not None:
                return job
        return None

    def from_lease(self, actor: EvaluatorActor, lease: JobLease) -> EvalJob | None:
        for batch in list(lease.queue):
            if not batch.pending:  # failed meanwhile
                lease.queue.remove(batch)
                continue
            if not actor.serves_all(batch.reqs):
                continue
            for piece in list(batch.pending):
                n = self.portion_for(actor, piece)
                if n == 0:
                    continue
                if n < len(piece):
                    piece = piece.cut(n)
                else:
                    batch.pending.remove(piece)
                if not batch.pending:
                    lease.queue.remove(batch)
                return self.job(actor, piece)
        return None

    def portion_for(self, actor: EvaluatorActor, piece: Piece) -> int:
        """Requests of ``piece`` that ``actor`` should take now (``actors/sizing.py``); none
        when it failed them before and another working actor has not."""
        reqs = piece.reqs
        peers = [
            a
            for a in self.actors.values()
            if a is not actor and a.working and a.serves_all(reqs) and a.name not in self.late
        ]
        if actor.name in piece.tried and any(p.name not in piece.tried for p in peers):
            return 0
        others = [sum(p.estimate(reqs)) for p in peers]
        return portion(actor.estimate(reqs), others, self.max_batch_seconds)

    def job(self, actor: EvaluatorActor, piece: Piece) -> EvalJob:
        """``piece`` as ``actor``'s next call, with the batch's ``post`` when it is the
        whole batch."""
        return self.copy(actor, piece, post=piece.batch.post if piece.whole else None)

    def copy(self, actor: EvaluatorActor, piece: Piece, post: Post | None) -> EvalJob:
        """A call of ``piece`` for ``actor``; its estimated time is charged to the lease
        now (and corrected when it ends), so the next choice already sees it."""
        expected = sum(actor.estimate(piece.reqs))
        piece.copies += 1
        piece.batch.owner.charge(expected)
        return EvalJob(
            piece.reqs, post=post, pinned=piece.batch.pinned, piece=piece, expected=expected
        )

    def requeue(self, job: EvalJob) -> None:
        """An unstarted job back to the front of its batch's queue."""
        piece: Piece = job.piece
        piece.copies -= 1
        piece.batch.owner.charge(-job.expected)
        self.give_back(piece, [piece])

    def give_back(self, piece: Piece, parts: list[Piece]) -> None:
        batch = piece.batch
        if batch.done or piece.answered or piece.copies > 0:
            return
        batch.pending[:0] = parts
        if batch.pinned:
            self.pinned.insert(0, batch)
        else:
            self.backlog(batch.owner, batch, front=True)
        self.pump()

    def stragglers(self) -> None:
        """Copy each late piece to an idle actor that serves it, and move the queued work
        of a late actor elsewhere (see the module docstring)."""
        now = time.monotonic()
        for actor in self.actors.values():
            job = actor.current
            if job is None or job.piece is None or job.pinned or job.withdrawn:
                continue
            piece: Piece = job.piece
            if piece.answered or piece.batch.done:
                continue
            elapsed = now - job.started
            late = elapsed > self.straggler_factor * max(job.expected, self.straggler_floor)
            helper = self.helper(actor, piece)
            if late:
                self.late.add(actor.name)
                for queued in list(actor.queued):
                    if actor.withdraw(queued):
                        self.requeue(queued)
            if helper is not None and not piece.duplicated:
                faster = self.straggler_factor * sum(helper.estimate(piece.reqs))
                if late or faster < job.expected - elapsed:
                    piece.duplicated = True
                    helper.give(self.copy(helper, piece, post=None))
        self.pump()

    def helper(self, actor: EvaluatorActor, piece: Piece) -> EvaluatorActor | None:
        """The fastest idle working actor, other than ``actor``, that serves ``piece`` and
        has not failed it, holding it no longer than the bound."""
        reqs = piece.reqs
        idle = [
            a
            for a in self.actors.values()
            if a is not actor
            and a.load == 0
            and a.can_take()
            and a.serves_all(reqs)
            and a.name not in piece.tried
            and sum(a.estimate(reqs)) <= self.max_batch_seconds
        ]
        return min(idle, key=lambda a: sum(a.estimate(reqs)), default=None)


def batch_of(job: EvalJob) -> Batch | None:
    piece: Piece | None = job.piece
    return piece.batch if piece is not None else None
