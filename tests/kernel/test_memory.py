"""The jitter memory, its memory_id and its indices against the literal scan."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hasherd.errors import InputError
from hasherd.kernel import spec
from hasherd.kernel.memory import JitterMemory, as_memory

u32 = st.integers(0, 2**32 - 1)
# Small value sets force collisions: shared slot 0, shared zone-2 groups, equal distances.
small = st.sampled_from([0, 1, 2, 3, 0x1000, 0x2003, 2**32 - 1])
frame = st.tuples(small, st.integers(0, 40), u32, small, small, u32, u32, u32, u32, u32, small, u32)


def test_jitter_vectors(kernel_vectors: dict[str, Any]) -> None:
    for case in kernel_vectors["jitter"]:
        mem = JitterMemory.from_frames(case["memory"])
        assert mem.memory_id == case["memory_id"]
        want = (case["jitter"], case["found"])
        assert mem.lookup(case["slots"], case["key"], case["pass"]) == want
        assert spec.lookup_linear(case["memory"], case["slots"], case["key"], case["pass"]) == want


def test_memory_id_encoding() -> None:
    assert JitterMemory.empty().memory_id == hashlib.sha256(b"").hexdigest()
    frames = [[i + 12 * f for i in range(12)] for f in range(3)]
    raw = b"".join(v.to_bytes(4, "little") for fr in frames for v in fr)
    assert JitterMemory.from_frames(frames).memory_id == hashlib.sha256(raw).hexdigest()


@settings(max_examples=300, deadline=None)
@given(st.lists(frame, max_size=12), frame, st.integers(0, 44), st.integers(0, 24))
def test_indexed_lookup_equals_the_literal_scan(
    frames: list[tuple[int, ...]], slots: tuple[int, ...], key: int, pass_no: int
) -> None:
    mem = JitterMemory.from_frames(frames)
    assert mem.lookup(slots, key, pass_no) == spec.lookup_linear(frames, slots, key, pass_no)


def test_zone2_tie_takes_the_first_frame_and_distance_is_plain() -> None:
    base = [0] * 12
    far = [9, 10, 111, 0, 5, 0, 0, 0, 0, 0, 0x1000, 0]
    near_hi = [9, 30, 222, 0, 5, 0, 0, 0, 0, 0, 0x1FFF, 0]
    near_lo = [9, 10, 333, 0, 5, 0, 0, 0, 0, 0, 0x1000, 0]
    mem = JitterMemory.from_frames([far, near_hi, near_lo])
    slots = [1, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0x1234, 0]
    # key 20: |10-20| == |30-20|; frame 0 (slot 1 = 10) comes first and wins.
    assert mem.lookup(slots, 20, 8) == (111, True)
    # Plain distance: key 2^32-1 is nearest to 30, not (modularly) to 10.
    assert mem.lookup(slots, 2**32 - 1, 9) == (222, True)
    assert mem.lookup(base, 20, 8)[1] is False  # group (0, 0) is empty


def test_bad_frames_name_the_frame() -> None:
    with pytest.raises(InputError) as err:
        JitterMemory.from_frames([[0] * 12, [0] * 11])
    assert err.value.field == "memory[1]"
    with pytest.raises(InputError, match=r"memory\[0\]\[2\]"):
        JitterMemory.from_frames([[0, 0, 2**32] + [0] * 9])
    with pytest.raises(InputError, match="outside"):
        as_memory(np.full((2, 12), -1, dtype=np.int64))
    with pytest.raises(InputError, match="array"):
        as_memory(np.zeros((2, 11), dtype=np.uint32))
    with pytest.raises(InputError, match="frames"):
        as_memory("frames")
    with pytest.raises(InputError, match="frames"):
        as_memory(None)  # a missing memory is an error, not an empty one


def test_memory_is_read_only() -> None:
    mem = JitterMemory.from_frames([[1] * 12])
    with pytest.raises(ValueError):
        mem.frames[0, 0] = 5
