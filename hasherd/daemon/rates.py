"""The daemon's candidates/s and double SHA-256/s, measured on the pool's counters."""

from __future__ import annotations

import time
from collections.abc import Callable

from hasherd.actors.pool import ActorPool


def pool_totals(pool: ActorPool) -> tuple[int, int]:
    """Candidates evaluated and double SHA-256 computed by every actor of ``pool``."""
    actors = list(pool.actors.values())
    return sum(a.stats.candidates for a in actors), sum(a.stats.dsha for a in actors)


class RateMeter:
    """Rates of two growing counters, read from ``totals``.

    A reading less than ``min_interval`` seconds after the last one returns the last
    rates: the status line, ``status`` and the monitor may all ask within a second, and
    a rate over a few milliseconds would swing with every batch that lands.
    """

    def __init__(
        self,
        totals: Callable[[], tuple[int, int]],
        *,
        min_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.totals = totals
        self.min_interval = min_interval
        self.clock = clock
        self._last = (clock(), *totals())
        self._rates = (0.0, 0.0)

    def rates(self) -> tuple[float, float]:
        """(candidates/s, double SHA-256/s) over the last interval."""
        now = self.clock()
        cands, dsha = self.totals()
        t0, c0, d0 = self._last
        if now - t0 >= self.min_interval:
            self._rates = ((cands - c0) / (now - t0), (dsha - d0) / (now - t0))
            self._last = (now, cands, dsha)
        return self._rates
