"""Several jobs in one daemon, end to end: real ``hasherd run`` processes, their control
sockets and metrics, and an emulated BM1370 chain on a real pty.

A chip-only job and a simulator job train side by side; cancelling a job whose batch is
stuck on a device answers within a second and leaves the daemon idle; priorities move a
running job's share; a job that no configured device serves, or an option out of its
bounds, is refused at submit; a job that fails says why."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hasherd.control.client import ControlClient, ControlError
from tests.asic.test_rig import Emulator
from tests.conftest import free_port
from tests.helpers import HASHERD, wait_for, write_frames

CHIP_ZERO_BITS = 4
CHIP_SWEEP = 1024  # at 4 zero bits a window of 1024 misses with probability e^-66


class Daemon:
    """One ``hasherd run`` in a short temporary directory, with its own config."""

    def __init__(self, root: Path, config: str) -> None:
        self.dir = root
        self.socket = root / "control.sock"
        self.port = free_port()
        self.config = root / "hasherd.toml"
        self.config.write_text(
            f"""
[daemon]
database = "{root / "hasherd.db"}"
status_interval = "1s"
[control]
socket = "{self.socket}"
[jitter]
enabled = false
[metrics]
address = "127.0.0.1:{self.port}"
[logging]
level = "info"
"""
            + config
        )
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        with open(self.dir / "daemon.log", "a") as log:
            self.proc = subprocess.Popen(
                [*HASHERD, "run", "--config", str(self.config)],
                stdout=log,
                stderr=log,
                text=True,
            )
        wait_for(self.socket.exists, "the control socket", 60, self.log)

    def client(self) -> ControlClient:
        return ControlClient(self.socket, timeout=20)

    def log(self) -> str:
        path = self.dir / "daemon.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        url = f"http://127.0.0.1:{self.port}/metrics"
        text = urllib.request.urlopen(url, timeout=10).read().decode()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def cpu_seconds(self) -> float:
        """The daemon's CPU time so far (utime + stime, every thread), from /proc."""
        assert self.proc is not None
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture
def root() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="hd-", dir="/tmp"))  # short: AF_UNIX paths
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def daemons(root: Path) -> Iterator[list[Daemon]]:
    """The daemons a test starts, stopped at its end whatever happened."""
    started: list[Daemon] = []
    try:
        yield started
    finally:
        for daemon in started:
            daemon.stop()


def _job(c: ControlClient, job_id: int) -> dict[str, Any]:
    job: dict[str, Any] = c.call("jobs.show", id=job_id)["job"]
    return job


def _candidates(job: dict[str, Any]) -> int:
    return int(job["progress"]["candidates"]) if job["progress"] else 0


def _running(c: ControlClient) -> dict[int, dict[str, Any]]:
    return {j["id"]: j for j in c.call("status")["active_jobs"]}


@pytest.mark.timeout(300)  # about 40 s with numba's cache warm; a cold cache adds the compile
def test_a_chip_job_and_a_simulator_job_train_side_by_side(
    root: Path, daemons: list[Daemon]
) -> None:
    chain = Emulator(2, CHIP_ZERO_BITS, CHIP_SWEEP)
    try:
        daemon = Daemon(
            root,
            f"""
[training]
epochs = 1
validation_split = 0.0
seed = 5
[devices]
cpu_actors = 1
simulator_max_zero_bits = 2  # the chain's 4 zero bits are the chain's alone
[[devices.chips]]
name = "chain0"
path = "{chain.path}"
zero_bits = {CHIP_ZERO_BITS}
nonces_per_chip = {CHIP_SWEEP}
sweep_time = "100ms"
quiet = "40ms"
""",
        )
        daemons.append(daemon)
        daemon.start()
        sim_data = write_frames(root / "sim.json", 48, 3)
        chip_data = write_frames(root / "chip.json", 4, 11)
        with daemon.client() as c:
            wait_for(
                lambda: all(a["state"] == "ready" for a in c.call("actors.list")["actors"]),
                "the actors",
                90,
                daemon.log,
            )
            # a long simulator job first: before, the chip job would queue behind it. At 28
            # bits its records hardly ever win and a million generations do not run out,
            # so it outlasts the chip job however fast training runs (at 20 bits, or with
            # the default generations, a fast machine finished it first); cancelled below.
            sim = c.call(
                "jobs.submit",
                data=str(sim_data),
                name="sim",
                difficulty_bits=28,
                generations=1_000_000,
            )
            sim_id = sim["job"]["id"]
            wait_for(lambda: _candidates(_job(c, sim_id)) > 0, "the sim job", 120, daemon.log)
            chip = c.call(
                "jobs.submit",
                data=str(chip_data),
                name="chip",
                zero_bits=CHIP_ZERO_BITS,
                difficulty_bits=2,
                population=4,
                passes=3,
            )
            chip_id = chip["job"]["id"]
            both = wait_for(
                lambda: (r := _running(c)) and chip_id in r and _candidates(r[chip_id]) > 0 and r,
                "the chip job to make progress",
                120,
                daemon.log,
            )
            assert sim_id in both, "the simulator job stopped while the chip job ran"
            assert both[chip_id]["lease"] is not None and both[sim_id]["lease"] is not None
            sim_before = _candidates(both[sim_id])
            done = wait_for(
                lambda: (j := _job(c, chip_id))["status"] in ("finished", "failed") and j,
                "the chip job to finish",
                240,
                daemon.log,
            )
            assert done["status"] == "finished", daemon.log()
            sim_now = _job(c, sim_id)
            # the simulator job trained on, beside the chip job, and is still running
            assert sim_now["status"] == "running"
            assert _candidates(sim_now) > sim_before
            chain_stats = next(a for a in c.call("actors.list")["actors"] if a["name"] == "chain0")
            assert chain_stats["candidates"] > 0
            numba_stats = next(a for a in c.call("actors.list")["actors"] if a["name"] != "chain0")
            assert numba_stats["candidates"] > 0
            labels = (("job_id", str(sim_id)), ("name", "sim"))
            metrics = daemon.scrape()
            assert metrics[("hasherd_job_priority", labels)] == 10
            assert 0.0 <= metrics[("hasherd_job_share", labels)] <= 1.0
            chip_labels = (("job_id", str(chip_id)), ("name", "chip"))
            assert ("hasherd_job_share", chip_labels) not in metrics  # no share once it ended
            assert c.call("jobs.cancel", id=sim_id)["job"]["status"] == "cancelled"
        daemon.stop()
        assert daemon.proc is not None and daemon.proc.returncode == 0
    finally:
        chain.stop()


NUMBA_ONLY = """
[training]
epochs = 1
validation_split = 0.0
seed = 5
[devices]
cpu_actors = 1
simulator_max_zero_bits = 20
"""


@pytest.mark.timeout(300)
def test_cancel_of_a_job_stuck_on_a_device_answers_within_a_second(
    root: Path, daemons: list[Daemon]
) -> None:
    """The issue's case: at 20 zero bits a batch cannot finish within the simulator's
    timeout. Cancelling answers within 1 s (the issue's requirement, measured on the
    call), the job ends cancelled, and the daemon's CPU use falls back near 0 (the
    abandoned kernel call stops)."""
    daemon = Daemon(root, NUMBA_ONLY)
    daemons.append(daemon)
    daemon.start()
    data = write_frames(root / "frames.json", 48, 3)
    with daemon.client() as c:
        job = c.call("jobs.submit", data=str(data), zero_bits=20, difficulty_bits=8, population=32)[
            "job"
        ]
        wait_for(
            lambda: any(a["state"] == "busy" for a in c.call("actors.list")["actors"]),
            "a batch on the actor",
            120,
            daemon.log,
        )
        time.sleep(1.0)  # well inside the batch, which takes far longer than its timeout
        assert _job(c, job["id"])["status"] == "running"
        t0 = time.monotonic()
        cancelled = c.call("jobs.cancel", id=job["id"])["job"]
        took = time.monotonic() - t0
        assert cancelled["status"] == "cancelled"
        assert took < 1.0, f"jobs.cancel took {took:.2f} s\n{daemon.log()}"
        assert c.call("status")["active_jobs"] == []
        assert _job(c, job["id"])["error"] is None

        def idle() -> bool:
            before = daemon.cpu_seconds()
            time.sleep(2.0)
            return (daemon.cpu_seconds() - before) / 2.0 < 0.1  # under a tenth of a core

        wait_for(idle, "the daemon's CPU use to fall back near 0", 10, daemon.log)
        assert c.call("health")["healthy"] is True
    daemon.stop()
    assert daemon.proc is not None and daemon.proc.returncode == 0


def _lease_candidates(c: ControlClient, job_id: int) -> int:
    job = _job(c, job_id)
    assert job["lease"] is not None, f"job {job_id} stopped running: {job}"
    return int(job["lease"]["candidates"])


@pytest.mark.timeout(300)
def test_set_priority_shifts_the_share_of_a_running_job(root: Path, daemons: list[Daemon]) -> None:
    daemon = Daemon(root, NUMBA_ONLY)
    daemons.append(daemon)
    daemon.start()
    with daemon.client() as c:
        ids = tuple(
            c.call(
                "jobs.submit",
                data=str(write_frames(root / f"{name}.json", 48, seed)),
                name=name,
                difficulty_bits=20,
                population=64,
                generations=1_000_000,  # no record gives up: both jobs outlast the window
            )["job"]["id"]
            for name, seed in (("a", 3), ("b", 4))
        )
        a, b = ids
        wait_for(
            lambda: (r := _running(c)).keys() == {a, b} and all(_candidates(j) for j in r.values()),
            "both jobs to train",
            120,
            daemon.log,
        )
        assert {j["lease"]["priority"] for j in _running(c).values()} == {10}
        assert c.call("jobs.resume", id=a)["job"]["status"] == "running"  # left as it is
        shown = c.call("jobs.set_priority", id=a, priority=1000)["job"]
        assert (shown["priority"], shown["lease"]["priority"]) == (1000, 1000)  # at once
        assert c.call("jobs.set_priority", id=b, priority=1)["job"]["lease"]["priority"] == 1
        before = (_lease_candidates(c, a), _lease_candidates(c, b))
        time.sleep(15.0)  # many batches: the pool picks the job with less busy time per weight
        after = (_lease_candidates(c, a), _lease_candidates(c, b))
        gained = (after[0] - before[0], after[1] - before[1])
        assert gained[0] > gained[1], f"candidates gained by a, b: {gained}"
        metrics = daemon.scrape()
        assert metrics[("hasherd_job_priority", (("job_id", str(a)), ("name", "a")))] == 1000
        assert metrics[("hasherd_job_priority", (("job_id", str(b)), ("name", "b")))] == 1
        assert c.call("jobs.show", id=a)["job"]["priority"] == 1000  # stored
        for job_id in ids:
            assert c.call("jobs.cancel", id=job_id)["job"]["status"] == "cancelled"
    daemon.stop()


@pytest.mark.timeout(180)
def test_submit_refuses_what_no_device_serves_and_options_out_of_bounds(
    root: Path, daemons: list[Daemon]
) -> None:
    daemon = Daemon(
        root, NUMBA_ONLY.replace("simulator_max_zero_bits = 20", "simulator_max_zero_bits = 8")
    )
    daemons.append(daemon)
    daemon.start()
    data = str(write_frames(root / "frames.json", 4, 3))
    with daemon.client() as c:
        with pytest.raises(ControlError) as refused:
            c.call("jobs.submit", data=data, zero_bits=9)
        assert refused.value.code == "invalid_params"
        assert refused.value.message.startswith("zero_bits: no actor serves zero_bits 9")
        assert "devices.simulator_max_zero_bits = 8" in refused.value.message
        for option, value, bounds in (
            ("epochs", 0, "1..100"),
            ("epochs", 101, "1..100"),
            ("generations", 0, "1..1000000"),
            ("generations", 1_000_001, "1..1000000"),
            ("population", 0, "1..4096"),
            ("population", 4097, "1..4096"),
            ("difficulty_bits", 0, "1..32"),
            ("difficulty_bits", 33, "1..32"),
            ("passes", 0, "1..1024"),
            ("passes", 1025, "1..1024"),
            ("zero_bits", -1, "0..32"),
            ("zero_bits", 33, "0..32"),
            ("priority", 0, "1..1000"),
            ("priority", 1001, "1..1000"),
        ):
            with pytest.raises(ControlError) as bad:
                c.call("jobs.submit", data=data, **{option: value})
            assert bad.value.code == "invalid_params", option
            assert bad.value.message.startswith(f"{option}: must be in {bounds}"), option
        assert c.call("jobs.list") == {"jobs": []}  # nothing was stored
        served = c.call("jobs.submit", data=data, zero_bits=8, priority=1000, epochs=1)["job"]
        assert (served["status"], served["priority"]) == ("queued", 1000)
        assert c.call("jobs.cancel", id=served["id"])["job"]["status"] == "cancelled"
    daemon.stop()


@pytest.mark.timeout(300)
def test_a_job_that_fails_records_its_cause(root: Path, daemons: list[Daemon]) -> None:
    """Every batch at 20 zero bits outlasts a 1 s simulator timeout: after the pool's
    bounded retries the job fails, and its error names the device, the zero bits and the
    timeout, not the exception group that carried it."""
    daemon = Daemon(root, NUMBA_ONLY + '[simulator]\ntimeout = "1s"\n')
    daemons.append(daemon)
    daemon.start()
    data = write_frames(root / "frames.json", 8, 3)
    with daemon.client() as c:
        job_id = c.call(
            "jobs.submit", data=str(data), zero_bits=20, difficulty_bits=8, population=32
        )["job"]["id"]
        failed = wait_for(
            lambda: (j := _job(c, job_id))["status"] in ("failed", "finished") and j,
            "the job to fail",
            240,
            daemon.log,
        )
        assert failed["status"] == "failed", daemon.log()
        error = failed["error"]
        assert "numba0" in error and "20" in error and "1 s" in error, error
        assert "ExceptionGroup" not in error and "TaskGroup" not in error
        # the daemon carries on (health may say the actor is degraded: it kept failing)
        assert c.call("status")["state"] == "running" and c.call("status")["active_jobs"] == []
    daemon.stop()
