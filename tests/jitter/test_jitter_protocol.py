"""Jitter RPC codecs: hex literals, round trips, stream decoders in any chunking, hostile
bytes (hypothesis), and the vectorised lookup against the spec's literal scan."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hasherd.errors import InputError
from hasherd.kernel import spec
from hasherd.kernel.jitter_batch import BatchIndex, lookup_many
from hasherd.kernel.memory import JitterMemory
from hasherd.protocol.jitter import (
    MAGIC,
    REPLY_TYPES,
    REQUEST_TYPES,
    ClientDecoder,
    ErrorCode,
    ErrorReply,
    Frame,
    FrameDecoder,
    Hello,
    InfoReply,
    InfoRequest,
    JitterProtocolError,
    LegacyBlock,
    LegacyReply,
    LegacyRequest,
    Limits,
    LookupReply,
    LookupRequest,
    Mode,
    ServerDecoder,
    UploadReply,
    UploadRequest,
    decode_frame,
    error_name,
    is_hello,
)

DATA: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "data" / "kernel-v1.json").read_text()
)
SLOTS = tuple(range(1, 13))
RECORD_HEX = "".join(f"{i:02x}000000" for i in range(1, 13)) + "efbeadde" + "14000000"
MEMORY_ID = "ab" * 32
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def record(slots: tuple[int, ...] = SLOTS, key: int = 0xDEADBEEF, p: int = 20) -> list[int]:
    return [*slots, key, p]


# -- hex literals ---------------------------------------------------------------------------


def test_legacy_frames_are_the_upstream_layout() -> None:
    req = LegacyRequest(SLOTS, 0xDEADBEEF, 20)
    assert req.to_bytes().hex() == RECORD_HEX
    assert LegacyRequest.from_bytes(bytes.fromhex(RECORD_HEX)) == req
    assert LegacyReply(0x01020304).to_bytes().hex() == "04030201"
    assert LegacyReply.from_bytes(bytes.fromhex("ffffffff")) == LegacyReply(0xFFFFFFFF)


def test_hello_layout() -> None:
    raw = Hello().to_bytes()
    assert raw.hex() == "89484a520d0a1a0a" + "0100" + "0000" + "686a6974"
    assert bytes.fromhex("89484a520d0a1a0a") == MAGIC
    assert Hello.from_bytes(raw) == Hello(1, 0) and is_hello(raw)


def test_lookup_frames_layout() -> None:
    req = LookupRequest.of(7, None, np.array([record()]))
    assert req.to_bytes().hex() == "680000000100000007000000" + "00" * 32 + (
        "01000000" + RECORD_HEX
    )
    reply = LookupReply.of(7, np.array([1, 0xFFFFFFFF]), np.array([True, False]))
    assert reply.to_bytes().hex() == "190000008100000007000000" + ("0200000001000000ffffffff01")
    assert reply.jitter_array().tolist() == [1, 0xFFFFFFFF]
    assert reply.found_array().tolist() == [True, False]


def test_error_upload_and_info_layouts() -> None:
    err = ErrorReply(3, ErrorCode.UNKNOWN_MEMORY, "no")
    assert err.to_bytes().hex() == "0e000000ff000400030000006e6f"
    assert (err.name, error_name(99), ErrorCode.BAD_FRAME.closes) == (
        "unknown_memory",
        "code_99",
        True,
    )
    frames = np.arange(24, dtype=np.uint32).reshape(2, 12)
    up = UploadRequest.of(5, frames)
    assert up.to_bytes()[:16].hex() == "70000000020000000500000002000000"
    assert (
        up.memory_id()
        == JitterMemory(frames).memory_id
        == hashlib.sha256(frames.tobytes()).hexdigest()
    )
    upload_reply = "300000008200000005000000" + MEMORY_ID + "02000000"
    assert UploadReply(5, MEMORY_ID, 2).to_bytes().hex() == upload_reply
    assert InfoRequest(9).to_bytes().hex() == "0c0000000300000009000000"


ALL_FRAMES: list[Frame] = [
    LookupRequest.of(1, None, np.array([record(), record(key=0, p=0)])),
    LookupRequest.of(2**32 - 1, MEMORY_ID, np.zeros((0, 14), dtype=np.uint32)),
    LookupReply.of(3, np.arange(9, dtype=np.uint32), np.arange(9) % 2 == 0),
    UploadRequest.of(4, np.full((3, 12), 2**32 - 1, dtype=np.uint64)),
    UploadRequest.of(5, np.zeros((0, 12), dtype=np.uint32)),
    UploadReply(6, MEMORY_ID, 3),
    InfoRequest(7),
    InfoReply(8, None, 0, 1, 65536, 1 << 20),
    InfoReply(9, MEMORY_ID, 5, 2, 4, 0),
    ErrorReply(10, ErrorCode.TOO_LARGE, "frame of 99 bytes exceeds the limits ✓"),
    ErrorReply(11, 4242, ""),
]


@pytest.mark.parametrize("frame", ALL_FRAMES, ids=lambda f: type(f).__name__)
def test_every_frame_round_trips(frame: Frame) -> None:
    raw = frame.to_bytes()
    assert decode_frame(raw) == frame
    decoder = FrameDecoder(REQUEST_TYPES | REPLY_TYPES)
    out = [f for byte in raw for f in decoder.feed(bytes([byte]))]  # one byte at a time
    assert out == [frame] and decoder.error is None and decoder.pending == 0


def test_invalid_values_are_input_errors() -> None:
    with pytest.raises(InputError, match="slots"):
        LegacyRequest((1, 2), 0, 0)
    with pytest.raises(InputError, match="key"):
        LegacyRequest(SLOTS, 2**32, 0)
    with pytest.raises(InputError, match="memory_id"):
        LookupRequest(1, "AB" * 32, b"")
    with pytest.raises(InputError, match="reserved for the default"):
        LookupRequest(1, "00" * 32, b"")
    with pytest.raises(InputError, match="request_id"):
        InfoRequest(-1)
    with pytest.raises(InputError, match="records"):
        LookupRequest.of(1, None, np.array([[-1] * 14]))
    with pytest.raises(InputError, match="padding"):
        LookupReply(1, b"\0" * 4, b"\x02")


# -- stream decoders ------------------------------------------------------------------------


def test_server_decoder_legacy_pipelined_in_odd_chunks() -> None:
    reqs = [LegacyRequest(SLOTS, k, k % 21) for k in range(10)]
    data = b"".join(r.to_bytes() for r in reqs) + b"\x01\x02"  # and a short tail
    decoder = ServerDecoder()
    blocks = [e for i in range(0, len(data), 37) for e in decoder.feed(data[i : i + 37])]
    assert all(isinstance(b, LegacyBlock) for b in blocks) and decoder.mode == Mode.LEGACY
    got = [r for b in blocks for r in b.requests()]  # type: ignore[union-attr]
    assert got == reqs and decoder.pending == 2 and decoder.error is None


def test_server_decoder_batch_mode_one_byte_at_a_time() -> None:
    frames = [ALL_FRAMES[0], InfoRequest(2), ALL_FRAMES[3]]
    data = Hello().to_bytes() + b"".join(f.to_bytes() for f in frames)
    decoder = ServerDecoder()
    events = [e for byte in data for e in decoder.feed(bytes([byte]))]
    assert events == [Hello(), *frames] and decoder.mode == Mode.BATCH and decoder.error is None


def test_near_magic_is_still_legacy() -> None:
    """Slots 0 and 1 spelling the magic, slot 3 not the tail: an ordinary legacy frame
    (a collision needs slots 0, 1 and 3 all equal to fixed values)."""
    slots = (0x524A4889, 0x0A1A0A0D, 1, 2, *range(8))
    decoder = ServerDecoder()
    [block] = decoder.feed(LegacyRequest(slots, 5, 6).to_bytes())
    assert isinstance(block, LegacyBlock) and block.requests()[0].slots == slots


@pytest.mark.parametrize(
    ("after_hello", "code"),
    [
        (b"garbage!" * 2, ErrorCode.BAD_FRAME),  # an unknown type
        (bytes.fromhex("0c0000000301000001000000"), ErrorCode.BAD_FRAME),  # flags
        (bytes.fromhex("0d0000000300000001000000") + b"x", ErrorCode.TOO_LARGE),
        (bytes.fromhex("080000000100000001000000"), ErrorCode.BAD_FRAME),  # short
        (bytes.fromhex("0c0000008100000001000000"), ErrorCode.BAD_FRAME),  # a reply
        (bytes.fromhex("0c0000000300050001000000"), ErrorCode.BAD_FRAME),  # a code
    ],
)
def test_garbage_in_batch_mode_is_a_typed_error(after_hello: bytes, code: ErrorCode) -> None:
    decoder = ServerDecoder()
    events = decoder.feed(Hello().to_bytes() + after_hello)
    assert events == [Hello()]
    assert isinstance(decoder.error, JitterProtocolError) and decoder.error.code == code
    assert decoder.feed(InfoRequest(1).to_bytes()) == []  # nothing after an error


def test_limits_reject_a_frame_by_its_header_alone() -> None:
    decoder = ServerDecoder(Limits(max_records=4, max_upload_frames=2))
    header = LookupRequest.of(1, None, np.zeros((5, 14), dtype=np.uint32)).to_bytes()[:12]
    assert decoder.feed(Hello().to_bytes() + header) == [Hello()]
    assert decoder.error is not None and decoder.error.code == ErrorCode.TOO_LARGE
    up = ServerDecoder(Limits(max_upload_frames=2))
    up.feed(Hello().to_bytes() + UploadRequest.of(1, np.zeros((3, 12), dtype=np.uint32)).to_bytes())
    assert up.error is not None and up.error.code == ErrorCode.TOO_LARGE


def test_count_must_agree_with_the_length() -> None:
    raw = bytearray(LookupRequest.of(1, None, np.array([record()])).to_bytes())
    raw[44:48] = (2).to_bytes(4, "little")  # claims two records, carries one
    with pytest.raises(JitterProtocolError, match="disagrees") as info:
        decode_frame(bytes(raw))
    assert info.value.code == ErrorCode.BAD_FRAME and info.value.request_id == 1


@pytest.mark.parametrize("version", [0, 2, 0xFFFF])
def test_unknown_versions_are_refused(version: int) -> None:
    decoder = ServerDecoder()
    assert decoder.feed(Hello(version).to_bytes()) == []
    assert decoder.error is not None and decoder.error.code == ErrorCode.BAD_VERSION


def test_client_decoder_wants_a_hello_first() -> None:
    good = ClientDecoder()
    reply = LookupReply.of(1, np.array([5]), np.array([True]))
    assert good.feed(Hello().to_bytes() + reply.to_bytes()) == [Hello(), reply]
    bad = ClientDecoder()
    assert bad.feed(reply.to_bytes() + b"\0" * 8) == [] and bad.error is not None


@FUZZ
@given(
    data=st.binary(max_size=400),
    cuts=st.lists(st.integers(1, 64), max_size=20),
    hello=st.booleans(),
)
def test_fuzzed_bytes_only_ever_give_typed_errors(
    data: bytes, cuts: list[int], hello: bool
) -> None:
    limits = Limits(max_records=3, max_upload_frames=2)
    decoders: list[Any] = [
        ServerDecoder(limits),
        FrameDecoder(REQUEST_TYPES, limits),
        FrameDecoder(REPLY_TYPES, limits),
        ClientDecoder(limits),
    ]
    stream = (Hello().to_bytes() if hello else b"") + data
    for decoder in decoders:
        pos = 0
        for cut in [*cuts, len(stream)]:
            events = decoder.feed(stream[pos : pos + cut])
            assert all(isinstance(e, (Frame, Hello, LegacyBlock)) for e in events)
            pos += cut
        assert decoder.error is None or isinstance(decoder.error, JitterProtocolError)
        assert decoder.pending <= max(limits.max_length(t) for t in REQUEST_TYPES | REPLY_TYPES)


@FUZZ
@given(
    picks=st.lists(st.integers(0, len(ALL_FRAMES) - 1), max_size=6),
    cuts=st.lists(st.integers(1, 50), max_size=30),
)
def test_valid_streams_decode_exactly_in_any_chunking(picks: list[int], cuts: list[int]) -> None:
    frames = [ALL_FRAMES[i] for i in picks]
    stream = b"".join(f.to_bytes() for f in frames)
    decoder = FrameDecoder(REQUEST_TYPES | REPLY_TYPES)
    out: list[Frame] = []
    pos = 0
    for cut in [*cuts, len(stream)]:
        out += decoder.feed(stream[pos : pos + cut])
        pos += cut
    assert out == frames and decoder.error is None and decoder.pending == 0


# -- vectorised lookup -----------------------------------------------------------------------


def test_lookup_many_matches_every_jitter_vector() -> None:
    for case in DATA["jitter"]:
        memory = JitterMemory.from_frames(case["memory"])
        assert memory.memory_id == case["memory_id"]
        rec = np.array([[*case["slots"], case["key"], case["pass"]]] * 3, dtype=np.uint32)
        jit, found = lookup_many(memory, rec)
        assert jit.tolist() == [case["jitter"]] * 3
        assert found.tolist() == [case["found"]] * 3


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), m=st.integers(0, 30))
def test_lookup_many_equals_the_literal_scan(seed: int, m: int) -> None:
    """Few distinct values in the slots lookups read, so zones hit, tie and miss."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 2**32, (m, 12), dtype=np.uint64).astype(np.uint32)
    rec = rng.integers(0, 2**32, (60, 14), dtype=np.uint64).astype(np.uint32)
    for arr in (frames, rec):
        arr[:, 0] = rng.integers(0, 4, len(arr))
        arr[:, 4] = rng.integers(0, 3, len(arr))
        arr[:, 10] = rng.integers(0, 2, len(arr)) << 12
        arr[:, 1] = rng.integers(0, 40, len(arr))
    rec[:, 12] = np.where(rng.random(60) < 0.7, rng.integers(0, 50, 60), rec[:, 12])
    rec[::5, 3] = rec[::5, 12] ^ rng.integers(0, 2**20, len(rec[::5]))  # zone 3 close
    rec[:, 13] = rng.integers(0, 22, 60)
    rec[0, 13] = 2**32 - 1
    jit, found = lookup_many(BatchIndex(JitterMemory(frames)), rec)
    want = [spec.lookup_linear(frames.tolist(), r[:12], r[12], r[13]) for r in rec.tolist()]
    assert list(zip(jit.tolist(), found.tolist(), strict=True)) == want


@FUZZ
@given(
    picks=st.lists(st.integers(0, len(ALL_FRAMES) - 1), min_size=1, max_size=4),
    flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), max_size=4),
    cut=st.integers(1, 40),
)
def test_mutated_frames_decode_or_fail_typed(
    picks: list[int], flips: list[tuple[int, int]], cut: int
) -> None:
    """Valid frames with a few bytes changed: each decodes, or the decoder stops with a
    typed error; nothing decoded before the damage is lost."""
    stream = bytearray(b"".join(ALL_FRAMES[i].to_bytes() for i in picks))
    for pos, xor in flips:
        stream[pos % len(stream)] ^= xor
    decoder = FrameDecoder(REQUEST_TYPES | REPLY_TYPES)
    out = [f for i in range(0, len(stream), cut) for f in decoder.feed(bytes(stream[i : i + cut]))]
    assert decoder.error is None or isinstance(decoder.error, JitterProtocolError)
    assert all(isinstance(f, Frame) for f in out)
    if not flips:
        assert out == [ALL_FRAMES[i] for i in picks]
