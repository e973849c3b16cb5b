"""The reference evaluator: the loop of kernel.md in plain Python with hashlib.

It is the oracle of the test suite and the baseline of ``hasherd bench``, so it is written
the way a careful plain-Python program would be, with no tricks beyond that: the header is
three byte strings, and the 16 bytes that ``apply`` changes (slots 8..11) are one 128-bit
integer. Lookups use the memory's Python indices (dict and bisect). k > 0 passes go
through ``spec.golden_pass``. Everything it computes is checked against the spec's literal
functions and the conformance vectors.
"""

from __future__ import annotations

import hashlib

import numpy as np

from hasherd.kernel import spec
from hasherd.kernel.evaluators.base import EvalRequest, EvalResult, Evaluator, Trace
from hasherd.kernel.memory import JitterMemory

_sha256 = hashlib.sha256


def spread(j: int) -> int:
    """``apply``'s XOR mask as one 128-bit integer: rotl32(j, 8w) in word w (big-endian)."""
    r8 = ((j << 8) | (j >> 24)) & 0xFFFFFFFF
    r16 = ((j << 16) | (j >> 16)) & 0xFFFFFFFF
    r24 = ((j << 24) | (j >> 8)) & 0xFFFFFFFF
    return (j << 96) | (r8 << 64) | (r16 << 32) | r24


class Loop:
    """One record's loop state shared by its seeds: the memory and the record's constants."""

    def __init__(self, req: EvalRequest) -> None:
        self.req = req
        self.slots = [int(x) for x in req.slots]
        self.memory: JitterMemory = req.memory
        self.zone1 = self.memory.zone1(self.slots[0])

    def jitter(self, mix: int, key: int, p: int) -> tuple[int, bool]:
        """``lookup(S, key, p)``; ``mix`` holds the current slots 8..11."""
        if p <= spec.ZONE1_LAST_PASS:
            if self.zone1[1]:
                return self.zone1
        elif p <= spec.ZONE2_LAST_PASS:
            slot10 = (mix >> 32) & 0xFFFFFFFF
            j, found = self.memory.zone2(self.slots[4], slot10, key)
            if found:
                return j, True
        else:
            diff = key ^ self.slots[3]
            if diff >> (32 - spec.ZONE3_MIN_LEADING_ZEROS) == 0:
                return diff ^ spec.ZONE3_XOR, True
        return spec.miss_jitter(key), False

    def run_k0(self, head: bytes, mix: int, tail: bytes) -> tuple[bytes, int, int]:
        """The whole loop at k = 0 without a trace: (final digest, last key, final mix)."""
        key = 0
        jitter = self.jitter
        for pno in range(self.req.passes):
            d = _sha256(_sha256(head + mix.to_bytes(16, "big") + tail).digest()).digest()
            key = int.from_bytes(d[0:4], "big")
            mix ^= spread(jitter(mix, key, pno)[0])
        d = _sha256(_sha256(head + mix.to_bytes(16, "big") + tail).digest()).digest()
        return d, key, mix

    def digest(self, head: bytes, mix: int, tail: bytes) -> spec.PassResult:
        header = head + mix.to_bytes(16, "big") + tail
        if self.req.zero_bits == 0:
            d = _sha256(_sha256(header).digest()).digest()
            return spec.PassResult(spec.scan_start(header), d, 0)
        return spec.golden_pass(header, self.req.zero_bits, self.req.nonce_space)


class ReferenceEvaluator(Evaluator):
    name = "reference"
    description = "plain Python + hashlib, one core (the oracle)"

    def _evaluate(self, req: EvalRequest) -> EvalResult:
        n, p = req.n, req.passes
        loop = Loop(req)
        out = Outputs(n, p, req.trace)
        dsha = nblocks = 0
        for i in range(n):
            header = spec.build_header(loop.slots, req.seeds[i].tobytes())
            head, mix, tail = header[:36], int.from_bytes(header[36:52], "big"), header[52:]
            if req.zero_bits == 0 and not req.trace:
                d, key, mix = loop.run_k0(head, mix, tail)
                final = spec.PassResult(spec.scan_start(header), d, 0)
                dsha, nblocks = dsha + p + 1, nblocks + 3 * (p + 1)
            else:
                key = 0
                for pno in range(p):
                    res = loop.digest(head, mix, tail)
                    dsha, nblocks = dsha + res.scanned, nblocks + blocks(res, req.zero_bits)
                    key = int.from_bytes(res.digest[0:4], "big")
                    j, hit = loop.jitter(mix, key, pno)
                    mix ^= spread(j)
                    out.record(i, pno, key, res.nonce, j, hit)
                final = loop.digest(head, mix, tail)
                dsha, nblocks = dsha + final.scanned, nblocks + blocks(final, req.zero_bits)
            out.finish(i, final, key, head + mix.to_bytes(16, "big") + tail)
        return out.result(dsha, nblocks)


class Outputs:
    """The result arrays, filled one seed at a time."""

    def __init__(self, n: int, p: int, trace: bool) -> None:
        self.output = np.zeros(n, dtype=np.uint32)
        self.nonce = np.zeros(n, dtype=np.uint32)
        self.roll = np.zeros(n, dtype=np.uint32)
        self.digest = np.zeros((n, 32), dtype=np.uint8)
        self.last_key = np.zeros(n, dtype=np.uint32)
        self.trace: Trace | None = None
        if trace:
            self.trace = Trace(
                pass_keys=np.zeros((n, p), dtype=np.uint32),
                pass_nonces=np.zeros((n, p), dtype=np.uint32),
                jitters=np.zeros((n, p), dtype=np.uint32),
                jitter_found=np.zeros((n, p), dtype=bool),
                final_header=np.zeros((n, spec.HEADER_BYTES), dtype=np.uint8),
            )

    def record(self, i: int, p: int, key: int, nonce: int, j: int, hit: bool) -> None:
        if self.trace is None:
            return
        self.trace.pass_keys[i, p] = key
        self.trace.pass_nonces[i, p] = nonce
        self.trace.jitters[i, p] = j
        self.trace.jitter_found[i, p] = hit

    def finish(self, i: int, final: spec.PassResult, last_key: int, header: bytes) -> None:
        self.output[i] = int.from_bytes(final.digest[0:4], "big")
        self.nonce[i] = final.nonce
        self.roll[i] = final.ntime_roll
        self.digest[i] = np.frombuffer(final.digest, dtype=np.uint8)
        self.last_key[i] = last_key
        if self.trace is not None:
            self.trace.final_header[i] = np.frombuffer(header, dtype=np.uint8)

    def result(self, dsha: int, blocks: int) -> EvalResult:
        return EvalResult(
            self.output,
            self.nonce,
            self.roll,
            self.digest,
            self.last_key,
            dsha,
            blocks,
            self.trace,
        )


def blocks(res: spec.PassResult, zero_bits: int) -> int:
    """SHA-256 blocks hashed by one pass: 3 at k = 0; else a midstate per ntime, 2 a nonce."""
    return 3 if zero_bits == 0 else 2 * res.scanned + res.ntime_roll + 1
