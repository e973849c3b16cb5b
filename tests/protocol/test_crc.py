"""CRC5, CRC-16/CCITT-FALSE and CRC-16/MODBUS against the reference's vectors (shared ASIC
protocol reference, sections 1.4, 1.5 and 3.1) and against plain bit-serial definitions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hasherd.protocol.crc import crc5, crc5_bits, crc16_ccitt_false, crc16_modbus

CHECK = b"123456789"

# Command frames: the last byte is the CRC5 of everything after 55 AA (section 1.4).
COMMANDS = [
    "55AA5205 00000A",
    "55AA5305 000003",
    "55AA4005 00001C",
    "55AA4005 080007",
    "55AA4205 401C0B",
    "55AA4109 401800007A3111",
    "55AA5109 0014000000FF08",
    "55AA5109 00A49000FFFF1C",
    "55AA5109 0028113002 0003",
    "55AA5109 000840A0022516",
    "55AA5109 0068C070011100",
    "55AA5109 0014000080FF04",
    "55AA5109 0014000000FC07",
    "55AA4205 02081E",
    "55AA5109 0028013000001A",
    "55AA4005 800010",
    "55AA4109 04A49000FFFF0F",
    "55AA5109 00180000603100",
    "55AA5109 001800012701 0B",
]
# Responses: crc5 over every byte after AA 55, the last included, is 0 (section 1.4).
RESPONSES = [
    "AA5513971800000006",
    "AA5597C328B601639C",
    "AA550003EA0F02209C",
    "AA55136600000000000005",
    "AA5513680000000000000F",
    "AA55137000000000000010",
    "AA5513620300000000001E",
    "AA554C0352750CD205A29C",
    "AA551800A640029922F991",
    "AA552FD596CE029394FB86",
    "AA556DB88EE10104035494",
    "AA5540A002410208000018",
    "AA551DAC2B7C000C91",
    "AA551DAC2B7C0008000196",
    "AA550000C100001802",
]
# BM13xx job frames computed in section 1.5 (CRC16 big-endian in the last two bytes).
JOB_1397 = bytes.fromhex(
    "55AA2136040100000000FFFF001D29AB5F494B1E5E4A4719F91B96B187364F0103C8C3C8D8E91E59CAA890"
    "CCAC7D6358BFF0BC909A33EA6A"
)
JOB_1370_BODY = bytes.fromhex(
    "2156180100000000FFFF001D29AB5F494B1E5E4A3A9FB8AA888A51327FC81BC367768F617AC72C3E7A7B12"
    "B23BA3EDFD" + "00" * 32 + "01000000"
)
# S3 tokens (section 3.2-3.3): CRC-16/MODBUS little-endian in the last two bytes.
S3_TOKENS = [
    "510014005F00000008 20A02D1A0100000000000000 04870C",
    "520036000100000001000000339A90BCF0BF58637DACCC90A8CA591EE9D8C8C3C803014F3687B1961BF9"
    "19474A5E1E4B495FAB291D00FFFF5922",
    "530008000200000000 00830D",
    "A20016000001000001000000000000000100 00007C2BAC1D230E",
]


def ref_crc5(data: bytes) -> int:
    crc = 0x1F
    for byte in data:
        for shift in range(7, -1, -1):
            fb = ((crc >> 4) & 1) ^ ((byte >> shift) & 1)
            crc = (crc << 1) & 0x1F
            if fb:
                crc ^= 0x05
    return crc


def ref_ccitt(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def ref_modbus(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def test_check_values() -> None:
    assert crc5(CHECK) == 0x0F  # not catalogue CRC-5/USB
    assert crc16_ccitt_false(CHECK) == 0x29B1
    assert crc16_modbus(CHECK) == 0x4B37
    assert crc16_modbus(CHECK).to_bytes(2, "little") == bytes.fromhex("374B")
    assert crc5(b"") == 0x1F and crc16_ccitt_false(b"") == 0xFFFF and crc16_modbus(b"") == 0xFFFF


@pytest.mark.parametrize("hexframe", COMMANDS)
def test_command_crc5(hexframe: str) -> None:
    frame = bytes.fromhex(hexframe)
    assert crc5(frame[2:-1]) == frame[-1]


def test_command_with_zero_crc() -> None:
    assert crc5(bytes.fromhex("51090068C0700111")) == 0x00


@pytest.mark.parametrize("hexframe", RESPONSES)
def test_response_residue_is_zero(hexframe: str) -> None:
    frame = bytes.fromhex(hexframe)
    assert crc5(frame[2:]) == 0
    # the GEKKO form: the CRC over the body and the 3 TYPE bits is the low 5 bits
    assert crc5_bits(frame[2:], 8 * len(frame[2:]) - 5) == frame[-1] & 0x1F


def test_job_crc16_vectors() -> None:
    assert crc16_ccitt_false(JOB_1397[2:-2]) == 0xEA6A
    assert crc16_ccitt_false(JOB_1370_BODY) == 0xFB42
    # LEN is covered: the same job with the factory LEN 0x36 has another CRC
    assert crc16_ccitt_false(JOB_1370_BODY[:1] + b"\x36" + JOB_1370_BODY[2:]) == 0xDF06


@pytest.mark.parametrize("hextoken", S3_TOKENS)
def test_s3_token_crc(hextoken: str) -> None:
    token = bytes.fromhex(hextoken)
    assert crc16_modbus(token[:-2]) == int.from_bytes(token[-2:], "little")
    assert crc16_modbus(token) == 0  # MODBUS residue of a sealed token


def test_crc5_bits_bounds() -> None:
    assert crc5_bits(b"\xff", 0) == 0x1F
    assert crc5_bits(b"\xff", 8) == crc5(b"\xff")
    with pytest.raises(ValueError):
        crc5_bits(b"\xff", 9)
    with pytest.raises(ValueError):
        crc5_bits(b"", -1)


@given(st.binary(max_size=200))
def test_tables_match_bit_serial(data: bytes) -> None:
    assert crc5(data) == ref_crc5(data)
    assert crc16_ccitt_false(data) == ref_ccitt(data)
    assert crc16_modbus(data) == ref_modbus(data)
    assert crc5(bytearray(data)) == crc5(memoryview(data)) == crc5(data)


@given(st.binary(max_size=64), st.integers(0, 7))
def test_crc5_bits_and_residues(data: bytes, kind: int) -> None:
    assert crc5_bits(data, 8 * len(data)) == crc5(data)
    # a response's last byte: TYPE in bits 7-5, the CRC of body + TYPE bits in 4-0
    head = data + bytes((kind << 5,))
    last = kind << 5 | crc5_bits(head, 8 * len(data) + 3)
    assert crc5(data + bytes((last,))) == 0
    assert crc16_ccitt_false(data + ref_ccitt(data).to_bytes(2, "big")) == 0
    assert crc16_modbus(data + ref_modbus(data).to_bytes(2, "little")) == 0
