"""The daemon's control handlers on their narrow dependencies: a real database, a job
scheduler that is not running, an actor pool whose actors are not started, and the
methods collected from a registry instead of a socket (the server is tested in
tests/control). The end-to-end tests with a daemon process are in test_daemon.py."""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from hasherd.actors.evaluator import EvaluatorActor
from hasherd.actors.pool import ActorPool
from hasherd.backends import create
from hasherd.config import Config
from hasherd.control.params import INT64_MAX, Handler
from hasherd.control.protocol import error_code
from hasherd.daemon import handlers
from hasherd.daemon.rates import RateMeter, pool_totals
from hasherd.deploy import handlers as deploy_handlers
from hasherd.errors import HasherError, InputError
from hasherd.scheduler.jobs import JobScheduler
from hasherd.scheduler.progress import ProgressSnapshot
from hasherd.scheduler.trainer import Progress
from hasherd.storage import Store
from hasherd.storage.status import JobStatus
from hasherd.validation.service import ValidationService


class Methods(dict[str, Handler]):
    """A registry that keeps the handlers (``ControlServer`` serves them)."""

    def register(self, method: str, handler: Handler) -> None:
        assert method not in self
        self[method] = handler

    async def call(self, method: str, **params: Any) -> Any:
        return await self[method](params)

    async def refused(self, method: str, **params: Any) -> InputError:
        """The error the call raised, checked to answer ``invalid_params``."""
        with pytest.raises(HasherError) as err:
            await self.call(method, **params)
        assert isinstance(err.value, InputError) and error_code(err.value) == "invalid_params"
        return err.value


class Process:
    """A StatusSource."""

    state = "running"

    def uptime(self) -> float:
        return 12.34

    def healthy(self) -> tuple[bool, str]:
        return True, "1 of 1 actors working"


@pytest.fixture
async def methods(tmp_path: Path) -> AsyncIterator[Methods]:
    cfg = Config()
    pool = ActorPool([EvaluatorActor("ref0", "reference", lambda: create("reference"))])
    found = Methods()
    async with await Store.open(tmp_path / "h.db") as store, anyio.create_task_group() as tg:
        sched = JobScheduler(store, pool, lambda: cfg)
        rates = RateMeter(lambda: pool_totals(pool))
        handlers.register_status(found, Process(), store, sched, pool, rates.rates)
        handlers.register_jobs(found, store, sched)
        handlers.register_weights(found, store)
        handlers.register_actors(found, pool)
        handlers.register_nodes(found, pool, None, ())
        handlers.register_reload(
            found, lambda: {"reloaded": [], "restart_needed": []}, lambda kind: None
        )
        validation = ValidationService(store, pool, lambda: cfg, tg)
        handlers.register_validation(found, validation)
        deploy_handlers.register(found, store, lambda: cfg)
        yield found


def _documented_methods() -> set[str]:
    """The first column of the methods table in docs/control-protocol.md."""
    doc = (Path(__file__).parents[2] / "docs" / "control-protocol.md").read_text()
    lines = doc.split("\n| method | params | result |\n", 1)[1].splitlines()
    rows = itertools.takewhile(lambda line: line.startswith("|"), lines[1:])
    return {m for row in rows for m in re.findall(r"`([a-z._]+)`", row.split("|")[1])}


@pytest.mark.anyio
async def test_every_documented_method_is_registered(methods: Methods) -> None:
    assert set(methods) == _documented_methods()


@pytest.mark.anyio
async def test_integers_beyond_sqlite_are_invalid_params_not_internal(methods: Methods) -> None:
    for method, key in (
        ("jobs.show", "id"),
        ("jobs.pause", "id"),
        ("jobs.resume", "id"),
        ("jobs.cancel", "id"),
        ("weights.list", "dataset"),
        ("weights.list", "layer"),
        ("validate.show", "id"),
        ("validate.start", "seed"),
        ("validate.start", "job"),
        ("flash.deploy", "layer"),
    ):
        err = await methods.refused(method, **{key: 2**63})
        assert err.field == key
    err = await methods.refused("jobs.submit", data="/", seed=2**64)
    assert err.field == "seed"
    # the largest SQLite integer reaches the store, which answers as for any other id
    err = await methods.refused("jobs.show", id=INT64_MAX)
    assert str(err) == f"id: no job {INT64_MAX}"
    assert (await methods.call("weights.list", dataset=INT64_MAX))["total"] == 0


@pytest.mark.anyio
async def test_submit_pause_resume_cancel_and_the_status_counts(
    methods: Methods, tmp_path: Path
) -> None:
    data = tmp_path / "frames.json"
    data.write_text("[]")
    job = (await methods.call("jobs.submit", data=str(data), epochs=2, strict=False))["job"]
    assert (job["name"], job["status"], job["options"]) == (
        "frames.json",
        "queued",
        {"epochs": 2, "strict": False},
    )
    assert job["progress"] is None
    for method, status in (
        ("jobs.pause", "paused"),
        ("jobs.resume", "queued"),
        ("jobs.cancel", "cancelled"),
    ):
        assert (await methods.call(method, id=job["id"]))["job"]["status"] == status
    status = await methods.call("status")
    assert list(status["jobs"]) == [s.value for s in JobStatus]
    assert status["jobs"]["cancelled"] == 1 and sum(status["jobs"].values()) == 1
    assert (status["state"], status["uptime_s"], status["active_job"]) == ("running", 12.3, None)
    listed = await methods.call("jobs.list", status="cancelled")
    assert [j["id"] for j in listed["jobs"]] == [job["id"]]
    assert await methods.call("jobs.list", status="failed") == {"jobs": []}
    err = await methods.refused("jobs.list", status="done")  # not a status: refused, not []
    assert str(err).startswith("status: 'done' is not a job status (queued, running,")


@pytest.mark.anyio
async def test_messages_name_the_param(methods: Methods, tmp_path: Path) -> None:
    missing = tmp_path / "nothing.json"
    err = await methods.refused("jobs.submit", data=str(missing))
    assert str(err) == f"data: {missing} does not exist (as seen by the daemon)"
    err = await methods.refused("jobs.submit", data=str(tmp_path), population=0)
    assert err.field == "population" and "training.population_size" in str(err)
    err = await methods.refused("actors.restart", name="cuda9")
    assert str(err) == "name: no actor 'cuda9' (actors: ref0)"
    err = await methods.refused("validate.start", evaluator="nope")
    assert err.field == "evaluator" and "'nope'" in str(err)
    for bare in ("asic", "rpc"):  # a kind that opens what it is told: not from the socket
        err = await methods.refused("validate.start", against=bare)
        assert str(err).startswith(
            f"evaluator: '{bare}' is not a device (none configured); the control socket "
            "takes a configured device's name or an in-process evaluator"
        )
    err = await methods.refused("validate.show")
    assert str(err) == "id: no validation has run since the daemon started"
    assert str(await methods.refused("status", verbose=True)) == "verbose: unknown parameter"


def test_the_progress_snapshot_gives_jobs_show_and_the_metrics_their_keys() -> None:
    p = Progress(run_id=0, records_total=10, records_won=4, epoch=1, epochs=3, difficulty=12)
    p.todo, p.done, p.candidates, p.dsha, p.tokens = 6, 2, 4096, 12288, 5
    snap = ProgressSnapshot.of(p)
    shown = snap.to_json()
    assert list(shown) == [
        "epoch",
        "epochs",
        "difficulty_bits",
        "records_total",
        "records_won",
        "records_done",
        "records_todo",
        "candidates",
        "dsha",
        "tokens",
        "candidates_per_s",
        "best_fitness",
        "mean_fitness",
        "run_id",
    ]
    assert (shown["run_id"], shown["best_fitness"], shown["records_done"]) == (None, None, 2)
    metrics = snap.to_metrics()
    assert metrics["records_pending"] == 4 and metrics["tokens_trained"] == 5
    assert math.isnan(metrics["best_fitness"])  # unknown: the collector gives no sample


def test_the_rate_meter_measures_over_at_least_an_interval() -> None:
    now, totals = [100.0], [(0, 0)]
    meter = RateMeter(lambda: totals[0], clock=lambda: now[0])
    totals[0], now[0] = (500, 1500), 100.5
    assert meter.rates() == (0.0, 0.0)  # under a second: the last rates
    now[0] = 102.0
    assert meter.rates() == (250.0, 750.0)
    totals[0], now[0] = (700, 2100), 102.4
    assert meter.rates() == (250.0, 750.0)


@pytest.mark.anyio
async def test_priorities_are_stored_shown_and_bounded(methods: Methods, tmp_path: Path) -> None:
    data = tmp_path / "frames.json"
    data.write_text("[]")
    job = (await methods.call("jobs.submit", data=str(data)))["job"]
    assert (job["priority"], job["lease"]) == (10, None)  # the default; no lease: not running
    high = (await methods.call("jobs.submit", data=str(data), priority=300))["job"]
    assert high["priority"] == 300 and high["options"] == {}
    changed = (await methods.call("jobs.set_priority", id=job["id"], priority=1))["job"]
    assert changed["priority"] == 1 and changed["status"] == "queued"
    assert (await methods.call("jobs.show", id=job["id"]))["job"]["priority"] == 1
    err = await methods.refused("jobs.set_priority", id=job["id"], priority=1001)
    assert str(err) == "priority: must be in 1..1000"
    err = await methods.refused("jobs.set_priority", id=999, priority=5)
    assert str(err) == "id: no job 999"
    status = await methods.call("status")
    assert (status["active_job"], status["active_jobs"]) == (None, [])


@pytest.mark.anyio
async def test_a_job_no_actor_serves_is_refused_at_submit(tmp_path: Path) -> None:
    cfg = Config()
    sim = EvaluatorActor("numba0", "reference", lambda: create("reference"), max_zero_bits=6)
    chip = EvaluatorActor("chain0", "bm1370", lambda: create("reference"), zero_bits=4)
    pool = ActorPool([sim, chip])
    found = Methods()
    data = tmp_path / "frames.json"
    data.write_text("[]")
    async with await Store.open(tmp_path / "h.db") as store:
        handlers.register_jobs(found, store, JobScheduler(store, pool, lambda: cfg))
        err = await found.refused("jobs.submit", data=str(data), zero_bits=7)
        assert err.field == "zero_bits"
        assert "no actor serves zero_bits 7" in str(err) and "chain0 at 4" in str(err)
        assert "devices.simulator_max_zero_bits = 6" in str(err)
        for bits in (4, 6):  # the chip's own; within the simulators' limit
            job = (await found.call("jobs.submit", data=str(data), zero_bits=bits))["job"]
            assert job["options"] == {"zero_bits": bits}
        assert [j.status for j in await store.jobs()] == ["queued", "queued"]  # none stored


def test_a_job_error_is_its_cause_not_the_group() -> None:
    from hasherd.actors.base import BatchFailed, JobWithdrawn
    from hasherd.scheduler.jobs import job_error
    from hasherd.storage.errors import StorageError

    timeout = BatchFailed("numba0", 20, "a batch took longer than 30 s, 3 times")
    nested = ExceptionGroup("outer", [ExceptionGroup("inner", [JobWithdrawn(3), timeout])])
    assert job_error(nested) == str(timeout)  # the pool's own words: device, zero bits, cause
    full = StorageError("/var/lib/hasherd/hasherd.db", "database or disk is full")
    assert "database or disk is full" in job_error(ExceptionGroup("g", [full]))
    assert "/var/lib/hasherd/hasherd.db" in job_error(ExceptionGroup("g", [full]))
    assert job_error(ExceptionGroup("g", [KeyError("x")])) == "KeyError: 'x'"
    assert "TaskGroup" not in job_error(nested) and "ExceptionGroup" not in job_error(nested)


@pytest.mark.anyio
async def test_the_status_line_summarises_every_running_job(tmp_path: Path) -> None:
    from hasherd.daemon.notify import Notifier
    from hasherd.daemon.root import Daemon
    from hasherd.scheduler.jobs import RunningJob

    daemon = Daemon(Config(), notifier=Notifier(None))
    async with await Store.open(tmp_path / "h.db") as store:
        sched = daemon.scheduler = JobScheduler(store, daemon.pool, lambda: daemon.config)
        assert daemon.status_line() == "idle; 0 candidates/s"
        for name in ("a", "b"):
            job = await store.add_job(name, f"/srv/{name}.md", {})
            sched.running[job.id] = RunningJob(await store.move_job(job.id, JobStatus.RUNNING))
        sched.progress[1] = Progress(records_total=10, records_won=4, epoch=1, epochs=2)
        sched.progress[1].difficulty = 12
        assert daemon.status_line() == (
            "job 1 epoch 1/2 D=12: 4/10 won; job 2 starting, 0 candidates/s"
        )
        status = Methods()
        handlers.register_status(status, Process(), store, sched, daemon.pool, lambda: (0, 0))
        got = await status.call("status")
        assert [j["id"] for j in got["active_jobs"]] == [1, 2]
        assert got["active_job"] == got["active_jobs"][0]
        assert got["active_job"]["progress"]["records_won"] == 4


@pytest.mark.anyio
async def test_nodes_list_without_a_cluster_is_the_daemons_own_process(methods: Methods) -> None:
    assert await methods.call("nodes.list") == {
        "nodes": [
            {
                "name": "local",
                "alive": None,
                "address": "",
                "cpus": None,
                "gpus": None,
                "actors": ["ref0"],
                "working": 0,  # the pool is not running here: the actor is stopped
            }
        ]
    }
