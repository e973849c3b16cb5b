"""``hasherctl`` against a stand-in daemon: a real ``ControlServer`` on a real Unix socket,
run in a background thread with its own event loop, serving canned results in the
documented shapes and recording the params of every call.

The stand-in is not hasherd: it answers what docs/hasherctl.md says the daemon answers, so
these tests check the client's side (requests, output, exit codes, exported files). The
daemon's own end-to-end tests come with the daemon.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import pyarrow.parquet as pq
import pytest
from anyio.from_thread import start_blocking_portal

from hasherd import __version__
from hasherd.cli import cmd_export, ctl, ctl_views
from hasherd.cli.ctl import main
from hasherd.control.client import SOCKET_ENV
from hasherd.control.server import ControlServer
from hasherd.errors import HasherError, InputError
from hasherd.fileio import write_atomic
from hasherd.storage.rows import WeightRow

LAYER_SIZE = 1000  # the stand-in daemon's storage.layer_size

# -- the stand-in daemon's data, in the shapes of docs/hasherctl.md ---------------------------

PROGRESS = {
    "epoch": 2,
    "epochs": 3,
    "difficulty_bits": 14,
    "records_total": 120,
    "records_won": 80,
    "records_done": 40,
    "records_todo": 100,
    "candidates": 1234567,
    "candidates_per_s": 45678.9,
}
LEASE = {"priority": 10, "share": 0.62, "in_flight": 2, "candidates": 1234567, "duplicates": 0}
RUNNING_JOB = {
    "id": 7,
    "name": "harbor",
    "data": "/srv/corpus/01-harbor.md",
    "status": "running",
    "created_at": 1714564800.0,
    "updated_at": 1714568400.5,
    "run_id": 3,
    "dataset_id": 2,
    "error": None,
    "options": {"epochs": 3, "population": 64, "strict": True},
    "priority": 10,
    "progress": PROGRESS,
    "lease": LEASE,
}
FAILED_JOB = {
    "id": 5,
    "name": "ledger",
    "data": "/srv/corpus/05-ledger.md",
    "status": "failed",
    "created_at": 1714478400.0,
    "updated_at": 1714478460.0,
    "run_id": None,
    "dataset_id": None,
    "error": "dataset: 05-ledger.md: row 3: not a frame",
    "options": {},
    "priority": 10,
    "progress": None,
    "lease": None,
}
NUMBA_ACTOR = {
    "name": "numba-0",
    "kind": "numba",
    "state": "READY",
    "mailbox": 1,
    "mailbox_capacity": 4,
    "in_flight": 1,
    "threads": 2,
    "jobs": 1520,
    "candidates": 9728000,
    "dsha": 29184000,
    "failures": 0,
    "restarts": 1,
    "busy_seconds": 3725.5,
    "last_error": None,
    "errors": {},
}
CUDA_ACTOR = {
    "name": "cuda-0",
    "kind": "cuda",
    "state": "FAILED",
    "mailbox": 0,
    "mailbox_capacity": 8,
    "in_flight": 0,
    "threads": 1,
    "jobs": 12,
    "candidates": 786432,
    "dsha": 2359296,
    "failures": 3,
    "restarts": 2,
    "busy_seconds": 42.0,
    "last_error": "launch timed out",
    "errors": {"timeout": 2, "device": 1},
}
NODES = {
    "nodes": [
        {
            "name": "local",
            "alive": None,
            "address": "",
            "cpus": None,
            "gpus": None,
            "actors": ["numba-0"],
            "working": 1,
        },
        {
            "name": "rig-07",
            "alive": False,
            "address": "10.0.0.7",
            "cpus": 8.0,
            "gpus": 1.0,
            "actors": ["rig-07-numba0", "chain7"],
            "working": 0,
        },
    ],
    "cluster_error": "GetTimeoutError: the head did not answer",
}
STATUS = {
    "version": "0.1.0",
    "pid": 4242,
    "uptime_s": 3723.4,
    "state": "running",
    "database": "/var/lib/hasherd/data/weights/hasherd.db",
    "jobs": {"queued": 1, "running": 1, "paused": 0, "finished": 3, "cancelled": 0, "failed": 1},
    "active_job": RUNNING_JOB,
    "active_jobs": [RUNNING_JOB],
    "actors": [NUMBA_ACTOR, CUDA_ACTOR],
    "candidates_per_s": 1234567.0,
    "dsha_per_s": 3703701.0,
}


def weight(record_id: int, token_id: int, context_key: int) -> WeightRow:
    seed = hashlib.sha256(b"seed %d" % record_id).digest()
    slots = bytes((record_id * 7 + i) % 256 for i in range(48))
    return WeightRow(
        record_id=record_id,
        run_id=3,
        token_id=token_id,
        context_key=context_key,
        slots=slots,
        seed=seed,
        output=0x9E3779B9 ^ record_id,
        golden_nonce=0x1000 + record_id,
        prefix_bits=12 + record_id % 5,
        difficulty_bits=14,
        fitness=0.5 + record_id / 64,
        generation=record_id % 9,
        epoch=2,
        memory_id="mem-7f3a",
        layer=token_id // LAYER_SIZE,
        validation="validated",
        id=100 + record_id,
        created_at=1714568400.25,
    )


# dataset 1 holds two layers, sent out of hasherd export's order; dataset 2 one weight
WEIGHTS = {
    1: [weight(3, 1002, 0), weight(1, 17, 5), weight(2, 17, 1), weight(4, 5, 9)],
    2: [weight(9, 1500, 2)],
}


def weight_json(w: WeightRow) -> dict[str, Any]:
    return {**dataclasses.asdict(w), "seed": w.seed.hex(), "slots": w.slots.hex()}


class NotFoundError(HasherError):
    control_code = "not_found"


class StandInDaemon:
    """Stands in for hasherd on the control socket: a real ``ControlServer`` whose handlers
    answer ``replies[method]`` (a value, or a function of the params) and log each call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.server = ControlServer(path)
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.replies: dict[str, Any] = {
            "status": STATUS,
            "health": {"healthy": True, "reason": "2 actors, 1 ready"},
            "jobs.submit": self._submit,
            "jobs.list": self._jobs,
            "jobs.show": self._job,
            "jobs.pause": lambda p: {"job": {**self._job(p)["job"], "status": "paused"}},
            "jobs.resume": lambda p: {"job": {**self._job(p)["job"], "status": "queued"}},
            "jobs.cancel": lambda p: {"job": {**self._job(p)["job"], "status": "cancelled"}},
            "jobs.set_priority": lambda p: {
                "job": {**self._job(p)["job"], "priority": p["priority"]}
            },
            "weights.list": self._weights,
            "actors.list": {"actors": [NUMBA_ACTOR, CUDA_ACTOR]},
            "actors.restart": lambda p: {"actor": {**CUDA_ACTOR, "state": "READY", "restarts": 3}},
            "nodes.list": NODES,
            "reload": {
                "reloaded": ["logging.level", "training.epochs"],
                "restart_needed": ["control.socket"],
            },
        }
        for method in self.replies:
            self.server.register(method, self._handler(method))

    def _handler(self, method: str) -> Callable[[dict[str, Any]], Any]:
        async def handle(params: dict[str, Any]) -> Any:
            self.calls.append((method, params))
            reply = self.replies[method]
            result = reply(params) if callable(reply) else reply
            return await result if hasattr(result, "__await__") else result

        return handle

    def params(self, method: str) -> list[dict[str, Any]]:
        return [p for m, p in self.calls if m == method]

    @staticmethod
    def _job(params: dict[str, Any]) -> dict[str, Any]:
        jobs = {7: RUNNING_JOB, 5: FAILED_JOB}
        if params["id"] not in jobs:
            raise NotFoundError(f"no job {params['id']}")
        return {"job": jobs[params["id"]]}

    @staticmethod
    def _jobs(params: dict[str, Any]) -> dict[str, Any]:
        jobs = [RUNNING_JOB, FAILED_JOB]
        return {"jobs": [j for j in jobs if params.get("status") in (None, j["status"])]}

    @staticmethod
    def _submit(params: dict[str, Any]) -> dict[str, Any]:
        if params.get("population", 64) > 4096:
            raise InputError("population", "must be in 1..4096 (training.population_size)")
        options = {k: v for k, v in params.items() if k not in ("data", "name", "priority")}
        name = params.get("name", Path(params["data"]).stem)
        job = {
            **FAILED_JOB,
            "id": 9,
            "name": name,
            "data": params["data"],
            "status": "queued",
            "error": None,
            "options": options,
            "priority": params.get("priority", 10),
        }
        return {"job": job}

    @staticmethod
    def _weights(params: dict[str, Any]) -> dict[str, Any]:
        # as strict as the daemon
        assert set(params) <= {"dataset", "layer", "limit", "run", "job", "kernel"}
        dataset = params.get("dataset")
        rows = [w for ds, ws in WEIGHTS.items() if dataset in (None, ds) for w in ws]
        rows = [w for w in rows if params.get("layer") in (None, w.layer)]
        shown = rows[: params["limit"]] if "limit" in params else rows
        return {"weights": [weight_json(w) for w in shown], "total": len(rows)}


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short directory: AF_UNIX paths stop at 108 bytes."""
    base = tempfile.gettempdir()
    path = Path(tempfile.mkdtemp(prefix="hctl-", dir=base if len(base) < 40 else "/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def serving(server: ControlServer) -> Iterator[ControlServer]:
    """``server`` served from anyio's event loop in a thread of its own (a blocking portal)."""
    with start_blocking_portal() as portal:
        portal.start_task(server.serve)  # returns once the socket is bound
        try:
            yield server
        finally:
            portal.call(server.stop)
    assert not server.path.exists()


@pytest.fixture
def daemon(sock_dir: Path) -> Iterator[StandInDaemon]:
    stand_in = StandInDaemon(sock_dir / "control.sock")
    with serving(stand_in.server):
        yield stand_in


def ctl_run(
    capsys: pytest.CaptureFixture[str], daemon: StandInDaemon, *args: str
) -> tuple[int, str, str]:
    status = main(["--socket", str(daemon.path), *args])
    out, err = capsys.readouterr()
    return status, out, err


def fields_of(out: str) -> list[list[str]]:
    """Plain output split into cells (two or more spaces separate them)."""
    return [re.split(r"\s{2,}", line.strip()) for line in out.splitlines() if line.strip()]


def pairs_of(out: str) -> dict[str, str]:
    return {row[0]: row[1] for row in fields_of(out) if len(row) == 2}


def local(unix: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(unix))


NUMBA_ROW = [
    "numba-0",
    "numba",
    "READY",
    "1/4",
    "1",
    "2",
    "1520",
    "9728000",
    "29184000",
    "0",
    "1",
    "1h02m05s",
    "-",
    "-",
]
CUDA_ROW = [
    "cuda-0",
    "cuda",
    "FAILED",
    "0/8",
    "0",
    "1",
    "12",
    "786432",
    "2359296",
    "3",
    "2",
    "42.0s",
    "device=1,timeout=2",
    "launch timed out",
]
RUNNING_ROW = [
    "7",
    "running",
    "2/3",
    "14",
    "40/100",
    "80/120",
    "45.68k",
    "10",
    "62%",
    local(1714564800.0),
    "harbor",
    "/srv/corpus/01-harbor.md",
]


# -- status, health, ping, version ------------------------------------------------------------


def test_status_table(capsys: pytest.CaptureFixture[str], daemon: StandInDaemon) -> None:
    status, out, err = ctl_run(capsys, daemon, "status")
    assert (status, err) == (0, "")
    assert daemon.calls == [("status", {})]
    pairs = pairs_of(out)
    assert pairs["version"] == "0.1.0" and pairs["pid"] == "4242"
    assert pairs["state"] == "running" and pairs["uptime"] == "1h02m03s"
    assert pairs["database"] == "/var/lib/hasherd/data/weights/hasherd.db"
    assert pairs["jobs"] == "1 queued, 1 running, 0 paused, 3 finished, 0 cancelled, 1 failed"
    assert pairs["active job"] == (
        "7 harbor: epoch 2/3 D=14: 40/100 records this epoch, 80/120 hold a winner, "
        "1234567 candidates (45.68k/s)"
    )
    assert (pairs["candidates/s"], pairs["dSHA/s"]) == ("1.23M", "3.70M")
    rows = fields_of(out)
    assert ["actors:"] in rows
    assert rows[-3][:3] == ["NAME", "KIND", "STATE"]
    assert rows[-2:] == [NUMBA_ROW, CUDA_ROW]


def test_status_json_is_the_raw_result(
    capsys: pytest.CaptureFixture[str], daemon: StandInDaemon
) -> None:
    status, out, _ = ctl_run(capsys, daemon, "status", "--json")
    assert status == 0
    assert json.loads(out) == STATUS


def test_health(capsys: pytest.CaptureFixture[str], daemon: StandInDaemon) -> None:
    assert ctl_run(capsys, daemon, "health") == (0, "healthy: 2 actors, 1 ready\n", "")
    daemon.replies["health"] = {"healthy": False, "reason": "every actor is FAILED"}
    assert ctl_run(capsys, daemon, "health") == (1, "unhealthy: every actor is FAILED\n", "")
    status, out, _ = ctl_run(capsys, daemon, "health", "--json")
    assert (status, json.loads(out)) == (1, {"healthy": False, "reason": "every actor is FAILED"})
    assert [m for m, _ in daemon.calls] == ["health"] * 3


def test_version_and_ping(capsys: pytest.CaptureFixture[str], daemon: StandInDaemon) -> None:
    assert ctl_run(capsys, daemon, "version") == (
        0,
        f"hasherctl {__version__}\nhasherd {__version__} (protocol 1)\n",
        "",
    )
    status, out, _ = ctl_run(capsys, daemon, "version", "--json")
    daemon_part = {"pong": True, "version": __version__, "protocol": 1}
    assert (status, json.loads(out)) == (0, {"hasherctl": __version__, "daemon": daemon_part})
    assert ctl_run(capsys, daemon, "ping") == (
        0,
        f"pong from hasherd {__version__} (protocol 1)\n",
        "",
    )


def test_version_without_a_daemon_still_prints_its_own(
    capsys: pytest.CaptureFixture[str], sock_dir: Path
) -> None:
    missing = sock_dir / "none.sock"
    status = main(["--socket", str(missing), "version"])
    out, err = capsys.readouterr()
    assert (status, out) == (0, f"hasherctl {__version__}\n")
    assert f"no daemon version: cannot reach hasherd at {missing}" in err


# -- jobs --------------------------------------------------------------------------------------


def test_submit_sends_an_absolute_path_and_only_the_given_options(
    capsys: pytest.CaptureFixture[str],
    daemon: StandInDaemon,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    status, out, err = ctl_run(capsys, daemon, "jobs", "submit", "--data", "corpus/../a.md")
    assert (status, err) == (0, "")
    data = str(tmp_path / "a.md")
    assert daemon.params("jobs.submit") == [{"data": data}]
    assert out == f"job 9 submitted: a is queued ({data})\n"

    ctl_run(capsys, daemon, "jobs", "submit", "--data", "b.md", "--epochs", "3", "--strict")
    assert daemon.params("jobs.submit")[1] == {
        "data": str(tmp_path / "b.md"),
        "epochs": 3,
        "strict": True,
    }


def test_submit_sends_every_option(
    capsys: pytest.CaptureFixture[str], daemon: StandInDaemon
) -> None:
    args = [
        "--data",
        "/srv/corpus",
        "--name",
        "night run",
        "--epochs",
        "4",
        "--population",
        "128",
        "--generations",
        "50",
        "--difficulty-bits",
        "12",
        "--seed",
        "99",
        "--strict",
    ]
    status, out, _ = ctl_run(capsys, daemon, "jobs", "submit", *args, "--json")
    expected = {
        "data": "/srv/corpus",
        "name": "night run",
        "epochs": 4,
        "population": 128,
        "generations": 50,
        "difficulty_bits": 12,
        "seed": 99,
        "strict": True,
    }
    assert status == 0
    assert daemon.params("jobs.submit") == [expected]
    job = json.loads(out)["job"]
    assert (job["id"], job["name"], job["status"]) == (9, "night run", "queued")


def test_jobs_list_table_and_json(
    capsys: pytest.CaptureFixture[str], daemon: StandInDaemon
) -> None:
    status, out, _ = ctl_run(capsys, daemon, "jobs", "list")
    assert status == 0
    assert fields_of(out) == [
        [
            "ID",
            "STATUS",
            "EPOCH",
            "D",
            "RECORDS",
            "WON",
            "CAND/S",
            "PRIO",
            "SHARE",
            "CREATED",
            "NAME",
            "DATA",
        ],
        RUNNING_ROW,
        [
            "5",
            "failed",
            "-",
            "-",
            "-",
            "-",
            "-",
            "10",
            "-",
            local(1714478400.0),
            "ledger",
            "/srv/corpus/05-ledger.md",
        ],
    ]
    status, out, _ = ctl_run(capsys, daemon, "jobs", "list", "--json")
    assert json.loads(out) == {"jobs": [RUNNING_JOB, FAILED_JOB]}
    status, out, _ = ctl_run(capsys, daemon, "jobs", "list", "--status", "failed")
    assert [row[:2] for row in fields_of(out)] == [["ID", "STATUS"], ["5", "failed"]]
    assert ctl_run(capsys, daemon, "jobs", "list", "--status", "paused") == (0, "no jobs\n", "")
    assert daemon.params("jobs.list") == [{}, {}, {"status": "failed"}, {"status": "paused"}]


def test_jobs_show(capsys: pytest.CaptureFixture[str], daemon: StandInDaemon) -> None:
    status, out, _ = ctl_run(capsys, daemon, "jobs", "show", "5")
    assert status == 0 and daemon.params("jobs.show") == [{"id": 5}]
    pairs = pairs_of(out)
    assert pairs["status"] == "failed" and pairs["run"] == "-" and pairs["progress"] == "-"
    assert pairs["error"] == "dataset: 05-ledger.md: row 3: not a frame"
    assert pairs["created"] == local(1714478400.0)
    status, out, _ = ctl_run(capsys, daemon, "jobs", "show", "7")
    pairs = pairs_of(out)
    assert pairs["options"] == "epochs=3 population=64 strict=true"
    assert (pairs["dataset"], pairs["run"], pairs["error"]) == ("2", "3", "-")
    assert pairs["progress"].startswith("epoch 2/3 D=14: 40/100 records this epoch")
    assert (pairs["priority"], pairs["share"]) == ("10", "62%")


def test_submit_sends_a_priority_and_set_priority_changes_it(
    capsys: pytest.CaptureFixture[str], daemon: StandInDaemon
) -> None:
    status, out, err = ctl_run(
        capsys, daemon, "jobs", "submit", "--data", "/srv/a.md", "--priority", "30", "--json"
    )
    assert (status, err) == (0, "")
    assert daemon.params("jobs.submit") == [{"data": "/srv/a.md", "priority": 30}]
    job = json.loads(out)["job"]
    assert (job["priority"], job["options"]) == (30, {})
    status, out, err = ctl_run(capsys, daemon, "jobs", "set-priority", "7", "25")
    assert (status, err) == (0, "")
    assert daemon.params("jobs.set_priority") == [{"id": 7, "priority": 25}]
    assert out == "job 7 priority 25: harbor is running (/srv/corpus/01-harbor.md)\n"
    status, _, err = ctl_run(capsys, daemon, "jobs", "set-priority", "7", "0")
    assert status == 2 and "argument N: 0 is below 1" in err
    assert len(daemon.params("jobs.set_priority")) == 1  # refused before sending


def test_status_and_monitor_show_every_running_job(
    capsys: pytest.CaptureFixture[str], daemon: StandInDaemon
) -> None:
    chip_job = {
        **RUNNING_JOB,
        "id": 8,
        "name": "chips",
        "priority": 40,
        "lease": {**LEASE, "priority": 40, "share": 1.0},
    }
    daemon.replies["status"] = {**STATUS, "active_jobs": [RUNNING_JOB, chip_job]}
    status, out, _ = ctl_run(capsys, daemon, "status")
    assert status == 0
    rows = fields_of(out)
    assert pairs_of(out)["active job"].startswith("7 harbor: epoch 2/3")  # the first
    at = rows.index(["running jobs:"])
    assert rows[at + 1][:3] == ["ID", "STATUS", "EPOCH"]
    assert rows[at + 2] == RUNNING_ROW
    assert rows[at + 3][:2] == ["8", "running"] and rows[at + 3][7:9] == ["40", "100%"]
    status, out, _ = ctl_run(capsys, daemon, "monitor", "--count", "1")
    lines = out.splitlines()
    assert lines[2] == "active jobs:" and fields_of(out)[4] == RUNNING_ROW
    assert fields_of(out)[5][0] == "8"


def test_views_of_a_daemon_older_than_shares(
    capsys: pytest.CaptureFixture[str], daemon: StandInDaemon
) -> None:
    old_job = {k: v for k, v in RUNNING_JOB.items() if k not in ("priority", "lease")}
    old_status = {k: v for k, v in STATUS.items() if k != "active_jobs"}
    daemon.replies["status"] = {**old_status, "active_job": old_job}
    status, out, _ = ctl_run(capsys, daemon, "monitor", "--count", "1")
    assert status == 0 and fields_of(out)[4][7:9] == ["-", "-"]


@pytest.mark.parametrize(
    ("verb", "state"), [("pause", "paused"), ("resume", "queued"), ("cancel", "cancelled")]
)
def test_jobs_pause_resume_cancel(
    capsys: pytest.CaptureFixture[str], daemon: StandInDaemon, verb: str, state: str
) -> None:
    status, out, err = ctl_run(capsys, daemon, "jobs", verb, "7")
    assert (status, err) == (0, "")
    assert daemon.calls == [(f"jobs.{verb}", {"id": 7})]
    done = {"pause": "paused", "resume": "resumed", "cancel": "cancelled"}[verb]
    assert out == f"job 7 {done}: harbor is {state} (/srv/corpus/01-harbor.md)\n"


# -- weights -----------------------------------------------------------------------------------


def test_weights_list_sends_only_the_given_filters(
    capsys: pytest.CaptureFixture[str], daemon: StandInDaemon
) -> None:
    status, out, _ = ctl_run(capsys, daemon, "weights", "list", "--dataset", "1", "--limit", "2")
    assert status == 0
    assert daemon.params("weights.list") == [{"dataset": 1, "limit": 2}]
    w = WEIGHTS[1][0]
    rows = fields_of(out)
    assert rows[0] == [
        "ID",
        "RECORD",
        "RUN",
        "TOKEN",
        "CONTEXT",
        "LAYER",
        "KERNEL",
        "PREFIX",
        "D",
        "FITNESS",
        "GEN",
        "EPOCH",
        "VALIDATION",
        "SEED",
    ]
    assert rows[1] == [
        "103",
        "3",
        "3",
        "1002",
        "0",
        "1",
        f"zb={w.zero_bits}/p={w.passes}/tb={w.token_bits}/mem={w.memory_id[:12]}",
        "15",
        "14",
        "0.546875",
        "3",
        "2",
        "validated",
        w.seed.hex(),
    ]
    assert len(rows) == 4 and rows[-1] == ["2 of 4 weights"]
    status, out, _ = ctl_run(capsys, daemon, "weights", "list", "--layer", "1", "--json")
    assert daemon.params("weights.list")[1] == {"layer": 1}
    assert json.loads(out) == {
        "weights": [weight_json(WEIGHTS[1][0]), weight_json(WEIGHTS[2][0])],
        "total": 2,
    }


def expected_layers(weights: list[WeightRow]) -> dict[int, list[dict[str, Any]]]:
    """What ``hasherd export`` builds from the same rows (its own row_of and order)."""
    layers: dict[int, list[dict[str, Any]]] = {}
    for w in sorted(weights, key=lambda w: (w.token_id, w.context_key, w.record_id)):
        layers.setdefault(w.token_id // LAYER_SIZE, []).append(cmd_export.row_of(w, LAYER_SIZE))
    return layers


def assert_same_file(got: Path, rows: list[dict[str, Any]], fmt: str, tmp_path: Path) -> None:
    want = tmp_path / f"want.{fmt}"
    write_atomic(want, cmd_export.encode(rows, fmt))
    if fmt == "parquet":  # compare the tables: the bytes carry writer metadata
        got_table, want_table = pq.read_table(got), pq.read_table(want)
        assert got_table.column_names == list(cmd_export.COLUMNS)
        assert got_table.equals(want_table)
        assert got_table.to_pylist() == rows
    else:
        assert got.read_bytes() == want.read_bytes()


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_weights_export_writes_what_hasherd_export_writes(
    capsys: pytest.CaptureFixture[str], daemon: StandInDaemon, tmp_path: Path, fmt: str
) -> None:
    out_dir = tmp_path / "layers"
    status, out, err = ctl_run(
        capsys,
        daemon,
        "weights",
        "export",
        "--format",
        fmt,
        "--dataset",
        "1",
        "--out",
        str(out_dir),
    )
    assert (status, err) == (0, "")
    assert daemon.params("weights.list") == [{"dataset": 1}]  # no limit: every weight
    layers = expected_layers(WEIGHTS[1])
    assert sorted(p.name for p in out_dir.iterdir()) == [f"layer_0.{fmt}", f"layer_1.{fmt}"]
    for n, rows in layers.items():
        assert_same_file(out_dir / f"layer_{n}.{fmt}", rows, fmt, tmp_path)
    assert out.splitlines() == [
        f"layer 0: 3 weights -> {out_dir / f'layer_0.{fmt}'}",
        f"layer 1: 1 weights -> {out_dir / f'layer_1.{fmt}'}",
    ]
    assert [r["token_id"] for r in layers[0]] == [5, 17, 17]


def test_weights_export_one_layer_to_a_file(
    capsys: pytest.CaptureFixture[str], daemon: StandInDaemon, tmp_path: Path
) -> None:
    target = tmp_path / "l1.csv"
    args = ("weights", "export", "--format", "csv", "--layer", "1", "--out", str(target))
    status, out, _ = ctl_run(capsys, daemon, *args)
    assert status == 0 and daemon.params("weights.list") == [{"layer": 1}]
    rows = expected_layers(WEIGHTS[1] + WEIGHTS[2])[1]
    assert [r["token_id"] for r in rows] == [1002, 1500]
    assert_same_file(target, rows, "csv", tmp_path)
    assert out == f"layer 1: 2 weights -> {target}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l1.csv", "want.csv"]  # no temporary


def test_weights_export_refuses_a_partial_list_and_a_wrong_out(
    capsys: pytest.CaptureFixture[str], daemon: StandInDaemon, tmp_path: Path
) -> None:
    daemon.replies["weights.list"] = {"weights": [weight_json(WEIGHTS[1][0])], "total": 4}
    out_dir = tmp_path / "layers"
    args = ["weights", "export", "--format", "json", "--out", str(out_dir)]
    status, out, err = ctl_run(capsys, daemon, *args)
    assert (status, out) == (1, "")
    assert (
        err == "hasherctl: error: weights.list: the daemon sent 1 of 4 weights; nothing written\n"
    )
    assert not out_dir.exists()
    status, _, err = ctl_run(capsys, daemon, *args[:-1], str(tmp_path), "--layer", "0")
    assert status == 2
    assert (
        err == f"hasherctl: error: --out {tmp_path} is a directory; with --layer it names a file\n"
    )
    assert len(daemon.calls) == 1  # the usage error is caught before asking the daemon


def test_weights_export_reports_a_malformed_weight(
    capsys: pytest.CaptureFixture[str], daemon: StandInDaemon, tmp_path: Path
) -> None:
    bad = {**weight_json(WEIGHTS[1][0]), "seed": "abcd"}
    daemon.replies["weights.list"] = {"weights": [bad], "total": 1}
    status, _, err = ctl_run(
        capsys, daemon, "weights", "export", "--format", "csv", "--out", str(tmp_path / "x")
    )
    assert status == 1
    expected = "weights.list: malformed reply: weight 103: 'seed' is not 32 bytes of hex"
    assert err == f"hasherctl: error: {expected}\n"


def test_export_formats_match_hasherd_export() -> None:
    assert ctl.EXPORT_FORMATS == cmd_export.FORMATS


# -- actors, reload ----------------------------------------------------------------------------


def test_actors_list_and_restart(capsys: pytest.CaptureFixture[str], daemon: StandInDaemon) -> None:
    status, out, _ = ctl_run(capsys, daemon, "actors", "list")
    assert status == 0
    assert fields_of(out)[0][:4] == ["NAME", "KIND", "STATE", "NODE"]
    # the NODE column after STATE: "local" for an actor whose daemon does not say
    assert fields_of(out)[1:] == [[*r[:3], "local", *r[3:]] for r in (NUMBA_ROW, CUDA_ROW)]
    status, out, _ = ctl_run(capsys, daemon, "actors", "list", "--json")
    assert json.loads(out) == {"actors": [NUMBA_ACTOR, CUDA_ACTOR]}
    status, out, _ = ctl_run(capsys, daemon, "actors", "restart", "cuda-0")
    assert (status, out) == (0, "actor cuda-0 restarted: READY, 3 restarts\n")
    assert daemon.params("actors.restart") == [{"name": "cuda-0"}]


def test_nodes(capsys: pytest.CaptureFixture[str], daemon: StandInDaemon) -> None:
    status, out, _ = ctl_run(capsys, daemon, "nodes")
    assert status == 0
    assert fields_of(out) == [
        ["NODE", "ALIVE", "ADDRESS", "CPUS", "GPUS", "WORKING", "ACTORS"],
        ["local", "-", "-", "-", "-", "1/1", "numba-0"],
        ["rig-07", "NO", "10.0.0.7", "8", "1", "0/2", "rig-07-numba0,chain7"],
        ["cluster: GetTimeoutError: the head did not answer"],
    ]
    assert daemon.params("nodes.list") == [{}]
    status, out, _ = ctl_run(capsys, daemon, "nodes", "--json")
    assert json.loads(out) == NODES


def test_reload(capsys: pytest.CaptureFixture[str], daemon: StandInDaemon) -> None:
    assert ctl_run(capsys, daemon, "reload") == (
        0,
        "reloaded: logging.level training.epochs\nrestart needed: control.socket\n",
        "",
    )
    assert daemon.calls == [("reload", {})]


# -- monitor -----------------------------------------------------------------------------------

HEADLINE = re.compile(
    r"^\d\d:\d\d:\d\d hasherd 0\.1\.0 \(pid 4242\) running, up 1h02m03s, "
    r"1\.23M candidates/s, 3\.70M dSHA/s$"
)


def test_monitor_prints_frames_in_plain_mode(
    capsys: pytest.CaptureFixture[str], daemon: StandInDaemon
) -> None:
    status, out, err = ctl_run(capsys, daemon, "monitor", "--count", "2", "--refresh", "0.05")
    assert (status, err) == (0, "")
    assert daemon.calls == [("status", {}), ("status", {})]
    frames = out.rstrip("\n").split("\n\n")
    assert len(frames) == 2
    for frame in frames:
        lines = frame.splitlines()
        assert HEADLINE.match(lines[0]), lines[0]
        assert lines[1] == "jobs: 1 queued, 1 running, 0 paused, 3 finished, 0 cancelled, 1 failed"
        assert lines[2] == "active job:"
        assert fields_of(frame)[4] == RUNNING_ROW
        assert fields_of(frame)[-2:] == [NUMBA_ROW, CUDA_ROW]


def test_monitor_exits_0_on_ctrl_c(
    capsys: pytest.CaptureFixture[str], daemon: StandInDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupt(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(time, "sleep", interrupt)  # Ctrl-C while waiting for a refresh
    status, out, _ = ctl_run(capsys, daemon, "monitor", "--refresh", "1m")
    assert status == 0
    assert len(daemon.calls) == 1 and HEADLINE.match(out.splitlines()[0])


def test_rich_output_on_a_terminal(
    capsys: pytest.CaptureFixture[str], daemon: StandInDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ctl, "use_rich", lambda: True)
    monkeypatch.setenv("COLUMNS", "200")
    status, out, _ = ctl_run(capsys, daemon, "jobs", "list")
    assert status == 0
    header = next(line for line in out.splitlines() if "STATUS" in line)
    assert header.split("┃")[1:4] == [" ID ", " STATUS  ", " EPOCH "]
    row = next(line for line in out.splitlines() if "harbor" in line)
    assert [c.strip() for c in row.split("│")[1:-1]] == RUNNING_ROW
    status, out, _ = ctl_run(capsys, daemon, "monitor", "--count", "2", "--refresh", "0.01")
    assert status == 0 and "hasherd 0.1.0 (pid 4242) running" in out and "numba-0" in out
    assert len(daemon.calls) == 3


# -- failures and exit codes -------------------------------------------------------------------


@pytest.mark.parametrize(
    "args", [["status"], ["health"], ["jobs", "list"], ["monitor", "--count", "1"]]
)
def test_daemon_unavailable_exits_3_naming_the_socket(
    capsys: pytest.CaptureFixture[str], sock_dir: Path, args: list[str]
) -> None:
    missing = sock_dir / "nobody.sock"
    status = main(["--socket", str(missing), *args])
    out, err = capsys.readouterr()
    assert (status, out) == (3, "")
    assert err.startswith(f"hasherctl: error: cannot reach hasherd at {missing}: ")
    assert "systemctl status hasherd" in err


def test_server_errors_exit_1_with_code_and_message(
    capsys: pytest.CaptureFixture[str], daemon: StandInDaemon
) -> None:
    assert ctl_run(capsys, daemon, "jobs", "show", "404") == (
        1,
        "",
        "hasherctl: error: jobs.show: no job 404 [not_found]\n",
    )
    status, _, err = ctl_run(
        capsys, daemon, "jobs", "submit", "--data", "/d", "--population", "5000"
    )
    assert (status, err) == (
        1,
        "hasherctl: error: jobs.submit: population: must be in 1..4096 "
        "(training.population_size) [invalid_params]\n",
    )


def test_a_daemon_without_the_method_is_an_error(
    capsys: pytest.CaptureFixture[str], sock_dir: Path
) -> None:
    bare = ControlServer(sock_dir / "bare.sock")  # a daemon that serves nothing but ping
    with serving(bare):
        status = main(["--socket", str(bare.path), "actors", "list"])
    _, err = capsys.readouterr()
    assert status == 1
    assert (
        err == "hasherctl: error: actors.list: unknown method 'actors.list'; known: ping "
        "[unknown_method]\n"
    )


def test_malformed_result_exits_1(
    capsys: pytest.CaptureFixture[str], daemon: StandInDaemon
) -> None:
    daemon.replies["status"] = {"version": "0.1.0"}
    assert ctl_run(capsys, daemon, "status") == (
        1,
        "",
        "hasherctl: error: status: malformed reply: missing field 'pid'\n",
    )


def test_timeout_exits_1(capsys: pytest.CaptureFixture[str], daemon: StandInDaemon) -> None:
    async def stuck(params: dict[str, Any]) -> Any:
        await anyio.sleep(60)  # cancelled when the stand-in stops

    daemon.replies["status"] = stuck
    status, _, err = ctl_run(capsys, daemon, "--timeout", "100ms", "status")
    assert (status, err) == (1, "hasherctl: error: status: no reply within 0.1 s [timeout]\n")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["stauts"], "invalid choice: 'stauts'"),
        (["jobs", "show", "seven"], "argument ID: 'seven' is not an integer"),
        (["jobs", "submit", "--data", "d", "--epochs", "0"], "argument --epochs: 0 is below 1"),
        (["jobs", "submit"], "the following arguments are required: --data"),
        (["monitor", "--refresh", "soon"], "'soon' is not a duration"),
        (["--timeout", "0", "status"], "argument --timeout: must be more than 0"),
        (["weights", "export", "--format", "xlsx", "--out", "o"], "invalid choice: 'xlsx'"),
        (["jobs", "list", "--status", "done"], "invalid choice: 'done'"),
    ],
)
def test_usage_errors_exit_2_without_calling(
    capsys: pytest.CaptureFixture[str], daemon: StandInDaemon, args: list[str], message: str
) -> None:
    status, out, err = ctl_run(capsys, daemon, *args)
    assert (status, out) == (2, "")
    assert "error: " in err and message in err
    assert daemon.calls == []


def test_the_socket_comes_from_the_environment(
    capsys: pytest.CaptureFixture[str], daemon: StandInDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SOCKET_ENV, str(daemon.path))
    assert main(["ping"]) == 0
    assert capsys.readouterr().out == f"pong from hasherd {__version__} (protocol 1)\n"


def test_the_console_script(daemon: StandInDaemon, sock_dir: Path) -> None:
    script = Path(sys.executable).parent / "hasherctl"
    env = {**os.environ, "PYTHONWARNINGS": "error::ResourceWarning"}
    done = subprocess.run(
        [script, "--socket", str(daemon.path), "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert pairs_of(done.stdout)["pid"] == "4242"
    assert fields_of(done.stdout)[-1] == CUDA_ROW
    gone = subprocess.run(
        [script, "--socket", str(sock_dir / "x.sock"), "health"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (gone.returncode, gone.stdout) == (3, "")
    assert str(sock_dir / "x.sock") in gone.stderr


# -- the views' figures ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0, "0.0"),
        (987.64, "987.6"),
        (12345.0, "12.35k"),
        (4_560_000.0, "4.56M"),
        (1.2e9, "1.20G"),
    ],
)
def test_rate(value: float, text: str) -> None:
    assert ctl_views.rate(value) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(4.25, "4.2s"), (123.0, "2m03s"), (3723.4, "1h02m03s"), (90061.0, "1d01h01m")],
)
def test_duration(seconds: float, text: str) -> None:
    assert ctl_views.duration(seconds) == text


def test_weights_list_and_export_send_the_kernel_selection(
    capsys: pytest.CaptureFixture[str], daemon: StandInDaemon, tmp_path: Path
) -> None:
    args = ("weights", "list", "--job", "1", "--run", "2", "--kernel", "zb=4/p=21")
    assert ctl_run(capsys, daemon, *args)[0] == 0
    assert daemon.params("weights.list") == [{"job": 1, "run": 2, "kernel": "zb=4/p=21"}]
    out = tmp_path / "l.csv"
    args = ("weights", "export", "--format", "csv", "--layer", "1", "--kernel", "zb=0")
    assert ctl_run(capsys, daemon, *args, "--out", str(out))[0] == 0
    assert daemon.params("weights.list")[1] == {"layer": 1, "kernel": "zb=0"}
    header = out.read_text().splitlines()[0].split(",")
    assert header[-4:] == ["validation", "passes", "zero_bits", "token_bits"]


def test_names_from_the_daemon_are_printed_escaped() -> None:
    """A name with an ANSI escape, a newline or rich markup cannot recolour the terminal,
    forge a line or style the table: it is printed as its escapes, as written."""
    import io

    from rich.console import Console

    job = {**FAILED_JOB, "name": "a\x1b[31mred\nb[bold]x", "data": "/srv/\x07bell.md"}
    sections = ctl_views.jobs_view({"jobs": [job]})
    text = ctl_views.plain(sections)
    assert "\x1b" not in text and "\x07" not in text and len(text.splitlines()) == 2
    assert "a\\x1b[31mred\\nb[bold]x" in text and "/srv/\\x07bell.md" in text
    out = io.StringIO()
    Console(file=out, width=400, force_terminal=True, color_system=None).print(
        ctl_views.rich(sections)
    )
    assert "\x1b" not in out.getvalue() and "\x07" not in out.getvalue()
    assert "a\\x1b[31mred\\nb[bold]x" in out.getvalue()  # [bold] shown, not taken as markup
    assert ctl_views.safe("plain name") == "plain name"


def test_an_unreachable_socket_is_one_line_not_a_traceback(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    assert main(["--socket", str(not_a_dir / "control.sock"), "status"]) == ctl.EXIT_UNAVAILABLE
    err = capsys.readouterr().err
    assert err.startswith(f"hasherctl: error: cannot reach hasherd at {not_a_dir}/control.sock")
