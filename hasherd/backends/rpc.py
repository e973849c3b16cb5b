"""The ``rpc`` evaluator: the kernel loop hashed here, every jitter asked of a jitter service.

``RpcEvaluator(socket_path)`` computes the headers and digests in plain Python (as the
reference evaluator does) and takes each pass's jitters from a ``JitterService``
(``hasherd.jitter.service``) in one batch request for all candidates of the pass: P
round trips per call, not P x N. It sends the memory by ``memory_id``; a service that
does not hold it answers ``unknown_memory``, and the evaluator uploads the memory once
and asks again (docs/jitter-rpc.md, "Memories"). It is a cross-check of the service, not
a fast path: use ``numba`` to train.

It uses the blocking client (``hasherd.transport.jitter_client``): the evaluator runs on
its actor's thread, where a blocking socket costs less than handing every call to an
event loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from os import PathLike
from pathlib import Path

import numpy as np

from hasherd.errors import EvaluatorError
from hasherd.kernel import spec
from hasherd.kernel.evaluators.base import EvalRequest, EvalResult, Evaluator
from hasherd.kernel.evaluators.reference import Outputs as _Outputs
from hasherd.kernel.evaluators.reference import blocks as _blocks
from hasherd.kernel.evaluators.reference import spread as _spread
from hasherd.kernel.memory import JitterMemory
from hasherd.transport.jitter_client import DEFAULT_TIMEOUT, JitterRpcError, SyncJitterClient

__all__ = ["JitterRpcError", "RpcEvaluator", "SyncJitterClient", "factory"]


class RpcEvaluator(Evaluator):
    name = "rpc"
    description = "plain Python hashing, every jitter from the jitter RPC service"

    def __init__(self, socket_path: str | PathLike[str], *, timeout: float = DEFAULT_TIMEOUT):
        self.socket_path = Path(socket_path)
        self.client = SyncJitterClient(socket_path, timeout=timeout)

    def warm_up(self) -> float:
        """Connect (and learn the service's limits); EvaluatorError when it is not there."""
        t0 = time.perf_counter()
        self._rpc(self.client.info)
        return time.perf_counter() - t0

    def close(self) -> None:
        self.client.close()

    def _rpc(self, call: Callable[[], object]) -> object:
        try:
            return call()
        except JitterRpcError as exc:
            raise EvaluatorError(f"rpc:{self.socket_path}", str(exc)) from exc

    def _evaluate(self, req: EvalRequest) -> EvalResult:
        n, p = req.n, req.passes
        slots = [int(x) for x in req.slots]
        heads, mixes, tails = [], [], []
        for i in range(n):
            header = spec.build_header(slots, req.seeds[i].tobytes())
            heads.append(header[:36])
            mixes.append(int.from_bytes(header[36:52], "big"))
            tails.append(header[52:])
        out = _Outputs(n, p, req.trace)
        records = np.zeros((n, 14), dtype=np.uint32)
        records[:, :12] = req.slots
        keys = [0] * n
        dsha = blocks = 0
        for pno in range(p):
            passes = [
                self._pass(heads[i] + mixes[i].to_bytes(16, "big") + tails[i], req)
                for i in range(n)
            ]
            keys = [int.from_bytes(r.digest[0:4], "big") for r in passes]
            for i in range(n):  # the current slots 8..11 are the mix words
                m = mixes[i]
                records[i, 8:12] = (
                    m >> 96,
                    (m >> 64) & spec.MASK32,
                    (m >> 32) & spec.MASK32,
                    m & spec.MASK32,
                )
            records[:, 12] = keys
            records[:, 13] = pno
            jit, found = self._lookup(records, req.memory)
            for i, res in enumerate(passes):
                j = int(jit[i])
                mixes[i] ^= _spread(j)
                out.record(i, pno, keys[i], res.nonce, j, bool(found[i]))
                dsha, blocks = dsha + res.scanned, blocks + _blocks(res, req.zero_bits)
        for i in range(n):
            header = heads[i] + mixes[i].to_bytes(16, "big") + tails[i]
            final = self._pass(header, req)
            dsha, blocks = dsha + final.scanned, blocks + _blocks(final, req.zero_bits)
            out.finish(i, final, keys[i], header)
        return out.result(dsha, blocks)

    def _lookup(self, records: np.ndarray, memory: JitterMemory) -> tuple[np.ndarray, np.ndarray]:
        try:
            return self.client.lookup(records, memory)
        except JitterRpcError as exc:
            raise EvaluatorError(f"rpc:{self.socket_path}", str(exc)) from exc

    @staticmethod
    def _pass(header: bytes, req: EvalRequest) -> spec.PassResult:
        if req.zero_bits == 0:
            return spec.PassResult(spec.scan_start(header), spec.dsha256(header), 0)
        return spec.golden_pass(header, req.zero_bits, req.nonce_space)


def factory(arg: str | None) -> Evaluator:
    """The registry's factory: ``rpc:SOCKET`` (the path is required)."""
    if not arg:
        raise EvaluatorError("rpc", "needs the jitter service's socket path: rpc:PATH")
    return RpcEvaluator(arg)
