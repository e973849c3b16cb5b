"""A job's progress at one moment, in the shapes the control methods and the metrics read."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from hasherd.scheduler.trainer import Progress


@dataclass(frozen=True)
class ProgressSnapshot:
    """A job's ``Progress`` at one moment, the one conversion of it: ``to_json`` is the
    ``progress`` of ``jobs.show``, ``to_metrics`` what the metrics collector reads."""

    run_id: int | None  # None until the trainer has created or resumed its run
    epoch: int
    epochs: int
    difficulty_bits: int
    records_total: int
    records_won: int
    records_done: int
    records_todo: int
    candidates: int
    dsha: int
    tokens: int
    candidates_per_s: float
    best_fitness: float  # NaN until a generation has run
    mean_fitness: float

    @classmethod
    def of(cls, p: Progress) -> ProgressSnapshot:
        return cls(
            run_id=p.run_id or None,
            epoch=p.epoch,
            epochs=p.epochs,
            difficulty_bits=p.difficulty,
            records_total=p.records_total,
            records_won=p.records_won,
            records_done=p.done,
            records_todo=p.todo,
            candidates=p.candidates,
            dsha=p.dsha,
            tokens=p.tokens,
            candidates_per_s=p.candidates_per_s,
            best_fitness=p.best_reward,
            mean_fitness=p.mean_reward,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "epochs": self.epochs,
            "difficulty_bits": self.difficulty_bits,
            "records_total": self.records_total,
            "records_won": self.records_won,
            "records_done": self.records_done,
            "records_todo": self.records_todo,
            "candidates": self.candidates,
            "dsha": self.dsha,
            "tokens": self.tokens,
            "candidates_per_s": round(self.candidates_per_s, 1),
            "best_fitness": _finite(self.best_fitness),
            "mean_fitness": _finite(self.mean_fitness),
            "run_id": self.run_id,
        }

    def to_metrics(self) -> dict[str, Any]:
        """The keys of ``MetricsSource.job_snapshots`` (NaN fitness: not known yet)."""
        return {
            "difficulty_bits": self.difficulty_bits,
            "records_total": self.records_total,
            "records_won": self.records_won,
            "records_pending": max(0, self.records_todo - self.records_done),
            "tokens_trained": self.tokens,
            "best_fitness": self.best_fitness,
            "mean_fitness": self.mean_fitness,
            "candidates": self.candidates,
            "dsha": self.dsha,
        }


def _finite(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 6)
