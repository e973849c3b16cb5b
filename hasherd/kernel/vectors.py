"""Conformance vectors (kernel.md, "Conformance vectors"): the file format and its loader.

``load`` turns a vectors file into frozen cases, or raises a ``VectorsError`` naming the
place (``loop[3].seed: expected 32 bytes, got 31``). ``hasherd.kernel.conformance`` runs
the cases.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from hasherd.errors import InputError, VectorsError
from hasherd.kernel import spec
from hasherd.kernel.memory import JitterMemory

KERNEL = "kernel"
SECTIONS = ("header", "apply_jitter", "jitter", "loop", "reward", "advantage", "dds")
KERNEL_SECTIONS = tuple(s for s in SECTIONS if s != "loop")
INFO_KEYS = frozenset({"spec", "generator_rng_seed", "note"})
FLOAT_TOLERANCE = 1e-9

_HEX = re.compile(r"(?:[0-9a-f]{2})*")
_MEMORY_ID = re.compile(r"[0-9a-f]{64}")

Converter = Callable[[Any, str], Any]
Diff = tuple[str, object, object]  # field, expected, got
T = TypeVar("T")


# -- field converters: (JSON value, place) -> value, or an InputError naming the place ---


def _list(value: Any, place: str) -> list[Any]:
    if not isinstance(value, list):
        raise InputError(place, f"expected a list, got {type(value).__name__}")
    return value


def _int_in(lo: int, hi: int) -> Converter:
    def convert(value: Any, place: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(place, f"expected an integer, got {type(value).__name__}")
        if not lo <= value <= hi:
            raise InputError(place, f"{value} is outside {lo}..{hi}")
        return value

    return convert


def _bool(value: Any, place: str) -> bool:
    if not isinstance(value, bool):
        raise InputError(place, f"expected true or false, got {type(value).__name__}")
    return value


def _float(value: Any, place: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(place, f"expected a number, got {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise InputError(place, f"{value} is not a finite number")
    return number


def _text(value: Any, place: str) -> str:
    if not isinstance(value, str):
        raise InputError(place, f"expected a string, got {type(value).__name__}")
    return value


def _hex(size: int | None) -> Converter:
    def convert(value: Any, place: str) -> bytes:
        if not isinstance(value, str) or not _HEX.fullmatch(value):
            raise InputError(place, "expected a lowercase hex string of whole bytes")
        raw = bytes.fromhex(value)
        if size is not None and len(raw) != size:
            raise InputError(place, f"expected {size} bytes, got {len(raw)}")
        return raw

    return convert


def _seed(value: Any, place: str) -> bytes:
    return spec.check_seed(_hex(None)(value, place), place)


def _slots(value: Any, place: str) -> tuple[int, ...]:
    return spec.check_slots(_list(value, place), place)


def _memory_id(value: Any, place: str) -> str:
    if not isinstance(value, str) or not _MEMORY_ID.fullmatch(value):
        raise InputError(place, "expected 64 lowercase hex digits")
    return value


def _each(item: Converter) -> Converter:
    def convert(value: Any, place: str) -> tuple[Any, ...]:
        return tuple(item(v, f"{place}[{i}]") for i, v in enumerate(_list(value, place)))

    return convert


def _memory(value: Any, place: str) -> JitterMemory:
    return JitterMemory.from_frames(_each(_slots)(value, place), place)


_u32: Converter = spec.check_u32


def _json(convert: Converter, name: str | None = None) -> dict[str, Any]:
    """Case-field metadata: JSON key ``name`` (default: the attribute's name)."""
    return {"convert": convert, "json": name}


def _build(cls: type[T], value: Any, prefix: str) -> T:
    """``cls`` from a JSON object with exactly its ``_json`` fields (and maybe a note)."""
    if not isinstance(value, dict):
        raise InputError(prefix, f"expected an object, got {type(value).__name__}")
    dot = f"{prefix}." if prefix else ""
    schema = {f.metadata.get("json") or f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    for key in value:
        if key not in schema:
            raise InputError(f"{dot}{key}", "unknown field")
    kwargs = {}
    for key, f in schema.items():
        if key in value:
            convert = f.metadata.get("convert", _text)
            kwargs[f.name] = convert(value[key], f"{dot}{key}")
        elif "convert" in f.metadata:
            raise InputError(f"{dot}{key}", "missing")
    try:
        return cls(**kwargs)
    except InputError as exc:  # a cross-field rule from __post_init__
        raise InputError(f"{dot}{exc.field}", exc.problem) from None


# -- cases ----------------------------------------------------------------------------------

_BITS = _int_in(0, 32)
_HEADER = _hex(spec.HEADER_BYTES)
_U32S = _each(_u32)


@dataclass(frozen=True)
class HeaderCase:
    slots: tuple[int, ...] = field(metadata=_json(_slots))
    seed: bytes = field(metadata=_json(_seed))
    header: bytes = field(metadata=_json(_HEADER))
    note: str | None = None


@dataclass(frozen=True)
class ApplyJitterCase:
    header: bytes = field(metadata=_json(_HEADER))
    jitter: int = field(metadata=_json(_u32))
    result: bytes = field(metadata=_json(_HEADER))
    note: str | None = None


@dataclass(frozen=True)
class JitterCase:
    memory: JitterMemory = field(metadata=_json(_memory))
    memory_id: str = field(metadata=_json(_memory_id))
    slots: tuple[int, ...] = field(metadata=_json(_slots))
    key: int = field(metadata=_json(_u32))
    pass_no: int = field(metadata=_json(_int_in(0, spec.MAX_PASSES - 1), "pass"))
    jitter: int = field(metadata=_json(_u32))
    found: bool = field(metadata=_json(_bool))
    note: str | None = None


@dataclass(frozen=True)
class LoopCase:
    memory: JitterMemory = field(metadata=_json(_memory))
    memory_id: str = field(metadata=_json(_memory_id))
    slots: tuple[int, ...] = field(metadata=_json(_slots))
    seed: bytes = field(metadata=_json(_seed))
    passes: int = field(metadata=_json(spec.check_passes))
    zero_bits: int = field(metadata=_json(spec.check_zero_bits))
    output: int = field(metadata=_json(_u32))
    golden_nonce: int = field(metadata=_json(_u32))
    final_digest: bytes = field(metadata=_json(_hex(32)))
    final_header: bytes = field(metadata=_json(_HEADER))
    pass_keys: tuple[int, ...] = field(metadata=_json(_U32S))
    pass_nonces: tuple[int, ...] = field(metadata=_json(_U32S))
    jitters: tuple[int, ...] = field(metadata=_json(_U32S))
    jitter_found: tuple[bool, ...] = field(metadata=_json(_each(_bool)))
    note: str | None = None

    def __post_init__(self) -> None:
        for name in ("pass_keys", "pass_nonces", "jitters", "jitter_found"):
            got = len(getattr(self, name))
            if got != self.passes:
                raise InputError(name, f"expected {self.passes} values (one a pass), got {got}")


@dataclass(frozen=True)
class ExpectedReward:
    target_word: int = field(metadata=_json(_u32))
    matching_bits: int = field(metadata=_json(_BITS))
    prefix_bits: int = field(metadata=_json(_BITS))
    winner: bool = field(metadata=_json(_bool))
    alignment: float = field(metadata=_json(_float))
    stability: float = field(metadata=_json(_float))
    format: float = field(metadata=_json(_float))
    reward: float = field(metadata=_json(_float))


@dataclass(frozen=True)
class RewardCase:
    output: int = field(metadata=_json(_u32))
    last_pass_key: int = field(metadata=_json(_u32))
    token: int = field(metadata=_json(_u32))
    token_bits: int = field(metadata=_json(spec.check_token_bits))
    difficulty_bits: int = field(metadata=_json(_BITS))
    token_map: tuple[int, ...] = field(metadata=_json(_U32S))
    expect: ExpectedReward = field(
        metadata=_json(lambda value, place: _build(ExpectedReward, value, place))
    )
    note: str | None = None

    def __post_init__(self) -> None:
        if self.token >> self.token_bits:
            raise InputError("token", f"{self.token} does not fit in {self.token_bits} bits")


@dataclass(frozen=True)
class AdvantageCase:
    rewards: tuple[float, ...] = field(metadata=_json(_each(_float)))
    advantages: tuple[float, ...] = field(metadata=_json(_each(_float)))
    note: str | None = None

    def __post_init__(self) -> None:
        if not self.rewards:
            raise InputError("rewards", "expected at least one reward")
        if len(self.advantages) != len(self.rewards):
            n, got = len(self.rewards), len(self.advantages)
            raise InputError("advantages", f"expected {n} values (one a reward), got {got}")


@dataclass(frozen=True)
class DdsCase:
    epoch: int = field(metadata=_json(_int_in(1, 1 << 32)))
    difficulty_bits: int = field(metadata=_json(_int_in(1, 32)))
    note: str | None = None


_CASES: dict[str, type] = {
    "header": HeaderCase,
    "apply_jitter": ApplyJitterCase,
    "jitter": JitterCase,
    "loop": LoopCase,
    "reward": RewardCase,
    "advantage": AdvantageCase,
    "dds": DdsCase,
}


@dataclass(frozen=True)
class Vectors:
    """A validated vectors file: one tuple of cases per section."""

    path: str
    header: tuple[HeaderCase, ...]
    apply_jitter: tuple[ApplyJitterCase, ...]
    jitter: tuple[JitterCase, ...]
    loop: tuple[LoopCase, ...]
    reward: tuple[RewardCase, ...]
    advantage: tuple[AdvantageCase, ...]
    dds: tuple[DdsCase, ...]

    def cases(self, section: str) -> tuple[Any, ...]:
        cases: tuple[Any, ...] = getattr(self, section)
        return cases

    def __len__(self) -> int:
        return sum(len(self.cases(s)) for s in SECTIONS)


# -- loading --------------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def load(path: str | os.PathLike[str]) -> Vectors:
    """Read and validate a vectors file; any problem is a ``VectorsError``."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise VectorsError(name, f"cannot read: {exc.strerror or exc}") from None
    try:
        data = json.loads(raw, parse_constant=_reject_constant, object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise VectorsError(name, f"not JSON: {exc}") from None
    return parse(data, name)


def parse(data: Any, path: str = "<vectors>") -> Vectors:
    """Validate already decoded JSON ``data``; ``path`` only names it in errors."""
    if not isinstance(data, dict):
        raise VectorsError(path, f"expected a JSON object, got {type(data).__name__}")
    for key in data:
        if key not in SECTIONS and key not in INFO_KEYS:
            raise VectorsError(path, f"unknown top-level key {key!r}")
    if data.get("spec") != spec.SPEC:
        raise VectorsError(path, f"spec: expected {spec.SPEC!r}, got {data.get('spec')!r}")
    sections = {s: _parse_section(data, s, path) for s in SECTIONS}
    return Vectors(path, **sections)


def _parse_section(data: dict[str, Any], section: str, path: str) -> tuple[Any, ...]:
    if section not in data:
        raise VectorsError(path, f"missing section {section!r}")
    cases = data[section]
    if not isinstance(cases, list):
        raise VectorsError(path, f"{section}: expected a list of cases, got {type(cases).__name__}")
    out: list[Any] = []
    for i, case in enumerate(cases):
        try:
            out.append(_build(_CASES[section], case, ""))
        except InputError as exc:
            place = f"{section}[{i}].{exc.field}" if exc.field else f"{section}[{i}]"
            raise VectorsError(path, f"{place}: {exc.problem}") from None
    return tuple(out)
