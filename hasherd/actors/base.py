"""The actor model: every device or service is an actor with a bounded mailbox and a state.

An actor owns one piece of hardware or one service (a CPU simulator, a GPU, a chip, the
jitter RPC service). It takes work from its mailbox, one job at a time, and reports a
cheap synchronous ``stats()`` snapshot for the control socket and the metrics. Actors do
not restart themselves: the pool (``hasherd.actors.pool``) supervises them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from hasherd.errors import HasherError
from hasherd.kernel.evaluators.base import EvalRequest, EvalResult


class ActorState(StrEnum):
    STARTING = "starting"
    READY = "ready"
    BUSY = "busy"
    FAILED = "failed"
    STOPPED = "stopped"


STATE_CODES = {s: i for i, s in enumerate(ActorState)}  # for the state gauge


class ActorError(HasherError):
    """An actor could not do a job (the job is handed to another actor)."""

    def __init__(self, actor: str, problem: str) -> None:
        self.actor = actor
        self.problem = problem
        super().__init__(f"actor {actor}: {problem}")


class ActorTimeout(ActorError):
    """A job ran past the actor's timeout (the pool splits such a job before a retry)."""


class BatchFailed(ActorError):
    """A batch the pool could not serve within its bounded retries: the message names the
    device, the zero bits and the cause (the last failure's)."""

    def __init__(self, actor: str, zero_bits: int, cause: str) -> None:
        self.zero_bits = zero_bits
        self.cause = cause
        super().__init__(f"{actor} at zero_bits {zero_bits}", cause)
        self.actor = actor


class NoActorError(HasherError):
    """No actor can take work (all failed or stopped)."""


class JobWithdrawn(HasherError):
    """The job's lease was closed (cancelled, paused, stopped): its batches are dropped."""

    def __init__(self, job_id: int | str) -> None:
        self.job_id = job_id
        super().__init__(f"job {job_id} was withdrawn from the actor pool")


@dataclass(eq=False)
class EvalJob:
    """What an actor runs in one call: several records' requests (a batch, or the piece of
    one that the pool cut for this actor)."""

    reqs: list[EvalRequest]
    future: asyncio.Future[tuple[list[EvalResult], Any]] | None = None  # for a lone caller
    post: Callable[[list[EvalResult]], Any] | None = None  # then, off the loop (run_post)
    pinned: str = ""  # the only actor that may run it ("" = any)
    piece: Any = None  # the pool's record of which batch and which requests (actors.work)
    expected: float = 0.0  # seconds the actor was expected to take, when given
    started: float = 0.0  # time.monotonic() when it started running
    withdrawn: bool = False  # nobody waits for it any more: its outcome is dropped

    @property
    def candidates(self) -> int:
        return sum(r.n for r in self.reqs)


@dataclass
class ActorStats:
    """Counters an actor keeps; ``snapshot()`` is what the outside sees."""

    jobs: int = 0
    candidates: int = 0
    dsha: int = 0
    failures: int = 0
    restarts: int = 0
    busy_seconds: float = 0.0
    last_error: str = ""
    started_at: float = field(default_factory=time.time)
    errors: dict[str, int] = field(default_factory=dict)
    failing: int = 0  # failures since the last success (health: degraded while it grows)
    failed_at: float = 0.0  # time.monotonic() of the last failure
    duplicates: int = 0  # results dropped: another actor answered the same piece first
    abandoned: int = 0  # calls whose outcome nobody waited for (aborted or left running)

    def failed(self, exc: BaseException) -> None:
        """Count a failure; its kind is the underlying error's class (an ActorError's
        cause), its message the ActorError's own."""
        self.failures += 1
        self.failing += 1
        self.failed_at = time.monotonic()
        kind = type(exc.__cause__ or exc).__name__
        self.last_error = f"{kind}: {exc}"
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "jobs": self.jobs,
            "candidates": self.candidates,
            "dsha": self.dsha,
            "failures": self.failures,
            "restarts": self.restarts,
            "busy_seconds": round(self.busy_seconds, 3),
            "last_error": self.last_error,
            "errors": dict(self.errors),
            "failing": self.failing,
            "duplicates": self.duplicates,
            "abandoned": self.abandoned,
        }
