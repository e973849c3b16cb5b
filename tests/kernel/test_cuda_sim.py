"""The CUDA evaluator's kernels under numba-cuda's simulator, against the vectors and the
reference evaluator.

numba reads ``NUMBA_ENABLE_CUDASIM`` at import and this process has imported numba
already, so ``cuda_sim_check.py`` runs the evaluator in a child process and prints what it
computed; every comparison happens here. The simulator runs each GPU thread as a Python
thread (about 2 ms per SHA-256 compression), so the cases are few and small: a subset of
the loop vectors (k = 0, zone-1 hits, k = 1 and 4 scans, the k = 8 scan that wraps past
2^32 - 1), random requests against the reference, several records in one launch, and the
ntime roll through a test-only nonce bound. Real-GPU checks: ``tools/gpu-check.sh``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hasherd.kernel.evaluators.base import EvalResult, make_request
from hasherd.kernel.evaluators.reference import ReferenceEvaluator
from hasherd.kernel.memory import JitterMemory

SCRIPT = Path(__file__).with_name("cuda_sim_check.py")
VECTORS = Path(__file__).parents[1] / "data" / "kernel-v1.json"
RNG_SEED = 20261203
SCAN_BLOCK = 8  # nonce lanes per round in the simulator (the GPU default is 256)
LAUNCH_MAX = 4  # candidates per launch: the multi-record jobs need several launches
TIMEOUT_S = 600

# the first test pays for the simulator run in `sim` (31 s)
pytestmark = pytest.mark.timeout(300)


def _loop_cases(data: dict[str, Any]) -> list[int]:
    """Loop vectors small enough for the simulator, covering what must be covered."""
    cases = data["loop"]
    k0 = [i for i, c in enumerate(cases) if c["zero_bits"] == 0]
    picked = k0[:8]
    picked += [i for i, c in enumerate(cases) if c["zero_bits"] == 1][:2]
    picked += [i for i, c in enumerate(cases) if c["zero_bits"] == 4 and c["jitter_found"][0]][:1]
    picked += [i for i, c in enumerate(cases) if c["zero_bits"] == 8 and c["passes"] <= 3]
    return picked


def _memory_frames(rng: np.random.Generator, m: int, slots: np.ndarray, hit: bool) -> np.ndarray:
    """Frames sharing zone-2 groups with the record; slot 0 present when ``hit``."""
    frames = rng.integers(0, 2**32, size=(m, 12), dtype=np.uint64).astype(np.uint32)
    frames[:, 4] = (frames[:, 4] & 0x3) | (slots[4] & 0xFC)
    frames[:, 10] = rng.integers(0, 16, size=m, dtype=np.uint32) << 12
    if hit:
        frames[m // 2, 0] = slots[0]
        frames[m // 2 + 1, 0] = slots[0]  # a later frame with the same slot 0 must lose
    return frames


class Jobs:
    """The jobs file for the child and, for each job, the requests to check it against."""

    def __init__(self) -> None:
        self.memories: dict[str, list[list[int]]] = {}
        self.jobs: list[dict[str, Any]] = []

    def memory(self, name: str, frames: Any) -> JitterMemory:
        self.memories[name] = np.asarray(frames, dtype=np.uint32).reshape(-1, 12).tolist()
        return JitterMemory.from_frames(self.memories[name])

    def add(self, reqs: list[dict[str, Any]], many: bool = False) -> int:
        self.jobs.append({"many": many, "requests": reqs})
        return len(self.jobs) - 1

    def write(self, path: Path) -> None:
        spec = {
            "scan_block": SCAN_BLOCK,
            "launch_max": LAUNCH_MAX,
            "memories": self.memories,
            "jobs": self.jobs,
        }
        path.write_text(json.dumps(spec))


def _req(mem: str, slots: Any, seeds: np.ndarray, passes: int, k: int, **kw: Any) -> dict[str, Any]:
    return {
        "memory": mem,
        "slots": [int(x) for x in slots],
        "seeds": [bytes(s).hex() for s in seeds],
        "passes": passes,
        "zero_bits": k,
        "trace": kw.get("trace", False),
        "nonce_space": kw.get("nonce_space", 2**32),
    }


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Build every job, run the child once, return the jobs and its report."""
    if importlib.util.find_spec("numba_cuda") is None:
        pytest.fail(
            "numba-cuda is not installed: it is a test dependency (pip install -e '.[test]')"
        )
    data = json.loads(VECTORS.read_text())
    jobs = Jobs()
    ctx: dict[str, Any] = {"data": data, "jobs": jobs, "vector_jobs": {}}

    for i in _loop_cases(data):
        c = data["loop"][i]
        jobs.memory(f"v{i}", c["memory"] or np.zeros((0, 12)))
        seeds = np.frombuffer(bytes.fromhex(c["seed"]), dtype=np.uint8).reshape(1, 32)
        reqs = [
            _req(f"v{i}", c["slots"], seeds, c["passes"], c["zero_bits"], trace=t)
            for t in (True, False)
        ]
        ctx["vector_jobs"][i] = jobs.add(reqs)

    rng = np.random.default_rng(RNG_SEED)
    checks: list[tuple[int, list[tuple[Any, ...]]]] = []  # job, request args for the reference
    for n, (passes, k, hit, trace) in enumerate(
        [
            (21, 0, True, False),
            (21, 0, False, True),
            (9, 0, True, True),
            (1, 0, True, False),
            (5, 3, True, False),
            (12, 2, False, True),
        ]
    ):
        slots = rng.integers(0, 2**32, size=12, dtype=np.uint64).astype(np.uint32)
        mem = f"r{n}"
        memory = jobs.memory(mem, _memory_frames(rng, 24, slots, hit))
        seeds = rng.integers(0, 256, size=(3, 32), dtype=np.uint8)
        job = jobs.add([_req(mem, slots, seeds, passes, k, trace=trace)])
        checks.append((job, [(slots, seeds, memory, passes, k, trace, 2**32)]))

    # Several records in one call (one memory, k = 0; cut into launches of LAUNCH_MAX
    # candidates at most, alternating the two streams), and a mix of k that needs two.
    base = rng.integers(0, 2**32, size=12, dtype=np.uint64).astype(np.uint32)
    shared = jobs.memory("many", _memory_frames(rng, 40, base, hit=True))
    many: list[tuple[Any, ...]] = []
    for n, (size, trace) in enumerate([(3, False), (1, False), (2, True)]):
        slots = base.copy()
        if n == 1:
            slots[0] ^= 0x5A5A  # no zone-1 hit
        slots[2] = n
        many.append(
            (
                slots,
                rng.integers(0, 256, size=(size, 32), dtype=np.uint8),
                shared,
                21,
                0,
                trace,
                2**32,
            )
        )
    mixed = [many[0], (many[1][0], many[1][1], shared, 6, 2, False, 2**32), many[2]]
    for group in (many, mixed):
        job = jobs.add([_req("many", *a[:2], a[3], a[4], trace=a[5]) for a in group], many=True)
        checks.append((job, group))

    # The ntime roll: a nonce space of 3 often holds no nonce meeting k = 3.
    slots = rng.integers(0, 2**32, size=12, dtype=np.uint64).astype(np.uint32)
    roll_mem = jobs.memory("roll", _memory_frames(rng, 10, slots, hit=False))
    seeds = rng.integers(0, 256, size=(3, 32), dtype=np.uint8)
    seeds[0, 28:32] = 0xFF  # n0 = 2^32 - 1: the scan wraps too
    job = jobs.add([_req("roll", slots, seeds, 3, 3, trace=True, nonce_space=3)])
    checks.append((job, [(slots, seeds, roll_mem, 3, 3, True, 3)]))
    ctx["roll_job"] = job

    # The same request twice: the second call allocates nothing and uploads nothing.
    ctx["repeat_jobs"] = (
        jobs.add([_req("r0", *jobs_slots_seeds(checks[0]), 21, 0)]),
        jobs.add([_req("r0", *jobs_slots_seeds(checks[0]), 21, 0)]),
    )

    path = tmp_path_factory.mktemp("cuda_sim") / "jobs.json"
    jobs.write(path)
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    ctx["seconds"] = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-4000:]
    ctx["report"] = json.loads(proc.stdout)
    ctx["checks"] = checks
    return ctx


def jobs_slots_seeds(check: tuple[int, list[tuple[Any, ...]]]) -> tuple[Any, Any]:
    args = check[1][0]
    return args[0], args[1]


def _same(got: dict[str, Any], want: EvalResult) -> None:
    assert got["output"] == want.output.tolist()
    assert got["golden_nonce"] == want.golden_nonce.tolist()
    assert got["ntime_roll"] == want.ntime_roll.tolist()
    assert got["final_digest"] == [bytes(r).hex() for r in want.final_digest]
    assert got["last_key"] == want.last_key.tolist()
    if want.trace is None:
        assert got["trace"] is None
        return
    t, g = want.trace, got["trace"]
    assert g["pass_keys"] == t.pass_keys.tolist()
    assert g["pass_nonces"] == t.pass_nonces.tolist()
    assert g["jitters"] == t.jitters.tolist()
    assert g["jitter_found"] == t.jitter_found.tolist()
    assert g["final_header"] == [bytes(r).hex() for r in t.final_header]


def test_subset_covers_hits_and_scans(sim: dict[str, Any]) -> None:
    cases = [sim["data"]["loop"][i] for i in sim["vector_jobs"]]
    assert any(c["zero_bits"] == 0 and c["jitter_found"][0] for c in cases)  # zone-1 hit
    assert any(c["zero_bits"] == 0 and not c["jitter_found"][0] for c in cases)
    assert {1, 4, 8} <= {c["zero_bits"] for c in cases}


def test_loop_vectors(sim: dict[str, Any]) -> None:
    report = sim["report"]
    for i, job in sim["vector_jobs"].items():
        case = sim["data"]["loop"][i]
        traced, plain = report["jobs"][job]["results"]
        for mode, got in (("trace", traced), ("no trace", plain)):
            where = (i, mode)
            assert got["output"] == [case["output"]], where
            assert got["golden_nonce"] == [case["golden_nonce"]], where
            assert got["final_digest"] == [case["final_digest"]], where
            assert got["last_key"] == [case["pass_keys"][-1]], where
            assert got["ntime_roll"] == [0], where
        t = traced["trace"]
        assert plain["trace"] is None
        assert t["pass_keys"] == [case["pass_keys"]], i
        assert t["pass_nonces"] == [case["pass_nonces"]], i
        assert t["jitters"] == [case["jitters"]], i
        assert t["jitter_found"] == [case["jitter_found"]], i
        assert t["final_header"] == [case["final_header"]], i


def _scan_block(k: int) -> int:
    """Nonce lanes per round the evaluator picks (``CudaEvaluator._launch``)."""
    return min(SCAN_BLOCK, max(32, 1 << k))


def test_work_reported(sim: dict[str, Any]) -> None:
    """k = 0: P + 1 double SHAs, P + 1 - min(8, P - 1) with the zone-1 shortcut (no trace).
    k > 0: every nonce hashed, i.e. whole rounds of ``_scan_block(k)`` nonces up to the
    round holding each golden nonce, two compressions each, plus a midstate per pass."""
    for i, job in sim["vector_jobs"].items():
        case = sim["data"]["loop"][i]
        p, k, hit = case["passes"], case["zero_bits"], case["jitter_found"][0]
        traced, plain = sim["report"]["jobs"][job]["results"]
        for got, skipped in ((traced, 0), (plain, min(8, p - 1) if hit else 0)):
            if k == 0:
                assert got["dsha"] == p + 1 - skipped, i
                assert got["compressions"] == 3 * got["dsha"], i
            else:
                assert got["compressions"] == 2 * got["dsha"] + p + 1 - skipped, i
        if k > 0:
            n0 = int.from_bytes(bytes.fromhex(case["seed"])[28:32], "little")
            block = _scan_block(k)
            golden = [*traced["trace"]["pass_nonces"][0], traced["golden_nonce"][0]]
            rounds = sum(((n - n0) % 2**32) // block + 1 for n in golden)
            assert traced["dsha"] == rounds * block, i


def test_equals_reference(sim: dict[str, Any]) -> None:
    """Random requests, several records in one call, and the ntime roll."""
    ref = ReferenceEvaluator()
    for job, args in sim["checks"]:
        results = sim["report"]["jobs"][job]["results"]
        assert len(results) == len(args)
        for got, (slots, seeds, mem, p, k, trace, space) in zip(results, args, strict=True):
            req = make_request(slots, seeds, mem, p, k, trace=trace, nonce_space=space)
            _same(got, ref.evaluate_request(req))


def test_ntime_roll_happens(sim: dict[str, Any]) -> None:
    [got] = sim["report"]["jobs"][sim["roll_job"]]["results"]
    assert max(got["ntime_roll"]) > 0
    assert max(max(row) for row in got["trace"]["pass_nonces"]) <= 2**32 - 1


def test_buffers_and_memory_are_reused(sim: dict[str, Any]) -> None:
    jobs = sim["report"]["jobs"]
    first, second = (jobs[j] for j in sim["repeat_jobs"])
    assert second["stats"]["allocations"] == first["stats"]["allocations"]
    assert second["stats"]["memory_uploads"] == first["stats"]["memory_uploads"]
    assert first["results"] == second["results"]


def test_memory_uploads_follow_the_cache(sim: dict[str, Any]) -> None:
    """A memory goes up once while it stays among the 4 most recently used (by memory_id:
    equal memories, such as the empty ones of several vectors, share one upload)."""
    ids = {name: JitterMemory.from_frames(f).memory_id for name, f in sim["jobs"].memories.items()}
    cache: OrderedDict[str, None] = OrderedDict()
    uploads = 0
    for spec, got in zip(sim["jobs"].jobs, sim["report"]["jobs"], strict=True):
        for req in spec["requests"]:
            mid = ids[req["memory"]]
            if mid not in cache:
                uploads += 1
                cache[mid] = None
            cache.move_to_end(mid)
            while len(cache) > 4:
                cache.popitem(last=False)
        assert got["stats"]["memory_uploads"] == uploads
        assert got["stats"]["memories_cached"] == len(cache)
    assert uploads < len(sim["jobs"].jobs)


def test_registry_hooks_and_errors(sim: dict[str, Any]) -> None:
    report = sim["report"]
    assert report["available"] is True and report["simulator"] is True
    assert report["factory"] == "CudaEvaluator"
    errors = report["errors"]
    assert (
        errors["device_out_of_range"].startswith("EvaluatorError")
        and "device 7" in errors["device_out_of_range"]
    )
    assert "device index" in errors["bad_argument"]
    assert ">= 0" in errors["negative_device"]


def test_simulator_run_time(sim: dict[str, Any]) -> None:
    """Not a speed test: the child's wall time, printed for whoever tunes the subset."""
    jobs = sim["report"]["jobs"]
    kernels = sum(j["seconds"] for j in jobs)
    print(f"\ncuda simulator: {sim['seconds']:.1f} s in all, {kernels:.1f} s in evaluator calls")
    slowest = sorted(range(len(jobs)), key=lambda j: -jobs[j]["seconds"])[:5]
    print("slowest jobs:", ", ".join(f"#{j} {jobs[j]['seconds']:.1f} s" for j in slowest))
    assert sim["seconds"] > 0
