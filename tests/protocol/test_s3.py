"""Antminer S2/S3 tokens (shared ASIC protocol reference, section 3): the reference's byte
vectors as hex literals (shared with the S3 tests in tests/s3/s3_helpers.py), both
directions, and the Rx stream decoder on a hostile wire."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hasherd.errors import InputError
from hasherd.protocol.crc import crc16_modbus
from hasherd.protocol.s3 import (
    MAX_TOKEN_BYTES,
    ConfigFlag,
    ControlFlag,
    NonceEntry,
    RxDecoder,
    RxNonce,
    RxStatus,
    RxStatusRequest,
    RxToken,
    S3Error,
    StatusFlag,
    TxConfig,
    TxTask,
    Work,
    data2_from_header,
    decode_rx,
)
from tests.s3.s3_helpers import (  # the section-3 vectors
    DETECT,
    GENESIS,
    GENESIS_MIDSTATE,
    RX_NONCE,
    TX_CONFIG,
    TX_TASK,
)

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Built here from the section 3.3 layout (no capture exists): 2 chains, 1 bitmap word each,
# 2 temps, 2 fans. Regression literal; its CRC is checked independently below.
RX_STATUS = bytes.fromhex(
    "A1003000010200010102030402020300030000000500000078563412FFFFFFFFFEFFFFFFFFFFFFFFFEFFFF7F"
    "201F2DFD3C3D5F5D"
)

CONFIG = TxConfig(
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
TASK = TxTask((Work(1, GENESIS_MIDSTATE, data2_from_header(GENESIS)),), new_block=True, diff=0)
STATUS = RxStatus(
    flags=1,
    fifo_space=0x0100,
    hw_version=bytes.fromhex("01020304"),
    fan_exist=0x0003,
    temp_exist=0x00000003,
    nonce_error=5,
    reg_value=0x12345678,
    chain_asic_num=(32, 31),
    temps=(45, -3),
    fans=(60, 61),
    asic_exist=(0xFFFFFFFF, 0xFFFFFFFE),
    asic_status=(0xFFFFFFFF, 0x7FFFFFFE),
)
NONCE = RxNonce(0x0100, (NonceEntry(1, 0x1DAC2B7C),), diff=0, total_nonce_num=1)

VECTORS = [
    (TX_CONFIG, CONFIG),
    (TX_TASK, TASK),
    (DETECT, RxStatusRequest(StatusFlag.DETECT_GET)),
    (RX_NONCE, NONCE),
    (RX_STATUS, STATUS),
]


@pytest.mark.parametrize(
    ("wire", "token"), VECTORS, ids=lambda v: f"{v[0]:02X}" if isinstance(v, bytes) else ""
)
def test_vectors_both_ways(
    wire: bytes, token: TxConfig | TxTask | RxStatusRequest | RxToken
) -> None:
    assert token.to_bytes() == wire
    assert type(token).from_bytes(wire) == token
    assert crc16_modbus(wire[:-2]) == int.from_bytes(wire[-2:], "little")
    assert int.from_bytes(wire[2:4], "little") == len(wire) - 4


def test_tx_config_defaults_and_fields() -> None:
    assert (CONFIG.fan_pwm, CONFIG.timeout, CONFIG.frequency) == (0xA0, 0x2D, 282)
    assert CONFIG.flags == 0x5F and CONFIG.control == ControlFlag(0)
    beeper = TxConfig(ConfigFlag(0), 1, 1, control=ControlFlag.BEEPER | ControlFlag.TEMP_OVER)
    assert beeper.to_bytes()[5] == 0x03
    assert TxConfig.from_bytes(beeper.to_bytes()) == beeper


def test_tx_task_layout() -> None:
    assert data2_from_header(GENESIS) == bytes.fromhex("4A5E1E4B495FAB291D00FFFF")
    eight = TxTask(tuple(Work(i, bytes([i]) * 32, bytes(12)) for i in range(8)), diff=12)
    wire = eight.to_bytes()
    assert len(wire) == 10 + 48 * 8 and wire[5] == 12 and wire[4] == 0
    assert TxTask.from_bytes(wire) == eight


def test_rx_nonce_header_order() -> None:
    token = RxNonce.from_bytes(RX_NONCE)
    assert token.nonces[0].header_nonce == GENESIS[76:80] == bytes.fromhex("1DAC2B7C")
    assert token.fifo_space == 0x0100 and token.total_nonce_num == 1
    empty = RxNonce(7, ())
    assert len(empty.to_bytes()) == 18 and RxNonce.from_bytes(empty.to_bytes()) == empty


def test_rx_status_fields() -> None:
    token = RxStatus.from_bytes(RX_STATUS)
    assert (token.chain_num, token.words_per_chain) == (2, 1)
    assert token.chain_asic_num == (32, 31) and token.temps == (45, -3)
    assert (
        RxStatus.words_for(32) == 1 and RxStatus.words_for(33) == 2 and RxStatus.words_for(0) == 0
    )
    bare = RxStatus(0, 0, bytes(4), 0, 0, 0, 0, (), (), ())
    assert len(bare.to_bytes()) == 30 and RxStatus.from_bytes(bare.to_bytes()) == bare
    assert decode_rx(RX_STATUS) == STATUS and decode_rx(RX_NONCE) == NONCE


def _reseal(raw: bytes | bytearray) -> bytes:
    raw = bytes(raw[:-2])
    return raw + crc16_modbus(raw).to_bytes(2, "little")


@pytest.mark.parametrize(
    ("parse", "wire", "why"),
    [
        (TxConfig.from_bytes, TX_CONFIG[:-1] + b"\x00", "CRC16"),
        (TxConfig.from_bytes, TX_TASK, "type"),
        (TxConfig.from_bytes, TX_CONFIG[:3], "shorter"),
        (TxConfig.from_bytes, _reseal(TX_CONFIG[:1] + b"\x01" + TX_CONFIG[2:]), "version"),
        (TxConfig.from_bytes, _reseal(TX_CONFIG[:2] + b"\x15" + TX_CONFIG[3:]), "length"),
        (TxConfig.from_bytes, _reseal(TX_CONFIG[:5] + b"\x04" + TX_CONFIG[6:]), "reserved"),
        (TxConfig.from_bytes, _reseal(TX_CONFIG[:7] + b"\x01" + TX_CONFIG[8:]), "reserved"),
        (TxTask.from_bytes, _reseal(TX_TASK[:4] + b"\x03" + TX_TASK[5:]), "reserved"),
        (TxTask.from_bytes, _reseal(b"\x52\x00\x07\x00" + TX_TASK[4:9] + b"\0\0"), "10 + 48n"),
        (RxStatusRequest.from_bytes, _reseal(DETECT[:4] + b"\x04" + DETECT[5:]), "reserved"),
        (RxNonce.from_bytes, _reseal(b"\xa2\x00\x0f\x00" + RX_NONCE[4:17] + b"\0\0"), "18 + 8n"),
        (RxStatus.from_bytes, _reseal(RX_STATUS[:5] + b"\x03" + RX_STATUS[6:]), "counts"),
        (decode_rx, TX_CONFIG, "not an RxStatus"),
    ],
)
def test_bad_tokens_raise_typed_error(parse: object, wire: bytes, why: str) -> None:
    assert callable(parse)
    with pytest.raises(S3Error) as info:
        parse(wire)
    assert why.lower() in str(info.value).lower()
    assert info.value.raw == wire


def test_field_domains() -> None:
    with pytest.raises(InputError):
        TxConfig(ConfigFlag(0), 256, 1)
    with pytest.raises(InputError):
        TxConfig(ConfigFlag(0), 1, 1, control=ControlFlag(4))
    with pytest.raises(InputError):
        TxTask(())
    with pytest.raises(InputError):
        TxTask(tuple(Work(i, bytes(32), bytes(12)) for i in range(9)))
    with pytest.raises(InputError):
        Work(0, bytes(31), bytes(12))
    with pytest.raises(InputError):
        NonceEntry(1 << 32, 0)
    with pytest.raises(InputError):
        RxStatus(0, 0, bytes(4), 0, 0, 0, 0, (1,), (128,), ())
    with pytest.raises(InputError):
        RxStatus(0, 0, bytes(4), 0, 0, 0, 0, (1, 2), (), (), (1,), (1,))
    with pytest.raises(InputError):
        RxStatusRequest(StatusFlag(8))
    with pytest.raises(InputError):
        data2_from_header(GENESIS[:64])
    with pytest.raises(InputError):
        RxDecoder(max_token=10)


# -- the Rx stream decoder ------------------------------------------------------------------

RX = [RX_NONCE, RX_STATUS, RxNonce(3, (NonceEntry(9, 1), NonceEntry(10, 2))).to_bytes()]


def _bytewise(decoder: RxDecoder, data: bytes) -> list[RxToken]:
    out: list[RxToken] = []
    for i in range(len(data)):
        out += decoder.feed(data[i : i + 1])
        assert decoder.buffered <= decoder.max_token
    return out


def test_decoder_one_byte_at_a_time() -> None:
    decoder = RxDecoder()
    out = _bytewise(decoder, b"".join(RX))
    assert out == [decode_rx(t) for t in RX]
    assert (decoder.tokens, decoder.crc_errors, decoder.garbage_bytes) == (3, 0, 0)


def test_decoder_false_starts_and_crc_errors() -> None:
    bad = bytearray(RX_NONCE)
    bad[10] ^= 0x40
    # an A2 with a non-zero version, an A1 with an absurd length, then a corrupted token
    stream = b"\x00\xa2\x07\xa1\x00\xff\xff" + bytes(bad) + RX_STATUS + b"\x11" + RX_NONCE
    decoder = RxDecoder()
    out = _bytewise(decoder, stream)
    assert out == [STATUS, NONCE]
    assert decoder.crc_errors == 1
    assert decoder.garbage_bytes == len(stream) - len(RX_STATUS) - len(RX_NONCE) - 1


def test_decoder_malformed_token_with_valid_crc() -> None:
    malformed = _reseal(RX_STATUS[:5] + b"\x03" + RX_STATUS[6:])
    decoder = RxDecoder()
    assert decoder.feed(malformed + RX_NONCE) == [NONCE]
    assert decoder.malformed == 1


def test_decoder_long_false_length_does_not_lose_tokens() -> None:
    # A2 00 with length 0x0300: the decoder waits for 772 bytes, the CRC fails, and the
    # tokens it was holding are found on the rescan
    stream = b"\xa2\x00\x00\x03" + b"".join(RX) * 20 + bytes(800)
    decoder = RxDecoder()
    out = decoder.feed(stream)
    assert out == [decode_rx(t) for t in RX] * 20
    assert decoder.crc_errors == 1


def test_decoder_big_chunk_and_cap() -> None:
    decoder = RxDecoder(max_token=64)
    out = decoder.feed(b"".join(RX) * 500)
    assert len(out) == 1500 and decoder.buffered == 0
    big = RxNonce(0, tuple(NonceEntry(i, i) for i in range(10))).to_bytes()  # 98 bytes
    assert decoder.feed(big) == [] and decoder.buffered <= 64
    assert len(big) <= MAX_TOKEN_BYTES


@FUZZ
@given(st.data())
def test_decoder_interleaved_garbage(data: st.DataObject) -> None:
    picks = data.draw(st.lists(st.sampled_from(RX), max_size=10))
    clean = st.binary(max_size=30).map(lambda b: b.replace(b"\xa1", b"").replace(b"\xa2", b""))
    stream = bytearray()
    junk = 0
    for token in picks:
        g = data.draw(clean)
        junk += len(g)
        stream += g + token
    decoder = RxDecoder()
    out = _bytewise(decoder, bytes(stream))
    assert out == [decode_rx(t) for t in picks]
    assert decoder.garbage_bytes == junk and decoder.crc_errors == 0


@FUZZ
@given(st.data())
def test_decoder_random_loss(data: st.DataObject) -> None:
    """Bytes dropped inside some tokens: every intact token still comes out, in order
    (tokens separated by an idle gap as long as the decoder's cap)."""
    rng = random.Random(data.draw(st.integers(0, 2**32 - 1)))
    picks = data.draw(st.lists(st.sampled_from(RX), min_size=1, max_size=10))
    loss = data.draw(st.floats(0.0, 0.2))
    cap = 128
    stream = bytearray()
    intact = []
    for token in picks:
        kept = bytes(b for b in token if rng.random() >= loss)
        if kept == token:
            intact.append(decode_rx(token))
        stream += kept + bytes(cap)
    decoder = RxDecoder(max_token=cap)
    out = _bytewise(decoder, bytes(stream))
    it = iter(out)
    assert all(any(got == want for got in it) for want in intact)
    assert len(out) <= len(picks)


@FUZZ
@given(st.binary(max_size=600), st.integers(1, 97), st.sampled_from([30, 64, MAX_TOKEN_BYTES]))
def test_decoder_never_raises_and_accounts_for_every_byte(
    blob: bytes, chunk: int, cap: int
) -> None:
    decoder = RxDecoder(max_token=cap)
    out: list[RxToken] = []
    for i in range(0, len(blob), chunk):
        out += decoder.feed(blob[i : i + chunk])
        assert decoder.buffered <= cap
    used = sum(len(t.to_bytes()) for t in out)
    skipped = decoder.garbage_bytes + decoder.crc_errors + decoder.malformed
    assert len(blob) == skipped + used + decoder.buffered
    assert len(out) == decoder.tokens


def _sealed(kind: int, body: bytes) -> bytes:
    head = bytes((kind, 0)) + (len(body) + 2).to_bytes(2, "little") + body
    return head + crc16_modbus(head).to_bytes(2, "little")


@FUZZ
@given(st.binary(max_size=120), st.sampled_from([0, 0x51, 0x52, 0x53, 0xA1, 0xA2]))
def test_from_bytes_raises_only_typed_errors(blob: bytes, kind: int) -> None:
    if kind:  # a token with valid header and CRC, to reach the layout checks
        blob = _sealed(kind, blob)
    parsers = (
        TxConfig.from_bytes,
        TxTask.from_bytes,
        RxStatusRequest.from_bytes,
        RxStatus.from_bytes,
        RxNonce.from_bytes,
        decode_rx,
    )
    for parse in parsers:
        try:
            token = parse(blob)
        except S3Error as e:
            assert e.raw == blob[:256]
        else:
            assert token.to_bytes() == blob  # whatever parses is lossless
