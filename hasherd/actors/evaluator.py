"""An evaluator behind an actor: the CPU simulator now, the GPU, chips and RPC later.

The actor owns one ``Evaluator`` and one ``CallThread``: the kernel runs on that thread,
off the event loop, so the loop stays responsive while every core hashes. A job that
raises, or runs past ``timeout``, fails the actor: the job goes back to the pool to be
re-dispatched, and the pool restarts the actor after a backoff. Any evaluator with the
``Evaluator`` interface plugs in unchanged; ``factory`` builds a fresh one at each
(re)start, so a restart really reopens the device.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anyio

from hasherd.actors.base import ActorError, ActorState, ActorStats, EvalJob
from hasherd.actors.thread import CallThread
from hasherd.kernel.evaluators.base import EvalResult, Evaluator

DEFAULT_MAILBOX = 2


class EvaluatorActor:
    """One evaluator device (see the module docstring)."""

    def __init__(
        self,
        name: str,
        kind: str,
        factory: Callable[[], Evaluator],
        *,
        timeout: float = 30.0,
        mailbox: int = DEFAULT_MAILBOX,
        zero_bits: int | None = None,
        max_zero_bits: int = 32,
    ) -> None:
        self.name = name
        self.zero_bits = zero_bits  # the only zero bits it serves (a chip); None = any
        self.max_zero_bits = max_zero_bits  # and none above this (a simulator's limit)
        self.kind = kind
        self.factory = factory
        self.timeout = timeout
        self.capacity = max(1, mailbox)
        self.state = ActorState.STOPPED
        self.stats = ActorStats()
        self.queued: list[EvalJob] = []  # the mailbox: jobs given, not yet started
        self.current: EvalJob | None = None
        self.evaluator: Evaluator | None = None
        self.thread: CallThread | None = None
        self._wake = anyio.Event()
        self.incarnation = 0  # counts starts: a work loop serves one incarnation only
        self._device_past: dict[str, Any] | None = None  # counters of earlier incarnations

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Build the evaluator and load its kernels; on failure undo and raise."""
        self.incarnation += 1
        self._wake.set()  # a loop of the previous incarnation ends
        self.state = ActorState.STARTING
        thread = CallThread(f"hasherd-{self.name}")
        evaluator: Evaluator | None = None
        try:
            evaluator = await thread.call(self.factory)
            await thread.call(evaluator.warm_up)
        except BaseException as exc:
            thread.close(evaluator.close if evaluator is not None else None)
            self.state = ActorState.FAILED
            self.stats.failed(exc)
            if isinstance(exc, Exception):
                raise ActorError(self.name, f"cannot start: {exc}") from exc
            raise
        self.evaluator, self.thread = evaluator, thread
        self.state = ActorState.READY

    def stop(self) -> list[EvalJob]:
        """Stop; returns the jobs it had not started (to re-dispatch). Never raises."""
        self._device_past = self.device_stats()
        if self.thread is not None:
            self.thread.close(self.evaluator.close if self.evaluator is not None else None)
        self.thread = self.evaluator = None
        self.state = ActorState.STOPPED
        left, self.queued = self.queued, []
        self._wake.set()
        return left

    # -- work -----------------------------------------------------------------------------

    @property
    def load(self) -> int:
        return len(self.queued) + (self.current is not None)

    def serves_bits(self, zero_bits: int) -> bool:
        """Whether it serves requests at ``zero_bits``: a chip its own only, a simulator any
        up to ``max_zero_bits`` (``devices.simulator_max_zero_bits``)."""
        if self.zero_bits is not None and zero_bits != self.zero_bits:
            return False
        return zero_bits <= self.max_zero_bits

    def serves(self, job: EvalJob) -> bool:
        """Whether every request of ``job`` is at zero bits this actor serves."""
        return all(self.serves_bits(r.zero_bits) for r in job.reqs)

    def can_take(self) -> bool:
        return self.state in (ActorState.READY, ActorState.BUSY) and self.load < self.capacity

    def give(self, job: EvalJob) -> None:
        self.queued.append(job)
        self._wake.set()

    async def next_job(self, incarnation: int) -> EvalJob | None:
        """The next job in the mailbox; None once this incarnation is over."""
        while True:
            if incarnation != self.incarnation or self.state in (
                ActorState.STOPPED,
                ActorState.FAILED,
                ActorState.STARTING,
            ):
                return None
            if self.queued:
                return self.queued.pop(0)
            if self._wake.is_set():  # one event shared by every waiter until it fires
                self._wake = anyio.Event()
            await self._wake.wait()

    async def run_job(self, job: EvalJob) -> list[EvalResult]:
        """Evaluate one job on the actor's thread; ActorError on any failure."""
        thread, evaluator = self.thread, self.evaluator
        if thread is None or evaluator is None:
            raise ActorError(self.name, "not started")
        self.current = job
        self.state = ActorState.BUSY
        t0 = time.perf_counter()
        try:
            with anyio.fail_after(self.timeout):
                results = await thread.call(evaluator.evaluate_many, job.reqs)
        except TimeoutError as exc:
            raise ActorError(self.name, f"a batch took longer than {self.timeout:g} s") from exc
        except Exception as exc:
            raise ActorError(self.name, str(exc)) from exc
        finally:
            self.current = None
            self.stats.busy_seconds += time.perf_counter() - t0
            if self.state == ActorState.BUSY:
                self.state = ActorState.READY
        s = self.stats
        s.jobs += 1
        s.candidates += sum(len(r) for r in results)
        s.dsha += sum(r.dsha for r in results)
        return results

    async def run_post(self, job: EvalJob, results: list[EvalResult]) -> Any:
        """The job's ``post`` step on the actor's thread (None without one)."""
        if job.post is None:
            return None
        thread = self.thread
        if thread is None:
            raise ActorError(self.name, "stopped before the post step")
        return await thread.call(job.post, results)

    def device_stats(self) -> dict[str, Any] | None:
        """The hardware counters (``Evaluator.device_stats``), summed over every start of
        the actor, so a reconnect does not reset them; None for a simulator."""
        current = None
        evaluator = self.evaluator
        if evaluator is not None:
            try:
                current = evaluator.device_stats()
            except Exception:  # a snapshot must never take the actor down
                current = None
        return _fold(self._device_past, current)

    def snapshot(self) -> dict[str, Any]:
        device = self.device_stats()
        extra = {} if device is None else {"device": device}
        return {
            "name": self.name,
            "kind": self.kind,
            "state": str(self.state),
            "mailbox": len(self.queued),
            "mailbox_capacity": self.capacity,
            "in_flight": self.load,
            "threads": self.evaluator.threads if self.evaluator is not None else 0,
            **self.stats.snapshot(),
            **({"zero_bits": self.zero_bits} if self.zero_bits is not None else {}),
            **extra,
        }


def _fold(past: dict[str, Any] | None, now: dict[str, Any] | None) -> dict[str, Any] | None:
    """Counters of two device snapshots added (``chips`` and strings: the newer ones)."""
    if past is None or now is None:
        return now if now is not None else past
    device = {
        k: v if isinstance(v, str) or k == "chips" else v + past["device"].get(k, 0)
        for k, v in now["device"].items()
    }
    before = {c["chip"]: c for c in past["chips"]}
    chips = [
        {
            k: v if k in ("chip", "address") else v + before.get(c["chip"], {}).get(k, 0)
            for k, v in c.items()
        }
        for c in now["chips"]
    ]
    return {"device": device, "chips": chips}
