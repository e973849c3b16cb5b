"""The ASIC evaluator: golden-nonce passes on a chip chain, everything else on the host.

For a request at the device's ``zero_bits`` k (> 0), each pass of the loop (kernel.md) is
one chip job (asic-protocols.md, section 9): the pass header, rolling off, starting nonce
= the header's nonce; the chain sweeps its window, the host verifies every reported nonce
and takes the first in scan order. Keys, jitter lookups and ``apply`` run on the host as
in the reference evaluator, so the results equal the reference's for the same request.
The chain comes from its driver in ``devices.registry`` (``bm1370``, ``s3``, ...), which
says how it opens, what settings it refuses and which window a job covers.

A job covers only the first ``chain.window_at(n0)`` nonces from n0 without a gap (``W``),
and "first in scan order" is trusted only inside that window:

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

:class:`ChipBackend` drives the chain with coroutines on the caller's event loop: for the
daemon's chip actor, the daemon's own loop (the host work between two passes is a digest
check and a jitter lookup, small next to a pass). :class:`AsicEvaluator` is the same
backend behind the synchronous ``Evaluator`` interface, for the CLI (``hasherd vectors
check``, ``validate``, ``bench``): it runs the backend in an anyio blocking portal, an
event loop on a thread of its own, which ``close()`` stops.
"""

from __future__ import annotations

import contextlib
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import anyio
import anyio.to_thread
from anyio.from_thread import BlockingPortal, start_blocking_portal

from hasherd.config import ChipDeviceConfig
from hasherd.devices import registry
from hasherd.devices.chain import ChainError, ChainSettings, ChipChain, SweepBound
from hasherd.errors import EvaluatorError, HasherError, InputError
from hasherd.kernel import spec
from hasherd.kernel.evaluators.base import EvalRequest, EvalResult, Evaluator
from hasherd.kernel.evaluators.reference import Loop, Outputs, spread

__all__ = [
    "DEFAULT_BOUND",
    "AsicEvaluator",
    "ChipBackend",
    "chip_backend",
    "chip_evaluator",
    "factory",
]

T = TypeVar("T")

# For the emulator (hashlib at ~430 kH/s in one thread): 64 Ki nonces per chip.
DEFAULT_BOUND = SweepBound(nonces_per_chip=1 << 16, seconds=0.5, quiet=0.05)
DEFAULT_ZERO_BITS = 8
CLOSE_SECONDS = 5.0  # a link that does not close within this is abandoned


class ChipBackend:
    """Kernel passes on the chain of driver ``driver`` at ``path``, as coroutines on the
    caller's event loop (see the module docstring). Nothing opens before ``start()``.

    ``zero_bits`` is the device's: the chip's hard-wired difficulty (the emulator's knob,
    32 on silicon) unless ``base_zero_bits`` is lower, in which case the ticket mask makes
    up the difference. Only requests at exactly ``zero_bits`` are supported.
    """

    name = "asic"

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
        self._driver = registry.driver(driver)
        base = k if base_zero_bits is None else base_zero_bits
        self.settings = ChainSettings(bound, base, expected_chips, baud, enumerate_quiet)
        for key, problem in self._driver.check(self.settings):
            raise InputError(key, problem)
        self.driver = driver
        self.path = path
        self.zero_bits = k
        self.max_rolls = max_rolls
        self.max_resends = max_resends
        self.resends = 0  # jobs sent again because a response frame was lost
        self._chain: ChipChain | None = None

    @property
    def threads(self) -> int:
        return 1

    def supports(self, zero_bits: int) -> bool:
        return zero_bits == self.zero_bits

    async def start(self) -> None:
        """Open the link and initialise the chain (the driver closes it on failure);
        ``EvaluatorError`` naming the path when it cannot. Started already: nothing."""
        if self._chain is not None:
            return
        try:
            self._chain = await self._driver.open(self.path, self.settings)
        except HasherError as exc:
            raise EvaluatorError(self.name, f"{self.path}: {exc}") from exc

    @property
    def chain(self) -> ChipChain:
        if self._chain is None:
            raise EvaluatorError(self.name, f"{self.path}: not open")
        return self._chain

    def window_at(self, n0: int) -> int:
        """Nonces from ``n0`` one job covers without a gap, as the chain's driver knows
        it (the same for every header where a job starts its chips at ``n0``)."""
        return self.chain.window_at(n0)

    def device_stats(self) -> dict[str, Any] | None:
        chain = self._chain
        if chain is None:
            return None
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

    async def close(self) -> None:
        """Release the link; never raises, and finishes even when the caller is being
        cancelled (a port left open would refuse the next start)."""
        chain, self._chain = self._chain, None
        if chain is None:
            return
        with anyio.move_on_after(CLOSE_SECONDS, shield=True), contextlib.suppress(Exception):
            await chain.close()

    @property
    def post_apart(self) -> bool:
        return True  # on a worker thread of the daemon

    async def probe(self) -> None:
        return None  # a chain that went quiet fails its next job (the response watchdog)

    async def run_post(self, fn: Callable[[list[EvalResult]], T], results: list[EvalResult]) -> T:
        """``fn(results)`` on a worker thread: the event loop is the chain's."""
        return await anyio.to_thread.run_sync(fn, results)

    async def evaluate_many(self, reqs: Sequence[EvalRequest]) -> list[EvalResult]:
        return [await self.evaluate_request(r) for r in reqs]

    async def evaluate_request(self, req: EvalRequest) -> EvalResult:
        """The reference loop with every golden pass sent to the chain."""
        if not self.supports(req.zero_bits):
            raise EvaluatorError(
                self.name, f"serves zero_bits={self.zero_bits} only, not {req.zero_bits}"
            )
        loop = Loop(req)
        out = Outputs(req.n, req.passes, req.trace)
        swept = 0
        for i in range(req.n):
            swept += await self._seed(loop, out, i)
        # dsha: what the chain hashed (every chip's whole window per job) plus the host's
        # digest of each golden header; compressions at 2 per chain hash + 1 midstate.
        host = req.n * (req.passes + 1)
        return out.result(swept + host, 2 * swept + 3 * host)

    async def _seed(self, loop: Loop, out: Outputs, i: int) -> int:
        """Seed ``i``'s loop into ``out``; returns the nonces the chain swept for it."""
        req = loop.req
        header = spec.build_header(loop.slots, req.seeds[i].tobytes())
        head, mix, tail = header[:36], int.from_bytes(header[36:52], "big"), header[52:]
        key = swept = 0
        for pno in range(req.passes):
            res, n = await self.golden_pass(
                head + mix.to_bytes(16, "big") + tail, req.zero_bits, req.nonce_space
            )
            key = int.from_bytes(res.digest[0:4], "big")
            j, hit = loop.jitter(mix, key, pno)
            mix ^= spread(j)
            out.record(i, pno, key, res.nonce, j, hit)
            swept += n
        final_header = head + mix.to_bytes(16, "big") + tail
        final, n = await self.golden_pass(final_header, req.zero_bits, req.nonce_space)
        out.finish(i, final, key, final_header)
        return swept + n

    async def golden_pass(
        self, header: bytes, zero_bits: int, nonce_space: int = spec.NONCE_SPACE
    ) -> tuple[spec.PassResult, int]:
        """``spec.golden_pass`` on the chain; also returns the nonces the chain swept."""
        n0 = spec.scan_start(header)
        window = self.window_at(n0)
        limit = min(nonce_space, window)
        ntime0 = int.from_bytes(header[68:72], "little")
        swept = 0
        for roll in range(self.max_rolls + 1):
            rolled = header[:68] + ((ntime0 + roll) & spec.MASK32).to_bytes(4, "little")
            rolled += header[72:]
            found, n = await self._mine(rolled, zero_bits)
            swept += n
            for _chip, nonce in found:  # in scan order
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

    async def _mine(self, header: bytes, zero_bits: int) -> tuple[tuple[tuple[int, int], ...], int]:
        """One job's nonces (in scan order) and the nonces swept, sending the job again
        while a response frame was lost during it (it may have been the first nonce)."""
        chain = self.chain
        swept = 0
        for attempt in range(self.max_resends + 1):
            if attempt:
                self.resends += 1
            try:
                res = await chain.mine(header, zero_bits)
            except HasherError as exc:
                raise EvaluatorError(self.name, f"{self.path}: {exc}") from exc
            swept += res.swept
            if not res.lost:
                return res.found, swept
        raise EvaluatorError(
            self.name,
            f"{self.path}: frames lost to CRC errors in {self.max_resends + 1} tries of one "
            "job; its first nonce cannot be trusted",
        )


def _shutdown(
    backend: ChipBackend, portal: list[BlockingPortal], stack: contextlib.ExitStack
) -> None:
    """Close the chain on the portal's loop, then stop that loop and its thread."""
    try:
        if portal:
            portal.pop().call(backend.close)
    finally:
        stack.close()


class AsicEvaluator(Evaluator):
    """A :class:`ChipBackend` behind the synchronous ``Evaluator`` interface: its
    coroutines run in an anyio blocking portal started on first use (see the module
    docstring). Takes the backend's arguments; ``close()`` (or leaving a ``with`` block)
    releases the port and stops the portal."""

    name = "asic"
    description = "BM1370 chain or S3 controller (golden passes on the chips)"

    def __init__(self, path: str, zero_bits: int = DEFAULT_ZERO_BITS, **options: Any) -> None:
        self.backend = ChipBackend(path, zero_bits, **options)  # checks every argument
        self._portal: list[BlockingPortal] = []
        self._stack = contextlib.ExitStack()
        self._finalizer = weakref.finalize(self, _shutdown, self.backend, self._portal, self._stack)

    @property
    def path(self) -> str:
        return self.backend.path

    @property
    def zero_bits(self) -> int:
        return self.backend.zero_bits

    @property
    def driver(self) -> str:
        return self.backend.driver

    def supports(self, zero_bits: int) -> bool:
        return self.backend.supports(zero_bits)

    def _open(self) -> BlockingPortal:
        """The portal, with the chain open (both started on first use)."""
        if not self._finalizer.alive:
            raise EvaluatorError(self.name, f"{self.path}: closed")
        if not self._portal:
            name = f"hasherd-asic-{self.path}"
            self._portal.append(self._stack.enter_context(start_blocking_portal(name=name)))
        portal = self._portal[0]
        portal.call(self.backend.start)
        return portal

    def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``await fn(*args)`` on the portal's loop, once the chain is open."""
        return self._open().call(fn, *args)

    @property
    def chain(self) -> ChipChain:
        """The open chain (opened on first use)."""
        self._open()
        return self.backend.chain

    def window_at(self, n0: int) -> int:
        """``ChipBackend.window_at`` (opens the chain on first use)."""
        self._open()
        return self.backend.window_at(n0)

    @property
    def window(self) -> int:
        """``window_at(0)`` (where a job starts its chips at ``n0``, every header's)."""
        return self.window_at(0)

    def device_stats(self) -> dict[str, Any] | None:
        return self.backend.device_stats()

    def warm_up(self) -> float:
        start = time.perf_counter()
        self._open()
        return time.perf_counter() - start

    def close(self) -> None:
        self._finalizer()

    def __enter__(self) -> AsicEvaluator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def evaluate_many(self, reqs: Sequence[EvalRequest]) -> list[EvalResult]:
        results: list[EvalResult] = self._run(self.backend.evaluate_many, list(reqs))
        return results

    def _evaluate(self, req: EvalRequest) -> EvalResult:
        result: EvalResult = self._run(self.backend.evaluate_request, req)
        return result


def _chip_options(chip: ChipDeviceConfig) -> dict[str, Any]:
    """A ``[[devices.chips]]`` entry as :class:`ChipBackend` options (0 = none)."""
    bound = SweepBound(
        chip.nonces_per_chip, chip.sweep_time, chip.quiet, max_wait=max(30.0, chip.sweep_time)
    )
    return {
        "bound": bound,
        "driver": chip.driver,
        "expected_chips": chip.chips or None,
        "baud": chip.baud or None,
    }


def chip_backend(chip: ChipDeviceConfig) -> ChipBackend:
    """The backend of a ``[[devices.chips]]`` entry (its port opens at ``start()``), for
    the daemon's chip actor."""
    return ChipBackend(chip.path, chip.zero_bits, **_chip_options(chip))


def chip_evaluator(chip: ChipDeviceConfig) -> AsicEvaluator:
    """The synchronous evaluator of a ``[[devices.chips]]`` entry (its port opens on first
    use), for the CLI; the daemon's chip actor drives :func:`chip_backend` directly."""
    return AsicEvaluator(chip.path, chip.zero_bits, **_chip_options(chip))


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
