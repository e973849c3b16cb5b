"""An Antminer S3 controller on the S2/S3 token protocol (asic-protocols.md, sections 3,
5 "S3 / USB" and 9).

``S3Engine`` is the controller, bytes in and bytes out, with no file descriptor: it frames
host tokens (``TxDecoder``), answers every ``RxStatusRequest`` with an ``RxStatus`` (0xA1:
chains, ASICs per chain, the presence and health bitmaps, fifo space) and hashes every
work of a ``TxTask``. A work carries a midstate, not a header, so hashing continues from
the midstate with the project's numba SHA-256 lane kernel (``scan_h7``, about 14 M
nonces/s on one core). S3 works carry no starting nonce: chip ``i`` of ``N`` sweeps
``sweep_limit`` nonces from ``sweep_start + i * floor(2^32 / N)``, in the kernel's scan
order (the header's nonce bytes read little-endian). Every candidate is re-hashed in full
by a second implementation (the loop-form ``compress``) before it is reported, so each
reported nonce really has ``zero_bits + diff`` leading zero bits (section 4.2; ``diff`` is
the TxTask's). Nonces go back in ``RxNonce`` tokens (0xA2) of up to ``NONCES_PER_TOKEN``
``{work_id, nonce}`` entries, the work ID echoed, shuffled across chips, with the fifo
space and a running count of the nonces found.

``S3Emulator`` runs an engine behind a pty (``emulate.pty.PtyEmulator``), as the S2's
character device carries the same token stream; a USB front-end needs only the engine (see
tests/s3/fake_usb.py).

Faults (``FAULTS``) are deterministic: every ``fault_every``-th eligible event.
"""

from __future__ import annotations

import heapq
import importlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from hasherd.emulate.pty import PtyEmulator
from hasherd.emulate.s3_stream import TxDecoder, TxToken
from hasherd.errors import InputError
from hasherd.kernel import spec
from hasherd.kernel.midstate import words_of
from hasherd.protocol.s3 import (
    ConfigFlag,
    NonceEntry,
    RxNonce,
    RxStatus,
    RxStatusRequest,
    StatusFlag,
    TxConfig,
    Work,
)

__all__ = ["FAULTS", "NONCES_PER_TOKEN", "S3Emulator", "S3EmulatorStats", "S3Engine"]

LOGGER = logging.getLogger(__name__)

FAULTS = frozenset(
    {"bad_crc", "garbage", "duplicate", "stale_job", "dead_chip", "late", "drop_nonce"}
)
NONCE_SPACE = 1 << 32
NONCES_PER_TOKEN = 8
FIFO_DEPTH = 64
HW_VERSION = bytes((0x53, 0x33, 0x45, 0x01))  # "S3E", 1: any 4 bytes; the host only shows them
_UNKNOWN_WORK = 0x8000_0000  # stale_job: XORed into a work ID the host never issued
_PAD_WORDS = (0x8000_0000, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 640)
_PAD_DIGEST = (0x8000_0000, 0, 0, 0, 0, 0, 0, 256)


def bswap32(value: int) -> int:
    return int.from_bytes(value.to_bytes(4, "little"), "big")


def leading_zero_bits(digest: bytes) -> int:
    """Leading zero bits of a SHA-256d digest read as a little-endian integer (4.2)."""
    return 256 - int.from_bytes(digest, "little").bit_length()


@dataclass(frozen=True, slots=True)
class S3EmulatorStats:
    """A snapshot: host tokens taken or rejected, works hashed, what went back."""

    tokens: int
    crc_errors: int
    garbage_bytes: int
    malformed: int
    configs: int
    status_requests: int
    works: int
    works_dropped: int  # beyond the fifo space when their TxTask came
    tokens_sent: int
    nonces_sent: int  # entries sent, duplicates and unknown-work entries included
    nonces_found: int  # distinct nonces the chips found (RxNonce total_nonce_num)
    nonces_dropped: int  # the drop_nonce fault
    garbage_bytes_sent: int
    hashes: int
    hash_seconds: float

    @property
    def hash_rate(self) -> float:
        """Nonces hashed per second of sweeping (0 before the first work)."""
        return self.hashes / self.hash_seconds if self.hash_seconds > 0 else 0.0


def _kernels() -> Any:
    """The numba kernels, imported on first use (compiling or loading them takes seconds)."""
    return importlib.import_module("hasherd.kernel.numba_kernels")


class _Sweeper:
    """Nonce windows of one work, hashed from its midstate."""

    def __init__(self, work: Work) -> None:
        self.nk = _kernels()
        self.mid = np.array(words_of(work.midstate), dtype=np.uint32)
        self.w = np.frombuffer(work.data2, dtype="<u4").astype(np.uint32)  # header words 16..18
        self.h7 = np.empty(self.nk.L, dtype=np.uint32)

    def meeting(self, start: int, count: int, required: int) -> list[int]:
        """Nonces ``start .. start+count-1`` (mod 2^32) whose SHA-256d has ``required``
        leading zero bits, each confirmed by a full second hash."""
        out: list[int] = []
        fast = min(required, spec.MAX_ZERO_BITS)
        pos = 0
        while pos < count:
            n = (start + pos) % NONCE_SPACE
            t = (
                0
                if fast == 0
                else int(self.nk.first_meeting(self.mid, self.w, n, count - pos, fast, self.h7))
            )
            if t < 0:
                break
            nonce = (n + t) % NONCE_SPACE
            if leading_zero_bits(self.digest(nonce)) >= required:
                out.append(nonce)
            pos += t + 1
        return out

    def digest(self, nonce: int) -> bytes:
        """SHA-256d of the work's header with ``nonce`` (loop-form compress, not the lanes)."""
        block = np.array((*self.w, bswap32(nonce), *_PAD_WORDS), dtype=np.uint32)
        first = np.empty(8, dtype=np.uint32)
        self.nk.compress(self.mid, block, first)
        block2 = np.array((*first, *_PAD_DIGEST), dtype=np.uint32)
        out = np.empty(8, dtype=np.uint32)
        self.nk.compress(self.nk._IV, block2, out)
        return out.astype(">u4").tobytes()


def _check_int(value: object, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InputError(name, f"{value!r} is outside {low}..{high}")
    return value


class S3Engine:
    """``chips`` BM1382s on ``chains`` chains behind one controller (module docstring).

    ``zero_bits`` replaces the hard-wired 32 (0..32). ``feed`` takes host bytes and returns
    the reply bytes due now; ``take`` returns held ("late") bytes once due; ``next_due``
    says when. ``clock`` is injectable for tests.
    """

    def __init__(
        self,
        chips: int,
        zero_bits: int,
        faults: set[str] | frozenset[str] = frozenset(),
        *,
        chains: int = 1,
        sweep_limit: int = 65536,
        sweep_start: int = 0,
        fault_every: int = 2,
        late_delay: float = 0.5,
        dead_chip: int | None = None,
        fifo_depth: int = FIFO_DEPTH,
        seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.chains = _check_int(chains, "chains", 1, 16)
        self.chips = _check_int(chips, "chips", chains, 255 * chains)
        self.zero_bits = spec.check_zero_bits(zero_bits)
        unknown = set(faults) - FAULTS
        if unknown:
            raise InputError("faults", f"unknown {sorted(unknown)}; known {sorted(FAULTS)}")
        self.sweep_limit = _check_int(sweep_limit, "sweep_limit", 1, NONCE_SPACE // chips)
        self.sweep_start = _check_int(sweep_start, "sweep_start", 0, NONCE_SPACE - 1)
        self.fault_every = _check_int(fault_every, "fault_every", 1, 1 << 20)
        self.fifo_depth = _check_int(fifo_depth, "fifo_depth", 1, 0xFFFF)
        if not late_delay >= 0:
            raise InputError("late_delay", f"{late_delay} is negative")
        dead = chips - 1 if dead_chip is None else dead_chip
        _check_int(dead, "dead_chip", 0, chips - 1)
        self.faults = frozenset(faults)
        self.late_delay = late_delay
        self.dead_chip = dead if "dead_chip" in self.faults else None
        base, extra = divmod(chips, chains)
        self.chain_asic_num = tuple(base + (i < extra) for i in range(chains))
        self._clock = clock
        self._rng = random.Random(seed)
        self._decoder = TxDecoder()
        self._ready = bytearray()
        self._late: list[tuple[float, int, bytes]] = []
        self._counts: dict[str, int] = {}
        self._n = dict.fromkeys(
            (
                "configs",
                "status",
                "works",
                "works_dropped",
                "tokens",
                "nonces",
                "found",
                "dropped",
                "garbage",
                "hashes",
            ),
            0,
        )
        self._hash_seconds = 0.0
        self.config: TxConfig | None = None

    # -- the byte interface ----------------------------------------------------------------

    def feed(self, data: bytes | bytearray | memoryview) -> bytes:
        """Take host bytes; return the reply bytes due now. Never raises on wire input."""
        for token in self._decoder.feed(data):
            self._handle(token)
        out = bytes(self._ready)
        self._ready.clear()
        return out

    def take(self, now: float | None = None) -> bytes:
        """The held bytes due by ``now`` (default: the clock), in order."""
        now = self._clock() if now is None else now
        out = bytearray()
        while self._late and self._late[0][0] <= now:
            out += heapq.heappop(self._late)[2]
        return bytes(out)

    def next_due(self) -> float | None:
        return self._late[0][0] if self._late else None

    def warm_up(self) -> None:
        """Load (or compile) the numba kernels now rather than in the first work."""
        sweeper = _Sweeper(Work(0, bytes(32), bytes(12)))
        sweeper.meeting(0, 64, 1)
        sweeper.digest(0)

    def stats(self) -> S3EmulatorStats:
        d, n = self._decoder, self._n
        return S3EmulatorStats(
            d.tokens,
            d.crc_errors,
            d.garbage_bytes,
            d.malformed,
            n["configs"],
            n["status"],
            n["works"],
            n["works_dropped"],
            n["tokens"],
            n["nonces"],
            n["found"],
            n["dropped"],
            n["garbage"],
            n["hashes"],
            self._hash_seconds,
        )

    # -- tokens ----------------------------------------------------------------------------

    def _handle(self, token: TxToken) -> None:
        if isinstance(token, TxConfig):
            self._n["configs"] += 1
            self.config = token
            if token.flags & ConfigFlag.RESET:
                self._n["found"] = 0  # the running nonce count starts again
        elif isinstance(token, RxStatusRequest):
            self._n["status"] += 1
            self._emit(self._status(token).to_bytes(), late=False)
        else:
            accepted = token.works[: self.fifo_depth]  # the fifo is empty between tasks
            self._n["works_dropped"] += len(token.works) - len(accepted)
            for k, work in enumerate(accepted):
                space = self.fifo_depth - (len(accepted) - k - 1)
                self._reply(work, token.diff, space)

    def _status(self, request: RxStatusRequest) -> RxStatus:
        words = RxStatus.words_for(max(self.chain_asic_num))
        exist: list[int] = []
        healthy: list[int] = []
        first = 0
        for count in self.chain_asic_num:
            bits = [(i, first + i) for i in range(count)]
            exist += self._bitmap(words, [i for i, _ in bits])
            healthy += self._bitmap(words, [i for i, g in bits if g != self.dead_chip])
            first += count
        return RxStatus(
            flags=int(request.flags & StatusFlag.CHIP_STATUS),
            fifo_space=self.fifo_depth,
            hw_version=HW_VERSION,
            fan_exist=0b11,
            temp_exist=(1 << self.chains) - 1,
            nonce_error=0,
            reg_value=0,
            chain_asic_num=self.chain_asic_num,
            temps=tuple(40 + c for c in range(self.chains)),
            fans=(60, 60),
            asic_exist=tuple(exist),
            asic_status=tuple(healthy),
        )

    @staticmethod
    def _bitmap(words: int, asics: list[int]) -> list[int]:
        """ASIC bitmap words, MSB = ASIC 0 (section 3.3)."""
        out = [0] * words
        for i in asics:
            out[i // 32] |= 1 << (31 - i % 32)
        return out

    # -- works -----------------------------------------------------------------------------

    def _sweep(self, work: Work, required: int) -> list[int]:
        """Every chip's nonces (kernel order) for ``work``; the dead chip finds none."""
        sweeper = _Sweeper(work)
        share = NONCE_SPACE // self.chips
        found: list[int] = []
        began = time.perf_counter()
        for chip in range(self.chips):
            if chip != self.dead_chip:
                start = (self.sweep_start + chip * share) % NONCE_SPACE
                found += sweeper.meeting(start, self.sweep_limit, required)
                self._n["hashes"] += self.sweep_limit
        self._hash_seconds += time.perf_counter() - began
        return found

    def _reply(self, work: Work, diff: int, fifo_space: int) -> None:
        self._n["works"] += 1
        genuine = [bswap32(n) for n in self._sweep(work, self.zero_bits + diff)]
        self._n["found"] += len(genuine)
        entries: list[NonceEntry] = []
        for value in genuine:
            if self._due("drop_nonce"):
                self._n["dropped"] += 1
                continue
            entries.append(NonceEntry(work.work_id, value))
            if self._due("duplicate"):
                entries.append(NonceEntry(work.work_id, value))
        self._rng.shuffle(entries)  # chips answer out of order
        if self._due("stale_job"):  # section 3.3: a work ID the host cannot find
            bogus = work.work_id ^ _UNKNOWN_WORK
            entries += [NonceEntry(bogus, v) for v in (genuine[:2] or [0])]
        total = self._n["found"] % (1 << 64)
        for at in range(0, len(entries), NONCES_PER_TOKEN):
            chunk = tuple(entries[at : at + NONCES_PER_TOKEN])
            token = RxNonce(fifo_space, chunk, diff=diff, total_nonce_num=total)
            self._n["nonces"] += len(chunk)
            self._emit(token.to_bytes(), late="late" in self.faults)

    # -- output and faults -----------------------------------------------------------------

    def _due(self, kind: str) -> bool:
        """Whether fault ``kind`` hits this event (every ``fault_every``-th one)."""
        if kind not in self.faults:
            return False
        self._counts[kind] = self._counts.get(kind, 0) + 1
        return self._counts[kind] % self.fault_every == 0

    def _emit(self, token: bytes, *, late: bool) -> None:
        out = token
        if self._due("bad_crc"):
            out = out[:-1] + bytes((out[-1] ^ 0x01,))  # one bit: the CRC-16 always sees it
        if self._due("garbage"):  # never A1/A2: a false token start could hold a real one
            junk = bytes(self._rng.randrange(0xA0) for _ in range(self._rng.randrange(1, 9)))
            self._n["garbage"] += len(junk)
            out = junk + out
        self._n["tokens"] += 1
        if late:
            due = self._clock() + self.late_delay
            heapq.heappush(self._late, (due, self._n["tokens"], out))
        else:
            self._ready += out


class S3Emulator(PtyEmulator):
    """An ``S3Engine`` behind a pty; ``slave_path`` is the host's device (the S2 style).

    ``start()`` loads the hashing kernels, opens the pty (raw mode; the slave stays open
    here, so a host may close and reopen it) and starts one thread; ``stop()`` joins it
    and closes both ends. Use it as a context manager (the pty and the thread are
    ``PtyEmulator``'s). Arguments go to ``S3Engine``.
    """

    _name = "s3-emulator"
    _label = "S3"

    def __init__(
        self,
        chips: int,
        zero_bits: int,
        faults: set[str] | frozenset[str] = frozenset(),
        **options: Any,
    ) -> None:
        super().__init__()
        self.engine = S3Engine(chips, zero_bits, faults, **options)
        self._outbox = bytearray()

    def stats(self) -> S3EmulatorStats:
        return self.engine.stats()

    def _prepare(self) -> None:
        self.engine.warm_up()

    def _tick(self) -> None:
        self._outbox += self.engine.take()

    def _next_due(self) -> float | None:
        return self.engine.next_due()

    def _received(self, data: bytes) -> None:
        self._outbox += self.engine.feed(data)

    def _has_output(self) -> bool:
        return bool(self._outbox)

    def _write_some(self) -> None:
        if self._outbox:
            del self._outbox[: self._try_write(self._outbox)]
