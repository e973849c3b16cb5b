"""BM13xx frames (shared ASIC protocol reference, sections 1-2): every byte vector of the
reference as a hex literal, both directions, and the response stream decoder on a hostile
wire."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hasherd.errors import InputError
from hasherd.protocol.bm13xx import Bm13xxError as WireError
from hasherd.protocol.bm13xx import (
    ChainInactive,
    Chip,
    FullHeaderJob,
    MidstateJob,
    NonceResponse,
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
    decode_command,
    decode_response,
    misc_control_divider,
    misc_control_value,
    pll_frequency_hz,
    ticket_mask,
    ticket_mask_difficulty,
    uart_baud_divider,
    uart_baud_value,
    version_rolling_value,
    word_reverse,
)
from hasherd.protocol.crc import crc5, crc16_ccitt_false

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- section 1.4 command vectors -----------------------------------------------------------

COMMANDS: list[tuple[str, Any]] = [
    # from sources
    ("55AA520500000A", ReadRegister(Register.CHIP_ID, 0, broadcast=True)),  # ESP bm1366.c:238
    ("55AA5305000003", ChainInactive()),  # GPT command.rs:42
    ("55AA400500001C", SetChipAddress(0x00)),  # GPT command.rs:77
    ("55AA4005080007", SetChipAddress(0x08)),  # GPT command.rs:80
    ("55AA4205401C0B", ReadRegister(0x1C, 0x40)),  # GPT command.rs:111
    ("55AA4109401800007A3111", WriteRegister(Register.MISC_CONTROL, 0x00007A31, 0x40)),
    ("55AA51090014000000FF08", WriteRegister(Register.TICKET_MASK, 0xFF, broadcast=True)),
    ("55AA510900A49000FFFF1C", WriteRegister(0xA4, 0x9000FFFF, broadcast=True)),  # ESP
    ("55AA5109002811300200 03", WriteRegister(0x28, 0x11300200, broadcast=True)),  # ESP
    ("55AA5109000840A0022516", WriteRegister(0x08, 0x40A00225, broadcast=True)),  # ESP-doc
    ("55AA51090068C070011100", WriteRegister(0x68, 0xC0700111, broadcast=True)),  # CRC 0
    # computed [calc]
    ("55AA51090014000080FF04", WriteRegister(0x14, 0x000080FF, broadcast=True)),  # ticket 512
    ("55AA51090014000000FC07", WriteRegister(0x14, 0x000000FC, broadcast=True)),  # ticket 64
    ("55AA420502081E", ReadRegister(0x08, 0x02)),
    ("55AA5109002801300000 1A", WriteRegister(0x28, 0x01300000, broadcast=True)),
    ("55AA4005800010", SetChipAddress(0x80)),
    ("55AA410904A49000FFFF0F", WriteRegister(0xA4, 0x9000FFFF, 0x04)),
    ("55AA51090018000060 3100", WriteRegister(0x18, 0x00006031, broadcast=True)),  # 3.125 M
    ("55AA5109001800012701 0B", WriteRegister(0x18, 0x00012701, broadcast=True)),  # 6.25 M
]


@pytest.mark.parametrize(("hexframe", "frame"), COMMANDS)
def test_command_vectors_both_ways(hexframe: str, frame: Any) -> None:
    wire = bytes.fromhex(hexframe)
    assert frame.to_bytes() == wire
    assert decode_command(wire) == frame
    assert type(frame).from_bytes(wire) == frame


def test_command_fields() -> None:
    w = decode_command(bytes.fromhex("55AA4109401800007A3111"))
    assert isinstance(w, WriteRegister)
    assert (w.chip_address, w.register, w.value, w.broadcast) == (0x40, 0x18, 0x7A31, False)
    r = decode_command(bytes.fromhex("55AA520500000A"))
    assert isinstance(r, ReadRegister) and r.broadcast and r.register == 0


@pytest.mark.parametrize(
    ("hexframe", "why", "fix_crc"),
    [
        ("55AA520500000B", "CRC5", False),
        ("55AA5205000000", "CRC5", False),
        ("AA55520500000A", "preamble", False),
        ("55AA5206000009", "length", False),
        ("55AA52050000", "7 bytes", False),
        ("55AA4405000000", "not a", False),
        ("", "not a", False),
        # valid CRC5, bad fields
        ("55AA5305000100", "payload", True),
        ("55AA4005000100", "second payload", True),
        ("55AA5205000200", "aligned", True),
        ("55AA51090015000000FF00", "aligned", True),
    ],
)
def test_bad_commands_raise_typed_error(hexframe: str, why: str, fix_crc: bool) -> None:
    raw = bytes.fromhex(hexframe)
    if fix_crc:
        raw = raw[:-1] + bytes((crc5(raw[2:-1]),))
    with pytest.raises(WireError) as info:
        decode_command(raw)
    assert why.lower() in str(info.value).lower()
    assert info.value.raw == raw


def test_write_register_rejects_wrong_header() -> None:
    with pytest.raises(WireError):
        WriteRegister.from_bytes(bytes.fromhex("55AA520500000A"))
    with pytest.raises(WireError):
        SetChipAddress.from_bytes(bytes.fromhex("55AA5305000003"))


def test_command_field_domains() -> None:
    with pytest.raises(InputError):
        WriteRegister(0x15, 0)  # not a multiple of 4
    with pytest.raises(InputError):
        WriteRegister(0x14, 1 << 32)
    with pytest.raises(InputError):
        ReadRegister(0x100)
    with pytest.raises(InputError):
        SetChipAddress(-1)
    with pytest.raises(InputError):
        WriteRegister(0x14, True)


# -- section 1.4 response vectors ------------------------------------------------------------

RESPONSES: list[tuple[str, Response]] = [
    ("AA5513971800000006", RegisterResponse(0x13971800, 0, 0)),  # BM1397 chip ID
    ("AA5597C328B601639C", NonceResponse(0xB628C397, 0x01, 0x63)),  # GPT response.rs:84
    ("AA550003EA0F02209C", NonceResponse(0x0FEA0300, 0x02, 0x20)),  # ESP-doc
    ("AA55136600000000000005", RegisterResponse(0x13660000, 0, 0, size=11)),
    ("AA5513680000000000000F", RegisterResponse(0x13680000, 0, 0, size=11)),
    ("AA55137000000000000010", RegisterResponse(0x13700000, 0, 0, size=11)),
    ("AA5513620300000000001E", RegisterResponse(0x13620300, 0, 0, size=11)),
    ("AA554C0352750CD205A29C", VersionNonceResponse(0x7552034C, 12, 0xD2, 0x05A2)),  # MUJ
    ("AA551800A640029922F991", VersionNonceResponse(0x40A60018, 2, 0x99, 0x22F9)),  # MUJ
    ("AA552FD596CE029394FB86", VersionNonceResponse(0xCE96D52F, 2, 0x93, 0x94FB)),  # GPT13
    ("AA556DB88EE10104035494", VersionNonceResponse(0xE18EB86D, 1, 0x04, 0x0354)),  # MUJ
    ("AA550000C100001802", RegisterResponse(0x0000C100, 0, 0x18)),  # fresh BM1370, 9 bytes
    # computed [calc]
    ("AA5540A002410208000018", RegisterResponse(0x40A00241, 0x02, 0x08, size=11)),
    ("AA551DAC2B7C000C91", NonceResponse(0x7C2BAC1D, 0x00, 0x0C)),
    ("AA551DAC2B7C0008000196", VersionNonceResponse(0x7C2BAC1D, 0, 0x08, 0x0001)),
]


@pytest.mark.parametrize(("hexframe", "frame"), RESPONSES)
def test_response_vectors_both_ways(hexframe: str, frame: Response) -> None:
    wire = bytes.fromhex(hexframe)
    assert frame.to_bytes() == wire
    assert decode_response(wire) == frame
    assert type(frame).from_bytes(wire) == frame


def test_chip_id_responses() -> None:
    ids = [decode_response(bytes.fromhex(h)) for h, _ in RESPONSES[3:7]]
    assert [r.chip_id for r in ids if isinstance(r, RegisterResponse)] == [
        Chip.BM1366.chip_id,
        Chip.BM1368.chip_id,
        Chip.BM1370.chip_id,
        Chip.BM1362.chip_id,
    ]
    first = decode_response(bytes.fromhex("AA5513971800000006"))
    assert isinstance(first, RegisterResponse) and first.chip_id == 0x1397


def test_bm1370_capture_decodes_as_documented() -> None:
    # section 2.8: "AA 55 4C 03 52 75 0C D2 05 A2 9C"
    r = VersionNonceResponse.from_bytes(bytes.fromhex("AA554C0352750CD205A29C"))
    assert r.nonce_bytes == bytes.fromhex("4C035275")
    assert f"{r.nonce:08x}" == "7552034c"  # the pool submit string
    assert r.excess == 12
    assert r.job_id(Chip.BM1370) == 0x68 and r.subcore_id(Chip.BM1370) == 2
    assert r.version_bits << 13 == 0x00B44000
    assert r.rolled_version(0x20000000) == 0x20B44000
    assert r.core_id == 38
    assert r.to_bytes()[-1] & 0x1F == 0x1C  # its CRC5


def test_bm1397_nonce_fields() -> None:
    r = NonceResponse.from_bytes(bytes.fromhex("AA5597C328B601639C"))
    assert int.from_bytes(r.nonce_bytes, "big") == 0x97C328B6  # GPT's BE reading
    assert (r.midstate_num, r.job_id, r.midstate_index) == (1, 0x60, 3)
    assert (r.core_id, r.chip_region) == (0x97, 0xC3)
    assert Chip.BM1397.response_size == 9 and Chip.BM1370.response_size == 11


def test_job_id_packing_per_model() -> None:
    r = VersionNonceResponse.from_bytes(bytes.fromhex("AA552FD596CE029394FB86"))
    assert (r.job_id(Chip.BM1366), r.subcore_id(Chip.BM1366)) == (0x90, 3)
    assert (r.job_id(Chip.BM1362), r.subcore_id(Chip.BM1362)) == (0x90, 3)
    assert (r.job_id(Chip.BM1368), r.subcore_id(Chip.BM1368)) == (0x48, 3)


@pytest.mark.parametrize(
    "hexframe",
    [
        "AA5513971800000007",  # bad CRC5
        "AA5513971800000000",
        "55AA13971800000006",  # command preamble
        "AA55139718000000",  # 8 bytes
        "AA551397180000000000",  # 10 bytes
        "AA55000000000000000000000000",
    ],
)
def test_bad_responses_raise_typed_error(hexframe: str) -> None:
    raw = bytes.fromhex(hexframe)
    with pytest.raises(WireError) as info:
        decode_response(raw)
    assert info.value.raw == raw


def test_response_type_mismatch() -> None:
    register = bytes.fromhex("AA5513971800000006")
    nonce = bytes.fromhex("AA5597C328B601639C")
    with pytest.raises(WireError, match="type"):
        NonceResponse.from_bytes(register)
    with pytest.raises(WireError, match="type"):
        RegisterResponse.from_bytes(nonce)
    with pytest.raises(WireError):
        VersionNonceResponse.from_bytes(nonce)
    unknown = _sealed_response(bytes.fromhex("1397180000 00"), kind=2)
    with pytest.raises(WireError, match="unknown response type 2"):
        decode_response(unknown)


def test_response_field_domains() -> None:
    with pytest.raises(InputError):
        RegisterResponse(0, 0, 0, size=10)
    with pytest.raises(InputError):
        RegisterResponse(0, 0, 0, size=9, reserved=1)
    with pytest.raises(InputError):
        VersionNonceResponse(0, 0, 0, 0x10000)
    with pytest.raises(InputError):
        NonceResponse(1 << 32, 0, 0)


# -- section 1.5 jobs ------------------------------------------------------------------------

GENESIS = bytes.fromhex(
    "01000000" + "00" * 32 + "3ba3edfd7a7b12b27ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a"
    "29ab5f49ffff001d1dac2b7c"
)
GENESIS_MIDSTATE = bytes.fromhex("339A90BCF0BF58637DACCC90A8CA591EE9D8C8C3C803014F3687B1961BF91947")
JOB_1397 = bytes.fromhex(
    "55AA2136040100000000FFFF001D29AB5F494B1E5E4A4719F91B96B187364F0103C8C3C8D8E91E59CAA890"
    "CCAC7D6358BFF0BC909A33EA6A"
)
JOB_1370 = bytes.fromhex(
    "55AA2156180100000000FFFF001D29AB5F494B1E5E4A3A9FB8AA888A51327FC81BC367768F617AC72C3E"
    "7A7B12B23BA3EDFD" + "00" * 32 + "01000000FB42"
)


def test_bm1397_job_vector() -> None:
    job = MidstateJob(
        4, (GENESIS_MIDSTATE,), nbits=0x1D00FFFF, ntime=0x495FAB29, merkle_tail=GENESIS[64:68]
    )
    assert job.to_bytes() == JOB_1397
    assert len(JOB_1397) == job.size == 56
    assert MidstateJob.from_bytes(JOB_1397) == job
    # the wire carries the midstate reversed (H7..H0, each BE)
    assert JOB_1397[22:54] == GENESIS_MIDSTATE[::-1]


def test_bm1397_four_midstates_round_trip() -> None:
    states = tuple(bytes([i]) * 32 for i in range(4))
    job = MidstateJob(0x7C, states, 1, 2, b"abcd", starting_nonce=0)
    wire = job.to_bytes()
    assert len(wire) == 152 and wire[3] == 0x96 and wire[5] == 4
    assert int.from_bytes(wire[-2:], "big") == crc16_ccitt_false(wire[2:-2])
    assert MidstateJob.from_bytes(wire) == job


def test_bm1370_job_vector() -> None:
    job = FullHeaderJob.from_header(0x18, GENESIS[:76] + b"\0\0\0\0")
    assert job == FullHeaderJob(0x18, 1, bytes(32), GENESIS[36:68], 0x495FAB29, 0x1D00FFFF)
    assert job.to_bytes() == JOB_1370
    assert FullHeaderJob.from_bytes(JOB_1370) == job
    assert job.header(0x7C2BAC1D) == GENESIS
    # LEN 0x36 (factory firmware) is kept, and changes the CRC to DF 06
    short = FullHeaderJob.from_header(0x18, GENESIS[:76] + b"\0\0\0\0", length=0x36)
    wire = short.to_bytes()
    assert wire[3] == 0x36 and wire[-2:] == bytes.fromhex("DF06")
    assert FullHeaderJob.from_bytes(wire) == short
    assert FullHeaderJob.from_header(1, GENESIS).starting_nonce == 0x7C2BAC1D


def test_word_reverse() -> None:
    data = bytes(range(32))
    assert word_reverse(data)[:8] == bytes((28, 29, 30, 31, 24, 25, 26, 27))
    assert word_reverse(word_reverse(data)) == data


@pytest.mark.parametrize(
    "wire",
    [
        JOB_1370[:-1] + b"\x43",  # bad CRC16
        JOB_1370[:-1],  # short
        b"\x55\xab" + JOB_1370[2:],  # preamble
        JOB_1370[:2] + b"\x22" + JOB_1370[3:],  # header
    ],
)
def test_bad_full_jobs(wire: bytes) -> None:
    with pytest.raises(WireError):
        FullHeaderJob.from_bytes(wire)


def test_bad_midstate_jobs() -> None:
    with pytest.raises(WireError, match="CRC16"):
        MidstateJob.from_bytes(JOB_1397[:-1] + b"\x00")
    bad_count = bytearray(JOB_1397)
    bad_count[5] = 2
    bad_count[-2:] = crc16_ccitt_false(bad_count[2:-2]).to_bytes(2, "big")
    with pytest.raises(WireError, match="count"):
        MidstateJob.from_bytes(bytes(bad_count))
    with pytest.raises(InputError):
        MidstateJob(0, (), 0, 0, b"abcd")
    with pytest.raises(InputError):
        MidstateJob(0, (b"short",), 0, 0, b"abcd")
    with pytest.raises(InputError):
        FullHeaderJob.from_header(0, GENESIS[:79])


# -- registers and their encodings (section 2) -----------------------------------------------


@pytest.mark.parametrize(
    ("difficulty", "value"),
    [
        (1, 0),
        (2, 0x80),
        (64, 0xFC),
        (256, 0xFF),
        (512, 0x80FF),
        (1024, 0xC0FF),
        (8192, 0xF8FF),
        (1000, 0x80FF),
        (1 << 32, 0xFFFFFFFF),
    ],
)
def test_ticket_mask(difficulty: int, value: int) -> None:
    assert ticket_mask(difficulty) == value
    assert ticket_mask_difficulty(value) == 1 << (difficulty.bit_length() - 1)


def test_ticket_mask_domain() -> None:
    for bad in (0, -4, (1 << 32) + 1):
        with pytest.raises(InputError):
            ticket_mask(bad)
    with pytest.raises(InputError):
        ticket_mask_difficulty(0x01)  # bit-reversed 0x80: not 2^n - 1


def test_baud_encodings() -> None:
    assert round(baud_rate(26), 1) == 115740.7
    assert baud_rate(0) == 3_125_000
    assert baud_divider(115_200) == 26 and baud_divider(3_125_000) == 0
    assert baud_divider(1_041_667) == 2
    assert baud_divider(1_000_000, tolerance=0.05) == 2
    with pytest.raises(InputError):
        baud_divider(1_000_000)  # 4.2 % off the nearest rate
    with pytest.raises(InputError):
        baud_divider(0)
    assert misc_control_value(26) == 0x00007A31  # ESP default
    assert misc_control_value(0) == 0x00006031  # 3.125 M
    assert misc_control_value(1) == 0x00006131  # GEKKO 1.5625 M
    assert misc_control_divider(0x00007A31) == 26
    with pytest.raises(InputError):
        misc_control_value(32)
    assert uart_baud_value(2) == 0x11300200
    assert uart_baud_value(0, base=0x01301A00) == 0x01300000
    assert uart_baud_divider(0x01301A00) == 26 and uart_baud_divider(0x11300200) == 2


def test_pll_and_version_rolling() -> None:
    assert pll_frequency_hz(0x40A00225, dividers_minus_one=False) == 200e6  # BM1397
    assert pll_frequency_hz(0x40A00241, dividers_minus_one=True) == 200e6  # BM1366
    with pytest.raises(InputError):
        pll_frequency_hz(0x40A00005, dividers_minus_one=False)
    assert version_rolling_value(0x1FFFE000) == 0x9000FFFF
    assert Register["VERSION_ROLLING"] is Register["MIDSTATE_CONFIG"]  # an alias
    assert int(Register.MIDSTATE_CONFIG) == 0xA4
    assert (Register.TICKET_MASK, Register.UART_BAUD, Register.SOFT_RESET_CONTROL) == (
        0x14,
        0x28,
        0xA8,
    )


# -- the stream decoder ----------------------------------------------------------------------

LONG = [bytes.fromhex(h) for h, f in RESPONSES if len(bytes.fromhex(h)) == 11]
SHORT = [bytes.fromhex(h) for h, f in RESPONSES if len(bytes.fromhex(h)) == 9]


def _sealed_response(body: bytes, kind: int) -> bytes:
    for c in range(32):
        last = kind << 5 | c
        if crc5(body + bytes((last,))) == 0:
            return b"\xaa\x55" + body + bytes((last,))
    raise AssertionError("no CRC5 completes this body")


def _bytewise(decoder: ResponseDecoder, data: bytes) -> list[Response]:
    out: list[Response] = []
    for i in range(len(data)):
        out += decoder.feed(data[i : i + 1])
        assert decoder.buffered < decoder.frame_size
    return out


@pytest.mark.parametrize(("frames", "size"), [(LONG, 11), (SHORT, 9)])
def test_decoder_one_byte_at_a_time(frames: list[bytes], size: int) -> None:
    decoder = ResponseDecoder(size)
    out = _bytewise(decoder, b"".join(frames))
    assert out == [decode_response(f) for f in frames]
    assert (decoder.frames, decoder.crc_errors, decoder.garbage_bytes) == (len(frames), 0, 0)


def test_decoder_garbage_prefix_and_false_preamble() -> None:
    garbage = bytes.fromhex("00FFAA00AA5513AAAA")  # holds a false AA 55 start
    frames = LONG[:3]
    decoder = ResponseDecoder(11)
    out = _bytewise(decoder, garbage + b"".join(frames))
    assert out == [decode_response(f) for f in frames]
    assert decoder.crc_errors >= 1  # the false start failed its CRC
    assert decoder.garbage_bytes > 0


def test_decoder_counts_crc_errors_and_keeps_going() -> None:
    bad = bytearray(LONG[0])
    bad[5] ^= 0x01
    gap = bytes(11)
    stream = LONG[1] + gap + bytes(bad) + gap + LONG[2]
    decoder = ResponseDecoder(11)
    out = decoder.feed(stream)
    assert out == [decode_response(LONG[1]), decode_response(LONG[2])]
    assert decoder.crc_errors == 1 and decoder.frames == 2
    assert decoder.garbage_bytes == len(stream) - 2 * 11 - 2


def test_decoder_unknown_type_and_size_switch() -> None:
    unknown = _sealed_response(bytes(8), kind=3)
    decoder = ResponseDecoder(9)
    assert decoder.feed(SHORT[0]) == [decode_response(SHORT[0])]
    decoder.frame_size = 11
    assert decoder.feed(unknown + LONG[0]) == [decode_response(LONG[0])]
    assert decoder.unknown_frames == 1
    with pytest.raises(InputError):
        decoder.frame_size = 10
    with pytest.raises(InputError):
        ResponseDecoder(7)


def test_decoder_big_chunk() -> None:
    decoder = ResponseDecoder(11)
    stream = b"".join(LONG) * 1000
    out = decoder.feed(bytearray(stream))
    assert len(out) == len(LONG) * 1000 and decoder.buffered == 0
    assert out[: len(LONG)] == [decode_response(f) for f in LONG]


@FUZZ
@given(st.data())
def test_decoder_interleaved_garbage(data: st.DataObject) -> None:
    size = data.draw(st.sampled_from([9, 11]))
    pool = LONG if size == 11 else SHORT
    picks = data.draw(st.lists(st.sampled_from(pool), max_size=12))
    no_aa = st.binary(max_size=20).map(lambda b: b.replace(b"\xaa", b""))
    stream = bytearray()
    junk = 0
    for frame in picks:
        g = data.draw(no_aa)
        junk += len(g)
        stream += g + frame
    decoder = ResponseDecoder(size)
    out = _bytewise(decoder, bytes(stream))
    assert out == [decode_response(f) for f in picks]
    assert decoder.garbage_bytes == junk and decoder.crc_errors == 0


@FUZZ
@given(st.data())
def test_decoder_random_loss(data: st.DataObject) -> None:
    """Bytes dropped inside some frames: every intact frame still comes out, in order.
    Frames are separated by an idle gap at least a frame long (UART idle time), so a
    damaged frame cannot swallow the next one."""
    rng = random.Random(data.draw(st.integers(0, 2**32 - 1)))
    picks = data.draw(st.lists(st.sampled_from(LONG), min_size=1, max_size=15))
    loss = data.draw(st.floats(0.0, 0.3))
    stream = bytearray()
    intact = []
    for frame in picks:
        kept = bytes(b for b in frame if rng.random() >= loss)
        if kept == frame:
            intact.append(decode_response(frame))
        stream += kept + bytes(11)
    decoder = ResponseDecoder(11)
    out = _bytewise(decoder, bytes(stream))
    it = iter(out)
    assert all(any(got == want for got in it) for want in intact)  # ordered subsequence
    assert len(out) <= len(picks)


@FUZZ
@given(st.binary(max_size=400), st.sampled_from([9, 11]), st.integers(1, 64))
def test_decoder_never_raises_and_accounts_for_every_byte(
    blob: bytes, size: int, chunk: int
) -> None:
    decoder = ResponseDecoder(size)
    out: list[Response] = []
    for i in range(0, len(blob), chunk):
        out += decoder.feed(blob[i : i + chunk])
        assert decoder.buffered < size
    used = size * (decoder.frames + decoder.unknown_frames)
    assert len(blob) == decoder.garbage_bytes + 2 * decoder.crc_errors + used + decoder.buffered
    assert len(out) == decoder.frames
    for frame in out:
        assert len(frame.to_bytes()) == size


def _with_crc5(body: bytes) -> bytes:
    return b"\x55\xaa" + body + bytes((crc5(body),))


@FUZZ
@given(st.binary(max_size=160), st.sampled_from([0, 1, 2]))
def test_from_bytes_raises_only_typed_errors(blob: bytes, mode: int) -> None:
    if mode == 1 and blob:  # a command frame with a valid CRC5, to reach the field checks
        blob = _with_crc5(blob[:9])
    elif mode == 2 and blob:  # a response candidate with a valid CRC5
        blob = _sealed_response(blob[:8], blob[0] >> 5)
    parsers = (
        decode_command,
        decode_response,
        MidstateJob.from_bytes,
        FullHeaderJob.from_bytes,
        SetChipAddress.from_bytes,
        ChainInactive.from_bytes,
        ReadRegister.from_bytes,
        WriteRegister.from_bytes,
        RegisterResponse.from_bytes,
        NonceResponse.from_bytes,
        VersionNonceResponse.from_bytes,
    )
    for parse in parsers:
        try:
            frame = parse(blob)
        except WireError as e:
            assert e.raw == blob[:256]
        else:
            assert frame.to_bytes() == blob  # whatever parses is lossless


@FUZZ
@given(st.binary(min_size=82, max_size=82), st.sampled_from([0x36, 0x56, 0xFF]))
def test_jobs_with_valid_crc_are_lossless(payload: bytes, length: int) -> None:
    body = bytes((0x21, length)) + payload
    wire = b"\x55\xaa" + body + crc16_ccitt_false(body).to_bytes(2, "big")
    job = FullHeaderJob.from_bytes(wire)
    assert job.to_bytes() == wire and job.length == length
    try:
        mjob = MidstateJob.from_bytes(wire)
    except WireError as e:
        assert "count" in str(e)
    else:
        assert mjob.to_bytes() == wire and len(mjob.midstates) == 2
