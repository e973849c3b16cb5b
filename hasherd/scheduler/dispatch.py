"""Where the trainer's batches go: one dispatch interface, two providers.

``dispatch.evaluate_then(requests, post)`` evaluates one batch and runs ``post(results)``
off the event loop (the trainer scores and breeds there), and returns both: in the
daemon on the actor's thread that evaluated it, right after its kernel, so each actor
scores its own batches; in ``hasherd train`` on a thread beside the kernel's, so one
group is scored while the next is hashed. The trainer keeps ``dispatch.lanes`` groups in
flight. In the daemon each running job's lease on the actor pool is its dispatch
(``ActorPool.lease``, ``actors/lease.py``); ``hasherd train`` wraps its one evaluator in
``EvaluatorDispatch``.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any, Protocol

import anyio

from hasherd.actors.thread import CallThread
from hasherd.kernel.evaluators.base import EvalRequest, EvalResult, Evaluator
from hasherd.scheduler.phases import PhaseClock

# ``post(results)``, run on the evaluator's thread; its value comes back with the results.
Post = Callable[[list[EvalResult]], Any]


class Dispatch(Protocol):
    """What the trainer evaluates its batches with (see the module docstring)."""

    @property
    def lanes(self) -> int:
        """Groups the trainer keeps in flight at once."""
        ...

    async def warm_up(self) -> None:
        """Load or compile the kernels; before anything else of the run touches numba."""
        ...

    async def evaluate_then(
        self, reqs: list[EvalRequest], post: Post
    ) -> tuple[list[EvalResult], Any]: ...


class EvaluatorDispatch:
    """One evaluator, for ``hasherd train``: every batch runs on one thread of its own (off
    the event loop; actors/thread.py says why one), within ``timeout`` seconds
    (``simulator.timeout``), and its ``post`` on a second thread. Two groups in flight:
    while one is in the kernel, the other is scored, bred and stored. ``post`` does not
    follow the kernel on the kernel's thread: there the next batch's kernel would wait
    for it, with every core but one idle meanwhile (on 2 cores, ``tools/bench_train.py``
    measured about a fifth more candidates/s with the scoring beside the next kernel).
    ``close()`` (or leaving a ``with`` block) ends the threads after the calls queued."""

    lanes = 2

    def __init__(
        self, evaluator: Evaluator, timeout: float, clock: PhaseClock | None = None
    ) -> None:
        self.evaluator = evaluator
        self.timeout = timeout
        self.clock = clock or PhaseClock()
        self.thread = CallThread("hasherd-kernel")
        self.post_thread = CallThread("hasherd-score")

    async def warm_up(self) -> None:
        await self.thread.call(self.evaluator.warm_up)

    async def evaluate_then(
        self, reqs: list[EvalRequest], post: Post
    ) -> tuple[list[EvalResult], Any]:
        with anyio.fail_after(self.timeout):
            results = await self.thread.call(self._evaluate, reqs)
        return results, await self.post_thread.call(post, results)

    def _evaluate(self, reqs: list[EvalRequest]) -> list[EvalResult]:
        with self.clock.time("kernel"):
            return self.evaluator.evaluate_many(reqs)

    def close(self) -> None:
        self.thread.close()
        self.post_thread.close()

    def __enter__(self) -> EvaluatorDispatch:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
