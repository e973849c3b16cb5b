"""A first start on a machine: numba's cache is empty, so the kernels and the trainer's
search compile (a minute or more), and a job is submitted at once. The event loop must
never wait for the compiler: the control socket keeps answering and systemd's watchdog
keeps being fed for the whole compile, until the job has trained something."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hasherd.control.client import ControlClient
from tests.helpers import HASHERD

WATCHDOG_S = 4.0  # WatchdogSec: the daemon pings every WATCHDOG_S / 2
ANSWER_S = 2.0  # the longest a control call may take while the compile runs
POLL_S = 0.5


@dataclass
class Notes:
    """The notification datagrams a daemon sent, with the time each arrived."""

    sock: socket.socket
    got: list[tuple[float, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def read(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.got.append((time.monotonic(), data.decode()))

    def times(self, key: str) -> list[float]:
        return [t for t, text in list(self.got) if key in text.split("\n")]


@pytest.fixture
def rig() -> Iterator[Path]:
    """A short directory (AF_UNIX paths) with a dataset and a config."""
    d = Path(tempfile.mkdtemp(prefix="hd-", dir="/tmp"))
    rng = np.random.default_rng(9)
    frames = [
        {
            "feature_vector": rng.integers(0, 2**32, 12, dtype=np.uint64).tolist(),
            "target_token": int(rng.integers(0, 100_000)),
        }
        for _ in range(16)
    ]
    (d / "frames.json").write_text(json.dumps(frames))
    (d / "hasherd.toml").write_text(f"""
[daemon]
database = "{d / "hasherd.db"}"
status_interval = "1s"
shutdown_timeout = "10s"
[control]
socket = "{d / "control.sock"}"
[jitter]
socket = "{d / "j.sock"}"
[metrics]
address = ""
[training]
epochs = 1
difficulty_bits = 8
validation_split = 0.0
seed = 3
[logging]
level = "info"
""")
    (d / "numba-cache").mkdir()
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _timed_call(path: Path, method: str, **params: Any) -> tuple[float, Any]:
    """One call on a fresh connection, and how long it took, connecting included."""
    t0 = time.monotonic()
    with ControlClient(path, timeout=30) as c:
        reply = c.call(method, **params)
    return time.monotonic() - t0, reply


def _trained(status: dict[str, Any]) -> bool:
    """Whether the job has trained something: finished, or some candidates evaluated."""
    assert status["jobs"]["failed"] == 0, status
    jobs = status["active_jobs"]
    done = status["jobs"]["finished"] > 0
    return done or any((j["progress"] or {}).get("candidates", 0) > 0 for j in jobs)


@pytest.mark.timeout(400)  # a cold compile takes 60-90 s here, more on a busy machine
def test_the_loop_answers_and_feeds_the_watchdog_through_a_cold_compile(rig: Path) -> None:
    cache = rig / "numba-cache"
    notes = Notes(socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM))
    notes.sock.bind(str(rig / "notify.sock"))
    reader = threading.Thread(target=notes.read, name="notify-reader")
    reader.start()
    env = {
        **os.environ,
        "NOTIFY_SOCKET": str(rig / "notify.sock"),
        "WATCHDOG_USEC": str(int(WATCHDOG_S * 1_000_000)),
        "NUMBA_CACHE_DIR": str(cache),
    }
    env.pop("WATCHDOG_PID", None)
    log = (rig / "daemon.log").open("w")
    proc = subprocess.Popen(
        [*HASHERD, "run", "--config", str(rig / "hasherd.toml")],
        env=env,
        stdout=log,
        stderr=log,
    )
    calls: list[tuple[str, float]] = []
    try:
        deadline = time.monotonic() + 120
        while not notes.times("READY=1"):
            assert proc.poll() is None and time.monotonic() < deadline, _log(rig)
            time.sleep(0.05)
        ready = notes.times("READY=1")[0]
        assert not any(cache.rglob("*.nbc")), "the numba cache was not empty at READY"
        took, _ = _timed_call(rig / "control.sock", "jobs.submit", data=str(rig / "frames.json"))
        calls.append(("jobs.submit", took))
        deadline = time.monotonic() + 360
        while True:
            assert proc.poll() is None, _log(rig)
            assert time.monotonic() < deadline, f"the job trained nothing\n{_log(rig)}"
            took, status = _timed_call(rig / "control.sock", "status")
            calls.append(("status", took))
            if _trained(status):
                break
            time.sleep(POLL_S)
        trained = time.monotonic()
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
        notes.stop.set()
        reader.join(5)
        notes.sock.close()
    assert any(cache.rglob("*.nbc")), "nothing was compiled: the cache was not cold"
    slow = [(m, round(t, 2)) for m, t in calls if t >= ANSWER_S]
    assert not slow, f"calls slower than {ANSWER_S} s during the compile: {slow}"
    pings = [ready] + [t for t in notes.times("WATCHDOG=1") if ready <= t <= trained] + [trained]
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert max(gaps) < WATCHDOG_S, f"the watchdog went unfed for {max(gaps):.1f} s"
    print(
        f"cold start: {trained - ready:.0f} s from READY=1 to the first trained generation, "
        f"{len(calls)} control calls (slowest {max(t for _, t in calls):.2f} s), "
        f"{len(pings) - 2} watchdog pings (longest gap {max(gaps):.2f} s)"
    )


def _log(rig: Path) -> str:
    return (rig / "daemon.log").read_text(errors="replace")[-4000:]
