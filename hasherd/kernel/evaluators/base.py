"""The one interface every evaluator implements, and the checks in front of it.

An evaluator computes the kernel loop (kernel.md, "The loop") for one record's slots and a
batch of N seeds (1 <= N <= 4096) against a jitter memory. Inputs are validated here, once,
in Python, so a bad value becomes an ``InputError`` naming the field, never a crash inside
a compiled kernel. Subclasses implement ``_evaluate`` over an already checked request.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from hasherd.errors import EvaluatorError, InputError
from hasherd.kernel import spec
from hasherd.kernel.memory import JitterMemory, as_memory

MAX_BATCH = 4096


@dataclass(frozen=True)
class EvalRequest:
    """A validated evaluation request."""

    slots: np.ndarray  # (12,) uint32
    seeds: np.ndarray  # (N, 32) uint8, C-contiguous
    memory: JitterMemory
    passes: int
    zero_bits: int
    trace: bool
    nonce_space: int

    @property
    def n(self) -> int:
        return int(self.seeds.shape[0])


@dataclass(frozen=True)
class Trace:
    """Per-pass values (shape (N, P)) and the header handed to the final pass."""

    pass_keys: np.ndarray  # uint32
    pass_nonces: np.ndarray  # uint32
    jitters: np.ndarray  # uint32
    jitter_found: np.ndarray  # bool
    final_header: np.ndarray  # (N, 80) uint8


@dataclass(frozen=True)
class EvalResult:
    """What an evaluator returns for N seeds; row i belongs to seed i."""

    output: np.ndarray  # (N,) uint32: BE32 of the final digest
    golden_nonce: np.ndarray  # (N,) uint32: the final pass's nonce
    ntime_roll: np.ndarray  # (N,) uint32: the final pass's ntime roll (0 almost always)
    final_digest: np.ndarray  # (N, 32) uint8
    last_key: np.ndarray  # (N,) uint32: key of pass P-1 (the stability reward's input)
    dsha: int = 0  # double SHA-256 of a header actually computed for the whole batch
    compressions: int = 0  # SHA-256 compressions actually computed (shortcuts excluded)
    trace: Trace | None = None

    def __len__(self) -> int:
        return int(self.output.shape[0])


def as_seed_array(seeds: Any, field: str = "seeds") -> np.ndarray:
    """Seeds as a C-contiguous (N, 32) uint8 array, 1 <= N <= MAX_BATCH."""
    if isinstance(seeds, np.ndarray):
        if seeds.dtype != np.uint8 or seeds.ndim != 2 or seeds.shape[1] != spec.SEED_BYTES:
            raise InputError(
                field,
                f"expected an (N, {spec.SEED_BYTES}) uint8 array, got {seeds.dtype} {seeds.shape}",
            )
        arr = np.ascontiguousarray(seeds)
    else:
        if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence):
            raise InputError(field, "expected a sequence of 32-byte seeds")
        rows = [spec.check_seed(s, f"{field}[{i}]") for i, s in enumerate(seeds)]
        arr = np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(len(rows), spec.SEED_BYTES)
    if not 1 <= arr.shape[0] <= MAX_BATCH:
        raise InputError(field, f"batch of {arr.shape[0]} seeds is outside 1..{MAX_BATCH}")
    return arr


def make_request(
    slots: Any,
    seeds: Any,
    memory: Any,
    passes: int = spec.DEFAULT_PASSES,
    zero_bits: int = 0,
    *,
    trace: bool = False,
    nonce_space: int = spec.NONCE_SPACE,
) -> EvalRequest:
    if (
        isinstance(slots, np.ndarray)
        and slots.dtype == np.uint32
        and slots.shape == (spec.N_SLOTS,)
    ):
        s = slots.copy()  # in range by construction
    else:
        s = np.array(spec.check_slots(slots), dtype=np.uint32)
    if isinstance(nonce_space, bool) or not isinstance(nonce_space, int):
        raise InputError("nonce_space", "expected an integer")
    if not 1 <= nonce_space <= spec.NONCE_SPACE:
        raise InputError("nonce_space", f"{nonce_space} is outside 1..2^32")
    return EvalRequest(
        slots=s,
        seeds=as_seed_array(seeds),
        memory=as_memory(memory),
        passes=spec.check_passes(passes),
        zero_bits=spec.check_zero_bits(zero_bits),
        trace=bool(trace),
        nonce_space=nonce_space,
    )


class Evaluator(ABC):
    """Base class of all evaluators (reference, numba, later CUDA, chips, RPC)."""

    name: ClassVar[str]
    #: Zero-bit settings this evaluator can serve; a chip serves only its own.
    description: ClassVar[str] = ""

    def supports(self, zero_bits: int) -> bool:
        return 0 <= zero_bits <= spec.MAX_ZERO_BITS

    @property
    def threads(self) -> int:
        return 1

    def warm_up(self) -> float:
        """Load or compile whatever the evaluator needs; returns the seconds it took."""
        return 0.0

    def close(self) -> None:  # noqa: B027 - a no-op unless the evaluator holds a device
        """Release what the evaluator holds (a port, a socket); called on its thread."""

    def device_stats(self) -> dict[str, Any] | None:
        """A hardware evaluator's counters (``{"device": {...}, "chips": [{...}]}``, every
        value a number but the strings ``device.path`` and ``device.driver``); None for
        the simulators. Read from another thread: a cheap snapshot, never blocking."""
        return None

    def evaluate(
        self,
        slots: Any,
        seeds: Any,
        memory: Any,
        passes: int = spec.DEFAULT_PASSES,
        zero_bits: int = 0,
        *,
        trace: bool = False,
        nonce_space: int = spec.NONCE_SPACE,
    ) -> EvalResult:
        """Run the kernel loop for every seed; see the module docstring."""
        req = make_request(
            slots, seeds, memory, passes, zero_bits, trace=trace, nonce_space=nonce_space
        )
        return self.evaluate_request(req)

    def evaluate_request(self, req: EvalRequest) -> EvalResult:
        """Evaluate an already validated request (hot paths build requests once)."""
        return self._evaluate(req)

    def evaluate_many(self, reqs: Sequence[EvalRequest]) -> list[EvalResult]:
        """Several validated requests (several records' batches); an evaluator that can
        run them in one go (one kernel launch) overrides this. Stops between requests
        once aborted."""
        out = []
        for r in reqs:
            self.check_abort()
            out.append(self.evaluate_request(r))
        return out

    # -- abort: a call that nobody waits for any more stops early ------------------------

    @property
    def abort_flag(self) -> np.ndarray:
        """One byte, 1 once ``abort()`` was called: the compiled drivers read it at a
        coarse grain (between chunks, passes or nonce sweeps), since a numba call cannot
        be interrupted from Python."""
        flag = self.__dict__.get("_abort_flag")
        if flag is None:  # setdefault: two threads asking first get the same array
            flag = self.__dict__.setdefault("_abort_flag", np.zeros(1, dtype=np.uint8))
        return flag  # type: ignore[no-any-return]

    def abort(self) -> None:
        """Ask the call in progress to return soon, raising ``EvaluatorError`` (safe from
        any thread; an evaluator that cannot stop finishes its call). Sticks until
        ``clear_abort``."""
        self.abort_flag[0] = 1

    def clear_abort(self) -> None:
        """Let the next call run (its caller is the one that clears)."""
        self.abort_flag[0] = 0

    def check_abort(self) -> None:
        """Raise ``EvaluatorError`` when the call was aborted: its outputs are meaningless."""
        if self.abort_flag[0]:
            raise EvaluatorError(self.name, "aborted")

    @abstractmethod
    def _evaluate(self, req: EvalRequest) -> EvalResult: ...
