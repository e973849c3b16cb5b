"""Shared fixtures: the conformance vectors shipped with the tests, evaluators, and the
leak check every test runs under."""

from __future__ import annotations

import json
import logging
import random
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hasherd.backends import create
from hasherd.kernel.evaluators.base import Evaluator
from tests.leaks import Baseline, leftovers, recording_pending_tasks

DATA = Path(__file__).parent / "data"
VECTORS = DATA / "kernel-v1.json"


@pytest.fixture(scope="session", autouse=True)
def pending_tasks() -> Iterator[list[str]]:
    """The asyncio tasks still pending when an event loop closed, not yet reported."""
    found: list[str] = []
    with recording_pending_tasks(found):
        yield found


@pytest.fixture(scope="module", autouse=True)
def no_module_leaks(pending_tasks: list[str]) -> Iterator[None]:
    """``no_leaks`` around a whole module, for what its module-scoped fixtures start."""
    yield from _leak_checked(pending_tasks, "the module's fixtures left behind")


@pytest.fixture(autouse=True)
def no_leaks(pending_tasks: list[str]) -> Iterator[None]:
    """Fails a test that leaves a thread, a child process or an asyncio task behind.

    Set up before and torn down after the test's other function-scoped fixtures, so a
    fixture that stops its server or reaps its process in its teardown is not blamed;
    what module- and session-scoped fixtures own was alive before and is not counted.
    """
    yield from _leak_checked(pending_tasks, "the test left behind")


def _leak_checked(pending_tasks: list[str], title: str) -> Iterator[None]:
    before, mark = Baseline.now(), len(pending_tasks)
    yield
    found = leftovers(before, pending_tasks[mark:])
    del pending_tasks[mark:]  # what a test reports, the check around its module does not
    if found:
        pytest.fail(f"{title}:\n  " + "\n  ".join(found), pytrace=False)


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


@pytest.fixture(autouse=True)
def own_logging() -> Iterator[None]:
    """Each test starts with the logging it found: a command run in-process (``main()``)
    installs handlers on the stderr that pytest captured for that test, which is closed
    when the test ends; a later test logging through them would fail."""
    root, ours = logging.getLogger(), logging.getLogger("hasherd")
    saved = (list(root.handlers), root.level, ours.level)
    try:
        yield
    finally:
        for handler in root.handlers:
            if handler not in saved[0]:
                handler.close()
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        ours.setLevel(saved[2])


_GIVEN_PORTS: set[int] = set()


def _ephemeral_range() -> range:
    """The kernel's range for outgoing connections' local ports (Linux default if unknown)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return range(int(low), int(high) + 1)
    except (OSError, ValueError):
        return range(32768, 61000)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a daemon's metrics).

    Chosen outside the kernel's ephemeral range, so that no outgoing connection made on
    this machine between the choice and the daemon's bind can take it, and never twice in
    one test session.
    """
    ephemeral = _ephemeral_range()
    candidates = [p for p in range(10000, 30000) if p not in ephemeral and p not in _GIVEN_PORTS]
    rng = random.Random()
    for port in rng.sample(candidates, min(200, len(candidates))):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _GIVEN_PORTS.add(port)
        return port
    raise RuntimeError("no free TCP port on 127.0.0.1 outside the ephemeral range")
