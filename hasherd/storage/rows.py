"""The rows the store reads and writes: frozen dataclasses, one per table.

Times are Unix seconds. Fields the store fills in (``id``, ``created_at``, ...) default to
``None`` on rows a caller builds for writing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, get_args

RunStatus = Literal["running", "finished", "stopped", "failed"]
Validation = Literal["unvalidated", "validated", "non-deterministic"]

RUN_STATUSES: frozenset[str] = frozenset(get_args(RunStatus))
VALIDATIONS: frozenset[str] = frozenset(get_args(Validation))


@dataclass(frozen=True, slots=True)
class DatasetRow:
    id: int
    name: str
    source: str
    memory_id: str
    token_bits: int
    records_digest: str
    record_count: int
    created_at: float


@dataclass(frozen=True, slots=True)
class RecordRow:
    id: int
    dataset_id: int
    idx: int
    token_id: int
    context_key: int
    slots: bytes  # 48 bytes: 12 little-endian u32


@dataclass(frozen=True, slots=True)
class RunRow:
    id: int
    dataset_id: int
    status: RunStatus
    config_json: str
    config_digest: str
    rng_seed: int
    versions_json: str
    created_at: float
    updated_at: float
    epoch: int
    difficulty: int


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The search state of one record in one run after its last whole generation."""

    epoch: int
    generation: int
    difficulty: int
    population: bytes  # N * 32 seed bytes
    results: bytes  # opaque to the store: the carried evaluation results
    rng_state: str  # JSON
    best_prefix: int
    updated_at: float | None = None


@dataclass(frozen=True, slots=True)
class Kernel:
    """The kernel settings a seed is only meaningful with (docs/kernel.md): its passes,
    zero bits, token bits and jitter memory. Part of a weight's identity: a record keeps
    one best weight per kernel, and a layer is deployed for one kernel."""

    passes: int
    zero_bits: int
    token_bits: int
    memory_id: str

    @property
    def label(self) -> str:
        """The kernel as people read and ``--kernel`` takes it: ``zb=4/p=21/tb=17/mem=<12 hex>``."""
        return f"zb={self.zero_bits}/p={self.passes}/tb={self.token_bits}/mem={self.memory_id[:12]}"

    def to_json(self) -> dict[str, Any]:
        return {
            "passes": self.passes,
            "zero_bits": self.zero_bits,
            "token_bits": self.token_bits,
            "memory_id": self.memory_id,
        }


@dataclass(frozen=True, slots=True)
class WeightRow:
    """The best seed found for a record under one kernel. ``id``, ``created_at`` are set
    by the store. ``passes``, ``zero_bits`` and ``token_bits`` (with ``memory_id``) are
    the kernel it was found with; their defaults are the kernel's own (docs/kernel.md)."""

    record_id: int
    run_id: int
    token_id: int
    context_key: int
    slots: bytes
    seed: bytes  # 32 bytes
    output: int
    golden_nonce: int
    prefix_bits: int
    difficulty_bits: int
    fitness: float
    generation: int
    epoch: int
    memory_id: str
    layer: int = 0
    validation: Validation = "unvalidated"
    id: int | None = None
    created_at: float | None = None
    passes: int = 21
    zero_bits: int = 0
    token_bits: int = 17

    @property
    def kernel(self) -> Kernel:
        return Kernel(self.passes, self.zero_bits, self.token_bits, self.memory_id)


@dataclass(frozen=True, slots=True)
class Event:
    """Something worth keeping in the run's history. ``id``, ``at`` are set by the store."""

    kind: str
    payload: dict[str, Any] = field(default_factory=dict)
    run_id: int | None = None
    record_id: int | None = None
    id: int | None = None
    at: float | None = None
