"""A running job's handle on the actor pool: its batches, its share weight, its withdrawal.

``pool.lease(job_id, zero_bits=..., passes=..., priority=...)`` gives each running job a
``JobLease``. It is the trainer's ``Dispatch`` (``scheduler/dispatch.py``): ``lanes``,
``warm_up`` and ``evaluate_then``. The pool shares its actors between the leases by
weighted fair queueing on busy time: an actor with room serves the lease, among those
with work it can run, that has had the least busy time per unit of ``priority`` (its
virtual time). ``close()`` withdraws the job at once: its waiting batches are dropped, its
running ones abandoned (their kernels told to stop), and every caller still waiting gets
``JobWithdrawn``.
"""

from __future__ import annotations

import math
import time
from typing import Any, Protocol

import anyio
import anyio.to_thread

from hasherd.actors.base import JobWithdrawn
from hasherd.actors.work import Batch, Post
from hasherd.errors import InputError
from hasherd.kernel.evaluators.base import EvalRequest, EvalResult

MIN_PRIORITY, MAX_PRIORITY = 1, 1000
SHARE_WINDOW = 60.0  # seconds: the time constant of the busy time a share is read over


class LeaseHost(Protocol):
    """What a lease asks of its pool (``actors.pool.ActorPool``)."""

    def lanes_for(self, zero_bits: int, passes: int) -> int: ...

    def submit(self, lease: JobLease, reqs: list[EvalRequest], post: Post | None) -> Batch: ...

    def abandon(self, batch: Batch) -> None: ...

    def withdraw(self, lease: JobLease) -> None: ...

    def busy_of(self, actors: list[str]) -> float: ...


class Decaying:
    """A sum whose past fades with time constant ``tau`` (the "recent" busy time)."""

    def __init__(self, tau: float = SHARE_WINDOW) -> None:
        self.tau = tau
        self._value = 0.0
        self._at = time.monotonic()

    def add(self, amount: float) -> None:
        self._value = self.value() + amount
        self._at = time.monotonic()

    def value(self) -> float:
        return self._value * math.exp(-(time.monotonic() - self._at) / self.tau)


class JobLease:
    """One running job's batches through the pool (see the module docstring)."""

    def __init__(
        self, pool: LeaseHost, job_id: int | str, zero_bits: int, passes: int, priority: int
    ) -> None:
        self.pool = pool
        self.job_id = job_id
        self.zero_bits = zero_bits
        self.passes = passes
        self.priority = check_priority(priority)
        self.closed = False
        self.settled = 0.0  # busy seconds spent, divided by the priority
        self.expected = 0.0  # the same for the calls running: their estimates
        self.busy_on: dict[str, Decaying] = {}  # recent busy time of each actor it used
        self.batches: set[Batch] = set()  # outstanding: waiting, running or in post
        self.queue: list[Batch] = []  # those with requests not yet given to an actor
        self.candidates = 0
        self.duplicates = 0

    @property
    def lanes(self) -> int:
        """Groups the trainer keeps in flight: the mailbox slots of the actors that will
        serve its batches (``ActorPool.lanes_for``)."""
        return self.pool.lanes_for(self.zero_bits, self.passes)

    async def warm_up(self) -> None:
        return None  # the pool warmed its actors up when it started them

    async def evaluate_then(
        self, reqs: list[EvalRequest], post: Post | None
    ) -> tuple[list[EvalResult], Any]:
        """Evaluate ``reqs`` on the pool's actors, then ``post(results)`` off the event
        loop: on the actor's thread when one actor ran the whole batch, else on a worker
        thread. ``JobWithdrawn`` once the lease is closed."""
        if self.closed:
            raise JobWithdrawn(self.job_id)
        batch = self.pool.submit(self, list(reqs), post)
        try:
            results, after, posted = await batch.future
        except BaseException:
            self.pool.abandon(batch)  # cancelled, withdrawn or failed: nothing left behind
            raise
        finally:
            self.batches.discard(batch)
        self.candidates += sum(r.n for r in reqs)
        if post is not None and not posted:
            after = await anyio.to_thread.run_sync(post, results)
        if self.closed:
            raise JobWithdrawn(self.job_id)
        return results, after

    async def evaluate(self, reqs: list[EvalRequest]) -> list[EvalResult]:
        results, _ = await self.evaluate_then(reqs, None)
        return results

    def set_priority(self, priority: int) -> None:
        """A new share weight (1..1000), from the next batch charged on."""
        self.priority = check_priority(priority)

    @property
    def vtime(self) -> float:
        """Its virtual time: the actors' time it had and is having, per unit of priority
        (the lease with the least is served first)."""
        return self.settled + self.expected

    def charge(self, expected: float) -> None:
        """A call given to an actor, ``expected`` seconds long (undone when negative)."""
        self.expected += expected / self.priority

    def spent(self, actor: str, seconds: float, expected: float) -> None:
        """A call of ``expected`` seconds took ``seconds`` of ``actor``'s time."""
        self.expected = max(0.0, self.expected - expected / self.priority)
        self.settled += seconds / self.priority
        self.busy_on.setdefault(actor, Decaying()).add(seconds)

    @property
    def share(self) -> float:
        """This job's part of the recent busy time of the actors it used (0..1). Read by
        the metrics thread too: the dict is copied in one step before it is summed."""
        used = list(self.busy_on.items())
        mine = sum(d.value() for _, d in used)
        total = self.pool.busy_of([name for name, _ in used])
        return min(1.0, mine / total) if total > 0 else 0.0

    def close(self) -> None:
        """Withdraw the job at once (idempotent; see the module docstring)."""
        if not self.closed:
            self.closed = True
            self.pool.withdraw(self)

    def snapshot(self) -> dict[str, Any]:
        return {
            "priority": self.priority,
            "share": round(self.share, 4),
            "in_flight": len(self.batches),
            "candidates": self.candidates,
            "duplicates": self.duplicates,
        }


def check_priority(priority: int) -> int:
    """``priority`` when it is an integer in 1..1000; ``InputError`` otherwise."""
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise InputError("priority", f"expected an integer, got {priority!r}")
    if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise InputError("priority", f"{priority} is outside {MIN_PRIORITY}..{MAX_PRIORITY}")
    return priority
