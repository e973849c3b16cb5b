"""Where a training run's time goes: seconds summed per phase, across threads.

The trainer and its dispatch add to one ``PhaseClock`` as they work (a few clock reads
per group of records, nothing per candidate), and ``tools/bench_train.py`` prints it
beside the run's wall time. Phases run on different threads and overlap (the kernel on
the dispatch's thread, the commits on the database's, the rest on the event loop), so
their sum may exceed the wall time; what matters is how much of the wall time the kernel
had the cores to itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

# The phases, in the order a generation goes through them.
PHASES = {
    "begin": "records begun: stored state read, searches built",
    "requests": "evaluation requests checked and packed",
    "kernel": "the compiled evaluation of the candidates",
    "step": "reward, GRPO advantage, never-evaluate-twice and breeding (one compiled call)",
    "absorb": "the step's results taken: checkpoints, weights, events made",
    "commit": "the group's generations committed to the database",
}


class PhaseClock:
    """Wall seconds, CPU seconds of the thread that ran them, and calls per phase; safe to
    add to from several threads. The CPU seconds of a phase whose work runs on other
    threads as well (the kernel's parallel workers) count only the calling thread's."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seconds: dict[str, float] = dict.fromkeys(PHASES, 0.0)
        self.cpu: dict[str, float] = dict.fromkeys(PHASES, 0.0)
        self.calls: dict[str, int] = dict.fromkeys(PHASES, 0)

    def add(self, phase: str, seconds: float, cpu: float = 0.0) -> None:
        with self._lock:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds
            self.cpu[phase] = self.cpu.get(phase, 0.0) + cpu
            self.calls[phase] = self.calls.get(phase, 0) + 1

    @contextmanager
    def time(self, phase: str) -> Iterator[None]:
        """Add the ``with`` block's duration (and its thread's CPU time) to ``phase``."""
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            self.add(phase, time.perf_counter() - t0, time.thread_time() - c0)
