"""hasherd.kernel.vectors: loading, validation and checking of conformance vectors."""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hasherd.errors import EvaluatorError, VectorsError
from hasherd.kernel import conformance, vectors
from hasherd.kernel.evaluators.base import EvalRequest, EvalResult, Evaluator
from hasherd.kernel.evaluators.reference import ReferenceEvaluator

VECTORS = Path(__file__).parents[1] / "data" / "kernel-v1.json"
DATA: dict[str, Any] = json.loads(VECTORS.read_text())
SECTION_SIZES = {s: len(DATA[s]) for s in vectors.SECTIONS}


def write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "vectors.json"
    path.write_text(json.dumps(data))
    return path


# -- the shipped file ----------------------------------------------------------------------


def test_shipped_file_loads_every_case() -> None:
    v = vectors.load(VECTORS)
    assert {s: len(v.cases(s)) for s in vectors.SECTIONS} == SECTION_SIZES
    assert len(v) == sum(SECTION_SIZES.values())
    assert v.loop[-1].note == DATA["loop"][-1]["note"]
    assert v.jitter[0].pass_no == DATA["jitter"][0]["pass"]


def test_shipped_file_passes_the_kernel() -> None:
    result = conformance.check_kernel(vectors.load(VECTORS))
    assert result.evaluator == "kernel" and result.ok
    assert [s.section for s in result.sections] == list(vectors.KERNEL_SECTIONS)
    for s in result.sections:
        assert (s.passed, s.failed, s.skipped) == (SECTION_SIZES[s.section], 0, 0)
        assert s.first_mismatch is None


@pytest.mark.parametrize(
    ("name", "fixture"),
    [
        ("reference", "reference"),
        # 62 s on a cold numba cache (the compile), 0.1 s once cached
        pytest.param("numba", "numba_eval", marks=[pytest.mark.slow, pytest.mark.timeout(300)]),
    ],
)
def test_shipped_file_passes_each_evaluator(
    request: pytest.FixtureRequest, name: str, fixture: str
) -> None:
    evaluator: Evaluator = request.getfixturevalue(fixture)  # conftest: warmed up once
    report = conformance.check(vectors.load(VECTORS), {name: evaluator})
    assert report.ok, report.failures()
    assert report.to_json()["evaluators"][name] == {
        "loop": {"passed": SECTION_SIZES["loop"], "failed": 0}
    }


def test_to_json_shape_is_exact() -> None:
    report = conformance.check(vectors.load(VECTORS), {"reference": ReferenceEvaluator()})
    kernel = {s: {"passed": SECTION_SIZES[s], "failed": 0} for s in vectors.KERNEL_SECTIONS}
    loop = {"loop": {"passed": SECTION_SIZES["loop"], "failed": 0}}
    assert report.to_json() == {"evaluators": {"kernel": kernel, "reference": loop}}


# -- failures are found and placed ---------------------------------------------------------


def test_corrupted_loop_output_is_reported(tmp_path: Path) -> None:
    data = copy.deepcopy(DATA)
    data["loop"][5]["output"] ^= 0x80
    report = conformance.check(vectors.load(write(tmp_path, data)), {"ref": ReferenceEvaluator()})
    assert not report.ok
    [(name, section)] = report.failures()
    assert (name, section.section, section.failed) == ("ref", "loop", 1)
    m = section.first_mismatch
    assert m is not None
    assert (m.case, m.field, m.expected, m.got) == (
        5,
        "output",
        data["loop"][5]["output"],
        DATA["loop"][5]["output"],
    )


def test_corrupted_kernel_vectors_are_reported(tmp_path: Path) -> None:
    data = copy.deepcopy(DATA)
    data["jitter"][7]["jitter"] ^= 1
    data["reward"][3]["expect"]["stability"] += 1e-6
    data["reward"][4]["expect"]["stability"] += 1e-12  # within the tolerance
    result = conformance.check_kernel(vectors.load(write(tmp_path, data)))
    by_name = {s.section: s for s in result.sections}
    assert by_name["jitter"].failed == 1 and by_name["reward"].failed == 1
    jm, rm = by_name["jitter"].first_mismatch, by_name["reward"].first_mismatch
    assert jm is not None and (jm.case, jm.field) == (7, "jitter (spec.lookup_linear)")
    assert rm is not None and (rm.case, rm.field) == (3, "expect.stability")


class UntracedOffByOne(ReferenceEvaluator):
    """Right with a trace, wrong without: the untraced mode must be checked too."""

    def _evaluate(self, req: EvalRequest) -> EvalResult:
        res = super()._evaluate(req)
        if not req.trace:
            res.output[:] ^= np.uint32(1)
        return res


class ZeroBitsZeroOnly(ReferenceEvaluator):
    def supports(self, zero_bits: int) -> bool:
        return zero_bits == 0


class Crashing(Evaluator):
    name = "crashing"

    def _evaluate(self, req: EvalRequest) -> EvalResult:
        raise RuntimeError("device on fire")


def test_untraced_mode_is_checked() -> None:
    report = conformance.check(vectors.load(VECTORS), {"odd": UntracedOffByOne()})
    loop = report.evaluators[1].sections[0]
    assert loop.failed == SECTION_SIZES["loop"]
    assert loop.first_mismatch is not None
    assert loop.first_mismatch.field == "output (no trace)"


def test_unsupported_zero_bits_are_skipped() -> None:
    report = conformance.check(vectors.load(VECTORS), {"k0": ZeroBitsZeroOnly()})
    skipped = sum(1 for case in DATA["loop"] if case["zero_bits"] != 0)
    assert 0 < skipped < SECTION_SIZES["loop"]
    assert report.ok
    loop = {"passed": SECTION_SIZES["loop"] - skipped, "failed": 0, "skipped": skipped}
    assert report.to_json()["evaluators"]["k0"] == {"loop": loop}


def test_kernel_is_not_an_evaluator_name() -> None:
    with pytest.raises(EvaluatorError, match="kernel"):
        conformance.check(vectors.load(VECTORS), {"kernel": ReferenceEvaluator()})


def test_an_evaluator_that_raises_fails_each_case() -> None:
    report = conformance.check(vectors.load(VECTORS), {"crashing": Crashing()})
    loop = report.evaluators[1].sections[0]
    assert (loop.passed, loop.failed) == (0, SECTION_SIZES["loop"])
    m = loop.first_mismatch
    assert m is not None and (m.case, m.field) == (0, "exception")
    assert m.got == "RuntimeError: device on fire"


# -- malformed files -----------------------------------------------------------------------


def test_errors_name_the_file_and_the_place(tmp_path: Path) -> None:
    data = copy.deepcopy(DATA)
    data["loop"][3]["seed"] = data["loop"][3]["seed"][:62]
    path = write(tmp_path, data)
    with pytest.raises(VectorsError) as info:
        vectors.load(path)
    assert info.value.path == str(path)
    assert info.value.problem == "loop[3].seed: expected 32 bytes, got 31"


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"", "not JSON"),
        (b"\xff\xfe{", "not JSON"),
        (b'{"spec": NaN}', "not JSON"),
        (b'{"spec": 1, "spec": 2}', "duplicate key 'spec'"),
        (b"[" * 100_000, "not JSON"),
        (b"[]", "expected a JSON object, got list"),
    ],
)
def test_unreadable_json(tmp_path: Path, raw: bytes, problem: str) -> None:
    path = tmp_path / "v.json"
    path.write_bytes(raw)
    with pytest.raises(VectorsError, match=problem):
        vectors.load(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(VectorsError, match="cannot read"):
        vectors.load(tmp_path / "absent.json")


# -- fuzzing the loader: it loads or raises VectorsError, nothing else ---------------------

SMALL: dict[str, Any] = {
    key: [copy.deepcopy(value[0]), copy.deepcopy(value[-1])] if isinstance(value, list) else value
    for key, value in DATA.items()
}
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=70),
    lambda inner: st.lists(inner, max_size=13) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)


def loads_or_vectors_error(data: Any) -> None:
    with contextlib.suppress(VectorsError):
        vectors.parse(data, "fuzz.json")


@given(JSON_VALUES)
def test_fuzz_any_json_value(data: Any) -> None:
    loads_or_vectors_error(data)
    loads_or_vectors_error({**SMALL, "loop": data})
    loads_or_vectors_error({**SMALL, "reward": [data]})


def _mutate(target: Any, draw: Callable[[st.SearchStrategy[Any]], Any]) -> None:
    """Replace, delete or add one entry somewhere inside ``target`` (a dict or list)."""
    while True:
        keys = list(target) if isinstance(target, dict) else list(range(len(target)))
        if not keys:
            break
        key = draw(st.sampled_from(keys))
        if not isinstance(target[key], (dict, list)) or draw(st.booleans()):
            break
        target = target[key]
    action = draw(st.sampled_from(["replace", "delete", "add"]))
    if action == "add" and isinstance(target, dict):
        target[draw(st.text(max_size=12))] = draw(JSON_VALUES)
    elif action == "add":
        target.append(draw(JSON_VALUES))
    elif keys and action == "delete":
        del target[key]
    elif keys:
        target[key] = draw(JSON_VALUES)


@given(st.data(), st.sampled_from(vectors.SECTIONS), st.integers(1, 3))
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_fuzz_mutated_valid_cases(data: st.DataObject, section: str, mutations: int) -> None:
    doc = copy.deepcopy(SMALL)
    for _ in range(mutations):
        _mutate(doc[section][0], data.draw)
    loads_or_vectors_error(doc)


@given(st.binary(max_size=200))
def test_fuzz_raw_bytes(tmp_path_factory: pytest.TempPathFactory, raw: bytes) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "v.json"
    path.write_bytes(raw)
    with pytest.raises(VectorsError):
        vectors.load(path)
