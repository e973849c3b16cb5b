"""What the process-level tests share: the command that runs hasherd, generated frames, a
look into a database file, and polling until a condition holds."""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HASHERD = [sys.executable, "-m", "hasherd.cli.main"]


def frame_rows(n: int, seed: int, tokens: int = 100_000) -> list[dict[str, Any]]:
    """``n`` frames of 12 random feature words and a token below ``tokens``, the same for
    the same ``seed``."""
    rng = np.random.default_rng(seed)
    return [
        {
            "feature_vector": rng.integers(0, 2**32, size=12, dtype=np.uint64).tolist(),
            "target_token": int(rng.integers(0, tokens)),
        }
        for _ in range(n)
    ]


def write_frames(path: Path, n: int, seed: int, tokens: int = 100_000) -> Path:
    """``frame_rows`` written to ``path`` as a JSON list; returns ``path``."""
    path.write_text(json.dumps(frame_rows(n, seed, tokens)))
    return path


def db_rows(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The rows of one query on the database file ``db`` (a connection of its own)."""
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def wait_for(
    pred: Callable[[], Any],
    what: str,
    timeout: float = 120.0,
    log: Callable[[], str] | None = None,
) -> Any:
    """``pred()``'s first true value, polled every 0.1 s; AssertionError naming ``what``
    (and the end of ``log()``, a daemon's log) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}" + (f"\n{log()}" if log else ""))
