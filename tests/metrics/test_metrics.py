"""The metrics endpoint, scraped for real over HTTP and checked by promtool."""

from __future__ import annotations

import math
import shutil
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from hasherd import __version__
from hasherd.actors.base import ActorError, ActorState
from hasherd.actors.evaluator import EvaluatorActor
from hasherd.backends import create
from hasherd.errors import ConfigError
from hasherd.metrics import (
    ACTOR_STATES,
    GENERATION_BUCKETS,
    AddressInUseError,
    Metrics,
    parse_address,
)
from hasherd.storage.status import JobStatus

ODD_NAME = 'sonnets "1-20" \\ draft\nv2 — é'


def _actor() -> dict[str, Any]:
    """A real EvaluatorActor's snapshot, with counters as a working actor has them."""
    actor = EvaluatorActor("cpu0", "numba", lambda: create("numba:1"), mailbox=3)
    stats = actor.stats
    stats.jobs, stats.candidates, stats.dsha = 41, 10_496, 20_992
    stats.busy_seconds, stats.restarts = 12.25, 1
    try:
        raise ActorError("cpu0", "a batch took longer than 30 s") from TimeoutError()
    except ActorError as exc:
        stats.failed(exc)
    actor.state = ActorState.READY
    return actor.snapshot()


class Source:
    """A concrete MetricsSource holding what the daemon would report."""

    def __init__(self) -> None:
        gpu = {**_actor(), "name": "gpu0", "kind": "cuda", "state": "busy", "mailbox": 2}
        gpu.update(candidates=5_000_000, dsha=10_000_000, errors={}, failures=0, restarts=0)
        self.actors = [_actor(), gpu]
        self.jobs: list[dict[str, Any]] = [
            self._job(1, "sample-corpus", "running", best=0.8125, mean=0.40625),
            self._job(2, ODD_NAME, "queued", best=math.nan, mean=math.nan),
        ]
        self.store = {
            "write_transactions": 130,
            "write_failures": 2,
            "last_write_seconds": 0.0031,
            "total_write_seconds": 0.52,
            "max_write_seconds": 0.047,
        }
        self.errors = {"TimeoutError": 1, "StorageError": 2}
        self.deploys: dict[str, float | int] = {
            "deployments": 3,
            "rollbacks": 1,
            "failures": 0,
            "last_deploy_unix": 1.7e9,
            "live_layer": 2,
            "live_count": float("nan"),
        }

    @staticmethod
    def _job(job_id: int, name: str, status: str, *, best: float, mean: float) -> dict[str, Any]:
        return {
            "id": job_id,
            "name": name,
            "status": status,
            "difficulty_bits": 12 + job_id,
            "records_total": 100 * job_id,
            "records_won": 37 * job_id,
            "records_pending": 63 * job_id,
            "tokens_trained": 51 * job_id,
            "best_fitness": best,
            "mean_fitness": mean,
            "candidates": 2_560_000 * job_id,
            "dsha": 5_120_000 * job_id,
        }

    def actor_snapshots(self) -> list[dict[str, Any]]:
        return self.actors

    def job_snapshots(self) -> list[dict[str, Any]]:
        return self.jobs

    def store_stats(self) -> dict[str, float | int]:
        return self.store

    def error_counts(self) -> dict[str, int]:
        return self.errors

    def deploy_stats(self) -> dict[str, float | int]:
        return self.deploys


@pytest.fixture
def source() -> Source:
    return Source()


@pytest.fixture
def metrics(source: Source) -> Iterator[Metrics]:
    m = Metrics(source)
    m.serve("127.0.0.1:0")
    thread = m._thread
    yield m
    m.close()
    assert thread is not None and not thread.is_alive()


def scrape_text(m: Metrics) -> str:
    assert m.address is not None
    with urllib.request.urlopen(f"http://{m.address}/metrics", timeout=10) as resp:
        assert resp.status == 200
        text: str = resp.read().decode()
    return text


def scrape(m: Metrics) -> list[Sample]:
    return [s for f in text_string_to_metric_families(scrape_text(m)) for s in f.samples]


def values(samples: list[Sample], name: str, **match: str) -> dict[tuple[str, ...], float]:
    """Samples of one name whose labels include ``match``, keyed by their label values."""
    return {
        tuple(s.labels.values()): s.value
        for s in samples
        if s.name == name and match.items() <= s.labels.items()
    }


ACTOR_FIELDS = {
    "hasherd_actor_candidates_total": "candidates",
    "hasherd_actor_dsha_total": "dsha",
    "hasherd_actor_jobs_total": "jobs",
    "hasherd_actor_failures_total": "failures",
    "hasherd_actor_restarts_total": "restarts",
    "hasherd_actor_busy_seconds_total": "busy_seconds",
    "hasherd_actor_mailbox_depth": "mailbox",
    "hasherd_actor_mailbox_capacity": "mailbox_capacity",
    "hasherd_actor_in_flight": "in_flight",
    "hasherd_actor_threads": "threads",
}
JOB_FIELDS = {
    "hasherd_job_tokens_trained_total": "tokens_trained",
    "hasherd_job_records": "records_total",
    "hasherd_job_records_won": "records_won",
    "hasherd_job_records_pending": "records_pending",
    "hasherd_job_difficulty": "difficulty_bits",
    "hasherd_job_candidates_total": "candidates",
    "hasherd_job_dsha_total": "dsha",
}
STORE_FIELDS = {
    "hasherd_db_write_transactions_total": "write_transactions",
    "hasherd_db_write_failures_total": "write_failures",
    "hasherd_db_write_duration_seconds_total": "total_write_seconds",
    "hasherd_db_last_write_duration_seconds": "last_write_seconds",
    "hasherd_db_max_write_duration_seconds": "max_write_seconds",
}


def test_actor_values_match_the_snapshots(metrics: Metrics, source: Source) -> None:
    samples = scrape(metrics)
    for name, key in ACTOR_FIELDS.items():
        expected = {(a["name"], a["kind"]): float(a[key]) for a in source.actors}
        assert values(samples, name) == expected, name
    errors = values(samples, "hasherd_actor_errors_total")
    assert errors == {("cpu0", "TimeoutError"): 1.0}


def test_a_real_actor_snapshot_is_what_is_exposed(metrics: Metrics) -> None:
    samples = scrape(metrics)
    assert values(samples, "hasherd_actor_dsha_total", actor="cpu0") == {("cpu0", "numba"): 20992}
    assert values(samples, "hasherd_actor_mailbox_capacity", actor="cpu0")[("cpu0", "numba")] == 3
    assert values(samples, "hasherd_actor_state", actor="cpu0", state="ready") == {
        ("cpu0", "ready"): 1.0
    }


def test_job_and_store_values_match(metrics: Metrics, source: Source) -> None:
    samples = scrape(metrics)
    for name, key in JOB_FIELDS.items():
        expected = {(str(j["id"]), j["name"]): float(j[key]) for j in source.jobs}
        assert values(samples, name) == expected, name
    assert values(samples, "hasherd_job_best_fitness") == {("1", "sample-corpus"): 0.8125}
    assert values(samples, "hasherd_job_mean_fitness") == {("1", "sample-corpus"): 0.40625}
    for name, key in STORE_FIELDS.items():
        assert values(samples, name) == {(): float(source.store[key])}, name
    assert values(samples, "hasherd_errors_total") == {("TimeoutError",): 1, ("StorageError",): 2}
    assert values(samples, "hasherd_build_info") == {(__version__,): 1.0}


def test_nan_fitness_gives_no_sample(metrics: Metrics) -> None:
    samples = scrape(metrics)
    for name in ("hasherd_job_best_fitness", "hasherd_job_mean_fitness"):
        assert not values(samples, name, job_id="2")
        assert not any(math.isnan(s.value) for s in samples if s.name == name)


def test_odd_job_names_survive_escaping(metrics: Metrics) -> None:
    text = scrape_text(metrics)
    assert '\\"1-20\\" \\\\ draft\\nv2' in text  # escaped on the wire, not raw
    samples = scrape(metrics)
    assert values(samples, "hasherd_job_records", job_id="2") == {("2", ODD_NAME): 200.0}


def test_each_actor_is_in_exactly_one_state(metrics: Metrics, source: Source) -> None:
    samples = scrape(metrics)
    for actor in source.actors:
        states = values(samples, "hasherd_actor_state", actor=actor["name"])
        assert {labels[1] for labels in states} == set(ACTOR_STATES)
        assert [labels[1] for labels, v in states.items() if v == 1.0] == [actor["state"]]
        assert sum(states.values()) == 1.0


def test_each_job_is_in_exactly_one_status(metrics: Metrics, source: Source) -> None:
    samples = scrape(metrics)
    for job in source.jobs:
        status = values(samples, "hasherd_job_status", job_id=str(job["id"]))
        assert {labels[2] for labels in status} == set(JobStatus)
        assert [labels[2] for labels, v in status.items() if v == 1.0] == [job["status"]]


def test_scrape_reads_the_source_afresh(metrics: Metrics, source: Source) -> None:
    source.actors[0]["dsha"] += 1000
    source.actors[0]["state"] = "failed"
    del source.jobs[1]
    samples = scrape(metrics)
    assert values(samples, "hasherd_actor_dsha_total", actor="cpu0") == {("cpu0", "numba"): 21992}
    assert values(samples, "hasherd_actor_state", actor="cpu0", state="failed") == {
        ("cpu0", "failed"): 1.0
    }
    assert not values(samples, "hasherd_job_records", job_id="2")


def test_generation_histogram(metrics: Metrics) -> None:
    for seconds in (0.0004, 0.003, 0.003, 0.7, 12.0):
        metrics.observe_generation(seconds, job_id=1)
    metrics.observe_generation(0.02, job_id=2)
    samples = scrape(metrics)
    buckets = values(samples, "hasherd_generation_duration_seconds_bucket", job_id="1")
    by_le = {float(labels[1]): v for labels, v in buckets.items()}
    assert sorted(by_le) == [*GENERATION_BUCKETS, math.inf]
    assert by_le[0.0005] == 1 and by_le[0.005] == 3 and by_le[1.0] == 4 and by_le[10.0] == 4
    assert by_le[math.inf] == 5
    total = values(samples, "hasherd_generation_duration_seconds_sum", job_id="1")
    assert total[("1",)] == pytest.approx(0.0004 + 0.003 * 2 + 0.7 + 12.0)
    assert values(samples, "hasherd_generation_duration_seconds_count") == {("1",): 5, ("2",): 1}
    metrics.forget_job(2)
    assert not values(scrape(metrics), "hasherd_generation_duration_seconds_count", job_id="2")


@pytest.mark.parametrize("seconds", [-0.1, math.nan, math.inf])
def test_generation_duration_must_be_real(seconds: float, source: Source) -> None:
    with pytest.raises(ValueError, match="finite"):
        Metrics(source).observe_generation(seconds, job_id=1)


def test_process_and_platform_metrics_are_there(metrics: Metrics) -> None:
    names = {s.name for s in scrape(metrics)}
    assert {"process_cpu_seconds_total", "process_resident_memory_bytes"} <= names
    assert "python_info" in names


def test_promtool_accepts_the_scrape(metrics: Metrics) -> None:
    metrics.observe_generation(0.01, job_id=1)
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail(
            "promtool not found: run `sudo tools/install-system-deps.sh` (Debian prometheus)"
        )
    done = subprocess.run(
        [promtool, "check", "metrics"],
        input=scrape_text(metrics),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_registries_are_private(source: Source) -> None:
    a, b = Metrics(source), Metrics(source)  # the global registry would refuse the second
    assert a.registry is not b.registry
    assert b"hasherd_actor_dsha_total" in a.exposition()


def test_ipv6_loopback_and_close(source: Source) -> None:
    m = Metrics(source)
    try:
        bound = m.serve("[::1]:0")
    except OSError as exc:  # pragma: no cover - a host without IPv6
        pytest.skip(f"no IPv6 loopback here: {exc}")
    port = int(bound.rsplit(":", 1)[1])
    assert bound == f"[::1]:{port}" and port > 0
    assert any(s.name == "hasherd_build_info" for s in scrape(m))
    m.close()
    m.close()  # idempotent
    assert m.address is None
    with pytest.raises(OSError), socket.create_connection(("::1", port), timeout=2):
        pass


def test_serving_twice_is_refused(metrics: Metrics) -> None:
    with pytest.raises(RuntimeError, match="already served"):
        metrics.serve("127.0.0.1:0")


def test_address_in_use_names_the_address(source: Source) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        m = Metrics(source)
        with pytest.raises(AddressInUseError) as info:
            m.serve(address)
    assert info.value.address == address and address in str(info.value)
    assert m.address is None


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("localhost:0", ("localhost", 0)),
        ("[::1]:9464", ("::1", 9464)),
        ("[::]:65535", ("::", 65535)),
    ],
)
def test_parse_address(address: str, expected: tuple[str, int]) -> None:
    assert parse_address(address) == expected


@pytest.mark.parametrize(
    "address",
    [
        "",
        "9464",
        "127.0.0.1",
        ":9464",
        "127.0.0.1:",
        "127.0.0.1:65536",
        "127.0.0.1:-1",
        "127.0.0.1:http",
        "::1:9464",
        "[::1]",
        "[::1]9464",
        "[nope]:9464",
        "[::1:9464",
        "127.0.0.1:٩٤٦٤",
    ],
)
def test_bad_addresses_are_config_errors(address: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_address(address)
    assert info.value.key == "metrics.address"


def test_unresolvable_host_is_a_config_error(source: Source) -> None:
    with pytest.raises(ConfigError) as info:
        Metrics(source).serve("no-such-host.invalid:0")
    assert info.value.key == "metrics.address"


def test_deploy_metrics_come_from_the_source(source: Source) -> None:
    text = Metrics(source).exposition().decode()
    assert "hasherd_deployments_total 3.0" in text
    assert "hasherd_deploy_rollbacks_total 1.0" in text
    assert "hasherd_deploy_live_layer 2.0" in text
    assert "\nhasherd_deploy_live_weights " not in text  # NaN: not known yet, no sample


def test_each_actor_names_its_node(metrics: Metrics, source: Source) -> None:
    """``hasherd_actor_node``: 1 per actor with its node, ``local`` when the snapshot
    names none (an actor of the daemon's own process)."""
    samples = scrape(metrics)
    expected = {(a["name"], str(a.get("node", "local"))): 1.0 for a in source.actors}
    assert values(samples, "hasherd_actor_node") == expected
