"""A BM13xx (BM1370) chip chain driven over a serial link (asic-protocols.md, 1-2, 5, 9).

``Bm13xxChain`` runs the init sequence (MIDSTATE_CONFIG with rolling off, so every chip
answers in the 11-byte format and hashes the header's own version; enumeration by a
broadcast chip-ID read until silence; chain inactive; one address per chip), keeps the
ticket mask in step with the zero bits asked for, and mines one full-header job at a
time: ``mine(header, zero_bits)`` sends the job with the header's nonce as starting nonce,
collects responses until the job's sweep is known complete, verifies every nonce on the
host with hashlib and returns the valid ones as ``(chip, nonce)`` in scan order.

"Known complete" is explicit (``SweepBound``): each chip sweeps ``nonces_per_chip``
nonces of its share ``n0 + i * floor(2^32 / N)`` (the emulator's model; a real BM1370
needs CHIP_NONCE_OFFSET set to match, not done here), which takes at most ``seconds``;
the driver waits that long, then keeps reading while responses still come (a response
watchdog: ``quiet`` seconds of silence end the job). Nothing is trusted before that.

The chip's hard-wired difficulty is ``base_zero_bits`` (32 on silicon, the emulator's
``zero_bits`` knob otherwise); TICKET_MASK asks for the rest, so ``mine`` serves any
``zero_bits >= base_zero_bits``.

``DRIVER`` is this module's entry in ``devices.registry``: it opens a chain with
``open_chain``, refuses a baud that is not one of the chip's rates, and runs
``hasherd emulate bm1370`` from ``emulate.bm1370_command``.
"""

from __future__ import annotations

import hashlib
import time

from hasherd.devices.chain import (
    NONCE_SPACE,
    ChainError,
    ChainSettings,
    ChainStats,
    ChipStats,
    ChipTable,
    Driver,
    MineResult,
    Problem,
    SweepBound,
    collect,
    covered_prefix,
)
from hasherd.errors import InputError
from hasherd.kernel import spec
from hasherd.protocol.bm13xx import (
    ChainInactive,
    Chip,
    FullHeaderJob,
    ReadRegister,
    Register,
    RegisterResponse,
    Response,
    ResponseDecoder,
    SetChipAddress,
    VersionNonceResponse,
    WriteRegister,
    baud_divider,
    baud_rate,
    ticket_mask,
    uart_baud_value,
    version_rolling_value,
)
from hasherd.transport.serial_link import SerialLink, SerialTimeoutError, open_serial

__all__ = ["DRIVER", "Bm13xxChain", "open_chain"]

_ROLLING_OFF = version_rolling_value(0)  # 0x90000000: 11-byte answers, no version rolling
_JOB_STEP = 24  # BM1368/70: (id + 24) % 128 cycles the 16 multiples of 8 (section 2.7)
_BAUD_RANGE = "the chip's rates are 3125000 / (d + 1), d = 0..255"


class Bm13xxChain:
    """A BM1370 chain behind ``link``; call ``init`` once, then ``mine``."""

    def __init__(
        self,
        link: SerialLink,
        bound: SweepBound,
        *,
        base_zero_bits: int = 32,
        chip: Chip = Chip.BM1370,
        enumerate_quiet: float = 0.2,
    ) -> None:
        if chip is not Chip.BM1370:
            raise ChainError(link.path, f"only BM1370 is supported, not {chip.name}")
        self.link = link
        self.bound = bound
        self.base_zero_bits = spec.check_zero_bits(base_zero_bits, "base_zero_bits")
        self.chip = chip
        self.enumerate_quiet = enumerate_quiet
        self.addresses: list[int] = []
        self._decoder = ResponseDecoder(11)
        self._stats = ChainStats()
        self._job_id = 0
        self._zero_bits: int | None = None

    @property
    def chips(self) -> int:
        return len(self.addresses)

    @property
    def nonces_per_chip(self) -> int:
        """Nonces each chip sweeps per job (the bound's, or the whole share)."""
        if not self.addresses:
            raise ChainError(self.link.path, "not initialised")
        return self.bound.nonces_per_chip or NONCE_SPACE // self.chips

    def window_at(self, n0: int) -> int:
        """Nonces from ``n0`` one job covers without a gap: a job starts its chips at
        ``n0`` (plus their shares), so it is ``covered_prefix`` for every header."""
        return covered_prefix(self.chips, self.nonces_per_chip)

    def stats(self) -> ChainStats:
        """The counters, with the decoder's folded in (a live object: copy to keep)."""
        s = self._stats
        s.crc_errors = self._decoder.crc_errors
        s.garbage_bytes = self._decoder.garbage_bytes
        s.unknown_frames = self._decoder.unknown_frames
        return s

    # -- init ------------------------------------------------------------------------------

    async def _send(self, frame: bytes) -> None:
        await self.link.write(frame)

    async def _collect(
        self, quiet: float, until: float | None = None, count: int | None = None
    ) -> list[Response]:
        """Responses until ``quiet`` s of silence (and not before ``until``, monotonic), or
        until ``count`` of them arrived."""
        return await collect(
            self.link.read,
            self._decoder.feed,
            (SerialTimeoutError,),
            quiet,
            self.bound.max_wait,
            until,
            lambda out: count is not None and len(out) >= count,
        )

    async def _read_ids(
        self, address: int, broadcast: bool, count: int | None
    ) -> tuple[list[RegisterResponse], int]:
        """One chip-ID read: the answers, and the frames lost to CRC errors meanwhile."""
        before = self._decoder.crc_errors
        await self._send(ReadRegister(Register.CHIP_ID, address, broadcast).to_bytes())
        answers = await self._collect(self.enumerate_quiet, count=count)
        ids = [
            r for r in answers if isinstance(r, RegisterResponse) and r.register == Register.CHIP_ID
        ]
        return ids, self._decoder.crc_errors - before

    async def init(self, expected_chips: int | None = None, attempts: int = 3) -> int:
        """Enumerate and address the chain; returns the chip count.

        A chip-ID answer lost to a CRC error still counts as a chip (its frame came), the
        broadcast read is repeated up to ``attempts`` times while CRC errors occur (the
        largest count wins), and every address is then confirmed by a single-chip read
        (retried ``attempts`` times), so a noisy line cannot shrink or grow the chain.
        """
        rolling = WriteRegister(Register.MIDSTATE_CONFIG, _ROLLING_OFF, broadcast=True).to_bytes()
        for _ in range(3):  # section 2.9: 0xA4 several times before enumerating
            await self._send(rolling)
        await self._collect(self.enumerate_quiet)  # drop anything stale
        count = 0
        for _ in range(attempts):
            ids, lost = await self._read_ids(0, True, None)
            wrong = sorted({hex(r.chip_id) for r in ids if r.chip_id != self.chip.chip_id})
            if wrong:
                raise ChainError(self.link.path, f"chip IDs {wrong}, expected {self.chip.name}")
            count = max(count, len(ids) + lost)
            if not lost:
                break
        if not count:
            raise ChainError(self.link.path, "no chip answered the chip-ID read")
        if expected_chips is not None and count != expected_chips:
            raise ChainError(self.link.path, f"{count} chips answered, expected {expected_chips}")
        await self._send(ChainInactive().to_bytes())
        step = 256 // count
        self.addresses = [i * step for i in range(count)]
        for address in self.addresses:
            await self._send(SetChipAddress(address).to_bytes())
        await self._send(rolling)
        for address in self.addresses:
            for _ in range(attempts):
                ids, _lost = await self._read_ids(address, False, 1)
                if any(r.chip_address == address for r in ids):
                    break
            else:
                self.addresses = []
                raise ChainError(self.link.path, f"chip at address {address} does not answer")
        self._stats = ChainStats([ChipStats(a) for a in self.addresses])
        self._zero_bits = None
        return count

    async def set_baud(self, baud: float) -> float:
        """Switch chips and host to the chip rate nearest ``baud`` (section 2.4); returns
        the chip's exact rate. The host is set to that rate rounded."""
        divider = baud_divider(baud)
        await self._send(
            WriteRegister(Register.UART_BAUD, uart_baud_value(divider), broadcast=True).to_bytes()
        )
        exact = baud_rate(divider)
        await self.link.set_baud(round(exact))
        return exact

    async def set_zero_bits(self, zero_bits: int) -> None:
        """TICKET_MASK for ``zero_bits`` (>= the hard-wired ``base_zero_bits``)."""
        k = spec.check_zero_bits(zero_bits)
        if k < self.base_zero_bits:
            raise ChainError(
                self.link.path, f"zero_bits {k} is below the chip's {self.base_zero_bits}"
            )
        if k != self._zero_bits:
            mask = ticket_mask(1 << (k - self.base_zero_bits))
            await self._send(WriteRegister(Register.TICKET_MASK, mask, broadcast=True).to_bytes())
            self._zero_bits = k

    # -- jobs ------------------------------------------------------------------------------

    def _next_job_id(self) -> int:
        self._job_id = (self._job_id + _JOB_STEP) % 128
        return self._job_id

    def _chip_of(self, offset: int) -> int:
        return min(offset // (NONCE_SPACE // self.chips), self.chips - 1)

    async def mine(self, header: bytes, zero_bits: int) -> MineResult:
        """One job for ``header`` (its nonce is the starting nonce), the sweep waited out."""
        if not self.addresses:
            raise ChainError(self.link.path, "not initialised")
        if len(header) != spec.HEADER_BYTES:
            raise InputError("header", f"expected 80 bytes, got {len(header)}")
        await self.set_zero_bits(zero_bits)
        job = FullHeaderJob.from_header(self._next_job_id(), header)
        n0 = job.starting_nonce
        lost_before = self._decoder.crc_errors + self._decoder.unknown_frames
        await self._send(job.to_bytes())
        self._stats.jobs += 1
        sent = time.monotonic()
        responses = await self._collect(self.bound.quiet, until=sent + self.bound.seconds)
        prefix = header[:76]
        seen: set[int] = set()
        found: list[tuple[int, int]] = []
        for r in responses:
            if not isinstance(r, VersionNonceResponse):
                self._stats.unexpected += 1
                continue
            if r.job_id(self.chip) != job.job_id:
                self._stats.stale += 1
                continue
            offset = (r.nonce - n0) % NONCE_SPACE
            stats = self._stats.chips[self._chip_of(offset)]
            version = r.rolled_version(job.version)
            hdr = version.to_bytes(4, "little") + prefix[4:] + r.nonce.to_bytes(4, "little")
            digest = hashlib.sha256(hashlib.sha256(hdr).digest()).digest()
            if version != job.version or not spec.meets(digest, zero_bits):
                stats.invalid += 1
            elif r.nonce in seen:
                stats.duplicates += 1
            else:
                seen.add(r.nonce)
                stats.nonces += 1
                found.append((self._chip_of(offset), r.nonce))
        found.sort(key=lambda item: (item[1] - n0) % NONCE_SPACE)
        per_chip = self.nonces_per_chip
        for chip in self._stats.chips:
            chip.hashes += per_chip
        lost = self._decoder.crc_errors + self._decoder.unknown_frames - lost_before
        return MineResult(job.job_id, tuple(found), self.chips * per_chip, lost)

    async def close(self) -> None:
        await self.link.close()


async def open_chain(
    path: str,
    bound: SweepBound,
    *,
    base_zero_bits: int = 32,
    expected_chips: int | None = None,
    baud: float | None = None,
    enumerate_quiet: float = 0.2,
) -> Bm13xxChain:
    """Open ``path``, initialise the chain (and switch baud if asked); close on failure."""
    link = await open_serial(path)
    chain = Bm13xxChain(link, bound, base_zero_bits=base_zero_bits, enumerate_quiet=enumerate_quiet)
    try:
        await chain.init(expected_chips)
        if baud is not None:
            await chain.set_baud(baud)
    except BaseException:
        await link.close()
        raise
    return chain


def _check(table: ChipTable) -> list[Problem]:
    """A baud to switch to must be one of the chip's rates (section 2.4)."""
    if not table.baud:
        return []
    try:
        baud_divider(table.baud)
    except InputError as exc:
        return [("baud", f"{exc.problem}; {_BAUD_RANGE}")]
    return []


async def _open(path: str, settings: ChainSettings) -> Bm13xxChain:
    return await open_chain(
        path,
        settings.bound,
        base_zero_bits=settings.base_zero_bits,
        expected_chips=settings.expected_chips,
        baud=settings.baud,
        enumerate_quiet=settings.enumerate_quiet,
    )


DRIVER = Driver(
    name="bm1370",
    description="a BM1370 chain (full-header jobs)",
    open=_open,
    check=_check,
    emulator="hasherd.emulate.bm1370_command",
)
