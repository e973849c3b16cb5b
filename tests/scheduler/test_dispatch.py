"""The trainer's dispatch of ``hasherd train``: one evaluator on a thread of its own, the
scoring of its batches on another."""

from __future__ import annotations

import threading

import anyio
import numpy as np
import pytest

from hasherd.backends import create
from hasherd.kernel.evaluators.base import EvalRequest, EvalResult, Evaluator, make_request
from hasherd.kernel.memory import JitterMemory
from hasherd.scheduler.dispatch import EvaluatorDispatch


def _requests(n: int) -> list[EvalRequest]:
    rng = np.random.default_rng(8)
    memory = JitterMemory(rng.integers(0, 2**32, size=(16, 12), dtype=np.uint32))
    return [
        make_request(
            rng.integers(0, 2**32, 12, dtype=np.uint32),
            rng.integers(0, 256, (4, 32), dtype=np.uint8),
            memory,
        )
        for _ in range(n)
    ]


class Stuck(Evaluator):
    """The reference evaluator that first waits for ``release`` (a hung device)."""

    name = "stuck"

    def __init__(self) -> None:
        self.inner = create("reference")
        self.release = threading.Event()

    def _evaluate(self, req: EvalRequest) -> EvalResult:
        self.release.wait(30)
        return self.inner.evaluate_request(req)


class Recording(Evaluator):
    """The reference evaluator, noting the thread each batch ran on."""

    name = "recording"

    def __init__(self) -> None:
        self.inner = create("reference")
        self.ran_on: list[str] = []

    def _evaluate(self, req: EvalRequest) -> EvalResult:
        self.ran_on.append(threading.current_thread().name)
        return self.inner.evaluate_request(req)


@pytest.mark.anyio
async def test_the_batch_runs_on_the_kernel_thread_and_its_post_on_the_scoring_thread() -> None:
    """Both off the event loop, each on a thread of the dispatch's own (the next batch's
    kernel need not wait for the last one's scoring), and both threads end with it."""
    ev = Recording()
    reqs = _requests(3)
    seen: list[str] = []

    def post(results: list[EvalResult]) -> int:
        seen.append(threading.current_thread().name)
        return sum(len(r) for r in results)

    with EvaluatorDispatch(ev, timeout=30.0) as dispatch:
        await dispatch.warm_up()
        results, posted = await dispatch.evaluate_then(reqs, post)
        threads = (dispatch.thread, dispatch.post_thread)
    assert dispatch.lanes == 2 and posted == 12 and seen == ["hasherd-score"]
    assert ev.ran_on == ["hasherd-kernel"] * 3
    for got, want in zip(results, ev.inner.evaluate_many(reqs), strict=True):
        assert np.array_equal(got.output, want.output)
        assert np.array_equal(got.golden_nonce, want.golden_nonce)
    with anyio.fail_after(5):
        while any(t.alive for t in threads):  # leaving the block ends the threads
            await anyio.sleep(0.01)


@pytest.mark.anyio
async def test_a_batch_past_the_timeout_fails_and_post_never_runs() -> None:
    ev = Stuck()
    posts: list[object] = []
    try:
        with EvaluatorDispatch(ev, timeout=0.2) as dispatch, pytest.raises(TimeoutError):
            await dispatch.evaluate_then(_requests(1), posts.append)
    finally:
        ev.release.set()
    assert posts == []
