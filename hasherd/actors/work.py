"""The pool's record of a batch while it travels: which requests wait, run or are done.

A ``Batch`` is one ``evaluate_then`` call. The pool cuts its requests into ``Piece``s,
contiguous runs of requests, one per actor call; a piece that fails goes back to the
front of its batch's queue (cut in halves after a timeout), and a piece running far past
its expected time may be copied to a second actor, the first answer winning. The results
land in the batch's slots in request order, whatever order the pieces finish in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hasherd.kernel.evaluators.base import EvalRequest, EvalResult

Post = Callable[[list[EvalResult]], Any]
# (results in request order, post's value, whether post ran): what a batch's waiter gets
Outcome = tuple[list[EvalResult], Any, bool]


@dataclass(eq=False)
class Batch:
    """One caller's requests, their results as they come, and the caller's future."""

    reqs: list[EvalRequest]
    post: Post | None
    future: asyncio.Future[Outcome]
    owner: Any  # the lease it came through (actors.lease.JobLease)
    pinned: str = ""  # the only actor that may run it ("" = any)
    results: list[EvalResult | None] = field(init=False)
    pending: list[Piece] = field(init=False)  # cut or not, waiting for an actor

    def __post_init__(self) -> None:
        self.results = [None] * len(self.reqs)
        self.pending = [Piece(self, 0, len(self.reqs))]

    @property
    def done(self) -> bool:
        return self.future.done()

    @property
    def complete(self) -> bool:
        return all(r is not None for r in self.results)

    @property
    def zero_bits(self) -> int:
        return self.reqs[0].zero_bits

    def answer(self, outcome: Outcome) -> None:
        if not self.future.done():
            self.future.set_result(outcome)

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)
        self.pending = []


@dataclass(eq=False)
class Piece:
    """Requests ``lo..hi`` of a batch, as one actor call runs them."""

    batch: Batch
    lo: int
    hi: int
    attempts: int = 0  # failed calls (a timeout that cut it in halves not counted)
    tried: set[str] = field(default_factory=set)  # actors that failed it
    copies: int = 0  # actors holding it now (queued or running)
    duplicated: bool = False  # a second actor was given a copy
    answered: bool = False

    def __len__(self) -> int:
        return self.hi - self.lo

    @property
    def reqs(self) -> list[EvalRequest]:
        return self.batch.reqs[self.lo : self.hi]

    @property
    def whole(self) -> bool:
        """Whether it is the entire batch (its ``post`` can then run on the actor)."""
        return self.lo == 0 and self.hi == len(self.batch.reqs)

    def cut(self, n: int) -> Piece:
        """The first ``n`` requests as a piece of their own; this one keeps the rest."""
        head = Piece(self.batch, self.lo, self.lo + n, self.attempts, set(self.tried))
        self.lo += n
        return head

    def halves(self) -> list[Piece]:
        """Two pieces, each half of this one's requests (after a timeout)."""
        middle = self.lo + len(self) // 2
        return [
            Piece(self.batch, self.lo, middle, self.attempts, set(self.tried)),
            Piece(self.batch, middle, self.hi, self.attempts, set(self.tried)),
        ]

    def land(self, results: list[EvalResult]) -> None:
        """Put this piece's results in the batch's slots."""
        self.answered = True
        self.batch.results[self.lo : self.hi] = results
