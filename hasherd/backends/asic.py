"""The ASIC evaluator: golden-nonce passes on a BM1370 chain, everything else on the host.

For a request at the device's ``zero_bits`` k (> 0), each pass of the loop (kernel.md) is
one chip job (asic-protocols.md, section 9): the pass header, rolling off, starting nonce
= the header's nonce; the chain sweeps its window, the host verifies every reported nonce
and takes the first in scan order. Keys, jitter lookups and ``apply`` run on the host as
in the reference evaluator, so the results equal the reference's for the same request.

A job covers only the first ``covered_prefix(chips, nonces_per_chip)`` nonces from n0
without a gap (``W``), and "first in scan order" is trusted only inside that window:

* a request with ``nonce_space <= W`` is served exactly: hits at offsets
  ``>= nonce_space`` are ignored and, when none is left, the pass rolls ntime (a new job
  with ``ntime0 + r``), as the kernel does, up to ``max_rolls``;
* a request with ``nonce_space > W`` (the kernel's 2^32 included) is served when the
  window holds a hit, which is then the kernel's answer; otherwise ``EvaluatorError``:
  the chip did not sweep far enough to know, and no value is invented.

A response frame lost to a CRC error may have carried the first nonce, so a job during
which one was lost is sent again (``max_resends`` times, counted in ``resends``) before
the pass fails with ``EvaluatorError``. A nonce the chip never sends at all (a dropping
chip) cannot be seen by the host; that is what the cross-hardware validator is for.

The chain is driven from a private asyncio loop owned by the evaluator (the actor calls
it from one thread); ``close()`` releases the port and the loop.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from hasherd.config import ChipDeviceConfig
from hasherd.devices.bm1370 import (
    Bm13xxChain,
    ChainError,
    SweepBound,
    covered_prefix,
    open_chain,
)
from hasherd.devices.s3 import S3Chain, open_s3_chain
from hasherd.errors import EvaluatorError, HasherError, InputError
from hasherd.kernel import spec
from hasherd.kernel.evaluators.base import EvalRequest, EvalResult, Evaluator
from hasherd.kernel.evaluators.reference import _Loop, _Outputs, _spread

__all__ = ["DEFAULT_BOUND", "AsicEvaluator", "chip_evaluator", "factory"]

# For the emulator (hashlib at ~430 kH/s in one thread): 64 Ki nonces per chip.
DEFAULT_BOUND = SweepBound(nonces_per_chip=1 << 16, seconds=0.5, quiet=0.05)
DEFAULT_ZERO_BITS = 8


Chain = Bm13xxChain | S3Chain
DRIVERS = ("bm1370", "s3")


def _shutdown(loop: asyncio.AbstractEventLoop, holder: list[Chain]) -> None:
    try:
        if holder and not loop.is_closed():
            loop.run_until_complete(holder.pop().close())
    finally:
        if not loop.is_closed():
            loop.close()


class _ChipLoop(_Loop):
    """The reference loop with its golden pass sent to the chain."""

    def __init__(self, req: EvalRequest, ev: AsicEvaluator) -> None:
        super().__init__(req)
        self.ev = ev
        self.swept = 0

    def digest(self, head: bytes, mix: int, tail: bytes) -> spec.PassResult:
        header = head + mix.to_bytes(16, "big") + tail
        res, swept = self.ev.golden_pass(header, self.req.zero_bits, self.req.nonce_space)
        self.swept += swept
        return res


class AsicEvaluator(Evaluator):
    """Kernel passes on a BM13xx chain at ``path`` (see the module docstring).

    ``zero_bits`` is the device's: the chip's hard-wired difficulty (the emulator's knob,
    32 on silicon) unless ``base_zero_bits`` is lower, in which case the ticket mask makes
    up the difference. Only requests at exactly ``zero_bits`` are supported.
    """

    name = "asic"
    description = "BM1370 chain or S3 controller (golden passes on the chips)"

    def __init__(
        self,
        path: str,
        zero_bits: int = DEFAULT_ZERO_BITS,
        *,
        bound: SweepBound = DEFAULT_BOUND,
        base_zero_bits: int | None = None,
        expected_chips: int | None = None,
        baud: float | None = None,
        max_rolls: int = 64,
        max_resends: int = 3,
        enumerate_quiet: float = 0.2,
        driver: str = "bm1370",
    ) -> None:
        k = spec.check_zero_bits(zero_bits)
        if k == 0:
            raise InputError("zero_bits", "a chip serves k > 0 only")
        if driver not in DRIVERS:
            raise InputError("driver", f"{driver!r} is not one of {', '.join(DRIVERS)}")
        if driver == "s3" and baud is not None:
            raise InputError("baud", "the S3 controller's link has no baud switch")
        self.driver = driver
        self.path = path
        self.zero_bits = k
        self.base_zero_bits = k if base_zero_bits is None else base_zero_bits
        self.bound = bound
        self.expected_chips = expected_chips
        self.baud = baud
        self.max_rolls = max_rolls
        self.max_resends = max_resends
        self.resends = 0  # jobs sent again because a response frame was lost
        self.enumerate_quiet = enumerate_quiet
        self._loop = asyncio.new_event_loop()
        self._holder: list[Chain] = []
        self._finalizer = weakref.finalize(self, _shutdown, self._loop, self._holder)

    def supports(self, zero_bits: int) -> bool:
        return zero_bits == self.zero_bits

    async def _open(self) -> Chain:
        if self.driver == "s3":
            return await open_s3_chain(
                self.path,
                self.bound,
                base_zero_bits=self.base_zero_bits,
                expected_chips=self.expected_chips,
            )
        return await open_chain(
            self.path,
            self.bound,
            base_zero_bits=self.base_zero_bits,
            expected_chips=self.expected_chips,
            baud=self.baud,
            enumerate_quiet=self.enumerate_quiet,
        )

    @property
    def chain(self) -> Chain:
        if not self._holder:
            try:
                self._holder.append(self._loop.run_until_complete(self._open()))
            except HasherError as exc:
                raise EvaluatorError(self.name, f"{self.path}: {exc}") from exc
        return self._holder[0]

    def window_at(self, n0: int) -> int:
        """Nonces from ``n0`` one job covers without a gap: on a BM1370 chain the jobs
        start at ``n0``, so it is the same for every header; an S3 work starts its chips
        at fixed offsets from 0, so it depends on where ``n0`` falls."""
        chain = self.chain
        if isinstance(chain, S3Chain):
            return chain.covered(n0)
        return covered_prefix(chain.chips, chain.nonces_per_chip)

    @property
    def window(self) -> int:
        """``window_at(0)`` (on a BM1370 chain, the window of every header)."""
        return self.window_at(0)

    def device_stats(self) -> dict[str, Any] | None:
        if not self._holder:
            return None
        chain = self._holder[0]
        st = chain.stats()
        device = {
            "path": self.path,
            "driver": self.driver,
            "chips": chain.chips,
            "jobs": st.jobs,
            "crc_errors": st.crc_errors,
            "stale": st.stale,
            "garbage_bytes": st.garbage_bytes,
            "unknown_frames": st.unknown_frames,
            "unexpected": st.unexpected,
            "resends": self.resends,
        }
        chips = [
            {
                "chip": i,
                "address": c.address,
                "hashes": c.hashes,
                "nonces": c.nonces,
                "invalid": c.invalid,
                "duplicates": c.duplicates,
            }
            for i, c in enumerate(st.chips)
        ]
        return {"device": device, "chips": chips}

    def warm_up(self) -> float:
        loop = self._loop
        start = loop.time()
        _ = self.chain
        return loop.time() - start

    def close(self) -> None:
        self._finalizer()

    def __enter__(self) -> AsicEvaluator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def golden_pass(
        self, header: bytes, zero_bits: int, nonce_space: int = spec.NONCE_SPACE
    ) -> tuple[spec.PassResult, int]:
        """``spec.golden_pass`` on the chain; also returns the nonces the chain swept."""
        chain = self.chain
        n0 = spec.scan_start(header)
        window = self.window_at(n0)
        limit = min(nonce_space, window)
        ntime0 = int.from_bytes(header[68:72], "little")
        swept = 0
        for roll in range(self.max_rolls + 1):
            rolled = header[:68] + ((ntime0 + roll) & spec.MASK32).to_bytes(4, "little")
            rolled += header[72:]
            res, attempts = None, 0
            while res is None or res.lost:  # a lost frame may have been the first nonce
                if attempts > self.max_resends:
                    raise EvaluatorError(
                        self.name,
                        f"{self.path}: frames lost to CRC errors in {attempts} tries of one "
                        "job; its first nonce cannot be trusted",
                    )
                if attempts:
                    self.resends += 1
                try:
                    res = self._loop.run_until_complete(chain.mine(rolled, zero_bits))
                except HasherError as exc:
                    raise EvaluatorError(self.name, f"{self.path}: {exc}") from exc
                attempts += 1
                swept += res.swept
            for _chip, nonce in res.found:  # in scan order
                t = (nonce - n0) % spec.NONCE_SPACE
                if t >= limit:
                    break
                full = rolled[:76] + nonce.to_bytes(4, "little")
                digest = spec.dsha256(full)
                return spec.PassResult(nonce, digest, roll, roll * nonce_space + t + 1), swept
            if nonce_space > window:
                raise EvaluatorError(
                    self.name,
                    f"no nonce meeting {zero_bits} zero bits in the swept window of {window} "
                    f"nonces from {n0}; the kernel scans {nonce_space}, so the chip cannot "
                    "say which comes first",
                )
        raise EvaluatorError(
            self.name, f"no nonce meeting {zero_bits} zero bits within {self.max_rolls} ntime rolls"
        )

    def _evaluate(self, req: EvalRequest) -> EvalResult:
        if not self.supports(req.zero_bits):
            raise EvaluatorError(
                self.name, f"serves zero_bits={self.zero_bits} only, not {req.zero_bits}"
            )
        loop = _ChipLoop(req, self)
        out = _Outputs(req.n, req.passes, req.trace)
        for i in range(req.n):
            header = spec.build_header(loop.slots, req.seeds[i].tobytes())
            head, mix, tail = header[:36], int.from_bytes(header[36:52], "big"), header[52:]
            key = 0
            for pno in range(req.passes):
                res = loop.digest(head, mix, tail)
                key = int.from_bytes(res.digest[0:4], "big")
                j, hit = loop.jitter(mix, key, pno)
                mix ^= _spread(j)
                out.record(i, pno, key, res.nonce, j, hit)
            final = loop.digest(head, mix, tail)
            out.finish(i, final, key, head + mix.to_bytes(16, "big") + tail)
        # dsha: what the chain hashed (every chip's whole window per job) plus the host's
        # digest of each golden header; compressions at 2 per chain hash + 1 midstate.
        jobs_dsha = loop.swept
        host = req.n * (req.passes + 1)
        return out.result(jobs_dsha + host, 2 * jobs_dsha + 3 * host)


def chip_evaluator(chip: ChipDeviceConfig) -> AsicEvaluator:
    """The evaluator of a ``[[devices.chips]]`` entry (its port opens on first use)."""
    bound = SweepBound(
        chip.nonces_per_chip, chip.sweep_time, chip.quiet, max_wait=max(30.0, chip.sweep_time)
    )
    return AsicEvaluator(
        chip.path,
        chip.zero_bits,
        bound=bound,
        driver=chip.driver,
        expected_chips=chip.chips or None,
        baud=chip.baud or None,
    )


def factory(arg: str | None, **options: Any) -> Evaluator:
    """``asic:PATH[,ZERO_BITS[,NONCES_PER_CHIP[,SWEEP_SECONDS]]]`` for the registry (PATH a
    tty, pty or socket://host:port; the sweep bound defaults to ``DEFAULT_BOUND``, which
    matches ``hasherd emulate bm1370``'s default window)."""
    usage = "asic:PATH[,ZERO_BITS[,NONCES_PER_CHIP[,SWEEP_SECONDS]]]"
    if not arg:
        raise EvaluatorError("asic", f"needs a device: {usage}")
    path, *rest = arg.split(",")
    if len(rest) > 3:
        raise EvaluatorError("asic", f"too many fields in {arg!r}: {usage}")
    names = ("zero bits", "nonces per chip", "sweep seconds")
    values: list[float] = []
    for name, text in zip(names, rest, strict=False):
        try:
            values.append(float(text) if name == "sweep seconds" else int(text))
        except ValueError:
            kind = "a number" if name == "sweep seconds" else "an integer"
            raise EvaluatorError("asic", f"{name} must be {kind}, got {text!r}") from None
    zero_bits = int(values[0]) if values else DEFAULT_ZERO_BITS
    try:
        if len(values) > 1:
            seconds = values[2] if len(values) > 2 else DEFAULT_BOUND.seconds
            options.setdefault("bound", SweepBound(int(values[1]), seconds, DEFAULT_BOUND.quiet))
        return AsicEvaluator(path, zero_bits, **options)
    except (InputError, ChainError) as exc:
        raise EvaluatorError("asic", str(exc)) from exc
