"""Antminer S2/S3 (BM1382) USB token codecs: the shared ASIC protocol reference, section 3
("Antminer S2/S3 (BM1382) USB token protocol").

Every token starts ``type u8, version u8 (0), length u16 LE`` (length = total bytes - 4,
CRC included), multi-byte fields are little-endian, and the last two bytes are the
CRC-16/MODBUS of the rest, little-endian. Flag bytes carry the first-declared flag in
bit 0.

Host to device: ``TxConfig`` (0x51), ``TxTask`` (0x52), ``RxStatusRequest`` (0x53).
Device to host: ``RxStatus`` (0xA1), ``RxNonce`` (0xA2), framed from a hostile stream by
``RxDecoder`` (the scan, shared with the host-to-device direction, is in ``s3_framing``).

Pure: no USB, no event loop. Malformed tokens raise ``S3Error`` (bytes in ``raw``);
out-of-range field values raise ``InputError``; the decoder never raises.
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass
from enum import IntFlag
from typing import TypeAlias

from hasherd.errors import HasherError, InputError
from hasherd.protocol.crc import Buffer, crc16_modbus
from hasherd.protocol.s3_framing import TokenDecoder

__all__ = [
    "MAX_TOKEN_BYTES",
    "MAX_WORKS",
    "RX_NONCE",
    "RX_STATUS",
    "RX_STATUS_REQUEST",
    "TX_CONFIG",
    "TX_TASK",
    "ConfigFlag",
    "ControlFlag",
    "NonceEntry",
    "RxDecoder",
    "RxNonce",
    "RxStatus",
    "RxStatusRequest",
    "RxToken",
    "S3Error",
    "StatusFlag",
    "TxConfig",
    "TxTask",
    "Work",
    "data2_from_header",
    "decode_rx",
]

TX_CONFIG = 0x51
TX_TASK = 0x52
RX_STATUS_REQUEST = 0x53
RX_STATUS = 0xA1
RX_NONCE = 0xA2
MAX_WORKS = 8  # BITMAIN_MAX_WORK_NUM on the S3
MAX_TOKEN_BYTES = 2048  # the decoder's default cap on one device-to-host token
_RAW_KEPT = 256
_HEAD = struct.Struct("<BBH")


class S3Error(HasherError):
    """Bytes that are not a valid S2/S3 token; ``raw`` holds (the start of) them."""

    def __init__(self, message: str, *, raw: Buffer = b"") -> None:
        self.message = message
        self.raw = bytes(raw[:_RAW_KEPT])
        super().__init__(message)


def _uint(value: int, bits: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << bits:
        raise InputError(name, f"{value!r} is not a u{bits}")
    return value


def _fixed_bytes(value: bytes, size: int, name: str) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview) or len(value) != size:
        raise InputError(name, f"needs {size} bytes")
    return bytes(value)


def _seal(kind: int, body: bytes) -> bytes:
    token = _HEAD.pack(kind, 0, len(body) + 2) + body
    return token + crc16_modbus(token).to_bytes(2, "little")


def _open(data: Buffer, kind: int, name: str) -> bytes:
    """The token's bytes after its header checks (type, version, length, CRC)."""
    raw = bytes(data)
    if len(raw) < 6:
        raise S3Error(f"{name}: {len(raw)} bytes is shorter than any token", raw=raw)
    t, version, length = _HEAD.unpack_from(raw)
    if t != kind:
        raise S3Error(f"{name}: type 0x{t:02X}, expected 0x{kind:02X}", raw=raw)
    if version != 0:
        raise S3Error(f"{name}: version {version}, expected 0", raw=raw)
    if length + 4 != len(raw):
        raise S3Error(f"{name}: length field {length} for {len(raw)} bytes", raw=raw)
    if int.from_bytes(raw[-2:], "little") != crc16_modbus(raw[:-2]):
        raise S3Error(f"{name}: bad CRC16", raw=raw)
    return raw


def _zero(raw: bytes, start: int, stop: int, name: str) -> None:
    if any(raw[start:stop]):
        raise S3Error(f"{name}: reserved bytes {start}..{stop - 1} are not zero", raw=raw)


class ConfigFlag(IntFlag):
    """TxConfig byte 4."""

    RESET = 0x01
    FAN = 0x02
    TIMEOUT = 0x04
    FREQUENCY = 0x08
    VOLTAGE = 0x10
    CHAIN_CHECK_TIME = 0x20
    CHIP_CONFIG = 0x40
    HW_ERROR = 0x80


class ControlFlag(IntFlag):
    """TxConfig byte 5 (bits 2-7 reserved)."""

    BEEPER = 0x01
    TEMP_OVER = 0x02


class StatusFlag(IntFlag):
    """RxStatusRequest byte 4 (bits 2-7 reserved)."""

    CHIP_STATUS = 0x01
    DETECT_GET = 0x02


_NO_CONTROL = ControlFlag(0)
_NO_STATUS = StatusFlag(0)
_RX_START = re.compile(b"[\\xa1\\xa2]")


# -- host to device --------------------------------------------------------------------------

_CONFIG = struct.Struct("<BBBxBBBBH2s4sBB")


@dataclass(frozen=True, slots=True)
class TxConfig:
    """Token 0x51, 24 bytes: chain geometry, fan, timeout, frequency, voltage, a register."""

    flags: ConfigFlag
    chain_num: int
    asic_num: int
    fan_pwm: int = 0xA0
    timeout: int = 0x2D
    frequency: int = 282
    voltage: bytes = b"\0\0"
    control: ControlFlag = _NO_CONTROL
    chain_check_time: int = 0
    reg_data: bytes = b"\0\0\0\0"
    chip_address: int = 0
    reg_address: int = 0

    SIZE = 24

    def __post_init__(self) -> None:
        object.__setattr__(self, "flags", ConfigFlag(_uint(self.flags, 8, "flags")))
        control = _uint(self.control, 8, "control")
        if control & ~0x03:
            raise InputError("control", f"0x{control:02X} sets reserved bits")
        object.__setattr__(self, "control", ControlFlag(control))
        for name in (
            "chain_num",
            "asic_num",
            "fan_pwm",
            "timeout",
            "chain_check_time",
            "chip_address",
            "reg_address",
        ):
            _uint(getattr(self, name), 8, name)
        _uint(self.frequency, 16, "frequency")
        object.__setattr__(self, "voltage", _fixed_bytes(self.voltage, 2, "voltage"))
        object.__setattr__(self, "reg_data", _fixed_bytes(self.reg_data, 4, "reg_data"))

    @classmethod
    def from_bytes(cls, data: Buffer) -> TxConfig:
        raw = _open(data, TX_CONFIG, "TxConfig")
        if len(raw) != cls.SIZE:
            raise S3Error(f"TxConfig is {cls.SIZE} bytes, got {len(raw)}", raw=raw)
        if raw[5] & ~0x03:
            raise S3Error("TxConfig: reserved control bits set", raw=raw)
        _zero(raw, 7, 8, "TxConfig")
        flags, control, check, chains, asics, pwm, timeout, freq, volt, reg, chip, addr = (
            _CONFIG.unpack_from(raw, 4)
        )
        return cls(
            ConfigFlag(flags),
            chains,
            asics,
            pwm,
            timeout,
            freq,
            volt,
            ControlFlag(control),
            check,
            reg,
            chip,
            addr,
        )

    def to_bytes(self) -> bytes:
        body = _CONFIG.pack(
            self.flags,
            self.control,
            self.chain_check_time,
            self.chain_num,
            self.asic_num,
            self.fan_pwm,
            self.timeout,
            self.frequency,
            self.voltage,
            self.reg_data,
            self.chip_address,
            self.reg_address,
        )
        return _seal(TX_CONFIG, body)


def data2_from_header(header: bytes) -> bytes:
    """TxTask ``data2`` for an 80-byte header: header[64:76] with each 4-byte word byte-swapped
    (merkle tail reversed, then ntime and nbits big-endian)."""
    if len(header) != 80:
        raise InputError("header", f"needs 80 bytes, got {len(header)}")
    return b"".join(header[i : i + 4][::-1] for i in range(64, 76, 4))


@dataclass(frozen=True, slots=True)
class Work:
    """One TxTask entry (48 bytes): ``work_id`` u32, ``midstate`` (H0..H7, each word LE),
    ``data2`` (``data2_from_header``)."""

    work_id: int
    midstate: bytes
    data2: bytes

    def __post_init__(self) -> None:
        _uint(self.work_id, 32, "work_id")
        object.__setattr__(self, "midstate", _fixed_bytes(self.midstate, 32, "midstate"))
        object.__setattr__(self, "data2", _fixed_bytes(self.data2, 12, "data2"))

    def to_bytes(self) -> bytes:
        return self.work_id.to_bytes(4, "little") + self.midstate + self.data2


@dataclass(frozen=True, slots=True)
class TxTask:
    """Token 0x52, ``10 + 48n`` bytes, 1 <= n <= ``MAX_WORKS``.

    ``diff`` is floor(log2) of the lowest work difficulty, capped at 12 by cgminer.
    """

    works: tuple[Work, ...]
    new_block: bool = False
    diff: int = 0

    def __post_init__(self) -> None:
        works = tuple(self.works)
        if not 1 <= len(works) <= MAX_WORKS or not all(isinstance(w, Work) for w in works):
            raise InputError("works", f"needs 1..{MAX_WORKS} Work entries")
        object.__setattr__(self, "works", works)
        if not isinstance(self.new_block, bool):
            raise InputError("new_block", f"{self.new_block!r} is not a bool")
        _uint(self.diff, 8, "diff")

    @classmethod
    def from_bytes(cls, data: Buffer) -> TxTask:
        raw = _open(data, TX_TASK, "TxTask")
        count, rest = divmod(len(raw) - 10, 48)
        if rest or not 1 <= count <= MAX_WORKS:
            raise S3Error(f"TxTask of {len(raw)} bytes is not 10 + 48n, n 1..8", raw=raw)
        if raw[4] & ~0x01:
            raise S3Error("TxTask: reserved flag bits set", raw=raw)
        _zero(raw, 6, 8, "TxTask")
        works = []
        for i in range(count):
            at = 8 + 48 * i
            wid = int.from_bytes(raw[at : at + 4], "little")
            works.append(Work(wid, raw[at + 4 : at + 36], raw[at + 36 : at + 48]))
        return cls(tuple(works), bool(raw[4] & 1), raw[5])

    def to_bytes(self) -> bytes:
        body = bytes((int(self.new_block), self.diff, 0, 0))
        return _seal(TX_TASK, body + b"".join(w.to_bytes() for w in self.works))


@dataclass(frozen=True, slots=True)
class RxStatusRequest:
    """Token 0x53, 12 bytes: ask for an RxStatus (``DETECT_GET`` at init)."""

    flags: StatusFlag = _NO_STATUS
    chip_address: int = 0
    reg_address: int = 0

    SIZE = 12

    def __post_init__(self) -> None:
        flags = _uint(self.flags, 8, "flags")
        if flags & ~0x03:
            raise InputError("flags", f"0x{flags:02X} sets reserved bits")
        object.__setattr__(self, "flags", StatusFlag(flags))
        _uint(self.chip_address, 8, "chip_address")
        _uint(self.reg_address, 8, "reg_address")

    @classmethod
    def from_bytes(cls, data: Buffer) -> RxStatusRequest:
        raw = _open(data, RX_STATUS_REQUEST, "RxStatusRequest")
        if len(raw) != cls.SIZE:
            raise S3Error(f"RxStatusRequest is {cls.SIZE} bytes, got {len(raw)}", raw=raw)
        if raw[4] & ~0x03:
            raise S3Error("RxStatusRequest: reserved flag bits set", raw=raw)
        _zero(raw, 5, 8, "RxStatusRequest")
        return cls(StatusFlag(raw[4]), raw[8], raw[9])

    def to_bytes(self) -> bytes:
        return _seal(
            RX_STATUS_REQUEST, bytes((self.flags, 0, 0, 0, self.chip_address, self.reg_address))
        )


# -- device to host --------------------------------------------------------------------------

_STATUS = struct.Struct("<BBH4sBBHIII")  # bytes 4..27
_STATUS_MIN = 4 + _STATUS.size + 2


@dataclass(frozen=True, slots=True)
class RxStatus:
    """Token 0xA1: controller status.

    The fixed part (bytes 4..27) is followed by the ASIC bitmaps, ``asic_exist`` then
    ``asic_status`` (u32 LE words, ``words_per_chain`` per chain, kept flat in wire
    order; MSB = ASIC 0), then ``chain_asic_num`` (one byte per chain), ``temps`` (int8)
    and ``fans`` (u8). The bitmap sizes are not on the wire: the parser derives them from
    the length, as cgminer does.
    """

    flags: int
    fifo_space: int
    hw_version: bytes
    fan_exist: int
    temp_exist: int
    nonce_error: int
    reg_value: int
    chain_asic_num: tuple[int, ...]
    temps: tuple[int, ...]
    fans: tuple[int, ...]
    asic_exist: tuple[int, ...] = ()
    asic_status: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        _uint(self.flags, 8, "flags")
        _uint(self.fifo_space, 16, "fifo_space")
        object.__setattr__(self, "hw_version", _fixed_bytes(self.hw_version, 4, "hw_version"))
        _uint(self.fan_exist, 16, "fan_exist")
        for name in ("temp_exist", "nonce_error", "reg_value"):
            _uint(getattr(self, name), 32, name)
        chains = tuple(_uint(v, 8, "chain_asic_num") for v in self.chain_asic_num)
        if len(chains) > 0xFF:
            raise InputError("chain_asic_num", "more than 255 chains")
        temps = tuple(self.temps)
        for t in temps:
            if isinstance(t, bool) or not isinstance(t, int) or not -128 <= t <= 127:
                raise InputError("temps", f"{t!r} is not an int8")
        fans = tuple(_uint(v, 8, "fans") for v in self.fans)
        if len(temps) > 0xFF or len(fans) > 0xFF:
            raise InputError("temps/fans", "more than 255 entries")
        exist = tuple(_uint(v, 32, "asic_exist") for v in self.asic_exist)
        status = tuple(_uint(v, 32, "asic_status") for v in self.asic_status)
        if len(exist) != len(status):
            raise InputError("asic_status", "needs as many words as asic_exist")
        if exist and (not chains or len(exist) % len(chains)):
            raise InputError(
                "asic_exist", f"{len(exist)} words do not split over {len(chains)} chains"
            )
        for name, value in (
            ("chain_asic_num", chains),
            ("temps", temps),
            ("fans", fans),
            ("asic_exist", exist),
            ("asic_status", status),
        ):
            object.__setattr__(self, name, value)

    @property
    def chain_num(self) -> int:
        return len(self.chain_asic_num)

    @property
    def words_per_chain(self) -> int:
        return len(self.asic_exist) // self.chain_num if self.chain_num else 0

    @staticmethod
    def words_for(asic_num: int) -> int:
        """Bitmap words per chain for ``asic_num`` ASICs: ceil(asic_num / 32)."""
        return math.ceil(asic_num / 32)

    @classmethod
    def from_bytes(cls, data: Buffer) -> RxStatus:
        raw = _open(data, RX_STATUS, "RxStatus")
        if len(raw) < _STATUS_MIN:
            raise S3Error(f"RxStatus needs at least {_STATUS_MIN} bytes, got {len(raw)}", raw=raw)
        flags, chain_num, fifo, hw, fan_num, temp_num, fan_exist, temp_exist, nerr, reg = (
            _STATUS.unpack_from(raw, 4)
        )
        tail = chain_num + temp_num + fan_num
        words_bytes = len(raw) - _STATUS_MIN - tail
        if words_bytes < 0 or words_bytes % 8 or (words_bytes and not chain_num):
            raise S3Error("RxStatus: length does not match its counts", raw=raw)
        words = words_bytes // 4
        if chain_num and (words // 2) % chain_num:
            raise S3Error("RxStatus: bitmap words do not split over the chains", raw=raw)
        at = 4 + _STATUS.size
        bitmap = struct.unpack_from(f"<{words}I", raw, at)
        at += 4 * words
        chains = tuple(raw[at : at + chain_num])
        at += chain_num
        temps = struct.unpack_from(f"<{temp_num}b", raw, at)
        at += temp_num
        fans = tuple(raw[at : at + fan_num])
        half = words // 2
        return cls(
            flags,
            fifo,
            hw,
            fan_exist,
            temp_exist,
            nerr,
            reg,
            chains,
            temps,
            fans,
            bitmap[:half],
            bitmap[half:],
        )

    def to_bytes(self) -> bytes:
        body = _STATUS.pack(
            self.flags,
            self.chain_num,
            self.fifo_space,
            self.hw_version,
            len(self.fans),
            len(self.temps),
            self.fan_exist,
            self.temp_exist,
            self.nonce_error,
            self.reg_value,
        )
        words = self.asic_exist + self.asic_status
        body += struct.pack(f"<{len(words)}I", *words) + bytes(self.chain_asic_num)
        body += struct.pack(f"<{len(self.temps)}b", *self.temps) + bytes(self.fans)
        return _seal(RX_STATUS, body)


@dataclass(frozen=True, slots=True)
class NonceEntry:
    """One RxNonce entry: ``work_id`` echoes a TxTask work; ``nonce`` is the u32 value.

    The header's nonce bytes (header[76:80]) are that value big-endian, i.e. the wire
    bytes reversed (``header_nonce``).
    """

    work_id: int
    nonce: int

    def __post_init__(self) -> None:
        _uint(self.work_id, 32, "work_id")
        _uint(self.nonce, 32, "nonce")

    @property
    def header_nonce(self) -> bytes:
        return self.nonce.to_bytes(4, "big")


@dataclass(frozen=True, slots=True)
class RxNonce:
    """Token 0xA2, ``18 + 8n`` bytes: fifo space, diff, a running nonce count, n entries."""

    fifo_space: int
    nonces: tuple[NonceEntry, ...]
    diff: int = 0
    total_nonce_num: int = 0

    def __post_init__(self) -> None:
        _uint(self.fifo_space, 16, "fifo_space")
        nonces = tuple(self.nonces)
        if not all(isinstance(n, NonceEntry) for n in nonces):
            raise InputError("nonces", "needs NonceEntry values")
        if 18 + 8 * len(nonces) - 4 > 0xFFFF:
            raise InputError("nonces", "too many for one token")
        object.__setattr__(self, "nonces", nonces)
        _uint(self.diff, 16, "diff")
        _uint(self.total_nonce_num, 64, "total_nonce_num")

    @classmethod
    def from_bytes(cls, data: Buffer) -> RxNonce:
        raw = _open(data, RX_NONCE, "RxNonce")
        count, rest = divmod(len(raw) - 18, 8)
        if rest or count < 0:
            raise S3Error(f"RxNonce of {len(raw)} bytes is not 18 + 8n", raw=raw)
        fifo, diff, total = struct.unpack_from("<HHQ", raw, 4)
        pairs = struct.unpack_from(f"<{2 * count}I", raw, 16)
        entries = tuple(NonceEntry(pairs[i], pairs[i + 1]) for i in range(0, 2 * count, 2))
        return cls(fifo, entries, diff, total)

    def to_bytes(self) -> bytes:
        body = struct.pack("<HHQ", self.fifo_space, self.diff, self.total_nonce_num)
        body += b"".join(struct.pack("<II", n.work_id, n.nonce) for n in self.nonces)
        return _seal(RX_NONCE, body)


RxToken: TypeAlias = RxStatus | RxNonce


def decode_rx(data: Buffer) -> RxToken:
    """One whole device-to-host token, by its type byte."""
    raw = bytes(data)
    if raw[:1] == bytes((RX_STATUS,)):
        return RxStatus.from_bytes(raw)
    if raw[:1] == bytes((RX_NONCE,)):
        return RxNonce.from_bytes(raw)
    raise S3Error("not an RxStatus (A1) or RxNonce (A2) token", raw=raw)


class RxDecoder(TokenDecoder[RxToken]):
    """RxStatus / RxNonce tokens from a byte stream in any chunking.

    A hostile wire is assumed. A candidate starts at an ``A1``/``A2`` byte followed by
    version 0 and a length within ``max_token`` (else the byte is dropped and counted in
    ``garbage_bytes``); a whole candidate whose CRC fails counts in ``crc_errors``, one
    whose CRC passes but whose layout does not counts in ``malformed``, and in both cases
    the scan resumes one byte later, so tokens inside a false candidate are still found.
    The buffer never exceeds ``max_token`` bytes. ``feed`` never raises on wire input.
    The scan is ``s3_framing.TokenDecoder``'s.
    """

    _START = _RX_START

    def __init__(self, max_token: int = MAX_TOKEN_BYTES) -> None:
        if isinstance(max_token, bool) or not isinstance(max_token, int) or max_token < 30:
            raise InputError("max_token", f"{max_token!r} is below the 30-byte minimum")
        super().__init__(max_token)

    def _plausible(self, kind: int, size: int) -> bool:
        minimum = _STATUS_MIN if kind == RX_STATUS else 18
        return minimum <= size <= self.max_token

    def _parse(self, token: bytes) -> RxToken:
        return decode_rx(token)
