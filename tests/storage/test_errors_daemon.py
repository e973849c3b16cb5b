"""A full disk under the daemon (a real ``hasherd run`` on a small tmpfs): at start it is
one line and exit 2; during a job the job fails with the cause as its error, the daemon
keeps serving, and what was committed stays intact. Needs root (mount(2))."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hasherd.control.client import ControlClient, ControlError
from hasherd.kernel.evaluators.base import Evaluator
from tests.helpers import HASHERD, wait_for, write_frames
from tests.mounts import mount, need_mounts, umount


@pytest.fixture
def small() -> Iterator[Path]:
    """A short directory (AF_UNIX paths) holding a tmpfs mount point, ``small``."""
    d = Path(tempfile.mkdtemp(prefix="hd-", dir="/tmp"))
    need_mounts(d)
    (d / "small").mkdir()
    mount("-t", "tmpfs", "-o", "size=16k", "tmpfs", str(d / "small"))
    try:
        yield d
    finally:
        umount(d / "small")
        subprocess.run(["rm", "-rf", str(d)], check=True, timeout=60)


def _setup(d: Path) -> tuple[Path, Path]:
    write_frames(d / "frames.json", 48, 3)
    config = d / "hasherd.toml"
    config.write_text(f"""
[daemon]
database = "{d / "small" / "hasherd.db"}"
[control]
socket = "{d / "c.sock"}"
[jitter]
socket = "{d / "j.sock"}"
[metrics]
address = ""
[training]
epochs = 2
difficulty_bits = 10
population_size = 64
seed = 5
""")
    return config, d / "frames.json"


def _call(sock: Path, method: str, **params: Any) -> Any:
    with ControlClient(sock, timeout=20) as c:
        return c.call(method, **params)


def _answers(sock: Path) -> bool:
    try:
        return bool(_call(sock, "ping")["pong"])
    except (ControlError, OSError):
        return False


@pytest.mark.timeout(300)
def test_a_full_disk_is_a_start_error_then_a_job_error(small: Path, numba_eval: Evaluator) -> None:
    config, data = _setup(small)
    db, sock = small / "small" / "hasherd.db", small / "c.sock"
    start = subprocess.run(
        [*HASHERD, "run", "--config", str(config)], capture_output=True, text=True, timeout=120
    )
    assert start.returncode == 2, start.stderr
    assert "Traceback" not in start.stderr
    # SQLite's words vary with the file it could not grow (the -wal, the -shm).
    assert (
        start.stderr.strip().splitlines()[-1].startswith(f"hasherd run: error: {db}: disk full (")
    )
    mount("-o", "remount,size=600k", str(small / "small"))  # room to start, not for the job
    log = open(small / "daemon.log", "a")  # noqa: SIM115 - the child keeps it
    daemon = subprocess.Popen([*HASHERD, "run", "--config", str(config)], stdout=log, stderr=log)
    log.close()
    try:
        wait_for(lambda: _answers(sock), "the daemon")
        job = _call(sock, "jobs.submit", data=str(data))["job"]["id"]

        def failed() -> dict[str, Any] | None:
            got: dict[str, Any] = _call(sock, "jobs.show", id=job)["job"]
            assert got["status"] != "finished", "the job fitted: make it bigger"
            return got if got["status"] == "failed" else None

        got = wait_for(failed, "the job to fail")
        assert got["error"] == f"{db}: disk full (database or disk is full)"
        assert _answers(sock)  # the daemon serves on
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=60) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()
