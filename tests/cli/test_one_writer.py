"""One writer per database, as the commands meet it: two ``hasherd train`` on one file, and
the commands run beside a live daemon (real processes, a real daemon, real flocks)."""

from __future__ import annotations

import json
import shlex
import shutil
import signal
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hasherd.control.client import ControlClient, ControlError
from hasherd.kernel.evaluators.base import Evaluator
from hasherd.storage.lock import read_holder
from tests.conftest import free_port
from tests.helpers import HASHERD, db_rows, wait_for, write_frames

ARGS = ["--epochs", "1", "--population", "64", "--difficulty-bits", "9", "--seed", "11"]


def _hasherd(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HASHERD, *args], capture_output=True, text=True, timeout=timeout)


def _error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The one line a refused command prints (after the dataset report, for train)."""
    assert "Traceback" not in done.stderr and "ExceptionGroup" not in done.stderr, done.stderr
    return done.stderr.strip().splitlines()[-1]


def _stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.timeout(300)
def test_a_second_train_on_the_same_database_exits_2_naming_the_first(
    tmp_path: Path, numba_eval: Evaluator
) -> None:
    data, db = write_frames(tmp_path / "frames.json", 24, 5), tmp_path / "same.db"
    # Hard enough (D = 22) to be still running when the second one starts.
    hard = ["--epochs", "1", "--population", "64", "--difficulty-bits", "22", "--seed", "11"]
    argv = ["train", "--data", str(data), "--db", str(db), *hard]
    first = subprocess.Popen(
        [*HASHERD, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True
    )
    try:
        wait_for(lambda: _holder_pid(db) == first.pid, "the first one's lock")
        holder = read_holder(db)
        assert holder is not None and holder.command == "hasherd " + shlex.join(argv)
        wait_for(lambda: _runs(db), "the first one's run")
        second = _hasherd(*argv)
        assert second.returncode == 2
        assert _error_line(second) == (
            f"hasherd train: error: {db}: already in use by pid {first.pid} "
            f"(hasherd {shlex.join(argv)}); "
            "one writer per database: wait for it to finish or stop it"
        )
        assert first.poll() is None  # the first one trains on, untouched
    finally:
        assert _stop(first) in (130, -signal.SIGTERM)
    assert len(db_rows(db, "SELECT id FROM runs")) == 1
    started = "SELECT kind FROM events WHERE kind IN ('run_started', 'run_resumed')"
    assert db_rows(db, started) == [("run_started",)]


def _runs(db: Path) -> int:
    """Runs stored so far (0 before the database and its schema exist)."""
    try:
        return len(db_rows(db, "SELECT id FROM runs")) if db.exists() else 0
    except sqlite3.Error:
        return 0


def _holder_pid(db: Path) -> int | None:
    holder = read_holder(db)
    return holder.pid if holder is not None else None


@dataclass
class Rig:
    dir: Path
    config: Path
    socket: Path
    db: Path
    data: Path
    daemon: subprocess.Popen[str] | None = None


def _config(d: Path, db: Path, tag: str) -> Path:
    path = d / f"{tag}.toml"
    path.write_text(f"""
[daemon]
database = "{db}"
[control]
socket = "{d / tag}.sock"
[jitter]
socket = "{d / tag}-j.sock"
[metrics]
address = "127.0.0.1:{free_port()}"
""")
    return path


@pytest.fixture
def rig(numba_eval: Evaluator) -> Iterator[Rig]:
    """A database trained by ``hasherd train``, then a daemon serving it."""
    d = Path(tempfile.mkdtemp(prefix="hd-", dir="/tmp"))  # short: AF_UNIX paths
    db = d / "hasherd.db"
    data = write_frames(d / "frames.json", 8, 5)
    r = Rig(d, _config(d, db, "first"), d / "first.sock", db, data)
    try:
        done = _hasherd("train", "--data", str(data), "--db", str(db), *ARGS)
        assert done.returncode == 0, done.stderr
        log = open(d / "daemon.log", "a")  # noqa: SIM115 - the child keeps it
        r.daemon = subprocess.Popen(
            [*HASHERD, "run", "--config", str(r.config)], stdout=log, stderr=log, text=True
        )
        log.close()
        wait_for(lambda: _pings(r.socket), "the daemon's control socket")
        yield r
    finally:
        if r.daemon is not None:
            assert _stop(r.daemon) == 0
        shutil.rmtree(d, ignore_errors=True)


def _pings(path: Path) -> bool:
    try:
        with ControlClient(path, timeout=5) as c:
            return bool(c.call("ping")["pong"])
    except (ControlError, OSError):
        return False


@pytest.mark.timeout(300)
def test_writers_beside_a_running_daemon_are_refused_readers_work(rig: Rig) -> None:
    assert rig.daemon is not None
    pid, sock = rig.daemon.pid, rig.socket
    holder = f"pid {pid} (hasherd run --config {rig.config}, control socket {sock})"
    prefix = f"{rig.db}: already in use by {holder}; one writer per database: "
    train = _hasherd("train", "--data", str(rig.data), "--db", str(rig.db), *ARGS)
    assert train.returncode == 2
    assert _error_line(train) == (
        f"hasherd train: error: {prefix}use hasherctl --socket {sock} jobs submit"
    )
    second = _config(rig.dir, rig.db, "second")
    run = _hasherd("run", "--config", str(second), timeout=120)
    assert run.returncode == 2
    assert _error_line(run) == f"hasherd run: error: {rig.db}: already in use by {holder}"
    assert not (rig.dir / "second.sock").exists()  # refused before it bound anything
    validate = _hasherd("validate", "--db", str(rig.db))
    assert validate.returncode == 2
    assert _error_line(validate) == (
        f"hasherd validate: error: {prefix}use hasherctl --socket {sock} validate"
    )
    maps = ["--map-path", str(rig.dir / "maps" / "w"), "--validation-mode", "lenient"]
    layer = str(db_rows(rig.db, "SELECT min(token_id) / 1000 FROM weights")[0][0])
    flash = _hasherd("flash", "--db", str(rig.db), "--layer", layer, *maps)
    assert flash.returncode == 2
    assert (
        _error_line(flash) == f"hasherd flash: error: {prefix}use hasherctl --socket {sock} flash"
    )
    assert not (rig.dir / "maps").exists()

    weights = len(db_rows(rig.db, "SELECT id FROM weights"))
    out = rig.dir / "x"
    export = _hasherd("export", "--db", str(rig.db), "--format", "json", "--out", str(out))
    assert export.returncode == 0, export.stderr
    assert sum(len(json.loads(p.read_text())) for p in out.iterdir()) == weights
    verify = _hasherd("verify", "--db", str(rig.db))
    assert verify.returncode == 0, verify.stderr
    assert f"{weights} agree, 0 differ" in verify.stdout
    dry = _hasherd("flash", "--db", str(rig.db), "--layer", layer, *maps, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith(f"dry run: layer {layer} would go live at ")
    assert _pings(rig.socket)  # the daemon is untouched
    assert _holder_pid(rig.db) == pid
