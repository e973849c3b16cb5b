"""What a batch costs an actor: a first estimate from its kind, then its measured rate.

The pool sizes the work it gives an actor by these estimates (``actors/sizing.py``), so a
slow device holds at most ``devices.max_batch_seconds`` of work. Each kernel setting
(zero bits, passes) has its own measured seconds per candidate, an exponentially weighted
average over the actor's recent calls. Before an actor has run a setting, its estimate is
the cost model's, scaled by how the actor's measured calls compared with the model so far:
the model is deliberately pessimistic, and one measured setting corrects the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hasherd.kernel.evaluators.base import EvalRequest

ALPHA = 0.3  # weight of the newest measurement in the moving average


@dataclass(frozen=True)
class CostModel:
    """Seconds per candidate before any measurement. A candidate runs ``passes + 1``
    golden-nonce searches: about ``2^zero_bits`` double SHA-256 each on a simulator
    (``hashes_per_second``), one chip job of ``job_seconds`` on a chain."""

    hashes_per_second: float = 0.0  # 0: not bound by host hashing (a chip)
    job_seconds: float = 0.0  # a chip job's sweep and its quiet time

    def seconds_per_candidate(self, zero_bits: int, passes: int) -> float:
        searches = passes + 1
        seconds = searches * self.job_seconds
        if self.hashes_per_second > 0:
            seconds += searches * 2.0**zero_bits / self.hashes_per_second
        return seconds


Setting = tuple[int, int]  # (zero_bits, passes)


class RateBook:
    """One actor's estimates (see the module docstring)."""

    def __init__(self, model: CostModel) -> None:
        self.model = model
        self._measured: dict[Setting, float] = {}  # seconds per candidate
        self._scale: float | None = None  # measured / model, averaged over settings

    def seconds_per_candidate(self, zero_bits: int, passes: int) -> float:
        measured = self._measured.get((zero_bits, passes))
        if measured is not None:
            return measured
        first = self.model.seconds_per_candidate(zero_bits, passes)
        return first if self._scale is None else first * self._scale

    def seconds(self, reqs: Sequence[EvalRequest]) -> list[float]:
        """The estimated seconds of each request."""
        return [r.n * self.seconds_per_candidate(r.zero_bits, r.passes) for r in reqs]

    def record(self, reqs: Sequence[EvalRequest], seconds: float) -> None:
        """Fold one call's duration in (a call mixing settings teaches nothing)."""
        settings = {(r.zero_bits, r.passes) for r in reqs}
        candidates = sum(r.n for r in reqs)
        if len(settings) != 1 or candidates <= 0 or seconds <= 0:
            return
        (setting,) = settings
        spc = seconds / candidates
        self._measured[setting] = _average(self._measured.get(setting), spc)
        modelled = self.model.seconds_per_candidate(*setting)
        if modelled > 0:
            self._scale = _average(self._scale, spc / modelled)

    def snapshot(self) -> dict[str, float]:
        """Measured candidates/s by setting, keyed ``"k=K,p=P"``."""
        return {f"k={k},p={p}": round(1.0 / s, 3) for (k, p), s in sorted(self._measured.items())}


def _average(old: float | None, new: float) -> float:
    return new if old is None else old + ALPHA * (new - old)
