"""The reference evaluator: the loop of kernel.md in plain Python with hashlib.

It is the oracle of the test suite and the baseline of ``hasherd bench``. It uses the
memory's Python-level indices (dict and bisect) rather than a scan of every frame, so the
baseline measures hashing, as a sensible plain-Python program would do it; the indices
themselves are tested against ``spec.lookup_linear``.
"""

from __future__ import annotations

import numpy as np

from hasherd.kernel import spec
from hasherd.kernel.evaluators.base import EvalRequest, EvalResult, Evaluator, Trace


class ReferenceEvaluator(Evaluator):
    name = "reference"
    description = "plain Python + hashlib, one core (the oracle)"

    def _evaluate(self, req: EvalRequest) -> EvalResult:
        n, p = req.n, req.passes
        output = np.zeros(n, dtype=np.uint32)
        nonce = np.zeros(n, dtype=np.uint32)
        roll = np.zeros(n, dtype=np.uint32)
        digest = np.zeros((n, 32), dtype=np.uint8)
        last_key = np.zeros(n, dtype=np.uint32)
        if req.trace:
            keys = np.zeros((n, p), dtype=np.uint32)
            nonces = np.zeros((n, p), dtype=np.uint32)
            jitters = np.zeros((n, p), dtype=np.uint32)
            found = np.zeros((n, p), dtype=bool)
            final_header = np.zeros((n, spec.HEADER_BYTES), dtype=np.uint8)
        slots = [int(x) for x in req.slots]
        dsha = blocks = 0
        for i in range(n):
            header = spec.build_header(slots, req.seeds[i].tobytes())
            for pno in range(p):
                res = spec.golden_pass(header, req.zero_bits, req.nonce_space)
                dsha, blocks = dsha + res.scanned, blocks + _blocks(res, req.zero_bits)
                key = int.from_bytes(res.digest[0:4], "big")
                j, hit = req.memory.lookup(spec.slots_of(header), key, pno)
                header = spec.apply_jitter(header, j)
                if req.trace:
                    keys[i, pno], nonces[i, pno], jitters[i, pno], found[i, pno] = (
                        key,
                        res.nonce,
                        j,
                        hit,
                    )
            last_key[i] = key
            final = spec.golden_pass(header, req.zero_bits, req.nonce_space)
            dsha, blocks = dsha + final.scanned, blocks + _blocks(final, req.zero_bits)
            output[i] = int.from_bytes(final.digest[0:4], "big")
            nonce[i] = final.nonce
            roll[i] = final.ntime_roll
            digest[i] = np.frombuffer(final.digest, dtype=np.uint8)
            if req.trace:
                final_header[i] = np.frombuffer(header, dtype=np.uint8)
        trace = Trace(keys, nonces, jitters, found, final_header) if req.trace else None
        return EvalResult(output, nonce, roll, digest, last_key, dsha, blocks, trace)


def _blocks(res: spec.PassResult, zero_bits: int) -> int:
    """SHA-256 blocks hashed by one pass: 3 at k = 0; else a midstate per ntime, 2 a nonce."""
    return 3 if zero_bits == 0 else 2 * res.scanned + res.ntime_roll + 1
