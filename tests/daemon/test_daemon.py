"""``hasherd run`` end to end: a real daemon process, its control socket, a real
NOTIFY_SOCKET, a real Prometheus scrape, signals, and SIGKILL in the middle of a job."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hasherd.control.client import ControlClient, ControlError
from tests.conftest import free_port

HASHERD = [sys.executable, "-m", "hasherd.cli.main"]


@dataclass
class Rig:
    dir: Path
    config: Path
    socket: Path
    db: Path
    notify: socket.socket
    port: int
    data: Path

    def start(self, *extra_env: tuple[str, str]) -> subprocess.Popen[str]:
        env = {**os.environ, "NOTIFY_SOCKET": str(self.dir / "notify.sock"), **dict(extra_env)}
        log = open(self.dir / "daemon.log", "a")  # noqa: SIM115 - the child keeps it
        proc = subprocess.Popen(
            [*HASHERD, "run", "--config", str(self.config)],
            env=env,
            stdout=log,
            stderr=log,
            text=True,
        )
        log.close()
        return proc

    def client(self) -> ControlClient:
        return ControlClient(self.socket, timeout=20)

    def notes(self, until: str, timeout: float = 120) -> list[str]:
        """Notification datagrams received until one contains ``until``."""
        got: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.notify.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                got.append(self.notify.recv(4096).decode())
            except TimeoutError:
                break
            if until in got[-1]:
                return got
        raise AssertionError(f"no {until!r} notification; got {got}\n{self.log()}")

    def log(self) -> str:
        return (self.dir / "daemon.log").read_text(errors="replace")[-4000:]

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.db) as conn:
            return conn.execute(sql).fetchall()


@pytest.fixture
def rig() -> Iterator[Rig]:
    d = Path(tempfile.mkdtemp(prefix="hd-", dir="/tmp"))  # short: AF_UNIX paths
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(d / "notify.sock"))
    port = free_port()
    rng = np.random.default_rng(3)
    frames = [
        {
            "feature_vector": rng.integers(0, 2**32, 12, dtype=np.uint64).tolist(),
            "target_token": int(rng.integers(0, 100_000)),
        }
        for _ in range(48)
    ]
    data = d / "frames.json"
    data.write_text(json.dumps(frames))
    config = d / "hasherd.toml"
    config.write_text(f"""
[daemon]
database = "{d / "hasherd.db"}"
status_interval = "1s"
shutdown_timeout = "10s"
[control]
socket = "{d / "control.sock"}"
[jitter]
socket = "{d / "j.sock"}"
[metrics]
address = "127.0.0.1:{port}"
[training]
epochs = 1
difficulty_bits = 12
population_size = 128
validation_split = 0.0
seed = 5
[logging]
level = "info"
""")
    try:
        yield Rig(d, config, d / "control.sock", d / "hasherd.db", notify, port, data)
    finally:
        notify.close()
        shutil.rmtree(d, ignore_errors=True)


def _wait(pred: Any, timeout: float = 120, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=30)


def test_ready_status_job_metrics_and_clean_stop(rig: Rig) -> None:
    proc = rig.start()
    try:
        notes = rig.notes("READY=1")
        assert rig.socket.exists()  # READY only once the socket is bound
        assert rig.db.exists() and rig.rows("PRAGMA user_version")[0][0] >= 3  # migrated
        with rig.client() as c:
            assert c.call("ping")["pong"] is True
            job = c.call("jobs.submit", data=str(rig.data), name="frames", difficulty_bits=10)
            assert job["job"]["status"] == "queued" and job["job"]["options"] == {
                "difficulty_bits": 10
            }
            done = _wait(
                lambda: (
                    c.call("jobs.show", id=job["job"]["id"])["job"]["status"]
                    in ("finished", "failed")
                    and c.call("jobs.show", id=1)["job"]
                ),
                what="the job to finish",
            )
            assert done["status"] == "finished", rig.log()
            status = c.call("status")
            assert status["jobs"]["finished"] == 1 and status["state"] == "running"
            assert status["actors"][0]["state"] in ("ready", "busy")
            assert status["actors"][0]["candidates"] > 0
            weights = c.call("weights.list")
            assert weights["total"] == 48  # every record holds a winner at D = 10
            assert all(w["prefix_bits"] >= 10 for w in weights["weights"])
            assert c.call("health") == {"healthy": True, "reason": "1 of 1 actors working"}
            with pytest.raises(ControlError) as bad:
                c.call("jobs.show", id=999)
            assert bad.value.code == "invalid_params" and "999" in bad.value.message
        text = urllib.request.urlopen(f"http://127.0.0.1:{rig.port}/metrics").read().decode()
        cands = [
            line for line in text.splitlines() if line.startswith("hasherd_actor_candidates_total")
        ]
        assert cands and float(cands[0].split()[-1]) == status["actors"][0]["candidates"]
        assert 'hasherd_job_tokens_trained_total{job_id="1",name="frames"} 48.0' in text
        assert "hasherd_generation_duration_seconds_count" in text
        assert _stop(proc) == 0
        assert any("STOPPING=1" in n for n in rig.notes("STOPPING=1", timeout=10) + notes)
        assert not rig.socket.exists()  # removed at stop
        assert rig.rows("PRAGMA integrity_check") == [("ok",)]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sigkill_mid_job_resumes_without_losing_a_weight(rig: Rig) -> None:
    proc = rig.start()
    try:
        rig.notes("READY=1")
        with rig.client() as c:
            c.call("jobs.submit", data=str(rig.data), difficulty_bits=15)
        _wait(
            lambda: rig.rows("SELECT count(*) FROM checkpoints")[0][0] >= 10,
            what="some generations committed",
        )
        time.sleep(1.0)
        before = {r[0]: r[1:] for r in rig.rows("SELECT record_id, seed, prefix_bits FROM weights")}
        proc.kill()
        proc.wait(timeout=10)
        assert rig.rows("PRAGMA integrity_check") == [("ok",)]
        assert rig.rows("SELECT status FROM jobs") == [("running",)]  # killed, not stopped
        gens = dict(rig.rows("SELECT record_id, generation FROM checkpoints"))
        proc = rig.start()
        rig.notes("READY=1")
        with rig.client() as c:
            done = _wait(
                lambda: (j := c.call("jobs.show", id=1)["job"])["status"] == "finished" and j,
                timeout=300,
                what="the resumed job",
            )
            assert done["run_id"] == 1  # the same run, resumed
        after = {r[0]: r[1:] for r in rig.rows("SELECT record_id, seed, prefix_bits FROM weights")}
        assert set(before) <= set(after)  # no weight lost
        assert all(after[k][1] >= before[k][1] for k in before)  # only ever improved
        assert len(after) == len(rig.rows("SELECT DISTINCT record_id FROM weights"))  # no dupes
        resumed = dict(rig.rows("SELECT record_id, generation FROM checkpoints"))
        assert all(resumed[k] >= g for k, g in gens.items())  # continued, not restarted
        assert rig.rows("SELECT count(*) FROM runs") == [(1,)]
        assert "interrupted; they resume" in rig.log()
        assert _stop(proc) == 0
        assert rig.rows("PRAGMA integrity_check") == [("ok",)]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_hundred_clients_are_answered_while_training_runs(rig: Rig) -> None:
    proc = rig.start()
    try:
        rig.notes("READY=1")
        with rig.client() as c:
            c.call("jobs.submit", data=str(rig.data), difficulty_bits=16)
        _wait(
            lambda: rig.rows("SELECT count(*) FROM checkpoints")[0][0] >= 5,
            what="training to start",
        )
        answers: list[Any] = []
        errors: list[BaseException] = []

        def one() -> None:
            try:
                with rig.client() as cl:
                    answers.append(cl.call("status"))
            except BaseException as exc:  # collected and reported below
                errors.append(exc)

        threads = [threading.Thread(target=one) for _ in range(100)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors[:3]
        assert len(answers) == 100
        assert all(a["active_job"] and a["active_job"]["status"] == "running" for a in answers)
        assert _stop(proc) == 0
        # The job was stopped cleanly: back in the queue, to resume at the next start.
        assert rig.rows("SELECT status FROM jobs") == [("queued",)]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sighup_reloads_what_it_can_and_bad_config_is_refused(rig: Rig) -> None:
    proc = rig.start()
    try:
        rig.notes("READY=1")
        text = rig.config.read_text()
        rig.config.write_text(
            text.replace('level = "info"', 'level = "debug"').replace(
                'address = "127.0.0.1', 'address = "127.0.0.2'
            )
        )
        with rig.client() as c:
            got = c.call("reload")
            assert got == {"reloaded": ["logging.level"], "restart_needed": ["metrics.address"]}
            rig.config.write_text(text.replace("population_size = 128", "population_size = -1"))
            with pytest.raises(ControlError) as bad:
                c.call("reload")
            assert "training.population_size" in bad.value.message
            # still running on the old config (the actor may still be loading its kernels)
            _wait(lambda: c.call("health")["healthy"], what="a healthy daemon")
        proc.send_signal(signal.SIGHUP)  # the same through the signal, answered by READY=1
        assert any("RELOADING=1" in n for n in rig.notes("READY=1", timeout=20))
        assert _stop(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_second_daemon_on_the_same_socket_is_refused(rig: Rig) -> None:
    first = rig.start()
    try:
        rig.notes("READY=1")
        second = subprocess.run(
            [*HASHERD, "run", "--config", str(rig.config)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert second.returncode == 2
        assert "already" in second.stderr and str(rig.socket) in second.stderr
        with rig.client() as c:
            assert c.call("ping")["pong"] is True  # the first one is untouched
        assert _stop(first) == 0
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()


def test_check_config_prints_the_effective_config_and_names_bad_keys(rig: Rig) -> None:
    ok = subprocess.run(
        [*HASHERD, "check-config", str(rig.config)], capture_output=True, text=True, timeout=60
    )
    assert ok.returncode == 0, ok.stderr
    assert "[daemon]" in ok.stdout and 'socket = "' in ok.stdout and "batch = 64" in ok.stdout
    bad = rig.dir / "bad.toml"
    bad.write_text("[control]\nmax_connections = 0\n")
    got = subprocess.run(
        [*HASHERD, "check-config", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert got.returncode == 2 and "control.max_connections" in got.stderr


def test_pause_resume_cancel_and_actor_restart(rig: Rig) -> None:
    proc = rig.start()
    try:
        rig.notes("READY=1")
        with rig.client() as c:
            job_id = c.call("jobs.submit", data=str(rig.data), difficulty_bits=18)["job"]["id"]
            _wait(
                lambda: (
                    c.call("jobs.show", id=job_id)["job"]["status"] == "running"
                    and rig.rows("SELECT count(*) FROM checkpoints")[0][0] >= 5
                ),
                what="training to start",
            )
            paused = c.call("jobs.pause", id=job_id)["job"]
            assert paused["status"] == "paused"
            gens = dict(rig.rows("SELECT record_id, generation FROM checkpoints"))
            time.sleep(1.0)  # nothing trains while paused
            assert dict(rig.rows("SELECT record_id, generation FROM checkpoints")) == gens
            assert c.call("status")["active_job"] is None
            assert c.call("jobs.pause", id=job_id)["job"]["status"] == "paused"  # idempotent
            assert c.call("jobs.resume", id=job_id)["job"]["status"] == "queued"
            _wait(
                lambda: (
                    max(g for (g,) in rig.rows("SELECT generation FROM checkpoints"))
                    > max(gens.values())
                ),
                what="the resumed job to advance",
            )
            restarted = c.call("actors.restart", name="numba0")["actor"]
            assert restarted["restarts"] == 1 and restarted["state"] in ("ready", "busy")
            cancelled = c.call("jobs.cancel", id=job_id)["job"]
            assert cancelled["status"] == "cancelled"
            with pytest.raises(ControlError):
                c.call("jobs.resume", id=job_id)  # a cancelled job stays cancelled
            assert c.call("health")["healthy"] is True
        assert _stop(proc) == 0
        assert rig.rows("SELECT status FROM jobs") == [("cancelled",)]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_jitter_service_serves_the_running_jobs_memory(rig: Rig) -> None:
    """The daemon's jitter RPC socket answers legacy 56-byte frames from the memory of the
    job it trains, as the in-process lookup does, and its metrics count them."""
    import struct

    from hasherd.data import load_dataset
    from hasherd.kernel import spec

    proc = rig.start()  # the rig's config gives the jitter service a socket of its own
    try:
        rig.notes("READY=1")
        with rig.client() as c:
            c.call("jobs.submit", data=str(rig.data), difficulty_bits=18)
            _wait(
                lambda: (
                    c.call("status")["active_job"] is not None
                    and rig.rows("SELECT count(*) FROM checkpoints")[0][0] >= 1
                ),
                what="the job to start",
            )
        ds = load_dataset(rig.data)
        frames = ds.slots
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(rig.dir / "j.sock"))
            for i, key, p in ((0, 0x1234, 0), (5, int(frames[7, 0]), 1), (9, 42, 20)):
                s.sendall(struct.pack("<14I", *frames[i].tolist(), key, p))
                got = b""
                while len(got) < 4:
                    got += s.recv(4 - len(got))
                want, _ = spec.lookup_linear(frames.tolist(), frames[i].tolist(), key, p)
                assert struct.unpack("<I", got)[0] == want
        scrape = urllib.request.urlopen(f"http://127.0.0.1:{rig.port}/metrics").read().decode()
        assert "hasherd_jitter_legacy_requests_total 3.0" in scrape
        assert "hasherd_jitter_request_duration_seconds_count" in scrape
        assert _stop(proc) == 0
        assert not (rig.dir / "j.sock").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
