"""Evaluators with injected faults for the pool's tests: each wraps a real evaluator, so the
work it lets through is real, and each is named for what it does wrong on purpose."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import numpy as np

from hasherd.actors.evaluator import EvaluatorActor
from hasherd.backends import create
from hasherd.kernel.evaluators.base import EvalRequest, EvalResult, Evaluator, make_request
from hasherd.kernel.memory import JitterMemory


class Wrapped(Evaluator):
    """The numba evaluator (one thread) behind a hook that runs before each call."""

    name = "wrapped"

    def __init__(self) -> None:
        self.inner = create("numba:1")
        self.calls: list[int] = []  # requests of each call
        self.release = threading.Event()

    def warm_up(self) -> float:
        return self.inner.warm_up()

    def hook(self, reqs: Sequence[EvalRequest]) -> None:
        return None

    def evaluate_many(self, reqs: Sequence[EvalRequest]) -> list[EvalResult]:
        self.calls.append(len(reqs))
        self.hook(reqs)
        self.check_abort()
        return self.inner.evaluate_many(reqs)

    def _evaluate(self, req: EvalRequest) -> EvalResult:
        return self.inner.evaluate_request(req)

    def hang(self, limit: float = 30.0) -> None:
        """Wait like a hung device, until released or aborted (the abort flag honoured, as
        the numba drivers honour it), at most ``limit`` seconds."""
        end = time.monotonic() + limit
        while not self.release.is_set() and not self.abort_flag[0] and time.monotonic() < end:
            time.sleep(0.005)


class DeliberatelySlow(Wrapped):
    """Sleeps ``per_request`` seconds a request before evaluating: a slow device."""

    def __init__(self, per_request: float) -> None:
        super().__init__()
        self.per_request = per_request

    def hook(self, reqs: Sequence[EvalRequest]) -> None:
        time.sleep(self.per_request * len(reqs))


class HangsOn(Wrapped):
    """Hangs on the calls whose number (from 1) ``when`` accepts."""

    def __init__(self, when: Callable[[int, int], bool]) -> None:
        super().__init__()
        self.when = when  # (call number, requests in the call) -> hang?

    def hook(self, reqs: Sequence[EvalRequest]) -> None:
        if self.when(len(self.calls), len(reqs)):
            self.hang()


class FailsAlways(Wrapped):
    """Every call raises: a broken device."""

    def hook(self, reqs: Sequence[EvalRequest]) -> None:
        raise RuntimeError(f"injected failure on call {len(self.calls)}")


def actor(name: str, evaluator: Evaluator, **kw: object) -> EvaluatorActor:
    return EvaluatorActor(name, "numba", lambda: evaluator, **kw)  # type: ignore[arg-type]


def requests(n: int, seeds: int = 16, seed: int = 11) -> list[EvalRequest]:
    """``n`` records' requests over one memory, k = 0, default passes."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 2**32, size=(32, 12), dtype=np.uint64).astype(np.uint32)
    mem = JitterMemory(frames)
    return [
        make_request(frames[i % 32], rng.integers(0, 256, size=(seeds, 32), dtype=np.uint8), mem)
        for i in range(n)
    ]


def same(got: list[EvalResult], reqs: list[EvalRequest]) -> bool:
    """Whether ``got`` is what the numba evaluator returns for ``reqs`` directly."""
    want = create("numba:1").evaluate_many(reqs)
    return len(got) == len(want) and all(
        np.array_equal(g.output, w.output) and np.array_equal(g.last_key, w.last_key)
        for g, w in zip(got, want, strict=True)
    )
