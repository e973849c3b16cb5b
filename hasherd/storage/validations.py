"""Cross-hardware validation results: one row per check of a weight on two evaluators.

``weights.validation`` stays the weight's summary state; the ``validations`` table keeps
every check with both evaluators' outputs (docs/validation.md). The functions take any
store (``ValidationsMixin`` makes them ``Store`` methods).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from hasherd.errors import InputError
from hasherd.storage.core import StoreCore, changes, where
from hasherd.storage.errors import StorageError
from hasherd.storage.rows import VALIDATIONS

_VALUES = (
    "weight_id, seed, stored_output, stored_golden_nonce, evaluator_a, output_a,"
    " golden_nonce_a, evaluator_b, output_b, golden_nonce_b, agree, attempts, error, created_at"
)
_COLS = f"id, {_VALUES}"


def outputs_agree(
    stored: tuple[int, int], a: tuple[int, int] | None, b: tuple[int, int] | None
) -> bool | None:
    """Whether both evaluators reproduce the stored (output, golden nonce); None when
    either of them gave nothing (it could not be run)."""
    if a is None or b is None:
        return None
    return a == b == stored


@dataclass(frozen=True, slots=True)
class ValidationRow:
    """One check of one weight. ``id``, ``created_at`` are set by the store; ``agree`` is
    None (and ``error`` says why) when an evaluator could not be run."""

    weight_id: int
    seed: bytes
    stored_output: int
    stored_golden_nonce: int
    evaluator_a: str
    output_a: int | None
    golden_nonce_a: int | None
    evaluator_b: str
    output_b: int | None
    golden_nonce_b: int | None
    agree: bool | None
    attempts: int
    error: str | None = None
    id: int | None = None
    created_at: float | None = None

    @property
    def state(self) -> str | None:
        """The weight's summary state this check leads to (None: left as it was)."""
        if self.agree is None:
            return None
        return "validated" if self.agree else "non-deterministic"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "weight_id": self.weight_id,
            "seed": self.seed.hex(),
            "stored": {"output": self.stored_output, "golden_nonce": self.stored_golden_nonce},
            "a": {
                "evaluator": self.evaluator_a,
                "output": self.output_a,
                "golden_nonce": self.golden_nonce_a,
            },
            "b": {
                "evaluator": self.evaluator_b,
                "output": self.output_b,
                "golden_nonce": self.golden_nonce_b,
            },
            "agree": self.agree,
            "attempts": self.attempts,
            "error": self.error,
            "created_at": self.created_at,
        }


@dataclass(frozen=True, slots=True)
class ValidationSummary:
    """Weights by summary state, and the checks stored for them."""

    weights: int
    unvalidated: int
    validated: int
    non_deterministic: int
    checks: int  # rows in validations
    failed_checks: int  # rows where an evaluator could not be run
    last_check_at: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "weights": self.weights,
            "unvalidated": self.unvalidated,
            "validated": self.validated,
            "non_deterministic": self.non_deterministic,
            "checks": self.checks,
            "failed_checks": self.failed_checks,
            "last_check_at": self.last_check_at,
        }


def _row(r: Sequence[Any]) -> ValidationRow:
    agree = None if r[11] is None else bool(r[11])
    return ValidationRow(
        int(r[1]),
        bytes(r[2]),
        int(r[3]),
        int(r[4]),
        r[5],
        r[6],
        r[7],
        r[8],
        r[9],
        r[10],
        agree,
        int(r[12]),
        r[13],
        int(r[0]),
        float(r[14]),
    )


def _check(v: ValidationRow) -> None:
    a = None if v.output_a is None or v.golden_nonce_a is None else (v.output_a, v.golden_nonce_a)
    b = None if v.output_b is None or v.golden_nonce_b is None else (v.output_b, v.golden_nonce_b)
    expected = outputs_agree((v.stored_output, v.stored_golden_nonce), a, b)
    if v.agree != expected:
        raise InputError("agree", f"is {v.agree} but the outputs say {expected}")
    if (v.agree is None) != (v.error is not None):
        raise InputError("error", "a check that ran has no error; one that did not has one")
    if v.attempts < 0:
        raise InputError("attempts", f"{v.attempts} is below 0")
    if len(v.seed) != 32:
        raise InputError("seed", f"{len(v.seed)} bytes, expected 32")


async def store_validation(store: StoreCore, v: ValidationRow) -> ValidationRow:
    """Store one check and, in the same transaction, set the weight's summary state
    ('validated' when both evaluators reproduce the stored output and golden nonce,
    'non-deterministic' when they do not). A check that could not run leaves the
    state as it is, and so does a check of a seed the weight no longer holds (a
    better seed replaced it meanwhile: the row still records what was checked)."""
    _check(v)
    now = time.time()
    params = (
        v.weight_id,
        bytes(v.seed),
        v.stored_output,
        v.stored_golden_nonce,
        v.evaluator_a,
        v.output_a,
        v.golden_nonce_a,
        v.evaluator_b,
        v.output_b,
        v.golden_nonce_b,
        None if v.agree is None else int(v.agree),
        v.attempts,
        v.error,
        now,
    )

    def body(conn: sqlite3.Connection) -> int:
        if conn.execute("SELECT 1 FROM weights WHERE id = ?", (v.weight_id,)).fetchone() is None:
            raise StorageError(store.path, f"no weight {v.weight_id}")
        cursor = conn.execute(
            f"INSERT INTO validations ({_VALUES}) VALUES ({', '.join('?' * 14)})", params
        )
        if v.state is not None:
            conn.execute(
                "UPDATE weights SET validation = ? WHERE id = ? AND seed = ?",
                (v.state, v.weight_id, bytes(v.seed)),
            )
        return int(cursor.lastrowid or 0)

    row_id = await store.write(body)
    return replace(v, id=row_id, created_at=now)


async def load_validations(store: StoreCore, weight_id: int | None = None) -> list[ValidationRow]:
    """Stored checks, oldest first, optionally of one weight."""
    clause, params = where(weight_id=weight_id)
    sql = f"SELECT {_COLS} FROM validations{clause} ORDER BY id"
    return [_row(r) for r in await store._fetchall(sql, params)]


async def load_summary(store: StoreCore, dataset_id: int | None = None) -> ValidationSummary:
    """Weights by validation state and their stored checks, optionally of a dataset."""
    clause, params = where(r__dataset_id=dataset_id)
    states = await store._fetchall(
        "SELECT w.validation, count(*) FROM weights w JOIN records r ON r.id = w.record_id"
        f"{clause} GROUP BY w.validation",
        params,
    )
    by_state = {str(s): int(n) for s, n in states}
    checks = await store._fetchall(
        "SELECT count(v.id), count(v.id) - count(v.agree), max(v.created_at)"
        " FROM validations v JOIN weights w ON w.id = v.weight_id"
        f" JOIN records r ON r.id = w.record_id{clause}",
        params,
    )
    n, failed, last = checks[0]
    return ValidationSummary(
        weights=sum(by_state.values()),
        unvalidated=by_state.get("unvalidated", 0),
        validated=by_state.get("validated", 0),
        non_deterministic=by_state.get("non-deterministic", 0),
        checks=int(n),
        failed_checks=int(failed),
        last_check_at=None if last is None else float(last),
    )


class ValidationsMixin(StoreCore):
    """The store's methods for validation results (the functions above, as methods)."""

    async def set_validation(self, weight_id: int, state: str) -> None:
        """Mark a weight 'unvalidated', 'validated' or 'non-deterministic' (a state of its
        own, without a stored check: the end-of-run sample of a training)."""
        if state not in VALIDATIONS:
            raise InputError("validation", f"{state!r} is not one of {sorted(VALIDATIONS)}")
        async with self.transaction() as conn:
            sql = "UPDATE weights SET validation = ? WHERE id = ?"
            if await changes(conn, sql, (state, weight_id)) != 1:
                raise StorageError(self.path, f"no weight {weight_id}")

    async def add_validation(self, v: ValidationRow) -> ValidationRow:
        """See ``store_validation``."""
        return await store_validation(self, v)

    async def validations(self, weight_id: int | None = None) -> list[ValidationRow]:
        """See ``load_validations``."""
        return await load_validations(self, weight_id)

    async def validation_summary(self, dataset_id: int | None = None) -> ValidationSummary:
        """See ``load_summary``."""
        return await load_summary(self, dataset_id)
