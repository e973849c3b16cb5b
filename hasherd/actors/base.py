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


class NoActorError(HasherError):
    """No actor can take work (all failed or stopped)."""


@dataclass
class EvalJob:
    """One evaluation batch: several records' requests, evaluated in one call."""

    reqs: list[EvalRequest]
    future: asyncio.Future[tuple[list[EvalResult], Any]]
    post: Callable[[list[EvalResult]], Any] | None = None  # then, off the loop (run_post)
    attempts: int = 0
    tried: set[str] = field(default_factory=set)  # actors that failed it
    pinned: str = ""  # the only actor that may run it ("" = any)

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

    def failed(self, exc: BaseException) -> None:
        """Count a failure; its kind is the underlying error's class (an ActorError's
        cause), its message the ActorError's own."""
        self.failures += 1
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
        }
