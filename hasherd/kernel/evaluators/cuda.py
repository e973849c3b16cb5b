"""The CUDA evaluator: the kernel loop of kernel.md on an NVIDIA GPU through numba-cuda.

Everything, traces included, runs on the device (``hasherd.kernel.cuda_kernels``): one
thread per candidate at k = 0, one block per candidate with threads over nonces at k > 0.
The host side keeps what a trainer calls generation after generation:

* device buffers in a grow-only pool: two slots, each with its own CUDA stream, pinned host
  buffers and device buffers; a call whose sizes fit allocates nothing;
* the jitter memory uploaded once per memory (cache keyed by ``memory_id``, the last
  memory object also by identity, so its id is not even looked at again);
* ``evaluate_many`` groups requests that can share a launch (same memory, passes, k and
  nonce bound), cuts groups into launches of at most ``launch_max`` candidates, and
  alternates the launches between the two slots, so the host packs the next launch and
  unpacks the previous one while the GPU runs. Host work, not the GPU, bounds large calls
  (H100, ``tools/gpu-check.sh``: ``evaluate_many`` of 16 x 4096 candidates 49.6 M/s and
  64 x 4096 41.5 M/s end to end; docs/gpu.md).
* an aborted call (``Evaluator.abort``) stops before its next launch; a launch already
  queued runs to its end.

``dsha`` and ``compressions`` report the work done: at k = 0 three compressions per
double SHA-256 actually hashed (the zone-1 shortcut's skipped passes are not counted);
at k > 0 every nonce a thread hashed (a round hashes a whole block of nonces, so this is
up to a block more than the nonces before the golden one) at two compressions each, plus
one block-1 midstate per pass.

A machine without numba-cuda, an NVIDIA driver or a GPU gets an ``EvaluatorError``, never
made-up values. With ``NUMBA_ENABLE_CUDASIM=1`` in the environment before numba is
imported, numba-cuda's simulator runs the same kernels on the CPU (slowly; tests only).
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import importlib.util
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np

from hasherd.errors import EvaluatorError
from hasherd.kernel.evaluators.base import EvalRequest, EvalResult, Evaluator, Trace
from hasherd.kernel.evaluators.numba_cpu import words_to_bytes
from hasherd.kernel.memory import JitterMemory

NAME = "cuda"
K0_BLOCK = 128  # threads per block at k = 0 (fewer when that leaves SMs idle)
SCAN_BLOCK = 256  # most threads per block (nonce lanes per round) at k > 0
MIN_BLOCK = 32
MEMORY_CACHE = 4  # jitter memories kept on the device
SLOTS = 2  # launches in flight in evaluate_many
LAUNCH_MAX = 131072  # candidates per launch; a larger group is split so copies overlap


def simulator_enabled() -> bool:
    """True when numba-cuda will run (or runs) its CPU simulator instead of a GPU."""
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0").strip() not in ("", "0")


# Where a loaded NVIDIA driver shows its GPUs: device nodes (Linux, WSL2) or procfs.
GPU_NODES = ("/dev/nvidia[0-9]*", "/dev/dxg", "/proc/driver/nvidia/gpus/*")


@cache
def _driver_has_gpu() -> bool:
    """The NVIDIA driver's library loads and a GPU device node exists. Cheap, and it does
    not initialise CUDA: a process that called cuInit and then forks leaves its children
    without CUDA. Whether the GPU really works is the evaluator's constructor's answer."""
    if not any(glob.glob(pattern) for pattern in GPU_NODES):
        return False
    for lib in ("libcuda.so.1", "libcuda.so"):
        try:
            ctypes.CDLL(lib)
        except OSError:
            continue
        return True
    return False


def available() -> bool:
    """numba-cuda is installed and there is a GPU (or the simulator is asked for)."""
    try:
        if importlib.util.find_spec("numba_cuda") is None:
            return False
        return simulator_enabled() or _driver_has_gpu()
    except Exception:  # a probe answers, it never raises
        return False


def factory(arg: str | None) -> Evaluator:
    """``cuda`` or ``cuda:N`` (device index N, default 0)."""
    if arg is None or arg == "":
        return CudaEvaluator()
    try:
        device = int(arg)
    except ValueError:
        raise EvaluatorError(NAME, f"argument must be a device index, got {arg!r}") from None
    return CudaEvaluator(device)


def _cuda() -> Any:
    try:
        from numba import cuda
    except ImportError as exc:
        raise EvaluatorError(NAME, f"numba-cuda is not installed ({exc})") from None
    return cuda


def _error_types() -> tuple[type[BaseException], ...]:
    """numba-cuda's driver, compiler and support errors (the simulator has fewer)."""
    found: list[type[BaseException]] = []
    for module, names in (
        (
            "numba.cuda.cudadrv.error",
            (
                "CudaSupportError",
                "CudaDriverError",
                "NvvmError",
                "NvvmSupportError",
                "NvrtcError",
                "CudaRuntimeError",
            ),
        ),
        ("numba.cuda.cudadrv.driver", ("CudaAPIError", "LinkerError")),
        ("cuda.core._utils.cuda_utils", ("CUDAError",)),  # numba-cuda 0.30 launches through it
    ):
        with contextlib.suppress(ImportError):  # ImportError covers a missing parent too
            mod = importlib.import_module(module)
            found += [getattr(mod, n) for n in names if isinstance(getattr(mod, n, None), type)]
    return tuple(found)


def _quiet_low_occupancy() -> None:
    """numba-cuda warns on every launch of fewer blocks than the GPU has multiprocessors;
    small populations are normal here (a conformance case is one candidate)."""
    with contextlib.suppress(ImportError, AttributeError):
        from numba.cuda.core import config

        config.CUDA_LOW_OCCUPANCY_WARNINGS = 0


def _driver() -> Any:
    from numba.cuda.cudadrv import driver

    return driver


def _round_up(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


@dataclass
class _DeviceMemory:
    """A jitter memory's index arrays on the device, in the kernels' flat layout."""

    memory_id: str
    mu: Any  # uint32: z1_keys, z1_vals, z2_keys, z2_vals
    mi: Any  # int64: z2_start, z2_pos
    z1_n: np.int64
    z2_n: np.int64


@dataclass
class _Slot:
    """One launch's buffers: a stream, pinned host buffers and device buffers, grow-only
    (sizes in elements)."""

    cuda: Any
    stream: Any
    caps: dict[str, int] = field(default_factory=dict)
    host: dict[str, np.ndarray] = field(default_factory=dict)
    dev: dict[str, Any] = field(default_factory=dict)
    allocations: int = 0

    def buffer(self, name: str, size: int, dtype: Any) -> None:
        """Make sure buffer ``name`` holds ``size`` elements (a power of two, at least 1024)."""
        if size <= self.caps.get(name, 0):
            return
        cap = max(_round_up(size), 1024)
        self.host[name] = self.cuda.pinned_array((cap,), dtype=dtype)
        self.dev[name] = self.cuda.device_array((cap,), dtype=dtype, stream=self.stream)
        self.caps[name] = cap
        self.allocations += 1

    def upload(self, name: str, size: int) -> None:
        """The first ``size`` elements to the device (asynchronously, on the slot's stream;
        the driver call takes whole arrays and a byte count: slicing a device array costs
        more than the copy of a small launch)."""
        nbytes = size * self.host[name].itemsize
        _driver().host_to_device(self.dev[name], self.host[name], nbytes, stream=self.stream)

    def download(self, name: str, size: int) -> None:
        nbytes = size * self.host[name].itemsize
        _driver().device_to_host(self.host[name], self.dev[name], nbytes, stream=self.stream)


@dataclass
class _Launch:
    """A launch in flight: what to read back and how to split it into results."""

    slot: _Slot
    reqs: list[EvalRequest]
    index: list[int]  # positions of reqs in the caller's list
    offsets: list[int]
    trace_width: int  # 0 without a trace
    memory: _DeviceMemory  # held so the cache cannot free it while the kernel runs


class CudaEvaluator(Evaluator):
    name = NAME
    description = "numba-cuda kernels on an NVIDIA GPU: a thread per candidate, or per nonce"

    def __init__(
        self,
        device: int = 0,
        *,
        block: int = K0_BLOCK,
        scan_block: int = SCAN_BLOCK,
        launch_max: int = LAUNCH_MAX,
        memory_cache: int = MEMORY_CACHE,
    ) -> None:
        if device < 0:
            raise EvaluatorError(NAME, f"device index must be >= 0, got {device}")
        self._cuda = _cuda()
        self._errors = _error_types()
        self._kernels: Any = None
        with self._translate():
            kn = self._kernel_module()  # generates the SHA-256 code; compiles nothing yet
        for what, value in (("block", block), ("scan_block", scan_block)):
            if not 1 <= value <= kn.MAX_BLOCK:
                raise EvaluatorError(NAME, f"{what} must be in 1..{kn.MAX_BLOCK}, got {value}")
        self._device = device
        self._block = block
        self._scan_block = scan_block
        self._launch_max = max(1, launch_max)
        self._cache_size = max(1, memory_cache)
        self._lock = threading.Lock()
        self._memories: OrderedDict[str, _DeviceMemory] = OrderedDict()
        self._last: tuple[JitterMemory, _DeviceMemory] | None = None
        self._uploads = 0
        with self._translate():
            if not self._cuda.is_available():
                raise EvaluatorError(NAME, "no CUDA GPU or driver on this machine")
            count = len(self._cuda.gpus)
            if device >= count:
                raise EvaluatorError(NAME, f"device {device} does not exist ({count} found)")
            dev = self._cuda.gpus[device]
            with dev:
                gpu = self._cuda.get_current_device()
                self.device_name = _text(getattr(gpu, "name", "simulator"))
                self.multiprocessors = int(getattr(gpu, "MULTIPROCESSOR_COUNT", 1))
                self._slots = [_Slot(self._cuda, self._cuda.stream()) for _ in range(SLOTS)]
        _quiet_low_occupancy()

    # -- the Evaluator interface ---------------------------------------------------------------

    @property
    def threads(self) -> int:
        """Host threads used (one); the GPU's parallelism is ``multiprocessors``."""
        return 1

    def warm_up(self) -> float:
        """Compile both kernels: numba-cuda compiles them in every process (13-19 s measured
        on an H100 host); nothing is cached on disk, the SHA-256 code being generated."""
        t0 = time.perf_counter()
        seeds = np.zeros((1, 32), dtype=np.uint8)
        for k in (0, 1):
            self.evaluate([0] * 12, seeds, JitterMemory.empty(), 2, k, trace=False)
        return time.perf_counter() - t0

    def stats(self) -> dict[str, int]:
        """Buffer allocations and memory uploads so far (the pool and cache at work)."""
        return {
            "allocations": sum(s.allocations for s in self._slots),
            "memory_uploads": self._uploads,
            "memories_cached": len(self._memories),
        }

    def _evaluate(self, req: EvalRequest) -> EvalResult:
        return self.evaluate_many([req])[0]

    def evaluate_many(self, reqs: Sequence[EvalRequest]) -> list[EvalResult]:
        """All requests, those that share memory, passes, k and nonce bound in one launch
        each; launches alternate between the two slots' streams."""
        results: list[EvalResult | None] = [None] * len(reqs)
        with self._lock, self._context():
            in_flight: list[_Launch | None] = [None] * SLOTS
            try:
                for g, index in enumerate(self._plan(reqs)):
                    self.check_abort()  # between launches: a launch itself runs to its end
                    s = g % SLOTS
                    pending = in_flight[s]
                    if pending is not None:
                        self._collect(pending, results)
                    in_flight[s] = None
                    in_flight[s] = self._launch(self._slots[s], [reqs[i] for i in index], index)
                for launch in in_flight:
                    if launch is not None:
                        self._collect(launch, results)
            finally:
                self._drain()
        done = [r for r in results if r is not None]
        if len(done) != len(reqs):  # never expected: every request is in exactly one launch
            raise EvaluatorError(NAME, f"{len(reqs) - len(done)} request(s) got no result")
        return done

    def _drain(self) -> None:
        """Wait for both streams, so that no copy still reads or writes a pinned buffer
        when the next call packs into it (after an error, too)."""
        for slot in self._slots:
            with contextlib.suppress(*self._errors):
                slot.stream.synchronize()

    def _plan(self, reqs: Sequence[EvalRequest]) -> list[list[int]]:
        """Launches: requests grouped by what a launch shares (memory, passes, k, nonce
        bound), each group cut at request boundaries into at most ``launch_max``
        candidates."""
        groups: dict[tuple[int, int, int, int], list[int]] = {}
        for i, r in enumerate(reqs):
            groups.setdefault((id(r.memory), r.passes, r.zero_bits, r.nonce_space), []).append(i)
        launches: list[list[int]] = []
        for index in groups.values():
            chunk: list[int] = []
            size = 0
            for i in index:
                if chunk and size + reqs[i].n > self._launch_max:
                    launches.append(chunk)
                    chunk, size = [], 0
                chunk.append(i)
                size += reqs[i].n
            launches.append(chunk)
        return launches

    # -- device work ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _translate(self) -> Iterator[None]:
        """CUDA driver, compiler and support errors become EvaluatorErrors."""
        try:
            yield
        except self._errors as exc:
            raise EvaluatorError(NAME, f"{type(exc).__name__}: {exc}") from exc

    @contextlib.contextmanager
    def _context(self) -> Iterator[None]:
        """This evaluator's device current in this thread, errors translated."""
        with self._translate(), self._cuda.gpus[self._device]:
            yield

    def _kernel_module(self) -> Any:
        if self._kernels is None:
            from hasherd.kernel import cuda_kernels

            self._kernels = cuda_kernels
        return self._kernels

    def _device_memory(self, memory: JitterMemory) -> _DeviceMemory:
        """The memory's arrays on the device, uploaded once per memory."""
        if self._last is not None and self._last[0] is memory:
            return self._last[1]
        entry = self._memories.get(memory.memory_id)
        if entry is None:
            mu = np.concatenate(
                [memory.z1_keys, memory.z1_vals, memory.z2_keys, memory.z2_vals, [0]]
            ).astype(np.uint32)
            mi = np.concatenate([memory.z2_start, memory.z2_pos]).astype(np.int64)
            entry = _DeviceMemory(
                memory.memory_id,
                self._cuda.to_device(mu),
                self._cuda.to_device(mi),
                np.int64(len(memory.z1_keys)),
                np.int64(len(memory.z2_keys)),
            )
            self._uploads += 1
            self._memories[memory.memory_id] = entry
            while len(self._memories) > self._cache_size:
                self._memories.popitem(last=False)
        self._memories.move_to_end(memory.memory_id)
        self._last = (memory, entry)
        return entry

    def _launch(self, slot: _Slot, reqs: list[EvalRequest], index: list[int]) -> _Launch:
        """Pack, upload, launch and queue the read-back of one launch; returns at once."""
        kn = self._kernel_module()
        first = reqs[0]
        mem = self._device_memory(first.memory)
        offsets = [0]
        for r in reqs:
            offsets.append(offsets[-1] + r.n)
        n, nrec, p = offsets[-1], len(reqs), first.passes
        tw = 4 * p + 20 if any(r.trace for r in reqs) else 0
        size = 9 * n + 13 * nrec
        slot.buffer("inp", size, np.uint32)
        slot.buffer("out", kn.OUT_WORDS * n, np.uint32)
        slot.buffer("tr", max(n * tw, 1), np.uint32)
        inp = slot.host["inp"]
        seeds = inp[: 8 * n].view(np.uint8).reshape(n, 32)
        for i, r in enumerate(reqs):
            seeds[offsets[i] : offsets[i + 1]] = r.seeds  # raw bytes; the GPU reads them LE
            inp[8 * n + offsets[i] : 8 * n + offsets[i + 1]] = i
            inp[9 * n + 12 * i : 9 * n + 12 * i + 12] = r.slots
            inp[9 * n + 12 * nrec + i] = kn.FLAG_TRACE if r.trace else 0
        slot.upload("inp", size)
        d, st = slot.dev, slot.stream
        args = (mem.mu, mem.mi, mem.z1_n, mem.z2_n)
        if first.zero_bits == 0:
            block = self._k0_block(n)
            kn.k0_kernel[(n + block - 1) // block, block, st](
                np.int64(n),
                np.int64(nrec),
                d["inp"],
                np.int64(p),
                *args,
                d["out"],
                d["tr"],
                np.int64(tw),
            )
        else:
            slot.buffer("work", 2 * n, np.int64)
            block = min(self._scan_block, max(MIN_BLOCK, 1 << min(first.zero_bits, 10)))
            # a round hashes `block` nonces; about 2^k are needed per pass
            kn.scan_kernel[n, block, st](
                np.int64(n),
                np.int64(nrec),
                d["inp"],
                np.int64(p),
                np.int64(first.zero_bits),
                np.int64(first.nonce_space),
                *args,
                d["out"],
                d["work"],
                d["tr"],
                np.int64(tw),
            )
            slot.download("work", 2 * n)
        slot.download("out", kn.OUT_WORDS * n)
        if tw:
            slot.download("tr", n * tw)
        return _Launch(slot, reqs, index, offsets, tw, mem)

    def _k0_block(self, n: int) -> int:
        """The configured block size, halved while that leaves multiprocessors idle."""
        block = self._block
        while block > MIN_BLOCK and (n + block - 1) // block < self.multiprocessors:
            block //= 2
        return block

    def _collect(self, launch: _Launch, results: list[EvalResult | None]) -> None:
        """Wait for a launch and turn its read-back into one result per request."""
        kn = self._kernel_module()
        launch.slot.stream.synchronize()
        n = launch.offsets[-1]
        out = launch.slot.host["out"]

        def row(r: int) -> np.ndarray:
            return out[r * n : (r + 1) * n].copy()  # fresh arrays, sliced per request below

        digest = out[: 8 * n].view(np.uint8).reshape(n, 32).copy()
        output, last_key = row(kn.ROW_OUTPUT), row(kn.ROW_KEY)
        nonce, roll = row(kn.ROW_NONCE), row(kn.ROW_ROLL)
        if launch.reqs[0].zero_bits == 0:
            dsha = out[kn.ROW_DSHA * n : (kn.ROW_DSHA + 1) * n]
            mids = None
        else:
            work = launch.slot.host["work"]
            dsha, mids = work[:n], work[n : 2 * n]
        trace = None
        if launch.trace_width:
            trace = launch.slot.host["tr"][: n * launch.trace_width].reshape(n, -1).copy()
        for i, r in enumerate(launch.reqs):
            lo, hi = launch.offsets[i], launch.offsets[i + 1]
            hashed = int(dsha[lo:hi].sum(dtype=np.int64))
            # 3 compressions a double SHA at k = 0; at k > 0 2 a nonce, plus the midstates
            blocks = 3 * hashed if mids is None else 2 * hashed + int(mids[lo:hi].sum())
            results[launch.index[i]] = EvalResult(
                output[lo:hi],
                nonce[lo:hi],
                roll[lo:hi],
                digest[lo:hi],
                last_key[lo:hi],
                hashed,
                blocks,
                _trace(trace[lo:hi], r.passes) if r.trace and trace is not None else None,
            )


def _trace(rows: np.ndarray, p: int) -> Trace:
    """A request's trace from its rows of the trace buffer (layout: cuda_kernels)."""
    return Trace(
        rows[:, :p],
        rows[:, p : 2 * p],
        rows[:, 2 * p : 3 * p],
        rows[:, 3 * p : 4 * p] != 0,
        words_to_bytes(rows[:, 4 * p : 4 * p + 20]),
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
