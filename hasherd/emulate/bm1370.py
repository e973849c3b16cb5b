"""A BM1370 chip chain on a real pty (asic-protocols.md, sections 1-2, 5 and 9).

``ChainEmulator`` owns a pty pair and answers on its master side from one thread (both
from ``emulate.pty.PtyEmulator``): enumeration, chain inactive, set address, a register
file per chip, the ticket mask, a baud switch that really changes the pty's termios
speed, and full-header jobs. Each chip
hashes its share of the nonce space with ``hashlib`` (a window of ``sweep_limit`` nonces
per job) and reports the nonces whose double SHA-256 has ``zero_bits`` (the reduced,
"hard-wired" difficulty of section 5) plus the ticket mask's bits of leading zeros. Every
reported nonce really meets that difficulty. Faults (``FAULTS``) are injected on purpose,
deterministically: every ``fault_every``-th eligible response.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import random
import struct
import termios
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from hasherd.emulate.pty import PtyEmulator
from hasherd.emulate.stream import CommandDecoder, HostFrame
from hasherd.errors import InputError
from hasherd.kernel import spec
from hasherd.protocol.bm13xx import (
    ChainInactive,
    Chip,
    FullHeaderJob,
    NonceResponse,
    ReadRegister,
    Register,
    RegisterResponse,
    SetChipAddress,
    VersionNonceResponse,
    WriteRegister,
    baud_rate,
    uart_baud_divider,
)

__all__ = ["FAULTS", "ChainEmulator", "EmulatorStats", "share_start"]

LOGGER = logging.getLogger(__name__)

FAULTS = frozenset(
    {"bad_crc", "garbage", "duplicate", "stale_job", "dead_chip", "late", "drop_nonce"}
)
NONCE_SPACE = 1 << 32
JOBS_KEPT = 16  # section 5: keep the last ~16 jobs
_CHIP = Chip.BM1370
_ROLLING_ON = 0x8000_0000  # MIDSTATE_CONFIG bit 31: 11-byte responses (section 1.3)
_RESET_REGISTERS: dict[int, int] = {
    Register.CHIP_ID: _CHIP.chip_id << 16,
    Register.UART_BAUD: 0x0130_1A00,
}
_RATES = (
    115200,
    230400,
    460800,
    500000,
    576000,
    921600,
    1000000,
    1152000,
    1500000,
    2000000,
    2500000,
    3000000,
    3500000,
    4000000,
)
_STANDARD_BAUDS = tuple((r, getattr(termios, f"B{r}")) for r in _RATES if hasattr(termios, f"B{r}"))


def share_start(job_start: int, index: int, chips: int) -> int:
    """Where chip ``index`` of ``chips`` starts sweeping a job that starts at ``job_start``:
    the nonce space split in equal contiguous shares by chain position (section 9 scans
    from the header's own nonce)."""
    return (job_start + index * (NONCE_SPACE // chips)) % NONCE_SPACE


def leading_zero_bits(digest: bytes) -> int:
    """Leading zero bits of a SHA-256d digest read as a little-endian integer (4.2)."""
    return 256 - int.from_bytes(digest, "little").bit_length()


def ticket_bits(value: int) -> int:
    """Extra zero bits a TICKET_MASK value asks for (2.3: bytes bit-reversed in place).
    The chip test is bitwise; a mask that is not ``2^n - 1`` is rounded up, so a reported
    nonce always meets it."""
    mask = bytes(int(f"{b:08b}"[::-1], 2) for b in value.to_bytes(4, "big"))
    return int.from_bytes(mask, "big").bit_length()


def nearest_termios_speed(baud: float) -> tuple[int, int]:
    """The standard termios rate nearest to ``baud`` (a pty takes only B* constants via
    ``tcsetattr``), as (rate, constant)."""
    return min(_STANDARD_BAUDS, key=lambda item: abs(item[0] - baud))


@dataclass
class ChipState:
    """One chip of the chain: its address, addressing-mode flag and register file."""

    index: int
    address: int = 0
    addressing: bool = False
    registers: dict[int, int] = field(default_factory=lambda: dict(_RESET_REGISTERS))

    def read(self, register: int) -> int:
        value = self.registers.get(register, 0)
        return value | self.address if register == Register.CHIP_ID else value

    def write(self, register: int, value: int) -> None:
        if register != Register.CHIP_ID:  # the chip ID is read-only; 0x40 sets the address
            self.registers[register] = value

    @property
    def response_size(self) -> int:
        return 11 if self.registers.get(Register.MIDSTATE_CONFIG, 0) & _ROLLING_ON else 9

    @property
    def required_bits(self) -> int:
        return ticket_bits(self.registers.get(Register.TICKET_MASK, 0))


@dataclass(frozen=True, slots=True)
class EmulatorStats:
    """A snapshot: host frames decoded / rejected, jobs taken, what went back."""

    frames: int
    crc_errors: int
    garbage_bytes: int
    unknown_frames: int
    jobs: int
    responses_sent: int
    nonces_sent: int
    garbage_bytes_sent: int
    baud: float
    termios_baud: int
    nonces_dropped: int = 0


@dataclass
class _JobRecord:
    job: FullHeaderJob
    found: list[bytes] = field(default_factory=list)  # the nonce frames it produced


class ChainEmulator(PtyEmulator):
    """``chips`` BM1370s behind one pty; ``slave_path`` is the host's serial port.

    ``start()`` opens the pty (raw mode; the slave stays open here, so a host may close and
    reopen it) and starts the thread; ``stop()`` joins it and closes both ends. Use it as a
    context manager (all of that is ``PtyEmulator``'s). ``zero_bits`` replaces the chip's
    hard-wired 32 (0..32).
    """

    _name = "bm1370-emulator"
    _label = "BM1370"

    def __init__(
        self,
        chips: int,
        zero_bits: int,
        faults: set[str] | frozenset[str] = frozenset(),
        *,
        sweep_limit: int = 1024,
        fault_every: int = 2,
        late_delay: float = 0.5,
        dead_chip: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if isinstance(chips, bool) or not isinstance(chips, int) or not 1 <= chips <= 256:
            raise InputError("chips", f"{chips!r} is outside 1..256")
        self.zero_bits = spec.check_zero_bits(zero_bits)
        unknown = set(faults) - FAULTS
        if unknown:
            raise InputError("faults", f"unknown {sorted(unknown)}; known {sorted(FAULTS)}")
        if not 1 <= sweep_limit <= NONCE_SPACE // chips:
            raise InputError("sweep_limit", f"{sweep_limit} is outside 1..{NONCE_SPACE // chips}")
        if fault_every < 1:
            raise InputError("fault_every", f"{fault_every} is not positive")
        if late_delay < 0:
            raise InputError("late_delay", f"{late_delay} is negative")
        dead = dead_chip if dead_chip is not None else chips - 1
        if not 0 <= dead < chips:
            raise InputError("dead_chip", f"{dead} is outside 0..{chips - 1}")
        self.chips = [ChipState(i) for i in range(chips)]
        self.faults = frozenset(faults)
        self.sweep_limit = sweep_limit
        self.fault_every = fault_every
        self.late_delay = late_delay
        self.dead_chip = dead if "dead_chip" in self.faults else None
        self._rng = random.Random(seed)
        self._decoder = CommandDecoder()
        self._jobs: OrderedDict[int, _JobRecord] = OrderedDict()
        self._outbox: deque[bytes | int] = deque()  # an int: switch to that divider here
        self._late: list[tuple[float, int, bytes]] = []
        self._counts: dict[str, int] = {}
        self._sent = {"responses": 0, "nonces": 0, "garbage": 0, "jobs": 0, "dropped": 0}
        self._divider = uart_baud_divider(_RESET_REGISTERS[Register.UART_BAUD])
        self._termios_baud = 0

    def stats(self) -> EmulatorStats:
        d = self._decoder
        return EmulatorStats(
            d.frames,
            d.crc_errors,
            d.garbage_bytes,
            d.unknown_frames,
            self._sent["jobs"],
            self._sent["responses"],
            self._sent["nonces"],
            self._sent["garbage"],
            baud_rate(self._divider),
            self._termios_baud,
            self._sent["dropped"],
        )

    # -- the I/O loop (the pty and its thread are PtyEmulator's) ---------------------------

    def _opened(self) -> None:
        self._set_speed(baud_rate(self._divider))

    def _tick(self) -> None:
        self._release_late()

    def _next_due(self) -> float | None:
        return self._late[0][0] if self._late else None

    def _received(self, data: bytes) -> None:
        for frame in self._decoder.feed(data):
            self._handle(frame)

    def _has_output(self) -> bool:
        return bool(self._outbox)

    def _write_some(self) -> None:
        while self._outbox:
            item = self._outbox[0]
            if isinstance(item, int):  # every byte before the write went at the old rate
                self._outbox.popleft()
                self._set_speed(baud_rate(item))
                continue
            written = self._try_write(item)
            if written < len(item):
                self._outbox[0] = item[written:]
                return
            self._outbox.popleft()

    def _release_late(self) -> None:
        now = time.monotonic()
        while self._late and self._late[0][0] <= now:
            self._outbox.append(heapq.heappop(self._late)[2])

    def _set_speed(self, baud: float) -> None:
        rate, constant = nearest_termios_speed(baud)
        attrs = termios.tcgetattr(self._slave)
        attrs[4] = attrs[5] = constant
        termios.tcsetattr(self._slave, termios.TCSANOW, attrs)
        self._termios_baud = rate

    # -- the chain -------------------------------------------------------------------------

    def _reachable(self) -> list[ChipState]:
        """Chips a command reaches: a chip in addressing mode relays nothing downstream."""
        out: list[ChipState] = []
        for chip in self.chips:
            out.append(chip)
            if chip.addressing:
                break
        return out

    def _targets(self, address: int, broadcast: bool) -> list[ChipState]:
        return [c for c in self._reachable() if broadcast or c.address == address]

    def _handle(self, frame: HostFrame) -> None:
        if isinstance(frame, ChainInactive):
            for chip in self.chips:
                chip.addressing = True
        elif isinstance(frame, SetChipAddress):
            chip = self._reachable()[-1]
            if chip.addressing:  # the first unaddressed chip takes it and starts relaying
                chip.address, chip.addressing = frame.address, False
        elif isinstance(frame, WriteRegister):
            self._write(frame)
        elif isinstance(frame, ReadRegister):
            self._read(frame)
        else:
            self._job(frame)

    def _write(self, cmd: WriteRegister) -> None:
        targets = self._targets(cmd.chip_address, cmd.broadcast)
        for chip in targets:
            chip.write(cmd.register, cmd.value)
        divider = uart_baud_divider(cmd.value)
        if cmd.register == Register.UART_BAUD and targets and divider != self._divider:
            self._divider = divider
            self._outbox.append(divider)  # section 2.4: answer at the new rate from here on

    def _read(self, cmd: ReadRegister) -> None:
        frames = [
            RegisterResponse(
                chip.read(cmd.register), chip.address, cmd.register, chip.response_size
            ).to_bytes()
            for chip in self._targets(cmd.chip_address, cmd.broadcast)
            if chip.index != self.dead_chip
        ]
        self._rng.shuffle(frames)  # section 5: do not promise an order
        for frame in frames:
            self._emit(frame, nonce=False)

    # -- jobs ------------------------------------------------------------------------------

    def _job(self, job: FullHeaderJob) -> None:
        self._sent["jobs"] += 1
        previous = next(reversed(self._jobs.values()), None)
        record = _JobRecord(job)
        self._jobs.pop(job.job_id, None)
        self._jobs[job.job_id] = record
        while len(self._jobs) > JOBS_KEPT:
            self._jobs.popitem(last=False)
        for chip in self.chips:
            if chip.index != self.dead_chip:
                record.found += self._sweep(chip, job)
        self._rng.shuffle(record.found)  # chips answer out of order
        for frame in record.found:
            if self._due("drop_nonce"):  # found, never sent: only a second opinion sees it
                self._sent["dropped"] += 1
                continue
            self._emit(frame, nonce=True)
        if "stale_job" in self.faults and previous is not None and previous is not record:
            for frame in previous.found[:2]:  # in-flight nonces of a replaced job (2.8)
                self._emit(frame, nonce=True, faulty=False)

    def _sweep(self, chip: ChipState, job: FullHeaderJob) -> list[bytes]:
        """The nonce frames ``chip`` reports in its window of its share of ``job``."""
        base = hashlib.sha256(job.header(0)[:76])
        required = self.zero_bits + chip.required_bits
        start = share_start(job.starting_nonce, chip.index, len(self.chips))
        found: list[bytes] = []
        for step in range(self.sweep_limit):
            nonce = (start + step) % NONCE_SPACE
            inner = base.copy()
            inner.update(struct.pack("<I", nonce))
            digest = hashlib.sha256(inner.digest()).digest()
            zeros = leading_zero_bits(digest)
            if zeros >= required and spec.meets(digest, min(self.zero_bits, 32)):
                found.append(self._nonce_frame(chip, job, nonce, 2 * (zeros - required)))
        return found

    def _nonce_frame(self, chip: ChipState, job: FullHeaderJob, nonce: int, excess: int) -> bytes:
        if chip.response_size == 9:  # a fresh chip, before 0xA4 bit 31 (section 1.3)
            return NonceResponse(nonce, 0, job.job_id).to_bytes()
        # R: job byte bits 6:3 in R[7:4] (BM1370, section 2.8), a sub-core in R[3:0]; no
        # version rolling is done, so V = 0 and the rolled version is the job's own.
        result = (job.job_id << 1) & 0xF0 | self._rng.randrange(16)
        return VersionNonceResponse(nonce, min(excess, 0xFF), result, 0).to_bytes()

    # -- output and faults -----------------------------------------------------------------

    def _due(self, kind: str) -> bool:
        """Whether fault ``kind`` hits this response (every ``fault_every``-th one)."""
        if kind not in self.faults:
            return False
        self._counts[kind] = self._counts.get(kind, 0) + 1
        return self._counts[kind] % self.fault_every == 0

    def _emit(self, frame: bytes, *, nonce: bool, faulty: bool = True) -> None:
        copies = 2 if nonce and faulty and self._due("duplicate") else 1
        for _ in range(copies):
            out = frame
            if faulty and self._due("bad_crc"):
                out = out[:-1] + bytes((out[-1] ^ 0x01,))  # one bit: CRC5 always catches it
            if faulty and self._due("garbage"):
                junk = bytes(self._rng.randrange(0xAA) for _ in range(self._rng.randrange(1, 9)))
                self._sent["garbage"] += len(junk)
                out = junk + out
            self._sent["responses"] += 1
            self._sent["nonces"] += nonce
            self._queue(out)

    def _queue(self, data: bytes) -> None:
        if "late" in self.faults:
            seq = self._sent["responses"]
            heapq.heappush(self._late, (time.monotonic() + self.late_delay, seq, data))
        else:
            self._outbox.append(data)
