"""The seam under an evaluator actor: what it drives to open a device, evaluate and close.

An actor does not care where a batch is computed. An in-process evaluator (numba, CUDA,
the reference) computes on its own thread (:class:`ThreadBackend`); a chip chain is driven
by coroutines on the caller's event loop (``hasherd.backends.asic.ChipBackend``); a remote
evaluator would await its peer. Each is a :class:`Backend`: built cheaply (nothing opens in
``__init__``), then ``start()``, which fully succeeds or undoes itself, then any number of
batches, then ``close()``, which never raises. A restart builds a fresh one, so it really
reopens the device.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol, TypeVar, runtime_checkable

from hasherd.actors.base import ActorError
from hasherd.actors.thread import CallThread
from hasherd.errors import EvaluatorError
from hasherd.kernel.evaluators.base import EvalRequest, EvalResult, Evaluator

T = TypeVar("T")


class Backend(Protocol):
    """One device (or evaluator) as an evaluator actor drives it (see the module docstring)."""

    @property
    def threads(self) -> int:
        """Host threads it computes on (the actor's snapshot)."""
        ...

    async def start(self) -> None:
        """Open the device and load what it needs; on failure undo and raise."""
        ...

    async def evaluate_many(self, reqs: list[EvalRequest]) -> list[EvalResult]:
        """Evaluate validated requests, one result each; any failure raises."""
        ...

    async def run_post(self, fn: Callable[[list[EvalResult]], T], results: list[EvalResult]) -> T:
        """``fn(results)`` off the event loop (a job's CPU-heavy post step)."""
        ...

    @property
    def post_apart(self) -> bool:
        """Whether ``run_post`` runs apart from the device (a worker thread of the daemon),
        so that the device can start its next batch while the post step of the last one
        runs. False where the post step shares the device's own thread."""
        ...

    async def probe(self) -> None:
        """Raise when the device is gone (a remote node that died or cannot be reached);
        cheap. The pool asks an idle actor every few seconds, so that it does not show
        READY until a batch finds it gone; a busy one finds out through its batch."""
        ...

    def supports(self, zero_bits: int) -> bool:
        """Whether it can evaluate requests at ``zero_bits``."""
        ...

    def device_stats(self) -> dict[str, Any] | None:
        """Hardware counters (``Evaluator.device_stats``); a cheap snapshot, never raising."""
        ...

    async def close(self) -> None:
        """Release the device; never raises, also when cancelled or never started."""
        ...


@runtime_checkable
class Pipelined(Protocol):
    """A backend that takes its next batch while one runs (a remote node: the batch
    waits there, so the device never sits idle for a round trip), and stops one given
    batch rather than every batch given so far."""

    @property
    def pipeline_depth(self) -> int:
        """Batches it may have in flight at once (1: one at a time)."""
        ...

    def abort_call(self, reqs: list[EvalRequest]) -> None:
        """Make the batch ``reqs`` (running or still waiting) return soon with an error;
        the others run on. Never blocks."""
        ...


@runtime_checkable
class Abortable(Protocol):
    """A backend that can stop the batch in progress early (the numba evaluator's flag);
    a backend without it finishes the batch, whose result is then dropped."""

    def abort(self) -> None:
        """Make every batch given so far return soon with an error; never blocks."""
        ...


class ThreadBackend:
    """An in-process ``Evaluator`` on a ``CallThread`` of its own.

    ``factory`` runs on that thread, and so do ``warm_up``, every batch, every post step
    and ``close``: a CUDA context and numba's threading layer belong to the thread that
    made them, and the post step never competes with a kernel for the cores.

    ``abort()`` raises the evaluator's abort flag for every batch given so far, running or
    still queued on the thread; a batch given later runs normally (each call clears the
    flag as it starts, under a lock, unless it was given before the last abort).
    """

    def __init__(self, name: str, factory: Callable[[], Evaluator]) -> None:
        self.name = name
        self.factory = factory
        self._thread: CallThread | None = None
        self._evaluator: Evaluator | None = None
        self._lock = threading.Lock()
        self._given = 0  # batches handed to the thread
        self._aborted_upto = 0  # batches given up to this one are aborted

    @property
    def threads(self) -> int:
        return self._evaluator.threads if self._evaluator is not None else 0

    async def start(self) -> None:
        thread = CallThread(self.name)
        evaluator: Evaluator | None = None
        try:
            evaluator = await thread.call(self.factory)
            await thread.call(evaluator.warm_up)
        except BaseException:
            thread.close(evaluator.close if evaluator is not None else None)
            raise
        self._thread, self._evaluator = thread, evaluator

    def _started(self) -> tuple[CallThread, Evaluator]:
        if self._thread is None or self._evaluator is None:
            raise ActorError(self.name, "not started")
        return self._thread, self._evaluator

    async def evaluate_many(self, reqs: list[EvalRequest]) -> list[EvalResult]:
        thread, evaluator = self._started()
        with self._lock:
            self._given += 1
            ticket = self._given
        return await thread.call(self._evaluate, evaluator, ticket, reqs)

    def _evaluate(self, evaluator: Evaluator, ticket: int, reqs: list[EvalRequest]) -> Any:
        """On the thread: the batch, unless it was aborted before it started."""
        with self._lock:
            if ticket <= self._aborted_upto:
                raise EvaluatorError(evaluator.name, "aborted")
            evaluator.clear_abort()
        return evaluator.evaluate_many(reqs)

    def abort(self) -> None:
        with self._lock:
            self._aborted_upto = self._given
            if self._evaluator is not None:
                self._evaluator.abort()

    async def run_post(self, fn: Callable[[list[EvalResult]], T], results: list[EvalResult]) -> T:
        thread, _ = self._started()
        return await thread.call(fn, results)

    @property
    def post_apart(self) -> bool:
        return False  # the post step runs on the evaluator's own thread

    async def probe(self) -> None:
        return None  # in this process: it cannot be gone while the daemon runs

    def supports(self, zero_bits: int) -> bool:
        """The evaluator's answer once built; until then any (the actor's own bounds
        decide)."""
        return self._evaluator is None or self._evaluator.supports(zero_bits)

    def device_stats(self) -> dict[str, Any] | None:
        if self._evaluator is None:
            return None
        try:
            return self._evaluator.device_stats()
        except Exception:  # a snapshot must never take the actor down
            return None

    async def close(self) -> None:
        """Aborts the batches given (a kernel stops at its next look at the flag), then
        closes the evaluator on its thread after the calls queued; waits for none of it
        (a kernel that cannot stop is abandoned with its thread)."""
        self.abort()
        thread, evaluator = self._thread, self._evaluator
        self._thread = self._evaluator = None
        if thread is not None:
            thread.close(evaluator.close if evaluator is not None else None)
