"""The trainer's dispatch of ``hasherd train``: one evaluator on a thread of its own."""

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


@pytest.mark.anyio
async def test_the_batch_and_its_post_run_on_the_dispatch_thread() -> None:
    ev = create("reference")
    reqs = _requests(3)
    seen: list[str] = []

    def post(results: list[EvalResult]) -> int:
        seen.append(threading.current_thread().name)
        return sum(len(r) for r in results)

    with EvaluatorDispatch(ev, timeout=30.0) as dispatch:
        await dispatch.warm_up()
        results, posted = await dispatch.evaluate_then(reqs, post)
        thread = dispatch.thread
    assert dispatch.lanes == 2 and posted == 12 and seen == ["hasherd-kernel"]
    for got, want in zip(results, ev.evaluate_many(reqs), strict=True):
        assert np.array_equal(got.output, want.output)
        assert np.array_equal(got.golden_nonce, want.golden_nonce)
    with anyio.fail_after(5):
        while thread.alive:  # leaving the block ends the thread
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
