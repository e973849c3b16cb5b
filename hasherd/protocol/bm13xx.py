"""BM13xx UART wire codecs (BM1397, BM1362/66/68/70): the shared ASIC protocol reference,
sections 1 ("BM13xx UART framing") and 2 ("Chip operations").

Host to chip, ``55 AA | HDR | LEN | payload | CRC``:

* commands (CRC5 in the last byte): ``SetChipAddress`` (0x40), ``WriteRegister``
  (0x41 / 0x51 broadcast), ``ReadRegister`` (0x42 / 0x52 broadcast), ``ChainInactive`` (0x53);
* jobs (HDR 0x21, CRC16/CCITT-FALSE big-endian): ``MidstateJob`` (BM1397) and
  ``FullHeaderJob`` (BM1362/66/68/70). Jobs are framed by HDR and size, never by LEN.

Chip to host, ``AA 55 | body | TYPE<<5 | CRC5`` (9 bytes, or 11 once a BM1362+ has
MIDSTATE_CONFIG bit 31 set): ``RegisterResponse`` (TYPE 0), ``NonceResponse`` (BM1397,
9 bytes) and ``VersionNonceResponse`` (BM1362+, 11 bytes), all TYPE 4 for nonces.
``ResponseDecoder`` frames them from a hostile byte stream.

Pure: no serial port, no event loop. Malformed frames raise ``Bm13xxError`` (with the
bytes in ``raw``); out-of-range field values raise ``InputError``; the decoder never raises.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import TypeAlias

from hasherd.errors import HasherError, InputError
from hasherd.protocol.crc import Buffer, crc5, crc5_bits, crc16_ccitt_false
from hasherd.protocol.framing import PreambleDecoder, Skip, Why, preamble

__all__ = [
    "CLOCK_HZ",
    "COMMAND_PREAMBLE",
    "RESET_BAUD_DIVIDER",
    "RESPONSE_PREAMBLE",
    "Bm13xxError",
    "ChainInactive",
    "Chip",
    "Command",
    "FullHeaderJob",
    "Job",
    "MidstateJob",
    "NonceResponse",
    "ReadRegister",
    "Register",
    "RegisterResponse",
    "Response",
    "ResponseDecoder",
    "SetChipAddress",
    "VersionNonceResponse",
    "WriteRegister",
    "baud_divider",
    "baud_rate",
    "decode_command",
    "decode_response",
    "misc_control_divider",
    "misc_control_value",
    "pll_frequency_hz",
    "ticket_mask",
    "ticket_mask_difficulty",
    "uart_baud_divider",
    "uart_baud_value",
    "version_rolling_value",
    "word_reverse",
]

COMMAND_PREAMBLE = b"\x55\xaa"
RESPONSE_PREAMBLE = b"\xaa\x55"
CLOCK_HZ = 25_000_000
RESET_BAUD_DIVIDER = 26  # 25 MHz / (8 * 27) = 115,740.7 baud

_TYPE_JOB = 0x20
_TYPE_CMD = 0x40
_ALL = 0x10
_CMD_SET_ADDRESS = 0
_CMD_WRITE = 1
_CMD_READ = 2
_CMD_INACTIVE = 3
_JOB_HDR = _TYPE_JOB | 1
_RESP_REGISTER = 0
_RESP_NONCE = 4
_RAW_KEPT = 256


class Bm13xxError(HasherError):
    """Bytes that are not a valid BM13xx frame; ``raw`` holds (the start of) them."""

    def __init__(self, message: str, *, raw: Buffer = b"") -> None:
        self.message = message
        self.raw = bytes(raw[:_RAW_KEPT])
        super().__init__(message)


def _u8(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFF:
        raise InputError(name, f"{value!r} is not a u8")
    return value


def _u16(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFF:
        raise InputError(name, f"{value!r} is not a u16")
    return value


def _u32(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFF_FFFF:
        raise InputError(name, f"{value!r} is not a u32")
    return value


def _register(value: int, name: str = "register") -> int:
    _u8(value, name)
    if value % 4:
        raise InputError(name, f"0x{value:02X} is not a multiple of 4")
    return value


def _fixed_bytes(value: bytes, size: int, name: str) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview) or len(value) != size:
        raise InputError(name, f"needs {size} bytes")
    return bytes(value)


# -- chips and registers -----------------------------------------------------------------


class Chip(Enum):
    """Chip models: value = the chip ID in register 0x00 bits 31:16."""

    BM1397 = 0x1397
    BM1362 = 0x1362
    BM1366 = 0x1366
    BM1368 = 0x1368
    BM1370 = 0x1370

    @property
    def chip_id(self) -> int:
        return self.value

    @property
    def response_size(self) -> int:
        """The nonce-response size: 9 on BM1397, 11 on the others once 0xA4 enables rolling
        (a fresh BM1362+ answers with 9 until then)."""
        return 9 if self is Chip.BM1397 else 11

    def job_id(self, result: int) -> int:
        """The host's job byte from an 11-byte response's R byte (section 2.8)."""
        if self in (Chip.BM1368, Chip.BM1370):
            return (result & 0xF0) >> 1
        return result & 0xF8

    def subcore_id(self, result: int) -> int:
        return result & (0x0F if self in (Chip.BM1368, Chip.BM1370) else 0x07)


class Register(IntEnum):
    """Register byte addresses a driver needs (section 2.2); aliases name the BM1366+ use."""

    CHIP_ADDRESS = 0x00
    CHIP_ID = 0x00
    PLL0 = 0x08
    PLL_DIVIDER = 0x08
    CHIP_NONCE_OFFSET = 0x0C
    HASH_COUNTING_NUMBER = 0x10
    TICKET_MASK = 0x14
    MISC_CONTROL = 0x18
    FAST_UART_CONFIGURATION = 0x28
    UART_BAUD = 0x28
    CORE_REGISTER_CONTROL = 0x3C
    CORE_MAILBOX = 0x3C
    MIDSTATE_CONFIG = 0xA4
    VERSION_ROLLING = 0xA4
    SOFT_RESET_CONTROL = 0xA8


def _reverse_bits(byte: int) -> int:
    return int(f"{byte:08b}"[::-1], 2)


def ticket_mask(difficulty: int) -> int:
    """TICKET_MASK (0x14) for a chip-side difficulty, as the 32-bit register value.

    ``m = 2^floor(log2 difficulty) - 1`` big-endian, each byte bit-reversed in place:
    256 -> 0x000000FF, 512 -> 0x000080FF, 64 -> 0x000000FC. Only powers of two exist, so
    other difficulties round down.
    """
    if isinstance(difficulty, bool) or not isinstance(difficulty, int):
        raise InputError("difficulty", f"{difficulty!r} is not an integer")
    if not 1 <= difficulty <= 1 << 32:
        raise InputError("difficulty", f"{difficulty} is outside 1..2^32")
    mask = (1 << (difficulty.bit_length() - 1)) - 1
    wire = bytes(_reverse_bits(b) for b in mask.to_bytes(4, "big"))
    return int.from_bytes(wire, "big")


def ticket_mask_difficulty(value: int) -> int:
    """The difficulty a TICKET_MASK value asks for (the inverse of ``ticket_mask``)."""
    _u32(value, "ticket_mask")
    mask = int.from_bytes(bytes(_reverse_bits(b) for b in value.to_bytes(4, "big")), "big")
    if mask & (mask + 1):
        raise InputError("ticket_mask", f"0x{value:08X} is not a ticket mask (2^n - 1 reversed)")
    return mask + 1


def baud_rate(divider: int) -> float:
    """The UART rate for a divider: 25 MHz / (8 * (divider + 1))."""
    return CLOCK_HZ / (8 * (divider + 1))


def baud_divider(baud: float, tolerance: float = 0.03) -> int:
    """The divider nearest to ``baud`` (0..255); ``InputError`` when none is within
    ``tolerance`` (relative)."""
    if not baud > 0:
        raise InputError("baud", f"{baud!r} is not a positive rate")
    divider = max(0, min(255, round(CLOCK_HZ / (8 * baud)) - 1))
    if abs(baud_rate(divider) - baud) > tolerance * baud:
        raise InputError("baud", f"{baud} is not reachable (nearest {baud_rate(divider):.0f})")
    return divider


_MISC_BASE = 0x0000_6031  # BM1397 MISC_CONTROL with BT8D = 0 (BCLK_SEL = CLKI)


def misc_control_value(divider: int) -> int:
    """BM1397 MISC_CONTROL (0x18) for a baud divider BT8D (0..31): 26 -> 0x00007A31."""
    if isinstance(divider, bool) or not isinstance(divider, int) or not 0 <= divider <= 31:
        raise InputError("divider", f"{divider!r} is outside 0..31")
    return _MISC_BASE | divider << 8


def misc_control_divider(value: int) -> int:
    """BT8D from a BM1397 MISC_CONTROL value (bits 12:8)."""
    return _u32(value, "misc_control") >> 8 & 0x1F


def uart_baud_value(divider: int, base: int = 0x1130_0000) -> int:
    """BM1362+ UART_BAUD (0x28): the divider in bits 15:8 of ``base``; 2 -> 0x11300200."""
    _u8(divider, "divider")
    return (_u32(base, "base") & ~0xFF00) | divider << 8


def uart_baud_divider(value: int) -> int:
    return _u32(value, "uart_baud") >> 8 & 0xFF


def pll_frequency_hz(value: int, *, dividers_minus_one: bool) -> float:
    """Core clock from a PLL0 / PLL_DIVIDER value: 25 MHz * FBDIV / (REFDIV * PD1 * PD2).

    BM1397 stores the post-dividers as is; BM1362+ store them minus 1
    (``dividers_minus_one=True``).
    """
    _u32(value, "pll")
    fbdiv = value >> 16 & 0xFFF
    refdiv = value >> 8 & 0x3F
    pd1 = value >> 4 & 0x7
    pd2 = value & 0x7
    if dividers_minus_one:
        pd1, pd2 = pd1 + 1, pd2 + 1
    if not (refdiv and pd1 and pd2):
        raise InputError("pll", f"0x{value:08X} has a zero divider")
    return CLOCK_HZ * fbdiv / (refdiv * pd1 * pd2)


def version_rolling_value(mask: int) -> int:
    """BM1362+ MIDSTATE_CONFIG (0xA4) for a stratum version mask: 0x1FFFE000 -> 0x9000FFFF."""
    return 0x9000_0000 | _u32(mask, "mask") >> 13


def word_reverse(data: bytes) -> bytes:
    """32 bytes as eight 4-byte words, last word first (bytes inside a word kept)."""
    return b"".join(data[i : i + 4] for i in range(len(data) - 4, -4, -4))


# -- commands ------------------------------------------------------------------------------


def _command(hdr: int, payload: bytes) -> bytes:
    body = bytes((hdr, len(payload) + 3)) + payload
    return COMMAND_PREAMBLE + body + bytes((crc5(body),))


def _check_command(data: Buffer, hdr: int, size: int, name: str) -> bytes:
    raw = bytes(data)
    if len(raw) != size:
        raise Bm13xxError(f"a {name} frame is {size} bytes, got {len(raw)}", raw=raw)
    if raw[:2] != COMMAND_PREAMBLE:
        raise Bm13xxError(f"{name}: no 55 AA preamble", raw=raw)
    if raw[2] != hdr:
        raise Bm13xxError(f"{name}: header 0x{raw[2]:02X}, expected 0x{hdr:02X}", raw=raw)
    if raw[3] != size - 2:
        raise Bm13xxError(f"{name}: length byte 0x{raw[3]:02X}, expected {size - 2}", raw=raw)
    if raw[-1] != crc5(raw[2:-1]):
        raise Bm13xxError(f"{name}: bad CRC5 0x{raw[-1]:02X}", raw=raw)
    return raw


@dataclass(frozen=True, slots=True)
class SetChipAddress:
    """``40 05 addr 00``: the first unaddressed chip in the chain takes ``address``."""

    address: int

    def __post_init__(self) -> None:
        _u8(self.address, "address")

    @classmethod
    def from_bytes(cls, data: Buffer) -> SetChipAddress:
        raw = _check_command(data, _TYPE_CMD | _CMD_SET_ADDRESS, 7, "set-address")
        if raw[5]:
            raise Bm13xxError("set-address: second payload byte is not 0", raw=raw)
        return cls(raw[4])

    def to_bytes(self) -> bytes:
        return _command(_TYPE_CMD | _CMD_SET_ADDRESS, bytes((self.address, 0)))


@dataclass(frozen=True, slots=True)
class ChainInactive:
    """``53 05 00 00``: every chip enters addressing mode and stops relaying."""

    @classmethod
    def from_bytes(cls, data: Buffer) -> ChainInactive:
        raw = _check_command(data, _TYPE_CMD | _ALL | _CMD_INACTIVE, 7, "chain-inactive")
        if raw[4:6] != b"\0\0":
            raise Bm13xxError("chain-inactive: payload is not 00 00", raw=raw)
        return cls()

    def to_bytes(self) -> bytes:
        return _command(_TYPE_CMD | _ALL | _CMD_INACTIVE, b"\0\0")


@dataclass(frozen=True, slots=True)
class ReadRegister:
    """``42`` (one chip) / ``52`` (broadcast) read; one response per addressed chip."""

    register: int
    chip_address: int = 0
    broadcast: bool = False

    def __post_init__(self) -> None:
        _register(self.register)
        _u8(self.chip_address, "chip_address")

    @classmethod
    def from_bytes(cls, data: Buffer) -> ReadRegister:
        raw = bytes(data)
        hdr = raw[2] if len(raw) > 2 else 0
        if hdr not in (_TYPE_CMD | _CMD_READ, _TYPE_CMD | _ALL | _CMD_READ):
            raise Bm13xxError("not a read-register frame", raw=raw)
        raw = _check_command(raw, hdr, 7, "read-register")
        if raw[5] % 4:
            raise Bm13xxError(f"read-register: register 0x{raw[5]:02X} not word aligned", raw=raw)
        return cls(raw[5], raw[4], bool(hdr & _ALL))

    def to_bytes(self) -> bytes:
        hdr = _TYPE_CMD | _CMD_READ | (_ALL if self.broadcast else 0)
        return _command(hdr, bytes((self.chip_address, self.register)))


@dataclass(frozen=True, slots=True)
class WriteRegister:
    """``41`` (one chip) / ``51`` (broadcast) write of a big-endian u32; no response."""

    register: int
    value: int
    chip_address: int = 0
    broadcast: bool = False

    def __post_init__(self) -> None:
        _register(self.register)
        _u32(self.value, "value")
        _u8(self.chip_address, "chip_address")

    @classmethod
    def from_bytes(cls, data: Buffer) -> WriteRegister:
        raw = bytes(data)
        hdr = raw[2] if len(raw) > 2 else 0
        if hdr not in (_TYPE_CMD | _CMD_WRITE, _TYPE_CMD | _ALL | _CMD_WRITE):
            raise Bm13xxError("not a write-register frame", raw=raw)
        raw = _check_command(raw, hdr, 11, "write-register")
        if raw[5] % 4:
            raise Bm13xxError(f"write-register: register 0x{raw[5]:02X} not word aligned", raw=raw)
        return cls(raw[5], int.from_bytes(raw[6:10], "big"), raw[4], bool(hdr & _ALL))

    def to_bytes(self) -> bytes:
        hdr = _TYPE_CMD | _CMD_WRITE | (_ALL if self.broadcast else 0)
        payload = bytes((self.chip_address, self.register)) + self.value.to_bytes(4, "big")
        return _command(hdr, payload)


Command: TypeAlias = SetChipAddress | ChainInactive | ReadRegister | WriteRegister

_COMMANDS: dict[int, type[Command]] = {
    _TYPE_CMD | _CMD_SET_ADDRESS: SetChipAddress,
    _TYPE_CMD | _ALL | _CMD_INACTIVE: ChainInactive,
    _TYPE_CMD | _CMD_READ: ReadRegister,
    _TYPE_CMD | _ALL | _CMD_READ: ReadRegister,
    _TYPE_CMD | _CMD_WRITE: WriteRegister,
    _TYPE_CMD | _ALL | _CMD_WRITE: WriteRegister,
}


def decode_command(data: Buffer) -> Command:
    """One whole command frame, dispatched on its header byte."""
    raw = bytes(data)
    if len(raw) < 3 or raw[2] not in _COMMANDS:
        raise Bm13xxError("not a BM13xx command frame", raw=raw)
    return _COMMANDS[raw[2]].from_bytes(raw)


# -- jobs ----------------------------------------------------------------------------------

_JOB_HEAD = struct.Struct("<BB4sII")  # job_id, midstate count, starting nonce, nbits, ntime


def _job_frame(length: int, payload: bytes) -> bytes:
    body = bytes((_JOB_HDR, length)) + payload
    return COMMAND_PREAMBLE + body + crc16_ccitt_false(body).to_bytes(2, "big")


def _check_job(raw: bytes, name: str) -> None:
    if raw[:2] != COMMAND_PREAMBLE or raw[2] != _JOB_HDR:
        raise Bm13xxError(f"{name}: not a job frame (55 AA 21)", raw=raw)
    if int.from_bytes(raw[-2:], "big") != crc16_ccitt_false(raw[2:-2]):
        raise Bm13xxError(f"{name}: bad CRC16", raw=raw)


@dataclass(frozen=True, slots=True)
class MidstateJob:
    """BM1397 job (section 2.6): 1-4 midstates, ``22 + 32n + 4`` bytes on the wire.

    ``nbits``/``ntime`` are the header's u32 values (little-endian on the wire);
    ``merkle_tail`` is header[64:68]. Each midstate is the SHA-256 state after header[0:64]
    as H0..H7, each word little-endian (the cgminer/ESP form); the wire carries it reversed.
    ``length`` is the LEN byte when it differs from the true one (else ``None``).
    """

    job_id: int
    midstates: tuple[bytes, ...]
    nbits: int
    ntime: int
    merkle_tail: bytes
    starting_nonce: int = 0
    length: int | None = None

    def __post_init__(self) -> None:
        _u8(self.job_id, "job_id")
        states = tuple(_fixed_bytes(m, 32, "midstate") for m in self.midstates)
        if not 1 <= len(states) <= 4:
            raise InputError("midstates", f"needs 1..4, got {len(states)}")
        object.__setattr__(self, "midstates", states)
        _u32(self.nbits, "nbits")
        _u32(self.ntime, "ntime")
        object.__setattr__(self, "merkle_tail", _fixed_bytes(self.merkle_tail, 4, "merkle_tail"))
        _u32(self.starting_nonce, "starting_nonce")
        if self.length is not None:
            _u8(self.length, "length")

    @property
    def size(self) -> int:
        return 24 + 32 * len(self.midstates)

    @classmethod
    def from_bytes(cls, data: Buffer) -> MidstateJob:
        raw = bytes(data)
        if len(raw) not in (56, 88, 120, 152):
            raise Bm13xxError(f"a midstate job is 56/88/120/152 bytes, got {len(raw)}", raw=raw)
        _check_job(raw, "midstate job")
        count = (len(raw) - 24) // 32
        if raw[5] != count:
            raise Bm13xxError(f"midstate job: count byte {raw[5]} for {len(raw)} bytes", raw=raw)
        job_id, _, start, nbits, ntime = _JOB_HEAD.unpack_from(raw, 4)
        states = tuple(raw[22 + 32 * i : 54 + 32 * i][::-1] for i in range(count))
        length = None if raw[3] == len(raw) - 2 else raw[3]
        return cls(
            job_id, states, nbits, ntime, raw[18:22], int.from_bytes(start, "little"), length
        )

    def to_bytes(self) -> bytes:
        count = len(self.midstates)
        head = _JOB_HEAD.pack(
            self.job_id, count, self.starting_nonce.to_bytes(4, "little"), self.nbits, self.ntime
        )
        payload = head + self.merkle_tail + b"".join(m[::-1] for m in self.midstates)
        length = self.length if self.length is not None else len(payload) + 4
        return _job_frame(length, payload)


FULL_JOB_BYTES = 88


@dataclass(frozen=True, slots=True)
class FullHeaderJob:
    """BM1362/66/68/70 job (section 2.7), 88 bytes: the whole header but the nonce.

    ``merkle_root``/``prev_hash`` are in header (internal) order, word-reversed on the
    wire; ``version``/``nbits``/``ntime`` are the header's u32 values (LE on the wire).
    ``length`` is the LEN byte: 0x56 is the true one; factory firmware sends 0x36 and GEKKO
    0xFF, which the chip accepts, so ``from_bytes`` keeps whatever came.
    """

    job_id: int
    version: int
    prev_hash: bytes
    merkle_root: bytes
    ntime: int
    nbits: int
    starting_nonce: int = 0
    midstate_count: int = 1
    length: int = 0x56

    def __post_init__(self) -> None:
        _u8(self.job_id, "job_id")
        _u32(self.version, "version")
        object.__setattr__(self, "prev_hash", _fixed_bytes(self.prev_hash, 32, "prev_hash"))
        object.__setattr__(self, "merkle_root", _fixed_bytes(self.merkle_root, 32, "merkle_root"))
        _u32(self.ntime, "ntime")
        _u32(self.nbits, "nbits")
        _u32(self.starting_nonce, "starting_nonce")
        _u8(self.midstate_count, "midstate_count")
        _u8(self.length, "length")

    @classmethod
    def from_header(cls, job_id: int, header: bytes, *, length: int = 0x56) -> FullHeaderJob:
        """The job for an 80-byte header; its nonce becomes the starting nonce."""
        if len(header) != 80:
            raise InputError("header", f"needs 80 bytes, got {len(header)}")
        version, ntime, nbits, nonce = struct.unpack_from("<I", header, 0) + struct.unpack_from(
            "<III", header, 68
        )
        return cls(job_id, version, header[4:36], header[36:68], ntime, nbits, nonce, length=length)

    def header(self, nonce: int) -> bytes:
        """The 80-byte header this job hashes with ``nonce`` (the LE u32 value)."""
        return (
            struct.pack("<I", self.version)
            + self.prev_hash
            + self.merkle_root
            + struct.pack("<III", self.ntime, self.nbits, _u32(nonce, "nonce"))
        )

    @classmethod
    def from_bytes(cls, data: Buffer) -> FullHeaderJob:
        raw = bytes(data)
        if len(raw) != FULL_JOB_BYTES:
            raise Bm13xxError(f"a full-header job is 88 bytes, got {len(raw)}", raw=raw)
        _check_job(raw, "full-header job")
        job_id, count, start, nbits, ntime = _JOB_HEAD.unpack_from(raw, 4)
        merkle = word_reverse(raw[18:50])
        prev = word_reverse(raw[50:82])
        (version,) = struct.unpack_from("<I", raw, 82)
        return cls(
            job_id,
            version,
            prev,
            merkle,
            ntime,
            nbits,
            int.from_bytes(start, "little"),
            count,
            raw[3],
        )

    def to_bytes(self) -> bytes:
        start = self.starting_nonce.to_bytes(4, "little")
        head = _JOB_HEAD.pack(self.job_id, self.midstate_count, start, self.nbits, self.ntime)
        payload = (
            head
            + word_reverse(self.merkle_root)
            + word_reverse(self.prev_hash)
            + struct.pack("<I", self.version)
        )
        return _job_frame(self.length, payload)


Job: TypeAlias = MidstateJob | FullHeaderJob


# -- responses -----------------------------------------------------------------------------


def _response(body: bytes, kind: int) -> bytes:
    tail = kind << 5
    crc = crc5_bits(body + bytes((tail,)), 8 * len(body) + 3)
    return RESPONSE_PREAMBLE + body + bytes((tail | crc,))


def _check_response(data: Buffer, sizes: tuple[int, ...], kind: int, name: str) -> bytes:
    raw = bytes(data)
    if len(raw) not in sizes:
        want = "/".join(str(s) for s in sizes)
        raise Bm13xxError(f"a {name} is {want} bytes, got {len(raw)}", raw=raw)
    if raw[:2] != RESPONSE_PREAMBLE:
        raise Bm13xxError(f"{name}: no AA 55 preamble", raw=raw)
    if crc5(raw[2:]):
        raise Bm13xxError(f"{name}: bad CRC5", raw=raw)
    if raw[-1] >> 5 != kind:
        raise Bm13xxError(f"{name}: type {raw[-1] >> 5}, expected {kind}", raw=raw)
    return raw


@dataclass(frozen=True, slots=True)
class RegisterResponse:
    """Register value (TYPE 0): ``value`` (BE u32), ``chip_address``, ``register``; 9 bytes,
    or 11 with a ``reserved`` u16 (0 in every capture) once a BM1362+ rolls versions."""

    value: int
    chip_address: int
    register: int
    size: int = 9
    reserved: int = 0

    def __post_init__(self) -> None:
        _u32(self.value, "value")
        _u8(self.chip_address, "chip_address")
        _u8(self.register, "register")
        if self.size not in (9, 11):
            raise InputError("size", f"{self.size!r} is not 9 or 11")
        _u16(self.reserved, "reserved")
        if self.size == 9 and self.reserved:
            raise InputError("reserved", "a 9-byte response has no reserved field")

    @property
    def chip_id(self) -> int:
        """Bits 31:16 of a register-0x00 value (0x1397, 0x1366, ...)."""
        return self.value >> 16

    @classmethod
    def from_bytes(cls, data: Buffer) -> RegisterResponse:
        raw = _check_response(data, (9, 11), _RESP_REGISTER, "register response")
        value = int.from_bytes(raw[2:6], "big")
        reserved = int.from_bytes(raw[8:10], "big") if len(raw) == 11 else 0
        return cls(value, raw[6], raw[7], len(raw), reserved)

    def to_bytes(self) -> bytes:
        body = self.value.to_bytes(4, "big") + bytes((self.chip_address, self.register))
        if self.size == 11:
            body += self.reserved.to_bytes(2, "big")
        return _response(body, _RESP_REGISTER)


@dataclass(frozen=True, slots=True)
class NonceResponse:
    """BM1397 nonce (9 bytes): ``AA 55 N0..N3 M J TC``.

    ``nonce`` is the header's nonce value (the wire bytes N0..N3 read little-endian);
    ``midstate_num`` the M byte (ignored by ESP and GEKKO), ``job_byte`` the J byte.
    """

    nonce: int
    midstate_num: int
    job_byte: int

    def __post_init__(self) -> None:
        _u32(self.nonce, "nonce")
        _u8(self.midstate_num, "midstate_num")
        _u8(self.job_byte, "job_byte")

    @property
    def nonce_bytes(self) -> bytes:
        """The wire bytes N0..N3 = header[76:80]."""
        return self.nonce.to_bytes(4, "little")

    @property
    def job_id(self) -> int:
        return self.job_byte & 0xFC

    @property
    def midstate_index(self) -> int:
        return self.job_byte & 0x03

    @property
    def core_id(self) -> int:
        """N0 (bits 31:24 of the nonce bytes read big-endian)."""
        return self.nonce_bytes[0]

    @property
    def chip_region(self) -> int:
        """N1 (bits 23:16 of the nonce bytes read big-endian): the chip address region."""
        return self.nonce_bytes[1]

    @classmethod
    def from_bytes(cls, data: Buffer) -> NonceResponse:
        raw = _check_response(data, (9,), _RESP_NONCE, "BM1397 nonce response")
        return cls(int.from_bytes(raw[2:6], "little"), raw[6], raw[7])

    def to_bytes(self) -> bytes:
        return _response(self.nonce_bytes + bytes((self.midstate_num, self.job_byte)), _RESP_NONCE)


@dataclass(frozen=True, slots=True)
class VersionNonceResponse:
    """BM1362/66/68/70 nonce (11 bytes): ``AA 55 N0..N3 X R V0 V1 TC``.

    ``nonce`` as in ``NonceResponse``; ``excess`` is X (half-bits over the ticket mask),
    ``result`` is R (job and sub-core, model-dependent: ``Chip.job_id``), ``version_bits``
    the big-endian u16 V.
    """

    nonce: int
    excess: int
    result: int
    version_bits: int

    def __post_init__(self) -> None:
        _u32(self.nonce, "nonce")
        _u8(self.excess, "excess")
        _u8(self.result, "result")
        _u16(self.version_bits, "version_bits")

    @property
    def nonce_bytes(self) -> bytes:
        return self.nonce.to_bytes(4, "little")

    @property
    def core_id(self) -> int:
        return int.from_bytes(self.nonce_bytes, "big") >> 25 & 0x7F

    def job_id(self, chip: Chip) -> int:
        return chip.job_id(self.result)

    def subcore_id(self, chip: Chip) -> int:
        return chip.subcore_id(self.result)

    def rolled_version(self, base_version: int) -> int:
        """``base | version_bits << 13`` (submit ``rolled ^ base`` to the pool)."""
        return _u32(base_version, "base_version") | self.version_bits << 13

    @classmethod
    def from_bytes(cls, data: Buffer) -> VersionNonceResponse:
        raw = _check_response(data, (11,), _RESP_NONCE, "BM13xx nonce response")
        return cls(
            int.from_bytes(raw[2:6], "little"), raw[6], raw[7], int.from_bytes(raw[8:10], "big")
        )

    def to_bytes(self) -> bytes:
        body = self.nonce_bytes + bytes((self.excess, self.result))
        return _response(body + self.version_bits.to_bytes(2, "big"), _RESP_NONCE)


Response: TypeAlias = RegisterResponse | NonceResponse | VersionNonceResponse


def decode_response(data: Buffer) -> Response:
    """One whole 9- or 11-byte response, by its TYPE bits and size."""
    raw = bytes(data)
    if len(raw) not in (9, 11):
        raise Bm13xxError(f"a response is 9 or 11 bytes, got {len(raw)}", raw=raw)
    kind = raw[-1] >> 5
    if kind == _RESP_REGISTER:
        return RegisterResponse.from_bytes(raw)
    if kind == _RESP_NONCE:
        return (
            NonceResponse.from_bytes(raw) if len(raw) == 9 else VersionNonceResponse.from_bytes(raw)
        )
    raise Bm13xxError(f"unknown response type {kind}", raw=raw)


class ResponseDecoder(PreambleDecoder[Response]):
    """Responses of one fixed size (9 or 11) from a byte stream in any chunking.

    A hostile wire is assumed (``protocol.framing``): bytes before an ``AA 55`` are
    dropped and counted in ``garbage_bytes``; a candidate whose CRC5 fails counts in
    ``crc_errors`` and the scan resumes just after its preamble (a real frame may start
    inside it); an intact frame of an unknown TYPE counts in ``unknown_frames``. The
    buffer never holds more than one frame between calls. ``feed`` never raises on wire
    input. Set ``frame_size`` when the chips switch format (after MIDSTATE_CONFIG bit 31).
    """

    _START = preamble(RESPONSE_PREAMBLE)

    def __init__(self, frame_size: int = 11) -> None:
        super().__init__()
        self._size = 11
        self.frame_size = frame_size

    @property
    def frame_size(self) -> int:
        return self._size

    @frame_size.setter
    def frame_size(self, size: int) -> None:
        if size not in (9, 11):
            raise InputError("frame_size", f"{size!r} is not 9 or 11")
        self._size = size

    def _length(self, buf: bytearray) -> int:
        return self._size

    def _decode(self, frame: bytes) -> Response:
        """Built field by field, not by ``from_bytes``: the CRC is checked once, here."""
        if crc5(frame[2:]):
            raise Skip(Why.CRC, 2)
        kind = frame[-1] >> 5
        if kind == _RESP_REGISTER:
            extra = int.from_bytes(frame[8:10], "big") if len(frame) == 11 else 0
            return RegisterResponse(
                int.from_bytes(frame[2:6], "big"), frame[6], frame[7], len(frame), extra
            )
        if kind != _RESP_NONCE:
            raise Skip(Why.UNKNOWN, len(frame))
        nonce = int.from_bytes(frame[2:6], "little")
        if len(frame) == 9:
            return NonceResponse(nonce, frame[6], frame[7])
        version = int.from_bytes(frame[8:10], "big")
        return VersionNonceResponse(nonce, frame[6], frame[7], version)
