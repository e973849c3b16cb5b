"""The node side of a remote actor (``NodeEvaluator``): with two batches in flight, as the
head sends them (``RayBackend.pipeline_depth``), the second waits for the evaluator's
thread, and an abort names one batch by its ticket, stopping that one (running, or before
it starts) and no other; a call that names a memory the node does not keep, sent without
its reference, is answered with the memories missing, not run. The class runs here as it
runs on a Ray node, on an asyncio loop; the object-store reference of a memory is an
awaitable of its frames."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from hasherd.backends.cluster_node import NodeEvaluator
from hasherd.backends.cluster_wire import missing_of, pack_requests, unpack_results
from hasherd.errors import EvaluatorError
from hasherd.kernel.evaluators.base import EvalRequest, EvalResult, make_request
from hasherd.kernel.evaluators.numba_cpu import NumbaEvaluator
from hasherd.kernel.memory import JitterMemory

FIELDS = ("output", "final_digest", "last_key")


def _batch(rng: np.random.Generator, mem: JitterMemory, records: int, n: int) -> list[EvalRequest]:
    return [
        make_request(mem.frames[i], rng.integers(0, 256, size=(n, 32), dtype=np.uint8), mem, 21, 0)
        for i in range(records)
    ]


async def _two_in_flight(abort: str) -> tuple[Any, Any, list[EvalRequest], list[EvalRequest]]:
    """A long batch (ticket 1) and a short one behind it (ticket 2); once the first is
    running, ``abort`` names one of them. The outcome of each: results or the error."""
    rng = np.random.default_rng(5)
    mem = JitterMemory(rng.integers(0, 2**32, size=(64, 12), dtype=np.uint64).astype(np.uint32))
    long, short = _batch(rng, mem, 64, 4096), _batch(rng, mem, 2, 64)
    node = NodeEvaluator("numba:1", None, "rig-t")
    await node.start()
    frames = asyncio.get_running_loop().create_future()
    frames.set_result(mem.frames)
    refs = {mem.memory_id: frames}
    try:
        first = asyncio.ensure_future(node.evaluate(pack_requests(long), refs, 1))
        second = asyncio.ensure_future(node.evaluate(pack_requests(short), refs, 2))
        while node._running != 1:  # the long batch is on the evaluator's thread
            await asyncio.sleep(0.001)
        await node.abort(1 if abort == "running" else 2)
        out = await asyncio.gather(first, second, return_exceptions=True)
    finally:
        await node.close()
    return out[0], out[1], long, short


def _same(got: Any, reqs: list[EvalRequest]) -> None:
    want = NumbaEvaluator(1).evaluate_many(reqs)
    results: list[EvalResult] = unpack_results(got)
    assert len(results) == len(want)
    for g, w in zip(results, want, strict=True):
        for name in FIELDS:
            assert np.array_equal(getattr(g, name), getattr(w, name)), name


@pytest.mark.parametrize("abort", ["running", "waiting"])
def test_an_abort_stops_the_batch_it_names_and_no_other(abort: str) -> None:
    first, second, long, short = asyncio.run(_two_in_flight(abort))
    stopped, ran, reqs = (first, second, short) if abort == "running" else (second, first, long)
    assert isinstance(stopped, EvaluatorError) and "aborted" in str(stopped)
    assert not isinstance(ran, BaseException), ran
    _same(ran, reqs)


def test_a_memory_the_node_does_not_keep_is_asked_for() -> None:
    rng = np.random.default_rng(8)
    mem = JitterMemory(rng.integers(0, 2**32, size=(16, 12), dtype=np.uint64).astype(np.uint32))
    reqs = _batch(rng, mem, 3, 32)

    async def main() -> tuple[Any, Any, Any]:
        node = NodeEvaluator("numba:1", None, "rig-t")
        await node.start()
        frames = asyncio.get_running_loop().create_future()
        frames.set_result(mem.frames)
        try:
            asked = await node.evaluate(pack_requests(reqs), {}, 1)
            sent = await node.evaluate(pack_requests(reqs), {mem.memory_id: frames}, 2)
            kept = await node.evaluate(pack_requests(reqs), {}, 3)  # kept since
        finally:
            await node.close()
        return asked, sent, kept

    asked, sent, kept = asyncio.run(main())
    assert missing_of(asked) == [mem.memory_id]
    assert missing_of(sent) is None and missing_of(kept) is None
    _same(sent, reqs)
    _same(kept, reqs)
