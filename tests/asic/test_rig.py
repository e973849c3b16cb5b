"""An emulated rig end to end: ``hasherd emulate bm1370`` processes on real ptys, a real
daemon with a ``[[devices.chips]]`` chain as its only evaluator (with a baud switch),
training a few records, per-chip metrics on a real scrape, ``hasherctl validate`` in the
daemon (chip against numba), ``hasherd validate`` flagging a chip that drops nonces, and
``hasherd vectors check --evaluator asic:...`` against the conformance vectors."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from hasherd.control.client import ControlClient, ControlError
from tests.conftest import VECTORS, free_port

HASHERD = [sys.executable, "-m", "hasherd.cli.main"]
HASHERCTL = [sys.executable, "-m", "hasherd.cli.ctl"]
ZERO_BITS = 4
SWEEP = 1024  # at 4 zero bits a window of 1024 misses with probability e^-66
RECORDS = 4


class Emulator:
    """``hasherd emulate bm1370`` in a process of its own (no GIL shared with a host)."""

    def __init__(self, chips: int, zero_bits: int, sweep: int, *faults: str) -> None:
        args = [
            *HASHERD,
            "emulate",
            "bm1370",
            "--chips",
            str(chips),
            "--zero-bits",
            str(zero_bits),
            "--sweep-limit",
            str(sweep),
        ]
        for fault in faults:
            args += ["--fault", fault]
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        self.path = self.proc.stdout.readline().strip()
        if not self.path.startswith("/dev/"):
            self.stop()
            pytest.fail(f"the emulator printed {self.path!r}: {self.proc.stderr.read()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.communicate(timeout=10)  # also closes the pipes
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()


def _chip_table(name: str, path: str, **extra: Any) -> str:
    lines = [
        "[[devices.chips]]",
        f'name = "{name}"',
        f'path = "{path}"',
        f"zero_bits = {ZERO_BITS}",
        f"nonces_per_chip = {SWEEP}",
        'sweep_time = "100ms"',  # room for the emulator's sweep on a loaded machine
        'quiet = "40ms"',
    ]
    lines += [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def _wait(pred: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def rig_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="hd-", dir="/tmp"))  # short: AF_UNIX paths
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@pytest.mark.timeout(300)  # 24 s with numba's cache warm; a cold cache adds the compile
def test_emulated_rig_trains_exports_chip_metrics_and_validates(rig_dir: Path) -> None:
    good = Emulator(2, ZERO_BITS, SWEEP)
    bad = Emulator(1, ZERO_BITS, SWEEP, "drop_nonce")
    proc: subprocess.Popen[str] | None = None
    try:
        rng = np.random.default_rng(11)
        frames = [
            {
                "feature_vector": rng.integers(0, 2**32, 12, dtype=np.uint64).tolist(),
                "target_token": int(rng.integers(0, 100_000)),
            }
            for _ in range(RECORDS)
        ]
        data = rig_dir / "frames.json"
        data.write_text(json.dumps(frames))
        port = free_port()
        db, control = rig_dir / "hasherd.db", rig_dir / "control.sock"
        common = f"""
[daemon]
database = "{db}"
status_interval = "1s"
[control]
socket = "{control}"
[metrics]
address = "127.0.0.1:{port}"
[jitter]
enabled = false
[training]
epochs = 1
difficulty_bits = 2
population_size = 4
passes = 3
zero_bits = {ZERO_BITS}
validation_split = 0.0
seed = 9
[validation]
enable_asic = true
max_concurrency = 2
retry_attempts = 0
tolerance_threshold = 0.0
[devices]
cpu_actors = 0
"""
        config = rig_dir / "rig.toml"
        config.write_text(common + _chip_table("chain0", good.path, chips=2, baud=3_125_000))
        log = open(rig_dir / "daemon.log", "w")  # noqa: SIM115 - the child keeps it
        proc = subprocess.Popen(
            [*HASHERD, "run", "--config", str(config)], stdout=log, stderr=log, text=True
        )
        log.close()

        def daemon_log() -> str:
            return (rig_dir / "daemon.log").read_text(errors="replace")[-3000:]

        _wait(control.exists, 60, "the control socket")
        with ControlClient(control, timeout=20) as c:
            try:
                actors = _wait(
                    lambda: [a for a in c.call("actors.list")["actors"] if a["state"] == "ready"],
                    60,
                    "the chain",
                )
            except AssertionError as exc:
                raise AssertionError(daemon_log()) from exc
            assert [a["name"] for a in actors] == ["chain0"], daemon_log()
            assert actors[0]["device"]["device"]["chips"] == 2
            job = c.call("jobs.submit", data=str(data), name="rig")["job"]
            done = _wait(
                lambda: (
                    (j := c.call("jobs.show", id=job["id"])["job"])["status"]
                    in ("finished", "failed")
                    and j
                ),
                300,
                "the job",
            )
            assert done["status"] == "finished", daemon_log()
            weights = c.call("weights.list")["weights"]
            assert len(weights) == RECORDS  # every record won at D = 2
            chip = c.call("actors.list")["actors"][0]
        # every stored weight is what the reference kernel computes
        verify = subprocess.run(
            [*HASHERD, "verify", "--db", str(db)], capture_output=True, text=True, timeout=300
        )
        assert verify.returncode == 0, verify.stdout + verify.stderr

        m = _scrape(port)
        dev = (("device", "chain0"),)
        assert m[("hasherd_device_chips", dev)] == 2
        assert m[("hasherd_device_jobs_total", dev)] == chip["device"]["device"]["jobs"] > 0
        for index in ("0", "1"):
            labels = (("chip", index), ("device", "chain0"))
            assert m[("hasherd_chip_hashes_total", labels)] >= SWEEP
            assert m[("hasherd_chip_invalid_nonces_total", labels)] == 0
        nonces = sum(
            m[("hasherd_chip_nonces_total", (("chip", i), ("device", "chain0")))]
            for i in ("0", "1")
        )
        assert nonces >= chip["device"]["device"]["jobs"]  # at least one per job at k = 4
        assert m[("hasherd_device_crc_errors_total", dev)] == 0
        assert ("hasherd_device_reconnects_total", dev) in m

        # the cross-hardware validator in the daemon: the chain against numba
        ctl = subprocess.run(
            [
                *HASHERCTL,
                "--socket",
                str(control),
                "--timeout",
                "30",
                "validate",
                "--job",
                str(job["id"]),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert ctl.returncode == 0, ctl.stdout + ctl.stderr + daemon_log()
        assert "chain0 against numba" in ctl.stdout
        assert f"agree {RECORDS}, disagree 0, failed 0" in ctl.stdout
        m = _scrape(port)
        assert m[("hasherd_validation_weights_total", (("outcome", "validated"),))] == RECORDS
        assert m[("hasherd_validation_runs_total", ())] == 1
        assert m[("hasherd_validation_last_mismatch_ratio", ())] == 0
        shown = subprocess.run(
            [*HASHERCTL, "--socket", str(control), "validate", "--show"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert shown.returncode == 0 and "validation 1: chain0 against numba" in shown.stdout
        with ControlClient(control, timeout=20) as c:
            for params, key in (
                ({"sample": 2}, "sample"),
                ({"evaluator": "nope"}, "evaluator"),
                ({"seed": "x"}, "seed"),
                ({"color": 1}, "color"),
            ):
                with pytest.raises(ControlError) as err:
                    c.call("validate.start", **params)
                assert err.value.code == "invalid_params" and key in err.value.message
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0

        # a chip that drops every second nonce: its "first" nonces are later ones
        config.write_text(common + _chip_table("dropper", bad.path))
        args = ["validate", "--db", str(db), "--config", str(config), "--json"]
        report = subprocess.run([*HASHERD, *args], capture_output=True, text=True, timeout=300)
        assert report.returncode == 1, report.stdout + report.stderr
        r = json.loads(report.stdout)
        assert (r["evaluator_a"], r["evaluator_b"]) == ("dropper", "numba")
        assert r["disagree"] >= 1 and not r["within_tolerance"]
        assert r["agree"] + r["disagree"] + r["failed"] == RECORDS
        with sqlite3.connect(db) as conn:
            marks = dict(conn.execute("SELECT validation, count(*) FROM weights GROUP BY 1"))
            stored = conn.execute("SELECT count(*) FROM validations").fetchone()[0]
        assert marks.get("non-deterministic", 0) == r["disagree"]
        assert stored == 2 * RECORDS  # both validations kept, with both outputs
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        good.stop()
        bad.stop()


@pytest.mark.timeout(300)  # 16 s with numba's cache warm
def test_vectors_check_on_the_emulated_chip() -> None:
    emu = Emulator(1, ZERO_BITS, SWEEP)
    try:
        run = subprocess.run(
            [
                *HASHERD,
                "vectors",
                "check",
                "--json",
                "--evaluator",
                f"asic:{emu.path},{ZERO_BITS},{SWEEP},0.1",
                str(VECTORS),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ},
        )
    finally:
        emu.stop()
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads(run.stdout)["evaluators"]
    loop = next(v for k, v in result.items() if k.startswith("asic"))["loop"]
    want = sum(
        1 for case in json.loads(VECTORS.read_text())["loop"] if case["zero_bits"] == ZERO_BITS
    )
    assert want == 4 and loop["passed"] == want and loop["failed"] == 0  # each with a trace too
