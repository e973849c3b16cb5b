"""The Prometheus collector: actor, job and store snapshots turned into metric families.

Nothing is counted here. At each scrape the collector asks its ``MetricsSource`` for
fresh snapshots (the same cheap dicts the control socket shows) and builds the families
from them, so the numbers on ``/metrics`` are the numbers the daemon holds, and a
stopped actor or a finished job simply stops appearing. The specs below are the one
list of names, types, labels and help texts; ``docs/metrics.md`` documents them.

In every ``*_errors_total`` family the label ``kind`` is the error's class name; on the
other per-actor families it is the actor's evaluator kind (``numba``, ``cuda``, ...).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from hasherd.actors.base import ActorState
from hasherd.storage.status import JobStatus

ACTOR_STATES: tuple[str, ...] = tuple(str(s) for s in ActorState)

ACTOR = ("actor", "kind")
Family = CounterMetricFamily | GaugeMetricFamily
JOB = ("job_id", "name")  # not "job": Prometheus gives that label to the scrape target


class MetricsSource(Protocol):
    """Where the collector reads the daemon's state.

    Called from the HTTP server's thread, at every scrape: each method must be cheap and
    safe to call off the event loop (copying plain counters is, under the GIL).
    """

    def actor_snapshots(self) -> list[dict[str, Any]]:
        """``EvaluatorActor.snapshot()`` of every actor."""
        ...

    def job_snapshots(self) -> list[dict[str, Any]]:
        """One dict per job: id, name, status, difficulty_bits, records_total,
        records_won, records_pending, tokens_trained, best_fitness, mean_fitness (NaN
        when unknown), candidates, dsha; optionally priority and share (NaN or left
        out: not running)."""
        ...

    def store_stats(self) -> dict[str, float | int]:
        """``Store.stats()``."""
        ...

    def error_counts(self) -> dict[str, int]:
        """Errors by kind (class name), daemon-wide."""
        ...

    def deploy_stats(self) -> dict[str, float | int]:
        """``DeployMetrics.snapshot()``: deployments, rollbacks, failures, the live layer."""
        ...


@dataclass(frozen=True)
class Spec:
    """One metric family: its name, type, help, labels, and the snapshot key it reads."""

    name: str
    type: Literal["counter", "gauge"]
    doc: str
    labels: tuple[str, ...] = ()
    key: str = ""

    def family(self) -> Family:
        if self.type == "counter":
            return CounterMetricFamily(self.name, self.doc, labels=self.labels)
        return GaugeMetricFamily(self.name, self.doc, labels=self.labels)


def _counter(name: str, doc: str, labels: tuple[str, ...] = (), key: str = "") -> Spec:
    return Spec(name, "counter", doc, labels, key)


def _gauge(name: str, doc: str, labels: tuple[str, ...] = (), key: str = "") -> Spec:
    return Spec(name, "gauge", doc, labels, key)


ACTOR_SPECS = (
    _counter("hasherd_actor_candidates_total", "Candidates evaluated.", ACTOR, "candidates"),
    _counter("hasherd_actor_dsha_total", "Double SHA-256 computed.", ACTOR, "dsha"),
    _counter("hasherd_actor_jobs_total", "Evaluation batches completed.", ACTOR, "jobs"),
    _counter("hasherd_actor_failures_total", "Batches or starts that failed.", ACTOR, "failures"),
    _counter("hasherd_actor_restarts_total", "Restarts by the supervisor.", ACTOR, "restarts"),
    _counter("hasherd_actor_busy_seconds_total", "Time spent evaluating.", ACTOR, "busy_seconds"),
    _gauge("hasherd_actor_mailbox_depth", "Batches waiting in the mailbox.", ACTOR, "mailbox"),
    _gauge(
        "hasherd_actor_mailbox_capacity",
        "Batches the actor takes at once (waiting plus running).",
        ACTOR,
        "mailbox_capacity",
    ),
    _gauge("hasherd_actor_in_flight", "Batches held: waiting plus running.", ACTOR, "in_flight"),
    _gauge("hasherd_actor_threads", "Kernel threads of the evaluator.", ACTOR, "threads"),
    _counter(
        "hasherd_actor_abandoned_calls_total",
        "Calls given up (withdrawn or timed out); a numba kernel is told to stop.",
        ACTOR,
        "abandoned",
    ),
)
# The sum of the actors' "duplicates": answers dropped because another actor was first.
POOL_DUPLICATES = _counter(
    "hasherd_pool_duplicate_batches_total",
    "Pieces of batches answered twice (a straggler's copy): the later answer dropped.",
)
ACTOR_STATE = _gauge(
    "hasherd_actor_state", "1 for the actor's current state, 0 for the others.", ("actor", "state")
)
ACTOR_ERRORS = _counter(
    "hasherd_actor_errors_total", "Actor failures by error class.", ("actor", "kind")
)
# Where each actor runs, as a label to join on (the per-actor families keep their labels):
# "local" (the daemon's process) or a [cluster] node.
ACTOR_NODE = _gauge(
    "hasherd_actor_node", "1, labelled with the node the actor runs on.", ("actor", "node")
)

JOB_SPECS = (
    _counter(
        "hasherd_job_tokens_trained_total", "Winners stored by the job.", JOB, "tokens_trained"
    ),
    _gauge("hasherd_job_records", "Records in the job.", JOB, "records_total"),
    _gauge(
        "hasherd_job_records_won",
        "Records holding a winner at the current difficulty.",
        JOB,
        "records_won",
    ),
    _gauge("hasherd_job_records_pending", "Records still to train.", JOB, "records_pending"),
    _gauge(
        "hasherd_job_difficulty",
        "Current difficulty, in leading zero bits.",
        JOB,
        "difficulty_bits",
    ),
    _gauge("hasherd_job_best_fitness", "Best fitness of the last generation.", JOB, "best_fitness"),
    _gauge("hasherd_job_mean_fitness", "Mean fitness of the last generation.", JOB, "mean_fitness"),
    _counter(
        "hasherd_job_candidates_total", "Candidates evaluated for the job.", JOB, "candidates"
    ),
    _counter("hasherd_job_dsha_total", "Double SHA-256 computed for the job.", JOB, "dsha"),
)
JOB_STATUS = _gauge(
    "hasherd_job_status", "1 for the job's current status, 0 for the others.", (*JOB, "status")
)
# Optional keys of a job snapshot: a job that is not running has no share.
JOB_SHARE_SPECS = (
    _gauge(
        "hasherd_job_share",
        "The running job's part of the busy time of the actors it uses (0..1), recently.",
        JOB,
        "share",
    ),
    _gauge("hasherd_job_priority", "The job's priority: its weight in the share.", JOB, "priority"),
)

STORE_SPECS = (
    _counter(
        "hasherd_db_write_transactions_total",
        "Database write transactions committed or attempted.",
        key="write_transactions",
    ),
    _counter(
        "hasherd_db_write_failures_total",
        "Database write transactions rolled back.",
        key="write_failures",
    ),
    _counter(
        "hasherd_db_write_duration_seconds_total",
        "Time spent in database write transactions.",
        key="total_write_seconds",
    ),
    _gauge(
        "hasherd_db_last_write_duration_seconds",
        "Duration of the last write transaction.",
        key="last_write_seconds",
    ),
    _gauge(
        "hasherd_db_max_write_duration_seconds",
        "Longest write transaction since start.",
        key="max_write_seconds",
    ),
)
ERRORS = _counter("hasherd_errors_total", "Errors by class, daemon-wide.", ("kind",))
BUILD_INFO = _gauge("hasherd_build_info", "Always 1; the hasherd version.", ("version",))

DEPLOY_SPECS = (
    _counter(
        "hasherd_deployments_total",
        "Layers made live by flash (rollbacks not counted).",
        key="deployments",
    ),
    _counter("hasherd_deploy_rollbacks_total", "Rollbacks to the previous layer.", key="rollbacks"),
    _counter(
        "hasherd_deploy_failures_total", "Deployments and rollbacks that failed.", key="failures"
    ),
    _gauge(
        "hasherd_deploy_last_timestamp_seconds",
        "When the live layer went live (Unix time).",
        key="last_deploy_unix",
    ),
    _gauge("hasherd_deploy_live_layer", "The layer live in the BPF maps.", key="live_layer"),
    _gauge("hasherd_deploy_live_weights", "Weights in the live layer.", key="live_count"),
)

JITTER_SPECS = (
    _counter(
        "hasherd_jitter_requests_total",
        "Jitter lookups requests served (all modes).",
        key="requests",
    ),
    _counter(
        "hasherd_jitter_legacy_requests_total",
        "56-byte legacy requests served.",
        key="legacy_requests",
    ),
    _counter("hasherd_jitter_batches_total", "Batch-mode lookup frames served.", key="batches"),
    _counter("hasherd_jitter_lookups_total", "Jitter lookups answered.", key="lookups"),
    _counter("hasherd_jitter_uploads_total", "Memories uploaded by clients.", key="uploads"),
    _counter("hasherd_jitter_connections_total", "Connections accepted.", key="connections_total"),
    _gauge("hasherd_jitter_connections", "Connections open now.", key="connections"),
    _gauge("hasherd_jitter_memories", "Jitter memories held.", key="memories"),
)
JITTER_ERRORS = _counter("hasherd_jitter_errors_total", "Jitter service errors by kind.", ("kind",))
JITTER_LATENCY = "hasherd_jitter_request_duration_seconds"

DEVICE = ("device",)
CHIP = ("device", "chip")
CHIP_SPECS = (
    _counter(
        "hasherd_chip_hashes_total", "Nonces the chip hashed (rate: its hash rate).", CHIP, "hashes"
    ),
    _counter("hasherd_chip_nonces_total", "Valid nonces the chip reported.", CHIP, "nonces"),
    _counter(
        "hasherd_chip_invalid_nonces_total",
        "Nonces that failed the host's check (hardware errors).",
        CHIP,
        "invalid",
    ),
    _counter(
        "hasherd_chip_duplicate_nonces_total",
        "Nonces reported twice for one job.",
        CHIP,
        "duplicates",
    ),
)
DEVICE_SPECS = (
    _gauge("hasherd_device_chips", "Chips that answered the chain's enumeration.", DEVICE, "chips"),
    _counter("hasherd_device_jobs_total", "Jobs sent to the chain.", DEVICE, "jobs"),
    _counter(
        "hasherd_device_crc_errors_total",
        "Response frames that failed their CRC (chain-wide: unattributable).",
        DEVICE,
        "crc_errors",
    ),
    _counter(
        "hasherd_device_stale_nonces_total",
        "Nonces for a job other than the current.",
        DEVICE,
        "stale",
    ),
    _counter(
        "hasherd_device_garbage_bytes_total",
        "Bytes skipped to resynchronise.",
        DEVICE,
        "garbage_bytes",
    ),
    _counter(
        "hasherd_device_resends_total",
        "Jobs sent again because a response frame was lost.",
        DEVICE,
        "resends",
    ),
)
DEVICE_RECONNECTS = _counter(
    "hasherd_device_reconnects_total", "Times the chain was reopened and initialised again.", DEVICE
)
VALIDATION_SPECS = (
    _counter("hasherd_validation_runs_total", "Validations finished.", key="runs"),
    _gauge(
        "hasherd_validation_last_mismatch_ratio",
        "Disagreement rate of the last validation.",
        key="last_rate",
    ),
    _gauge(
        "hasherd_validation_last_timestamp_seconds",
        "When the last validation finished (Unix time).",
        key="last_finished_unix",
    ),
    _gauge("hasherd_validation_running", "1 while a validation runs.", key="running"),
)
VALIDATION_WEIGHTS = _counter(
    "hasherd_validation_weights_total", "Weights checked, by outcome.", ("outcome",)
)
VALIDATION_OUTCOMES = ("validated", "non_deterministic", "failed")

SPECS: tuple[Spec, ...] = (
    *CHIP_SPECS,
    *DEVICE_SPECS,
    DEVICE_RECONNECTS,
    *VALIDATION_SPECS,
    VALIDATION_WEIGHTS,
    *DEPLOY_SPECS,
    *JITTER_SPECS,
    JITTER_ERRORS,
    BUILD_INFO,
    *ACTOR_SPECS,
    ACTOR_STATE,
    ACTOR_ERRORS,
    ACTOR_NODE,
    POOL_DUPLICATES,
    *JOB_SPECS,
    JOB_STATUS,
    *JOB_SHARE_SPECS,
    *STORE_SPECS,
    ERRORS,
)


def _enum(family: Family, labels: Sequence[str], current: str, values: Sequence[str]) -> None:
    """One sample per possible value: 1 for the current one, 0 for the rest."""
    for value in values:
        family.add_metric([*labels, value], 1.0 if value == current else 0.0)


class HasherCollector(Collector):
    """Builds every ``hasherd_*`` family from ``source`` at scrape time."""

    def __init__(self, source: MetricsSource, version: str) -> None:
        self.source = source
        self.version = version

    def describe(self) -> Iterator[Metric]:
        """The families without samples: the registry checks names without a scrape."""
        for spec in SPECS:
            yield spec.family()

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Family] = {spec.name: spec.family() for spec in SPECS}
        families[BUILD_INFO.name].add_metric([self.version], 1.0)
        actors = self.source.actor_snapshots()
        for actor in actors:
            self._add_actor(families, actor)
        duplicates = sum(a.get("duplicates", 0) for a in actors)
        families[POOL_DUPLICATES.name].add_metric([], float(duplicates))
        for job in self.source.job_snapshots():
            self._add_job(families, job)
        self._add_fields(families, STORE_SPECS, (), self.source.store_stats())
        self._add_fields(families, DEPLOY_SPECS, (), self.source.deploy_stats())
        jitter = getattr(self.source, "jitter_stats", lambda: None)()
        if jitter is not None:
            self._add_fields(families, JITTER_SPECS, (), jitter)
            for kind, count in sorted(jitter.get("errors", {}).items()):
                families[JITTER_ERRORS.name].add_metric([kind], float(count))
        for kind, count in sorted(self.source.error_counts().items()):
            families[ERRORS.name].add_metric([kind], float(count))
        validation = getattr(self.source, "validation_stats", lambda: None)()
        if validation is not None:
            self._add_fields(families, VALIDATION_SPECS, (), validation)
            for outcome in VALIDATION_OUTCOMES:
                count = float(validation["weights"].get(outcome, 0))
                families[VALIDATION_WEIGHTS.name].add_metric([outcome], count)
        yield from families.values()
        if jitter is not None and "latency" in jitter:
            yield _latency_family(jitter["latency"])

    def _add_actor(self, families: dict[str, Family], snap: Mapping[str, Any]) -> None:
        name = str(snap["name"])
        self._add_fields(families, ACTOR_SPECS, (name, str(snap["kind"])), snap)
        _enum(families[ACTOR_STATE.name], [name], str(snap["state"]), ACTOR_STATES)
        families[ACTOR_NODE.name].add_metric([name, str(snap.get("node", "local"))], 1.0)
        for kind, count in sorted(snap["errors"].items()):
            families[ACTOR_ERRORS.name].add_metric([name, kind], float(count))
        device = snap.get("device")
        if device is not None:
            self._add_fields(families, DEVICE_SPECS, (name,), device["device"])
            families[DEVICE_RECONNECTS.name].add_metric([name], float(snap["restarts"]))
            for chip in device["chips"]:
                self._add_fields(families, CHIP_SPECS, (name, str(chip["chip"])), chip)

    def _add_job(self, families: dict[str, Family], snap: Mapping[str, Any]) -> None:
        labels = (str(snap["id"]), str(snap["name"]))
        self._add_fields(families, JOB_SPECS, labels, snap)
        _enum(families[JOB_STATUS.name], labels, str(snap["status"]), tuple(JobStatus))
        shares = {spec.key: snap.get(spec.key, math.nan) for spec in JOB_SHARE_SPECS}
        self._add_fields(families, JOB_SHARE_SPECS, labels, shares)

    @staticmethod
    def _add_fields(
        families: dict[str, Family],
        specs: Sequence[Spec],
        labels: Sequence[str],
        snap: Mapping[str, Any],
    ) -> None:
        """One sample per spec; NaN means "not known yet" and gives no sample."""
        for spec in specs:
            value = float(snap[spec.key])
            if not math.isnan(value):
                families[spec.name].add_metric(list(labels), value)


def _latency_family(lat: Mapping[str, Any]) -> HistogramMetricFamily:
    """The jitter service's per-request service time, from its cumulative buckets."""
    buckets = [
        ("+Inf" if math.isinf(le) else repr(float(le)), float(n)) for le, n in lat["buckets"]
    ]
    family = HistogramMetricFamily(
        JITTER_LATENCY,
        "Jitter service time per request, in seconds.",
    )
    family.add_metric([], buckets, sum_value=float(lat["sum"]))
    return family
