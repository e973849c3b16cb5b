"""Configuration: the original trainer's JSON file format, or the same keys in TOML.

Sections and keys are those of the prototype's config file (simulator, storage, training,
deployment, validation, logging); docs/configuration.md says what each does in hasherd.
Parsing happens once, at the boundary, into frozen dataclasses; every default lives here;
an unknown or malformed key is a ``ConfigError`` naming ``section.key`` and the file.
"""

from __future__ import annotations

import grp
import json
import math
import posixpath
import re
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from hasherd.devices import registry
from hasherd.devices.chain import Problem
from hasherd.errors import ConfigError

# simulator.device_type -> evaluator kind. "vhasher" is the prototype's name for the CPU
# simulator; the gpu and asic evaluators arrive with their drivers.
DEVICE_EVALUATORS = {
    "cpu": "numba",
    "numba": "numba",
    "vhasher": "numba",
    "reference": "reference",
    "gpu": "cuda",
    "cuda": "cuda",
    "asic": "asic",
}
DEVICE_TYPES = tuple(DEVICE_EVALUATORS)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_ADDRESS = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]*):(\d{1,5})$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_MODE = re.compile(r"0?[0-7]{3}")
_NAME = re.compile(r"[A-Za-z0-9_.-]{0,64}")
MAX_DURATION = 7 * 24 * 3600.0  # the longest wait any key may ask for: a week
INT64_MAX = 2**63 - 1  # every integer key must fit SQLite's INTEGER and a C int64


def _failed(*checks: tuple[bool, str, str]) -> list[Problem]:
    """The ``(key, problem)`` of every ``(ok, key, problem)`` that is not ok, in order
    (the first is the one reported)."""
    return [(key, problem) for ok, key, problem in checks if not ok]


def _group_problem(group: str) -> tuple[bool, str, str]:
    """A socket's group must exist when the file is read, not only when the daemon binds
    (``check-config`` catches it; the daemon never starts and dies on it)."""
    try:
        exists = not group or grp.getgrnam(group) is not None
    except KeyError:
        exists = False
    return exists, "group", f"{group!r} is not a group on this system (getent group {group})"


def bpf_path_problem(path: str) -> str | None:
    """Why ``path`` cannot be a BPF pin, or None: an absolute path to a file, without
    ``.`` or ``..`` components, whose name has no ``.`` (bpffs refuses any name with a
    dot, EPERM: kernel/bpf/inode.c ``bpf_lookup``)."""
    if not path or not posixpath.isabs(path) or path.endswith("/"):
        return "expected an absolute path to a pin (such as /sys/fs/bpf/hasher_weights)"
    if any(part in ("", ".", "..") for part in path.split("/")[1:]):
        return "must not contain '.', '..' or empty components"
    if "." in posixpath.basename(path):
        return "bpffs does not allow '.' in names"
    return None


def _mode_problem(mode: str) -> tuple[bool, str, str]:
    return (
        _MODE.fullmatch(mode) is not None,
        "mode",
        f'{mode!r} is not an octal mode such as "0660"',
    )


def parse_duration(value: Any, key: str) -> float:
    """Seconds from ``30``, ``2.5``, ``"30s"``, ``"5m"``, ``"250ms"`` or ``"1h"``."""
    if isinstance(value, bool):
        raise ConfigError(key, 'expected a duration such as 30 or "30s"')
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise ConfigError(key, f'{value!r} is not a duration such as 30 or "30s"')
    if not math.isfinite(seconds):
        raise ConfigError(key, f"{value!r} is not a finite duration")
    if seconds < 0:
        raise ConfigError(key, "must not be negative")
    if seconds > MAX_DURATION:
        raise ConfigError(key, f"must be at most {MAX_DURATION:g} s (a week)")
    return seconds


@dataclass(frozen=True)
class SimulatorConfig:
    device_type: str = "cpu"  # cpu (numba) | reference | vhasher (= cpu) | gpu | asic
    max_concurrency: int = 0  # CPU threads for the evaluator; 0 = every core
    target_hash_rate: float = 0.0  # double SHA-256/s expected; below it a warning is logged
    cache_size: int = 10000  # records whose zone-1/zone-2 answers an evaluator keeps
    gpu_device: int = 0
    timeout: float = 30.0  # seconds one evaluation batch may take before it fails

    def check(self) -> list[Problem]:
        return _failed(
            (
                self.device_type in DEVICE_TYPES,
                "device_type",
                f"{self.device_type!r} is not one of {', '.join(DEVICE_TYPES)}",
            ),
            (
                0 <= self.max_concurrency <= 4096,
                "max_concurrency",
                "must be in 0..4096 (0 = every core)",
            ),
            (self.target_hash_rate >= 0, "target_hash_rate", "must be >= 0"),
            (1 <= self.cache_size <= 100_000_000, "cache_size", "must be in 1..100000000"),
            (0 <= self.gpu_device <= 255, "gpu_device", "must be in 0..255"),
            (self.timeout > 0, "timeout", "must be > 0"),
        )


@dataclass(frozen=True)
class StorageConfig:
    base_path: str = "data/weights"  # where the database and exported layers live
    layer_size: int = 1000  # tokens per layer: layer = token_id // layer_size

    def check(self) -> list[Problem]:
        return _failed(
            (1 <= self.layer_size <= 2**32, "layer_size", "must be in 1..2^32"),
            (bool(self.base_path), "base_path", "must not be empty"),
        )


@dataclass(frozen=True)
class TrainingConfig:
    population_size: int = 128
    max_generations: int = 2000  # per record per epoch
    elite_ratio: float = 0.25
    mutation_rate: float = 0.05  # share of each generation that is fresh random seeds
    target_fitness: float = 0.95  # share of records that must win at the final difficulty
    validation_split: float = 0.1  # share of new weights re-run on the reference evaluator
    epochs: int = 2  # the sample trains in about 12 s on 2 cores; raise for harder runs
    difficulty_bits: int = 12  # base of the difficulty schedule
    token_bits: int = 17
    passes: int = 21
    zero_bits: int = 0
    seed: int | None = None  # RNG seed; None draws one (it is recorded with the run)

    def check(self) -> list[Problem]:
        return _failed(
            (1 <= self.population_size <= 4096, "population_size", "must be in 1..4096"),
            (
                1 <= self.max_generations <= 1_000_000_000,
                "max_generations",
                "must be in 1..1000000000",
            ),
            (0 < self.elite_ratio < 1, "elite_ratio", "must be in (0, 1)"),
            (0 <= self.mutation_rate < 1, "mutation_rate", "must be in [0, 1)"),
            (0 <= self.target_fitness <= 1, "target_fitness", "must be in [0, 1]"),
            (0 <= self.validation_split <= 1, "validation_split", "must be in [0, 1]"),
            (1 <= self.epochs <= 1000, "epochs", "must be in 1..1000"),
            (1 <= self.difficulty_bits <= 32, "difficulty_bits", "must be in 1..32"),
            (1 <= self.token_bits <= 32, "token_bits", "must be in 1..32"),
            (1 <= self.passes <= 65536, "passes", "must be in 1..65536"),
            (0 <= self.zero_bits <= 32, "zero_bits", "must be in 0..32"),
            (self.seed is None or 0 <= self.seed < 2**63, "seed", "must be in 0..2^63-1"),
        )


@dataclass(frozen=True)
class DeploymentConfig:
    bpf_map_path: str = "/sys/fs/bpf/hasher_weights"
    openwrt_endpoint: str = ""
    deployment_timeout: float = 300.0
    max_retries: int = 3
    retry_delay: float = 5.0
    validation_mode: str = "strict"  # strict: only validated weights | lenient
    backup_enabled: bool = True
    backup_path: str = "data/backups"
    rollback_enabled: bool = True

    def check(self) -> list[Problem]:
        return _failed(
            (
                self.validation_mode in ("strict", "lenient"),
                "validation_mode",
                "must be strict or lenient",
            ),
            (0 <= self.max_retries <= 100, "max_retries", "must be in 0..100"),
            (self.deployment_timeout > 0, "deployment_timeout", "must be > 0"),
            (
                (problem := bpf_path_problem(self.bpf_map_path)) is None,
                "bpf_map_path",
                f"{self.bpf_map_path!r}: {problem}",
            ),
        )


@dataclass(frozen=True)
class ValidationConfig:
    timeout: float = 30.0  # seconds per weight re-evaluation
    max_concurrency: int = 10
    retry_attempts: int = 3
    tolerance_threshold: float = 0.01  # share of mismatching weights tolerated
    enable_asic: bool = False

    def check(self) -> list[Problem]:
        return _failed(
            (self.timeout > 0, "timeout", "must be > 0"),
            (1 <= self.max_concurrency <= 1024, "max_concurrency", "must be in 1..1024"),
            (0 <= self.retry_attempts <= 100, "retry_attempts", "must be in 0..100"),
            (0 <= self.tolerance_threshold <= 1, "tolerance_threshold", "must be in [0, 1]"),
        )


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "info"
    format: str = "text"  # text | json
    output: str = "stderr"  # stdout | stderr | a file path
    max_size: int = 100  # MiB before a log file is rotated
    max_backups: int = 10
    max_age: int = 30  # days a rotated file is kept

    def check(self) -> list[Problem]:
        return _failed(
            (
                self.level.lower() in ("debug", "info", "warn", "warning", "error"),
                "level",
                "must be debug, info, warning or error",
            ),
            (self.format in ("text", "json"), "format", "must be text or json"),
            (1 <= self.max_size <= 1_048_576, "max_size", "must be in 1..1048576 (MiB)"),
            (0 <= self.max_backups <= 1000, "max_backups", "must be in 0..1000"),
            (0 <= self.max_age <= 36500, "max_age", "must be in 0..36500 (days)"),
        )


@dataclass(frozen=True)
class DaemonConfig:
    database: str = ""  # "" = <storage.base_path>/hasherd.db
    batch: int = 64  # records of the active job in flight at once
    shutdown_timeout: float = 10.0  # SIGTERM: most seconds to persist and stop
    status_interval: float = 10.0  # seconds between progress lines (log, systemd STATUS=)
    max_jobs: int = 4  # jobs trained at once, sharing the devices; the rest wait queued

    def check(self) -> list[Problem]:
        return _failed(
            (1 <= self.batch <= 4096, "batch", "must be in 1..4096"),
            (self.shutdown_timeout > 0, "shutdown_timeout", "must be > 0"),
            (self.status_interval > 0, "status_interval", "must be > 0"),
            (1 <= self.max_jobs <= 64, "max_jobs", "must be in 1..64"),
        )


@dataclass(frozen=True)
class ControlConfig:
    socket: str = ""  # "" = $RUNTIME_DIRECTORY (systemd), /run/hasherd as root, else XDG
    group: str = ""  # a group whose members may use the socket ("" = root and the daemon)
    mode: str = "0660"  # the socket file's permissions (octal)
    read_timeout: float = 30.0  # a connection with a half-sent request is closed after this
    max_connections: int = 256

    def check(self) -> list[Problem]:
        return _failed(
            _group_problem(self.group),
            _mode_problem(self.mode),
            (self.read_timeout > 0, "read_timeout", "must be > 0"),
            (1 <= self.max_connections <= 65536, "max_connections", "must be in 1..65536"),
        )


@dataclass(frozen=True)
class JitterConfig:
    enabled: bool = True  # serve the jitter RPC service (docs/jitter-rpc.md)
    socket: str = ""  # "" = $RUNTIME_DIRECTORY (systemd), /run/hasherd as root, else XDG
    dataset: str = ""  # the default memory: a dataset path; "" = the running job's dataset
    group: str = ""  # a group whose members may use the socket ("" = root and the daemon)
    mode: str = "0660"  # the socket file's permissions (octal)
    allow_upload: bool = True  # clients may upload a memory and select it by memory_id
    max_uploads: int = 16  # uploaded memories kept (least recently used dropped first)
    read_timeout: float = 30.0  # a connection with a half-sent frame is closed after this
    max_connections: int = 256

    def check(self) -> list[Problem]:
        return _failed(
            _group_problem(self.group),
            _mode_problem(self.mode),
            (self.read_timeout > 0, "read_timeout", "must be > 0"),
            (1 <= self.max_connections <= 65536, "max_connections", "must be in 1..65536"),
            (1 <= self.max_uploads <= 1024, "max_uploads", "must be in 1..1024"),
        )


@dataclass(frozen=True)
class MetricsConfig:
    address: str = "127.0.0.1:9464"  # host:port of the Prometheus endpoint; "" = off

    def check(self) -> list[Problem]:
        return _failed(
            (
                self.address == "" or _ADDRESS.match(self.address) is not None,
                "address",
                f'{self.address!r} is not host:port (or "" to switch metrics off)',
            ),
        )


@dataclass(frozen=True)
class ChipDeviceConfig:
    """One chip chain (``[[devices.chips]]``): an actor of its own (docs/chips.md)."""

    path: str = ""  # /dev/ttyUSB0, a pty, socket://host:port; s3: also usb[:VVVV:PPPP]
    name: str = ""  # the actor's name; "" = chip<index>
    driver: str = "bm1370"  # bm1370 (UART chain) | s3 (Antminer S3 controller)
    zero_bits: int = 32  # the kernel's zero bits it serves; the chip's hard-wired minimum
    chips: int = 0  # chips expected on the chain; 0 = as many as answer
    baud: int = 0  # switch to this rate after init; 0 = stay at 115200
    nonces_per_chip: int = 0  # nonces each chip sweeps per job; 0 = its whole share
    sweep_time: float = 0.5  # seconds a job's sweep may take
    quiet: float = 0.05  # after the sweep, this much silence ends the job
    timeout: float = 600.0  # seconds one evaluation batch may take on the chain
    node: str = ""  # a [cluster] node the chain is plugged into; "" = the daemon's machine

    def check(self) -> list[Problem]:
        """The table's ranges, with its driver's checks (``devices.registry``: what the
        chip cannot honour, such as a baud) right after the baud's range."""
        drivers = registry.names()
        known = self.driver in drivers
        return [
            *_failed(
                (bool(self.path), "path", "must name the chain's serial device"),
                (
                    _NAME.fullmatch(self.name) is not None,
                    "name",
                    "must be letters, digits, '_', '.' or '-' (at most 64)",
                ),
                (known, "driver", f"must be one of {', '.join(drivers)}"),
                (1 <= self.zero_bits <= 32, "zero_bits", "must be in 1..32"),
                (0 <= self.chips <= 256, "chips", "must be in 0..256"),
                (
                    self.baud == 0 or 115200 <= self.baud <= 6_250_000,
                    "baud",
                    "must be 0 or in 115200..6250000",
                ),
            ),
            *(registry.driver(self.driver).check(self) if known else []),
            *_failed(
                (0 <= self.nonces_per_chip <= 2**32, "nonces_per_chip", "must be in 0..2^32"),
                (self.sweep_time > 0, "sweep_time", "must be > 0"),
                (self.quiet > 0, "quiet", "must be > 0"),
                (self.timeout > 0, "timeout", "must be > 0"),
                (_NAME.fullmatch(self.node) is not None, "node", _NODE_NAME),
            ),
        ]


@dataclass(frozen=True)
class DevicesConfig:
    cpu_actors: int = 1  # CPU simulator actors (the cores are shared among them)
    gpu_actors: int = 0  # CUDA actors, on GPUs simulator.gpu_device, +1, ...
    mailbox: int = 2  # batches an actor may hold at once (the bound on work in flight)
    simulator_max_zero_bits: int = 24  # CPU/GPU actors take no batch above these zero bits
    max_batch_seconds: float = 5.0  # the most work (at its measured rate) an actor holds
    straggler_factor: float = 4.0  # a piece this far past its expected time is copied
    chips: tuple[ChipDeviceConfig, ...] = ()  # chip chains, one [[devices.chips]] table each

    def check(self) -> list[Problem]:
        return _failed(
            (0 <= self.cpu_actors <= 64, "cpu_actors", "must be in 0..64"),
            (0 <= self.gpu_actors <= 16, "gpu_actors", "must be in 0..16"),
            (1 <= self.mailbox <= 64, "mailbox", "must be in 1..64"),
            (
                0 <= self.simulator_max_zero_bits <= 32,
                "simulator_max_zero_bits",
                "must be in 0..32",
            ),
            (0.1 <= self.max_batch_seconds <= 3600, "max_batch_seconds", "must be in 0.1..3600"),
            (1.5 <= self.straggler_factor <= 100, "straggler_factor", "must be in 1.5..100"),
        )


_NODE_NAME = "must be letters, digits, '_', '.' or '-' (at most 64)"


@dataclass(frozen=True)
class ClusterConfig:
    """``[cluster]``: the daemon as a Ray driver, its actors on the nodes of a Ray cluster
    (docs/scale-out.md). Empty ``address`` = no cluster: every actor in this process."""

    address: str = ""  # a Ray cluster: "host:port" of its head (GCS), "auto", or "" = off
    namespace: str = "hasherd"  # the Ray namespace of the daemon's named actors
    nodes: tuple[str, ...] = ()  # worker nodes by name (ray start --resources hasherd_node:NAME)
    cpu_actors_per_node: int = 1  # CPU simulator actors on each of `nodes`
    cpu_threads: int = 0  # kernel threads of each of them; 0 = the node's cores / actors
    gpu_actors_per_node: int = 0  # CUDA actors on each of `gpu_nodes`, one Ray GPU each
    gpu_nodes: tuple[str, ...] = ()  # the nodes with GPUs, of `nodes`; () = all of them
    start_timeout: float = 60.0  # seconds a remote actor may take to be placed and start

    def check(self) -> list[Problem]:
        bad = [n for n in self.nodes if not n or _NAME.fullmatch(n) is None]
        dup = [n for i, n in enumerate(self.nodes) if n in self.nodes[:i]]
        stray = [n for n in self.gpu_nodes if n not in self.nodes]
        nodes = ", ".join(self.nodes) or "none"
        return _failed(
            (
                not stray,
                "gpu_nodes",
                f"{stray[0] if stray else ''!r} is not one of cluster.nodes ({nodes})",
            ),
            (not bad, "nodes", f"{bad[0] if bad else ''!r}: {_NODE_NAME}"),
            (not dup, "nodes", f"{dup[0] if dup else ''!r} is named twice"),
            (_NAME.fullmatch(self.namespace) is not None, "namespace", _NODE_NAME),
            (0 <= self.cpu_actors_per_node <= 64, "cpu_actors_per_node", "must be in 0..64"),
            (0 <= self.cpu_threads <= 1024, "cpu_threads", "must be in 0..1024"),
            (0 <= self.gpu_actors_per_node <= 16, "gpu_actors_per_node", "must be in 0..16"),
            (self.start_timeout > 0, "start_timeout", "must be > 0"),
            (
                not self.nodes or bool(self.address),
                "nodes",
                "needs cluster.address (the Ray cluster the nodes belong to)",
            ),
        )


@dataclass(frozen=True)
class Config:
    simulator: SimulatorConfig = field(default_factory=SimulatorConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    deployment: DeploymentConfig = field(default_factory=DeploymentConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    jitter: JitterConfig = field(default_factory=JitterConfig)
    devices: DevicesConfig = field(default_factory=DevicesConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    source: str = "<defaults>"

    def to_dict(self) -> dict[str, Any]:
        return {
            f.name: {
                k.name: _plain(getattr(getattr(self, f.name), k.name))
                for k in fields(getattr(self, f.name))
            }
            for f in fields(self)
            if f.name != "source"
        }

    def with_training(self, **changes: Any) -> Config:
        """A copy with training keys replaced (command-line options), re-validated."""
        merged = {**self.to_dict()["training"], **changes}
        return replace(self, training=_section(TrainingConfig, merged, "training", self.source))


def _plain(value: Any) -> Any:
    """JSON-able: a tuple of tables (``devices.chips``) as a list of dicts."""
    if isinstance(value, tuple):
        return [v if isinstance(v, str) else asdict(v) for v in value]
    return value


_SECTIONS: dict[str, type] = {
    "simulator": SimulatorConfig,
    "storage": StorageConfig,
    "training": TrainingConfig,
    "deployment": DeploymentConfig,
    "validation": ValidationConfig,
    "logging": LoggingConfig,
    "daemon": DaemonConfig,
    "control": ControlConfig,
    "metrics": MetricsConfig,
    "jitter": JitterConfig,
    "devices": DevicesConfig,
    "cluster": ClusterConfig,
}
_DURATIONS = {
    "simulator.timeout",
    "deployment.deployment_timeout",
    "deployment.retry_delay",
    "validation.timeout",
    "daemon.shutdown_timeout",
    "daemon.status_interval",
    "control.read_timeout",
    "jitter.read_timeout",
    "devices.chips[].sweep_time",
    "devices.chips[].quiet",
    "devices.chips[].timeout",
    "cluster.start_timeout",
}


def _typed(value: Any, default: Any, key: str, annotation: str) -> Any:
    if re.sub(r"\[\d+\]", "[]", key) in _DURATIONS:
        return parse_duration(value, key)
    if annotation.startswith("int") and value is None and "None" in annotation:
        return None
    if isinstance(default, bool) or annotation == "bool":
        if not isinstance(value, bool):
            raise ConfigError(key, f"expected true or false, got {value!r}")
        return value
    if annotation.startswith("int"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"expected an integer, got {value!r}")
        if abs(value) > INT64_MAX:
            raise ConfigError(key, f"{value} is beyond a 64-bit integer")
        return value
    if annotation == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(key, f"expected a number, got {value!r}")
        if (isinstance(value, int) and abs(value) > INT64_MAX) or not math.isfinite(value):
            raise ConfigError(key, f"expected a finite number, got {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise ConfigError(key, f"expected a string, got {value!r}")
    return value


def _section(cls: type, raw: Any, name: str, source: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(name, "expected a table of keys", source)
    known = {f.name: f for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            raise ConfigError(f"{name}.{key}", f"unknown key (known: {', '.join(known)})", source)
        f = known[key]
        if cls is DevicesConfig and key == "chips":
            values[key] = _chips(value, source)
            continue
        if cls is ClusterConfig and key in ("nodes", "gpu_nodes"):
            values[key] = _names(value, f"{name}.{key}", source)
            continue
        try:
            values[key] = _typed(value, f.default, f"{name}.{key}", str(f.type))
        except ConfigError as exc:
            raise ConfigError(exc.key, exc.problem, source) from None
    obj = cls(**values)
    for problem_key, problem in obj.check():
        raise ConfigError(f"{name}.{problem_key}", problem, source)
    return obj


def _chips(raw: Any, source: str) -> tuple[ChipDeviceConfig, ...]:
    """``[[devices.chips]]``: a list of tables; names default to chip<index> and must be
    unique."""
    if not isinstance(raw, list):
        raise ConfigError("devices.chips", "expected a list of tables ([[devices.chips]])", source)
    out = []
    for i, table in enumerate(raw):
        chip = _section(ChipDeviceConfig, table, f"devices.chips[{i}]", source)
        out.append(chip if chip.name else replace(chip, name=f"chip{i}"))
    names = [c.name for c in out]
    for i, n in enumerate(names):
        if n in names[:i]:
            raise ConfigError(f"devices.chips[{i}].name", f"{n!r} is used twice", source)
    return tuple(out)


def _names(raw: Any, key: str, source: str) -> tuple[str, ...]:
    """A list of strings (``cluster.nodes``)."""
    if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
        raise ConfigError(key, f"expected a list of names, got {raw!r}", source)
    return tuple(raw)


def _placed(cfg: Config) -> None:
    """Every ``node`` of a chip table is one of ``cluster.nodes``."""
    for i, chip in enumerate(cfg.devices.chips):
        if chip.node and chip.node not in cfg.cluster.nodes:
            known = ", ".join(cfg.cluster.nodes) or "none"
            raise ConfigError(
                f"devices.chips[{i}].node",
                f"{chip.node!r} is not one of cluster.nodes ({known})",
                cfg.source,
            )


def from_mapping(raw: Any, source: str = "<config>") -> Config:
    """A Config from parsed JSON/TOML; missing sections and keys take their defaults."""
    if not isinstance(raw, dict):
        raise ConfigError("<top>", "expected a table of sections", source)
    sections: dict[str, Any] = {}
    for name, value in raw.items():
        if name not in _SECTIONS:
            raise ConfigError(name, f"unknown section (known: {', '.join(_SECTIONS)})", source)
        sections[name] = _section(_SECTIONS[name], value, name, source)
    cfg = Config(**sections, source=source)
    _placed(cfg)
    return cfg


def load(path: str | Path | None) -> Config:
    """Read a config file (``.json`` as the prototype wrote it, or ``.toml``)."""
    if path is None:
        return Config()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError("<file>", f"not UTF-8 text: {exc}", str(p)) from None
    except OSError as exc:
        raise ConfigError("<file>", f"cannot read: {exc.strerror}", str(p)) from None
    try:
        raw = tomllib.loads(text) if p.suffix == ".toml" else json.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        kind = "TOML" if p.suffix == ".toml" else "JSON"
        raise ConfigError("<file>", f"not valid {kind}: {exc}", str(p)) from None
    return from_mapping(raw, str(p))
