"""An Antminer S3 controller driven over the S2/S3 token protocol (asic-protocols.md,
sections 3, 4.2 and 9), over USB (``UsbLink``) or a character device / pty
(``SerialLink``): anything that satisfies ``S3Link``.

``S3Chain.init`` sends the init ``TxConfig`` (reset, fan, timeout, frequency, voltage, chip
config), then a detect ``RxStatusRequest``, and reads the chain and ASIC counts (and the
health bitmap) from the ``RxStatus``. ``mine(header, zero_bits)`` sends one ``TxTask`` work
with the host-computed midstate (H0..H7, each LE) and ``data2 = swapwords(header[64:76])``
and ``diff = zero_bits - base_zero_bits``, waits out the ``SweepBound``, verifies every
returned nonce on the host with hashlib against the header, and returns the valid ones as
``(chip, nonce)`` in scan order from the header's own nonce ``n0``.

An S3 work carries no starting nonce, so chip ``i`` of ``N`` sweeps ``[i * floor(2^32 /
N), + nonces_per_chip)`` from nonce 0 (the emulator's model; the real controller's split is
not documented). The first nonce from ``n0`` in scan order is therefore only proven within
``window_at(n0)`` (``covered_run(n0, ...)``) nonces of ``n0``: the run of the swept windows
that starts at ``n0``, empty when ``n0`` is outside them. ``mine`` reports every valid
nonce it got; the caller decides what a result outside that run may prove.

Nonces are reported as ``(chip, n)`` with the header's nonce bytes equal to
``n.to_bytes(4, "little")``, as ``Bm13xxChain`` reports them.

``DRIVER`` is this module's entry in ``devices.registry``: it opens a controller with
``open_s3_chain``, refuses a baud switch (the link has none), and runs
``hasherd emulate s3`` from ``emulate.s3_command``.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

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
from hasherd.kernel.midstate import midstate
from hasherd.protocol.s3 import (
    ConfigFlag,
    RxDecoder,
    RxNonce,
    RxStatus,
    RxStatusRequest,
    RxToken,
    StatusFlag,
    TxConfig,
    TxTask,
    Work,
    data2_from_header,
)
from hasherd.transport.serial_link import SerialTimeoutError, open_serial
from hasherd.transport.usb_link import DEFAULT_SELECTOR, UsbTimeoutError, open_usb

__all__ = ["DRIVER", "INIT_CONFIG", "S3Chain", "S3Link", "S3Stats", "covered_run", "open_s3_chain"]

# Section 3.2, the cgminer init call: 8 chains x 32 ASICs, PWM 0xA0, timeout 0x2D, 282 MHz.
INIT_CONFIG = TxConfig(
    ConfigFlag.RESET
    | ConfigFlag.FAN
    | ConfigFlag.TIMEOUT
    | ConfigFlag.FREQUENCY
    | ConfigFlag.VOLTAGE
    | ConfigFlag.CHIP_CONFIG,
    chain_num=8,
    asic_num=32,
    reg_address=0x04,
)
_TIMEOUTS = (SerialTimeoutError, UsbTimeoutError)
_RECENT_WORKS = 16
_NO_FLAGS = StatusFlag(0)
_BACKLOG = 256  # nonce tokens kept while waiting for a status reply


class S3Link(Protocol):
    """What the driver needs of a link: ``SerialLink`` and ``UsbLink`` both fit."""

    path: str

    async def write(self, data: bytes) -> None: ...

    async def read(self, timeout: float) -> bytes: ...

    async def close(self) -> None: ...


@dataclass
class S3Stats(ChainStats):
    """``ChainStats`` plus what the S3 tells: ``stale`` counts nonces for a recent earlier
    work, ``unknown_work`` those for a work ID never sent (or long gone); ``missing`` the
    nonces the controller counted (``total_nonce_num``) that had not arrived when their
    job ended; ``unhealthy`` the chips present whose status bit is clear."""

    unknown_work: int = 0
    missing: int = 0
    status_replies: int = 0
    fifo_space: int = 0
    nonce_error: int = 0
    unhealthy: tuple[int, ...] = ()


def covered_run(n0: int, chips: int, nonces_per_chip: int) -> int:
    """How many nonces from ``n0`` on, in scan order, the S3 sweep covers without a gap
    (chip i sweeps ``[i * floor(2^32 / chips), + nonces_per_chip)``); 0 outside it."""
    share = NONCE_SPACE // chips
    pos = n0
    for i in range(chips):
        lo, hi = i * share, min(i * share + nonces_per_chip, NONCE_SPACE)
        if lo > pos:
            break
        pos = max(pos, hi)
    run = pos - n0
    if pos == NONCE_SPACE and n0:  # the run wraps to nonce 0
        run += min(covered_prefix(chips, nonces_per_chip), n0)
    return min(run, NONCE_SPACE)


def _unhealthy(status: RxStatus) -> tuple[int, ...]:
    """Chips present (``asic_exist``) whose ``asic_status`` bit is clear (MSB = ASIC 0)."""
    words = status.words_per_chain
    out: list[int] = []
    first = 0
    for chain, count in enumerate(status.chain_asic_num):
        for j in range(min(count, 32 * words)):
            word, bit = chain * words + j // 32, 1 << (31 - j % 32)
            if status.asic_exist[word] & bit and not status.asic_status[word] & bit:
                out.append(first + j)
        first += count
    return tuple(out)


class S3Chain:
    """An S3 controller behind ``link``; call ``init`` once, then ``mine``.

    ``base_zero_bits`` is the chips' hard-wired difficulty (32 on silicon, the emulator's
    ``zero_bits`` otherwise); the TxTask ``diff`` asks for the rest.
    """

    def __init__(
        self,
        link: S3Link,
        bound: SweepBound,
        *,
        base_zero_bits: int = 32,
        config: TxConfig = INIT_CONFIG,
        status_timeout: float = 0.5,
    ) -> None:
        self.link = link
        self.bound = bound
        self.base_zero_bits = spec.check_zero_bits(base_zero_bits, "base_zero_bits")
        self.config = config
        self.status_timeout = status_timeout
        self.chain_asic_num: tuple[int, ...] = ()
        self._decoder = RxDecoder(max_token=512)
        self._stats = S3Stats()
        self._work_id = 0
        self._prev_block: bytes | None = None
        self._seen: OrderedDict[int, set[int]] = OrderedDict()  # recent works: nonces seen
        self._backlog: list[RxNonce] = []
        self._total = 0  # the highest total_nonce_num seen
        self._total_accounted = 0

    @property
    def chips(self) -> int:
        return sum(self.chain_asic_num)

    def stats(self) -> S3Stats:
        """The counters, with the decoder's folded in (a live object: copy to keep)."""
        s = self._stats
        s.crc_errors = self._decoder.crc_errors
        s.garbage_bytes = self._decoder.garbage_bytes
        s.unknown_frames = self._decoder.malformed
        return s

    @property
    def nonces_per_chip(self) -> int:
        """Nonces each chip sweeps per work (the bound's; 0 there means the whole share)."""
        if not self.chain_asic_num:
            raise ChainError(self.link.path, "not initialised")
        return self.bound.nonces_per_chip or NONCE_SPACE // self.chips

    def window_at(self, n0: int) -> int:
        """Nonces from ``n0`` one job covers without a gap: a work starts its chips at
        fixed offsets from 0, so it is ``covered_run``, which depends on where ``n0``
        falls."""
        return covered_run(n0, self.chips, self.nonces_per_chip)

    # -- I/O -------------------------------------------------------------------------------

    async def _collect(
        self, quiet: float, until: float | None = None, want_status: bool = False
    ) -> list[RxToken]:
        """Tokens until ``quiet`` s of silence (and not before ``until``, monotonic), or
        until an RxStatus came when ``want_status``."""
        return await collect(
            self.link.read,
            self._decoder.feed,
            _TIMEOUTS,
            quiet,
            self.bound.max_wait,
            until,
            lambda out: want_status and any(isinstance(t, RxStatus) for t in out),
        )

    def _note(self, token: RxToken) -> None:
        """Fifo space and counters every token carries."""
        self._stats.fifo_space = token.fifo_space
        if isinstance(token, RxStatus):
            self._stats.status_replies += 1
            self._stats.nonce_error = token.nonce_error
        else:
            self._total = max(self._total, token.total_nonce_num)

    async def status(self, flags: StatusFlag = _NO_FLAGS) -> RxStatus:
        """Ask for an RxStatus and wait for it (``status_timeout``); nonce tokens that
        arrive meanwhile are kept for the next ``mine``."""
        await self.link.write(RxStatusRequest(flags).to_bytes())
        reply: RxStatus | None = None
        for token in await self._collect(self.status_timeout, want_status=True):
            self._note(token)
            if isinstance(token, RxStatus):
                reply = reply or token
            else:
                self._backlog = [*self._backlog, token][-_BACKLOG:]
        if reply is None:
            raise ChainError(self.link.path, f"no RxStatus within {self.status_timeout:g} s")
        return reply

    # -- init ------------------------------------------------------------------------------

    async def init(self, expected_chips: int | None = None, attempts: int = 3) -> int:
        """Configure, detect, and return the ASIC count (all chains)."""
        await self.link.write(self.config.to_bytes())
        await self._collect(0.05)  # drop anything stale
        self._backlog = []
        reply: RxStatus | None = None
        for _ in range(attempts):
            try:
                reply = await self.status(StatusFlag.DETECT_GET)
                break
            except ChainError:
                continue
        if reply is None:
            raise ChainError(self.link.path, "no RxStatus answered the detect request")
        if not sum(reply.chain_asic_num):
            raise ChainError(self.link.path, "the controller reports no ASICs")
        count = sum(reply.chain_asic_num)
        if expected_chips is not None and count != expected_chips:
            raise ChainError(self.link.path, f"{count} ASICs reported, expected {expected_chips}")
        self.chain_asic_num = reply.chain_asic_num
        self._stats = S3Stats(
            [ChipStats(i) for i in range(count)],
            fifo_space=reply.fifo_space,
            nonce_error=reply.nonce_error,
            status_replies=1,
            unhealthy=_unhealthy(reply),
        )
        self._seen.clear()
        self._backlog = []
        self._total = self._total_accounted = 0  # the reset flag restarts the count
        return count

    # -- jobs ------------------------------------------------------------------------------

    def _next_work_id(self) -> int:
        self._work_id = self._work_id % 0xFFFF_FFFF + 1  # a u32 counter, never 0
        return self._work_id

    def _chip_of(self, n: int) -> int:
        return min(n // (NONCE_SPACE // self.chips), self.chips - 1)

    async def _send_work(self, header: bytes, diff: int) -> int:
        if self._stats.fifo_space == 0 and (await self.status()).fifo_space == 0:
            raise ChainError(self.link.path, "the controller's work fifo is full")
        work = Work(self._next_work_id(), midstate(header), data2_from_header(header))
        new_block = header[4:36] != self._prev_block  # cgminer: set when the block changed
        self._prev_block = header[4:36]
        await self.link.write(TxTask((work,), new_block, diff).to_bytes())
        self._seen[work.work_id] = set()
        while len(self._seen) > _RECENT_WORKS:
            self._seen.popitem(last=False)
        self._stats.jobs += 1
        return work.work_id

    async def mine(self, header: bytes, zero_bits: int) -> MineResult:
        """One work for ``header``, the sweep waited out (see the module docstring)."""
        if not self.chain_asic_num:
            raise ChainError(self.link.path, "not initialised")
        if len(header) != spec.HEADER_BYTES:
            raise InputError("header", f"expected 80 bytes, got {len(header)}")
        k = spec.check_zero_bits(zero_bits)
        if k < self.base_zero_bits:
            raise ChainError(
                self.link.path, f"zero_bits {k} is below the chips' {self.base_zero_bits}"
            )
        lost_before = self._decoder.crc_errors + self._decoder.malformed
        wid = await self._send_work(header, k - self.base_zero_bits)
        sent = time.monotonic()
        tokens: list[RxToken] = [*self._backlog]
        self._backlog = []
        tokens += await self._collect(self.bound.quiet, until=sent + self.bound.seconds)
        found, received = self._take(tokens, wid, header, k)
        new = self._total - self._total_accounted
        self._stats.missing += max(0, new - received)
        self._total_accounted = self._total
        n0 = spec.scan_start(header)
        found.sort(key=lambda item: (item[1] - n0) % NONCE_SPACE)
        for chip in self._stats.chips:
            chip.hashes += self.nonces_per_chip
        lost = self._decoder.crc_errors + self._decoder.malformed - lost_before
        return MineResult(wid, tuple(found), self.chips * self.nonces_per_chip, lost)

    def _take(
        self, tokens: list[RxToken], wid: int, header: bytes, zero_bits: int
    ) -> tuple[list[tuple[int, int]], int]:
        """Sort the entries: the valid ``(chip, n)`` of work ``wid``, and how many distinct
        nonces of known works came (valid or not)."""
        found: list[tuple[int, int]] = []
        received = 0
        for token in tokens:
            self._note(token)
            if not isinstance(token, RxNonce):
                continue
            for entry in token.nonces:
                seen = self._seen.get(entry.work_id)
                if seen is None:
                    self._stats.unknown_work += 1
                    continue
                n = int.from_bytes(entry.header_nonce, "little")
                if entry.work_id != wid:
                    self._stats.stale += 1
                    if n not in seen:
                        seen.add(n)
                        received += 1
                    continue
                chip = self._stats.chips[self._chip_of(n)]
                if n in seen:
                    chip.duplicates += 1
                    continue
                seen.add(n)
                received += 1
                full = header[:76] + entry.header_nonce
                if spec.meets(hashlib.sha256(hashlib.sha256(full).digest()).digest(), zero_bits):
                    chip.nonces += 1
                    found.append((self._chip_of(n), n))
                else:
                    chip.invalid += 1
        return found, received

    async def close(self) -> None:
        await self.link.close()


async def open_s3_chain(
    target: str,
    bound: SweepBound,
    *,
    base_zero_bits: int = 32,
    expected_chips: int | None = None,
    status_timeout: float = 0.5,
) -> S3Chain:
    """Open ``target`` (``usb`` or ``usb:VVVV:PPPP[@BUS.ADDRESS]`` for USB, else a
    character device or pty path) and initialise the controller; close on failure."""
    link: S3Link
    if target == "usb" or target.startswith("usb:"):
        link = await open_usb(target[4:] or DEFAULT_SELECTOR)
    else:
        link = await open_serial(target)
    chain = S3Chain(link, bound, base_zero_bits=base_zero_bits, status_timeout=status_timeout)
    try:
        await chain.init(expected_chips)
    except BaseException:
        await link.close()
        raise
    return chain


def _check(table: ChipTable) -> list[Problem]:
    """The controller's link runs at one rate: there is no baud to switch to."""
    if table.baud:
        return [("baud", "the S3 controller has no baud switch")]
    return []


async def _open(target: str, settings: ChainSettings) -> S3Chain:
    return await open_s3_chain(
        target,
        settings.bound,
        base_zero_bits=settings.base_zero_bits,
        expected_chips=settings.expected_chips,
    )


DRIVER = Driver(
    name="s3",
    description="an Antminer S3 controller (S2/S3 tokens)",
    open=_open,
    check=_check,
    emulator="hasherd.emulate.s3_command",
)
