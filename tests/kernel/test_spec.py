"""The kernel text in executable form (hasherd.kernel.spec)."""

from __future__ import annotations

import hashlib
import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hasherd.errors import InputError
from hasherd.kernel import spec

u32 = st.integers(0, 2**32 - 1)
slots_st = st.lists(u32, min_size=12, max_size=12)
seed_st = st.binary(min_size=32, max_size=32)


def test_header_vectors(kernel_vectors: dict[str, Any]) -> None:
    for case in kernel_vectors["header"]:
        header = spec.build_header(case["slots"], bytes.fromhex(case["seed"]))
        assert header.hex() == case["header"]


def test_apply_jitter_vectors(kernel_vectors: dict[str, Any]) -> None:
    for case in kernel_vectors["apply_jitter"]:
        out = spec.apply_jitter(bytes.fromhex(case["header"]), case["jitter"])
        assert out.hex() == case["result"]


@given(slots_st, seed_st)
def test_header_round_trip(slots: list[int], seed: bytes) -> None:
    header = spec.build_header(slots, seed)
    assert len(header) == 80
    assert list(spec.slots_of(header)) == slots
    assert spec.seed_of(header) == seed
    assert spec.scan_start(header) == int.from_bytes(seed[28:32], "little")


@given(slots_st, seed_st, u32)
def test_apply_changes_only_slots_8_to_11_and_is_an_involution(
    slots: list[int], seed: bytes, j: int
) -> None:
    header = spec.build_header(slots, seed)
    once = spec.apply_jitter(header, j)
    assert once[:36] == header[:36] and once[52:] == header[52:]
    assert spec.apply_jitter(once, j) == header
    words = struct.unpack(">4I", once[36:52])
    assert words[0] == slots[8] ^ j


def test_meets() -> None:
    digest = bytes(28) + (0x00FFFFFF).to_bytes(4, "little")
    assert spec.meets(digest, 0)
    assert spec.meets(digest, 8)
    assert not spec.meets(digest, 9)
    assert spec.meets(bytes(32), 32)
    assert not spec.meets(bytes(31) + b"\x01", 32)


def _brute_pass(header: bytes, k: int, space: int) -> tuple[int, bytes, int]:
    n0 = spec.scan_start(header)
    ntime0 = int.from_bytes(header[68:72], "little")
    for roll in range(4096):
        for t in range(space):
            n = (n0 + t) % 2**32
            h = (
                header[:68]
                + ((ntime0 + roll) % 2**32).to_bytes(4, "little")
                + header[72:76]
                + n.to_bytes(4, "little")
            )
            d = hashlib.sha256(hashlib.sha256(h).digest()).digest()
            if spec.meets(d, k):
                return n, d, roll
    raise AssertionError("no hit in 4096 rolls")


def test_golden_pass_wraps_the_nonce_and_rolls_ntime() -> None:
    seed = (
        bytes(range(20))
        + (2**32 - 1).to_bytes(4, "little")
        + bytes(4)
        + (2**32 - 2).to_bytes(4, "little")
    )
    header = spec.build_header(list(range(12)), seed)
    for k, space in ((4, 1 << 32), (6, 3), (8, 2)):
        got = spec.golden_pass(header, k, space)
        n, d, roll = _brute_pass(header, k, space if space < 1 << 32 else 1 << 20)
        assert (got.nonce, got.digest, got.ntime_roll) == (n, d, roll)
        assert spec.meets(got.digest, k)
    rolled = spec.golden_pass(header, 8, 2)
    assert rolled.ntime_roll > 0  # 2 nonces a roll at k = 8: a roll is all but certain
    assert (
        rolled.scanned
        == rolled.ntime_roll * 2 + (rolled.nonce - spec.scan_start(header)) % 2**32 + 1
    )


def test_golden_pass_k0_is_the_plain_dsha() -> None:
    header = spec.build_header([7] * 12, bytes(32))
    res = spec.golden_pass(header, 0)
    assert res.digest == spec.dsha256(header) and res.nonce == 0 and res.ntime_roll == 0


@pytest.mark.parametrize(
    ("slots", "field"),
    [
        ([1] * 11, "slots"),
        ([1] * 13, "slots"),
        ([1] * 11 + [2**32], "slots[11]"),
        ([1] * 3 + [-1] + [1] * 8, "slots[3]"),
        ([1] * 5 + [True] + [1] * 6, "slots[5]"),
        ([1] * 5 + ["x"] + [1] * 6, "slots[5]"),
        ("abc", "slots"),
        (None, "slots"),
    ],
)
def test_bad_slots_name_the_field(slots: Any, field: str) -> None:
    with pytest.raises(InputError) as err:
        spec.check_slots(slots)
    assert err.value.field == field
    assert field in str(err.value)


@pytest.mark.parametrize(
    "seed", [bytes(31), bytes(33), "zz" * 32, "00" * 31, "00 " * 31 + "00", 12, None]
)
def test_bad_seeds(seed: Any) -> None:
    with pytest.raises(InputError) as err:
        spec.check_seed(seed)
    assert err.value.field == "seed"


@pytest.mark.parametrize("value", [0, -1, 2**16 + 1, 1.5, True])
def test_bad_passes(value: Any) -> None:
    with pytest.raises(InputError, match="passes"):
        spec.check_passes(value)


@pytest.mark.parametrize("value", [-1, 33, 2.0, False])
def test_bad_zero_bits(value: Any) -> None:
    with pytest.raises(InputError, match="zero_bits"):
        spec.check_zero_bits(value)


def test_input_error_placement() -> None:
    err = InputError("seed", "bad").at("file.json").at("loop[2]")
    assert str(err) == "loop[2]: file.json: seed: bad"


def test_target_word_decode_prefix() -> None:
    assert spec.target_word(1, 17) == 1 << 15
    assert spec.decode(spec.target_word(100276, 17), 17) == 100276
    assert spec.prefix_bits(5, 5) == 32 and spec.matching_bits(5, 5) == 32
    assert spec.prefix_bits(0x80000000, 0) == 0
    with pytest.raises(InputError, match="token"):
        spec.target_word(1 << 17, 17)
    with pytest.raises(InputError, match="token_bits"):
        spec.target_word(1, 0)


def test_dds_vectors_and_schedule(kernel_vectors: dict[str, Any]) -> None:
    for case in kernel_vectors["dds"]:
        assert spec.difficulty_bits(case["epoch"]) == case["difficulty_bits"]
    assert [spec.difficulty_bits(e) for e in range(1, 6)] == [12, 13, 14, 15, 17]
    assert spec.difficulty_bits(10_000) == 32
    custom = spec.DifficultySchedule(base=8)
    assert custom.bits(1) == 8 and custom.bits(2) == 9
    for bad in (0, -3, True, 1.0):
        with pytest.raises(InputError, match="epoch"):
            custom.bits(bad)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="difficulty_bits"):
        spec.DifficultySchedule(base=33)
