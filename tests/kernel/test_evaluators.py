"""Every evaluator computes the same function: the numba evaluator against the reference."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hasherd import backends
from hasherd.errors import EvaluatorError, InputError
from hasherd.kernel.evaluators.base import EvalResult, Evaluator, make_request
from hasherd.kernel.memory import JitterMemory

RNG_SEED = 20261126


def _memory(rng: np.random.Generator, m: int, slots: np.ndarray, hit: bool) -> JitterMemory:
    """Frames that share zone-2 groups with the record; slot 0 present when ``hit``."""
    frames = rng.integers(0, 2**32, size=(m, 12), dtype=np.uint64).astype(np.uint32)
    frames[:, 4] = (frames[:, 4] & 0x3) | (slots[4] & 0xFC)  # 4 word classes near the record's
    frames[:, 10] = rng.integers(0, 16, size=m, dtype=np.uint32) << 12
    if hit and m:
        frames[m // 2, 0] = slots[0]
    return JitterMemory(frames)


def _same(a: EvalResult, b: EvalResult, trace: bool = False) -> None:
    np.testing.assert_array_equal(a.output, b.output)
    np.testing.assert_array_equal(a.golden_nonce, b.golden_nonce)
    np.testing.assert_array_equal(a.ntime_roll, b.ntime_roll)
    np.testing.assert_array_equal(a.final_digest, b.final_digest)
    np.testing.assert_array_equal(a.last_key, b.last_key)
    if trace:
        assert a.trace is not None and b.trace is not None
        for field in ("pass_keys", "pass_nonces", "jitters", "jitter_found", "final_header"):
            np.testing.assert_array_equal(getattr(a.trace, field), getattr(b.trace, field), field)


def test_registry() -> None:
    assert {"reference", "numba"} <= set(backends.available())
    assert backends.create("numba:1").threads == 1
    with pytest.raises(EvaluatorError, match="unknown"):
        backends.create("quantum")
    with pytest.raises(EvaluatorError, match="thread count"):
        backends.create("numba:lots")
    with pytest.raises(EvaluatorError, match="threads must be"):
        backends.create("numba:0")
    with pytest.raises(EvaluatorError, match="no argument"):
        backends.create("reference:x")


@pytest.mark.parametrize("name", ["reference", "numba"])
def test_loop_vectors(
    name: str, kernel_vectors: dict[str, Any], request: pytest.FixtureRequest
) -> None:
    ev: Evaluator = request.getfixturevalue("numba_eval" if name == "numba" else "reference")
    for i, case in enumerate(kernel_vectors["loop"]):
        mem = JitterMemory.from_frames(case["memory"])
        for trace in (False, True):
            r = ev.evaluate(
                case["slots"], [case["seed"]], mem, case["passes"], case["zero_bits"], trace=trace
            )
            assert int(r.output[0]) == case["output"], (i, trace)
            assert int(r.golden_nonce[0]) == case["golden_nonce"], (i, trace)
            assert r.final_digest[0].tobytes().hex() == case["final_digest"], (i, trace)
            assert int(r.last_key[0]) == case["pass_keys"][-1], (i, trace)
            if trace:
                assert r.trace is not None
                assert r.trace.final_header[0].tobytes().hex() == case["final_header"], i
                assert r.trace.pass_keys[0].tolist() == case["pass_keys"], i
                assert r.trace.pass_nonces[0].tolist() == case["pass_nonces"], i
                assert r.trace.jitters[0].tolist() == case["jitters"], i
                assert r.trace.jitter_found[0].tolist() == case["jitter_found"], i


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    n=st.integers(1, 40),
    passes=st.integers(1, 24),
    zero_bits=st.sampled_from([0, 0, 0, 1, 3, 5]),
    frames=st.integers(0, 64),
    hit=st.booleans(),
    trace=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_numba_equals_reference(
    numba_eval: Evaluator,
    reference: Evaluator,
    n: int,
    passes: int,
    zero_bits: int,
    frames: int,
    hit: bool,
    trace: bool,
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    slots = rng.integers(0, 2**32, size=12, dtype=np.uint64).astype(np.uint32)
    mem = _memory(rng, frames, slots, hit)
    seeds = rng.integers(0, 256, size=(n, 32), dtype=np.uint8)
    want = reference.evaluate(slots, seeds, mem, passes, zero_bits, trace=trace)
    got = numba_eval.evaluate(slots, seeds, mem, passes, zero_bits, trace=trace)
    _same(got, want, trace)


def test_zone1_shortcut_agrees_with_the_full_loop(numba_eval: Evaluator) -> None:
    """A record whose slot 0 is in the memory: outputs with the shortcut (no trace) equal
    the full loop's (trace), for every pass count around the zone-1 boundary."""
    rng = np.random.default_rng(RNG_SEED)
    slots = rng.integers(0, 2**32, size=12, dtype=np.uint64).astype(np.uint32)
    mem = _memory(rng, 200, slots, hit=True)
    seeds = rng.integers(0, 256, size=(33, 32), dtype=np.uint8)
    for passes in range(1, 12):
        for k in (0, 2):
            fast = numba_eval.evaluate(slots, seeds, mem, passes, k)
            full = numba_eval.evaluate(slots, seeds, mem, passes, k, trace=True)
            _same(fast, full)
            assert full.trace is not None and bool(full.trace.jitter_found[:, 0].all())
            if k == 0:
                assert fast.dsha == 33 * (min(8, passes - 1) * -1 + passes + 1)
                assert full.dsha == 33 * (passes + 1)


def test_thread_counts_agree() -> None:
    rng = np.random.default_rng(RNG_SEED + 1)
    slots = rng.integers(0, 2**32, size=12, dtype=np.uint64).astype(np.uint32)
    mem = _memory(rng, 300, slots, hit=False)
    seeds = rng.integers(0, 256, size=(300, 32), dtype=np.uint8)
    one = backends.create("numba:1").evaluate(slots, seeds, mem)
    two = backends.create("numba:2").evaluate(slots, seeds, mem)
    _same(one, two)


def test_full_batch_of_4096(numba_eval: Evaluator, reference: Evaluator) -> None:
    rng = np.random.default_rng(RNG_SEED + 2)
    slots = rng.integers(0, 2**32, size=12, dtype=np.uint64).astype(np.uint32)
    mem = _memory(rng, 1000, slots, hit=False)
    seeds = rng.integers(0, 256, size=(4096, 32), dtype=np.uint8)
    got = numba_eval.evaluate(slots, seeds, mem, 21, 0)
    pick = np.arange(0, 4096, 97)
    want = reference.evaluate(slots, seeds[pick], mem, 21, 0)
    np.testing.assert_array_equal(got.output[pick], want.output)
    np.testing.assert_array_equal(got.final_digest[pick], want.final_digest)
    assert got.dsha == 4096 * 22 and got.compressions == 3 * got.dsha


@pytest.mark.parametrize("k", [6, 8])
def test_ntime_roll_agrees(numba_eval: Evaluator, reference: Evaluator, k: int) -> None:
    """A test-only bound on the nonce range forces the ntime roll of kernel.md."""
    rng = np.random.default_rng(RNG_SEED + k)
    slots = rng.integers(0, 2**32, size=12, dtype=np.uint64).astype(np.uint32)
    mem = _memory(rng, 50, slots, hit=False)
    seeds = rng.integers(0, 256, size=(6, 32), dtype=np.uint8)
    seeds[0, 28:32] = 0xFF  # the scan wraps past 2^32 - 1 too
    want = reference.evaluate(slots, seeds, mem, 3, k, trace=True, nonce_space=5)
    got = numba_eval.evaluate(slots, seeds, mem, 3, k, trace=True, nonce_space=5)
    _same(got, want, trace=True)
    assert int(want.ntime_roll.max()) > 0
    assert got.dsha == want.dsha and got.compressions == want.compressions


BAD_INPUTS: list[tuple[dict[str, Any], str]] = [
    ({"slots": [0] * 11}, "slots"),
    ({"slots": [0] * 11 + [2**32]}, "slots[11]"),
    ({"slots": np.zeros(12, dtype=np.int64) - 1}, "slots[0]"),
    ({"seeds": []}, "seeds"),
    ({"seeds": [bytes(32)] * 4097}, "seeds"),
    ({"seeds": [bytes(32), bytes(31)]}, "seeds[1]"),
    ({"seeds": np.zeros((2, 31), dtype=np.uint8)}, "seeds"),
    ({"seeds": np.zeros((2, 32), dtype=np.int32)}, "seeds"),
    ({"seeds": b"\x00" * 32}, "seeds"),
    ({"passes": 0}, "passes"),
    ({"zero_bits": 33}, "zero_bits"),
    ({"zero_bits": -1}, "zero_bits"),
    ({"memory": [[0] * 12, [1] * 13]}, "memory[1]"),
    ({"nonce_space": 0}, "nonce_space"),
]


@pytest.mark.parametrize("name", ["reference", "numba"])
@pytest.mark.parametrize(("change", "field"), BAD_INPUTS)
def test_bad_input_is_a_typed_error(name: str, change: dict[str, Any], field: str) -> None:
    args: dict[str, Any] = {
        "slots": [1] * 12,
        "seeds": [bytes(32)],
        "memory": [],
        "passes": 21,
        "zero_bits": 0,
    }
    args.update(change)
    ev = backends.create(name)
    with pytest.raises(InputError) as err:
        ev.evaluate(**args)
    assert err.value.field == field


junk = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=True)
    | st.text(max_size=70)
    | st.binary(max_size=40),
    lambda inner: st.lists(inner, max_size=14),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(slots=junk, seeds=junk, memory=junk, passes=junk, zero_bits=junk)
def test_fuzzed_requests_raise_only_input_errors(
    slots: Any, seeds: Any, memory: Any, passes: Any, zero_bits: Any
) -> None:
    """Whatever arrives (a socket message, a file), validation either accepts it or raises
    InputError; nothing else escapes, and nothing reaches a compiled kernel unchecked."""
    try:
        req = make_request(slots, seeds, memory, passes, zero_bits)
    except InputError:
        return
    assert req.seeds.shape[1] == 32 and 1 <= req.n <= 4096 and req.slots.shape == (12,)


def test_evaluate_many_equals_one_call_each(numba_eval: Evaluator) -> None:
    """Several records in one kernel launch (chunks never mix records) give what separate
    calls give, zone-1 shortcut records and odd batch sizes included."""
    rng = np.random.default_rng(RNG_SEED + 7)
    frames = rng.integers(0, 2**32, size=(300, 12), dtype=np.uint64).astype(np.uint32)
    frames[:, 10] = rng.integers(0, 16, size=300, dtype=np.uint32) << 12
    frames[:, 4] &= 0x3
    mem = JitterMemory(frames)
    reqs = []
    for i, n in enumerate([1, 16, 17, 40, 5, 33]):
        slots = frames[i * 7].copy()
        if i % 2:
            slots[0] = 12345 + i  # no zone-1 hit
        reqs.append(make_request(slots, rng.integers(0, 256, (n, 32), dtype=np.uint8), mem, 21, 0))
    many = numba_eval.evaluate_many(reqs)
    for req, got in zip(reqs, many, strict=True):
        _same(got, numba_eval.evaluate_request(req))
        assert got.dsha == numba_eval.evaluate_request(req).dsha
