"""Runs the CUDA evaluator under numba-cuda's simulator and prints what it computed.

Usage: ``python cuda_sim_check.py JOBS.json`` (``test_cuda_sim.py`` writes the file and
checks the output). numba reads ``NUMBA_ENABLE_CUDASIM`` when it is first imported, so
this runs in a process of its own and sets the variable before importing anything.

The jobs file: ``{"scan_block": B, "launch_max": L, "memories": {NAME: FRAMES},
"jobs": [JOB]}`` (B and L are the evaluator's arguments), where a job is ``{"many": BOOL,
"requests": [REQ]}`` and a request ``{"memory": NAME, "slots": [12], "seeds": [HEX],
"passes": P, "zero_bits": K, "trace": BOOL, "nonce_space": N}``. A job with ``many`` goes
through ``evaluate_many`` in one call, otherwise each request through
``evaluate_request``. The output (one JSON object on stdout) has, per job, the results of
its requests with every field of ``EvalResult``, plus the evaluator's ``stats()`` after
each job and the answers of the registry hooks.
"""

from __future__ import annotations

import os

os.environ["NUMBA_ENABLE_CUDASIM"] = "1"

import json
import sys
import time
import warnings
from typing import Any

import numpy as np

from hasherd.errors import EvaluatorError
from hasherd.kernel.evaluators import cuda as cuda_eval
from hasherd.kernel.evaluators.base import EvalResult, make_request
from hasherd.kernel.memory import JitterMemory


def _result(r: EvalResult) -> dict[str, Any]:
    out: dict[str, Any] = {
        "output": r.output.tolist(),
        "golden_nonce": r.golden_nonce.tolist(),
        "ntime_roll": r.ntime_roll.tolist(),
        "final_digest": [bytes(row).hex() for row in r.final_digest],
        "last_key": r.last_key.tolist(),
        "dsha": r.dsha,
        "compressions": r.compressions,
        "trace": None,
    }
    if r.trace is not None:
        t = r.trace
        out["trace"] = {
            "pass_keys": t.pass_keys.tolist(),
            "pass_nonces": t.pass_nonces.tolist(),
            "jitters": t.jitters.tolist(),
            "jitter_found": t.jitter_found.tolist(),
            "final_header": [bytes(row).hex() for row in t.final_header],
        }
    return out


def _errors() -> dict[str, str]:
    """The typed errors a bad device index or argument gives (message text)."""
    found: dict[str, str] = {}
    for name, make in (
        ("device_out_of_range", lambda: cuda_eval.CudaEvaluator(7)),
        ("bad_argument", lambda: cuda_eval.factory("gpu0")),
        ("negative_device", lambda: cuda_eval.factory("-1")),
    ):
        try:
            make()
            found[name] = "no error"
        except EvaluatorError as exc:
            found[name] = f"EvaluatorError: {exc}"
    return found


def main(path: str) -> int:
    with open(path) as f:
        spec = json.load(f)
    warnings.simplefilter("error")  # an overflow warning from numpy would mean wrong typing
    memories = {name: JitterMemory.from_frames(f) for name, f in spec["memories"].items()}
    ev = cuda_eval.CudaEvaluator(scan_block=spec["scan_block"], launch_max=spec["launch_max"])
    jobs = []
    for job in spec["jobs"]:
        reqs = [
            make_request(
                np.array(r["slots"], dtype=np.uint32),
                [bytes.fromhex(s) for s in r["seeds"]],
                memories[r["memory"]],
                r["passes"],
                r["zero_bits"],
                trace=r["trace"],
                nonce_space=r["nonce_space"],
            )
            for r in job["requests"]
        ]
        t0 = time.perf_counter()
        many = job["many"]
        results = ev.evaluate_many(reqs) if many else [ev.evaluate_request(r) for r in reqs]
        seconds = time.perf_counter() - t0
        jobs.append(
            {"results": [_result(r) for r in results], "seconds": seconds, "stats": ev.stats()}
        )
    report = {
        "available": cuda_eval.available(),
        "simulator": cuda_eval.simulator_enabled(),
        "factory": type(cuda_eval.factory(None)).__name__,
        "errors": _errors(),
        "jobs": jobs,
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
