"""Shared fixtures: the conformance vectors shipped with the tests, and evaluators."""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hasherd.backends import create
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


@pytest.fixture
def anyio_backend() -> str:
    """anyio tests run on asyncio (the backend the daemon uses)."""
    return "asyncio"


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short directory (AF_UNIX paths stop at 108 bytes) that other uids may traverse."""
    base = tempfile.gettempdir()
    path = Path(tempfile.mkdtemp(prefix="hd-", dir=base if len(base) < 40 else "/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a daemon's metrics)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
