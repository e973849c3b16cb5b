"""Running conformance vectors: the kernel sections against the kernel module (under the
name ``kernel``) and the ``loop`` section against each evaluator, with and without a
trace, since evaluators may take shortcuts only when no trace is asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from hasherd.errors import EvaluatorError
from hasherd.kernel import spec
from hasherd.kernel.evaluators.base import EvalResult, Evaluator
from hasherd.kernel.reward import advantages, reward
from hasherd.kernel.vectors import (
    FLOAT_TOLERANCE,
    KERNEL,
    KERNEL_SECTIONS,
    AdvantageCase,
    ApplyJitterCase,
    DdsCase,
    Diff,
    ExpectedReward,
    HeaderCase,
    JitterCase,
    LoopCase,
    RewardCase,
    Vectors,
)


@dataclass(frozen=True)
class Mismatch:
    """The first disagreement found in a section."""

    section: str
    case: int
    note: str | None
    field: str
    expected: object
    got: object


@dataclass(frozen=True)
class SectionResult:
    section: str
    passed: int
    failed: int
    skipped: int
    first_mismatch: Mismatch | None

    def to_json(self) -> dict[str, int]:
        out = {"passed": self.passed, "failed": self.failed}
        if self.skipped:
            out["skipped"] = self.skipped
        return out


@dataclass(frozen=True)
class EvaluatorResult:
    evaluator: str
    sections: tuple[SectionResult, ...]

    @property
    def ok(self) -> bool:
        return all(s.failed == 0 for s in self.sections)


@dataclass(frozen=True)
class CheckReport:
    path: str
    evaluators: tuple[EvaluatorResult, ...]

    @property
    def ok(self) -> bool:
        return all(e.ok for e in self.evaluators)

    def failures(self) -> list[tuple[str, SectionResult]]:
        return [(e.evaluator, s) for e in self.evaluators for s in e.sections if s.failed]

    def to_json(self) -> dict[str, Any]:
        return {
            "evaluators": {
                e.evaluator: {s.section: s.to_json() for s in e.sections} for e in self.evaluators
            }
        }


# -- checking -------------------------------------------------------------------------------


def _same(expected: object, got: object) -> bool:
    numbers = isinstance(expected, (int, float)) and isinstance(got, (int, float))
    if numbers and (isinstance(expected, float) or isinstance(got, float)):
        return abs(float(expected) - float(got)) <= FLOAT_TOLERANCE  # type: ignore[arg-type]
    return expected == got


def _first_diff(diffs: Iterable[Diff]) -> Diff | None:
    return next((d for d in diffs if not _same(d[1], d[2])), None)


def _run_section(
    section: str,
    cases: Sequence[Any],
    diffs: Callable[[Any], Iterable[Diff]],
    applies: Callable[[Any], bool] = lambda case: True,
) -> SectionResult:
    passed = failed = skipped = 0
    first: Mismatch | None = None
    for i, case in enumerate(cases):
        if not applies(case):
            skipped += 1
            continue
        try:
            diff = _first_diff(diffs(case))
        except Exception as exc:  # an evaluator's crash is that case's failure, not ours
            diff = ("exception", "no exception", f"{type(exc).__name__}: {exc}")
        if diff is None:
            passed += 1
            continue
        failed += 1
        if first is None:
            first = Mismatch(section, i, case.note, *diff)
    return SectionResult(section, passed, failed, skipped, first)


def _header_diffs(case: HeaderCase) -> Iterator[Diff]:
    yield "header", case.header, spec.build_header(case.slots, case.seed)


def _apply_jitter_diffs(case: ApplyJitterCase) -> Iterator[Diff]:
    yield "result", case.result, spec.apply_jitter(case.header, case.jitter)


def _jitter_diffs(case: JitterCase) -> Iterator[Diff]:
    yield "memory_id", case.memory_id, case.memory.memory_id
    frames = case.memory.frames.tolist()
    linear = spec.lookup_linear(frames, case.slots, case.key, case.pass_no)
    yield "jitter (spec.lookup_linear)", case.jitter, linear[0]
    yield "found (spec.lookup_linear)", case.found, linear[1]
    indexed = case.memory.lookup(case.slots, case.key, case.pass_no)
    yield "jitter (JitterMemory.lookup)", case.jitter, indexed[0]
    yield "found (JitterMemory.lookup)", case.found, indexed[1]


def _reward_diffs(case: RewardCase) -> Iterator[Diff]:
    got = reward(
        case.output,
        case.last_pass_key,
        case.token,
        case.token_bits,
        case.difficulty_bits,
        case.token_map,
    )
    for f in fields(ExpectedReward):
        yield f"expect.{f.name}", getattr(case.expect, f.name), getattr(got, f.name)


def _advantage_diffs(case: AdvantageCase) -> Iterator[Diff]:
    yield from _seq_diffs("advantages", case.advantages, advantages(case.rewards).tolist())


def _dds_diffs(case: DdsCase) -> Iterator[Diff]:
    yield "difficulty_bits", case.difficulty_bits, spec.difficulty_bits(case.epoch)


def _seq_diffs(name: str, expected: Sequence[object], got: Sequence[object]) -> Iterator[Diff]:
    if len(expected) != len(got):
        yield f"{name} length", len(expected), len(got)
        return
    for i, (e, g) in enumerate(zip(expected, got, strict=True)):
        yield f"{name}[{i}]", e, g


_KERNEL_DIFFS: dict[str, Callable[[Any], Iterable[Diff]]] = {
    "header": _header_diffs,
    "apply_jitter": _apply_jitter_diffs,
    "jitter": _jitter_diffs,
    "reward": _reward_diffs,
    "advantage": _advantage_diffs,
    "dds": _dds_diffs,
}


def _evaluate(evaluator: Evaluator, case: LoopCase, trace: bool) -> EvalResult:
    return evaluator.evaluate(
        case.slots, [case.seed], case.memory, case.passes, case.zero_bits, trace=trace
    )


def _loop_diffs(evaluator: Evaluator, case: LoopCase) -> Iterator[Diff]:
    yield "memory_id", case.memory_id, case.memory.memory_id
    res = _evaluate(evaluator, case, trace=True)
    if res.trace is None:
        yield "trace", "a trace", None
        return
    t = res.trace
    # Pass by pass, so the first mismatch is where the loop starts to diverge.
    columns = (t.pass_keys, t.pass_nonces, t.jitters, t.jitter_found)
    names = ("pass_keys", "pass_nonces", "jitters", "jitter_found")
    for name, got in zip(names, columns, strict=True):
        if got.shape != (1, case.passes):
            yield f"{name} shape", (1, case.passes), got.shape
    for p in range(case.passes):
        for name, expected, got in zip(names, _expected_columns(case), columns, strict=True):
            yield f"{name}[{p}]", expected[p], got[0][p].item()
    yield "final_header", case.final_header, t.final_header[0].tobytes()
    yield from _result_diffs(case, res, "")
    yield from _result_diffs(case, _evaluate(evaluator, case, trace=False), " (no trace)")


def _expected_columns(case: LoopCase) -> tuple[tuple[Any, ...], ...]:
    return case.pass_keys, case.pass_nonces, case.jitters, case.jitter_found


def _result_diffs(case: LoopCase, res: EvalResult, mode: str) -> Iterator[Diff]:
    yield f"final_digest{mode}", case.final_digest, res.final_digest[0].tobytes()
    yield f"golden_nonce{mode}", case.golden_nonce, res.golden_nonce[0].item()
    yield f"output{mode}", case.output, res.output[0].item()
    yield f"last_key{mode}", case.pass_keys[-1], res.last_key[0].item()


def check_kernel(vectors: Vectors) -> EvaluatorResult:
    """The kernel sections against the kernel module, reported as evaluator ``kernel``."""
    results = [_run_section(s, vectors.cases(s), _KERNEL_DIFFS[s]) for s in KERNEL_SECTIONS]
    return EvaluatorResult(KERNEL, tuple(results))


def check_loop(vectors: Vectors, name: str, evaluator: Evaluator) -> EvaluatorResult:
    """The ``loop`` section against one evaluator; zero_bits it cannot serve are skipped."""
    result = _run_section(
        "loop",
        vectors.loop,
        lambda case: _loop_diffs(evaluator, case),
        lambda case: evaluator.supports(case.zero_bits),
    )
    return EvaluatorResult(name, (result,))


def check(vectors: Vectors, evaluators: Mapping[str, Evaluator]) -> CheckReport:
    """The kernel sections once, then the loop section for each named evaluator."""
    if KERNEL in evaluators:
        raise EvaluatorError(KERNEL, "is the name the kernel sections are reported under")
    results = [check_kernel(vectors)]
    results += [check_loop(vectors, name, ev) for name, ev in evaluators.items()]
    return CheckReport(vectors.path, tuple(results))
