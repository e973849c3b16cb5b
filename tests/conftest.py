"""Shared fixtures: the conformance vectors shipped with the tests, and evaluators."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hasherd.kernel.evaluators import create
from hasherd.kernel.evaluators.base import Evaluator

DATA = Path(__file__).parent / "data"
VECTORS = DATA / "kernel-v1.json"


@pytest.fixture(scope="session")
def kernel_vectors() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(VECTORS.read_text())
    return data


@pytest.fixture(scope="session")
def reference() -> Evaluator:
    return create("reference")


@pytest.fixture(scope="session")
def numba_eval() -> Evaluator:
    ev = create("numba")
    ev.warm_up()  # compiles once per machine (about 80 s), then loads from numba's cache
    return ev
