"""The CRCs of the ASIC wires (the shared ASIC protocol reference, sections 1.4, 1.5 and 3.1).

* ``crc5``: BM13xx command and response frames. Width 5, polynomial x^5+x^2+1 (0x05),
  initial register 0x1F, MSB first, no reflection, no final XOR. Not catalogue CRC-5/USB.
  A response is intact when ``crc5`` over every byte after ``AA 55`` (its last byte
  included) is 0.
* ``crc16_ccitt_false``: BM13xx job frames. Poly 0x1021, init 0xFFFF, no reflection,
  xorout 0, appended big-endian.
* ``crc16_modbus``: Antminer S2/S3 tokens. Reflected poly 0xA001, init 0xFFFF, appended
  little-endian.

The lookup tables are generated here from the parameters, bit by bit.
"""

from __future__ import annotations

from typing import TypeAlias

Buffer: TypeAlias = bytes | bytearray | memoryview

__all__ = ["Buffer", "crc5", "crc5_bits", "crc16_ccitt_false", "crc16_modbus"]

_CRC5_POLY = 0x05
_CRC5_INIT = 0x1F


def _crc5_step(crc: int, byte: int) -> int:
    for shift in range(7, -1, -1):
        feedback = ((crc >> 4) & 1) ^ ((byte >> shift) & 1)
        crc = (crc << 1) & 0x1F
        if feedback:
            crc ^= _CRC5_POLY
    return crc


# _CRC5_TABLE[crc << 8 | byte]: the register after one more byte (32 x 256 entries).
_CRC5_TABLE = bytes(_crc5_step(crc, byte) for crc in range(32) for byte in range(256))


def crc5(data: Buffer) -> int:
    """The 5-bit CRC of ``data`` as BM13xx chips compute it (0..31)."""
    crc = _CRC5_INIT
    table = _CRC5_TABLE
    for byte in memoryview(data).cast("B"):
        crc = table[crc << 8 | byte]
    return crc


def _msb_table(poly: int) -> tuple[int, ...]:
    out = []
    for byte in range(256):
        reg = byte << 8
        for _ in range(8):
            reg = ((reg << 1) ^ poly) if reg & 0x8000 else reg << 1
        out.append(reg & 0xFFFF)
    return tuple(out)


def _lsb_table(poly: int) -> tuple[int, ...]:
    out = []
    for byte in range(256):
        reg = byte
        for _ in range(8):
            reg = (reg >> 1) ^ poly if reg & 1 else reg >> 1
        out.append(reg)
    return tuple(out)


_CCITT_TABLE = _msb_table(0x1021)
_MODBUS_TABLE = _lsb_table(0xA001)


def crc16_ccitt_false(data: Buffer) -> int:
    """CRC-16/CCITT-FALSE (BM13xx job frames); the check value of ``b"123456789"`` is 0x29B1."""
    crc = 0xFFFF
    table = _CCITT_TABLE
    for byte in memoryview(data).cast("B"):
        crc = ((crc << 8) & 0xFFFF) ^ table[(crc >> 8) ^ byte]
    return crc


def crc16_modbus(data: Buffer) -> int:
    """CRC-16/MODBUS (Antminer S2/S3 tokens); the check value of ``b"123456789"`` is 0x4B37."""
    crc = 0xFFFF
    table = _MODBUS_TABLE
    for byte in memoryview(data).cast("B"):
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc


def crc5_bits(data: Buffer, bits: int) -> int:
    """The CRC5 of the first ``bits`` bits of ``data``, MSB first (a response's CRC covers
    ``8 * len(body) + 3`` bits: the body and the TYPE bits of its last byte)."""
    view = memoryview(data).cast("B")
    if not 0 <= bits <= 8 * len(view):
        raise ValueError(f"{bits} bits is outside 0..{8 * len(view)}")
    whole, rest = divmod(bits, 8)
    crc = crc5(view[:whole]) if whole else _CRC5_INIT
    if rest:
        byte = view[whole]
        for shift in range(7, 7 - rest, -1):
            feedback = ((crc >> 4) & 1) ^ ((byte >> shift) & 1)
            crc = (crc << 1) & 0x1F
            if feedback:
                crc ^= _CRC5_POLY
    return crc
