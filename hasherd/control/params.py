"""The control methods' parameters: one set of validators, and a frozen request per method.

The daemon's handlers never read a ``params`` dict: ``typed(Request, handler)`` parses
the JSON params into ``Request`` first, so a handler receives checked values, and
``hasherctl`` builds the same classes and sends ``to_params()``. A wrong value is an
``InputError`` naming the param (the client sees ``invalid_params``), and so is an
integer beyond SQLite's 64-bit range (it could not be stored or compared in SQL). A
param sent as ``null`` is the same as a param left out.

Pure: no I/O, no event loop. docs/control-protocol.md lists the methods and their params.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import Field, dataclass, field, fields
from pathlib import PurePath
from typing import Any, ClassVar, Protocol, Self, TypeVar

from hasherd.errors import InputError
from hasherd.storage.status import JobStatus

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # SQLite's INTEGER
MAX_LIST = 100_000  # weights.list: the most weights one reply may be asked for
MIN_PRIORITY, MAX_PRIORITY = 1, 1000  # a job's share weight (jobs.submit, jobs.set_priority)
MAX_NAME = 64  # a job's name: shown in one table cell of ``hasherctl jobs list``
MAX_DIFFICULTY = 256  # flash.deploy min_difficulty: a digest has 256 bits
MAX_PATH = 4096  # PATH_MAX: a longer dataset path cannot be opened anyway
# The evaluators a control client may name in validate.start, besides the devices of the
# config: those that run in the daemon's process. asic:PATH, asic:socket://HOST:PORT and
# rpc:SOCKET open a file, a TCP connection or a Unix socket of the client's choosing, so
# they are for the command line and the config file only.
LOCAL_EVALUATORS = ("reference", "numba", "cuda")
_LOCAL_ARGUMENT = {"reference": None, "numba": r"[1-9][0-9]{0,3}", "cuda": r"[0-9]{1,3}"}
_DEVICE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # config.py's [[devices.chips]] names

# jobs.submit's options: (low, high, the config key the option overrides). The config
# checks its own ranges too; these are what a job may ask for. Epochs: the difficulty
# schedule reaches its 32-bit cap by epoch 25 even from base 1, so more only repeat it.
# Passes: a batch's cost grows with them; 1024 is about 50 times the default 21.
JOB_BOUNDS: dict[str, tuple[int, int, str]] = {
    "epochs": (1, 100, "training.epochs"),
    "population": (1, 4096, "training.population_size"),
    "generations": (1, 1_000_000, "training.max_generations"),
    "difficulty_bits": (1, 32, "training.difficulty_bits"),
    "zero_bits": (0, 32, "training.zero_bits"),
    "passes": (1, 1024, "training.passes"),
}

Handler = Callable[[dict[str, Any]], Awaitable[Any]]


class Registry(Protocol):
    """Where methods are registered: ``ControlServer``."""

    def register(self, method: str, handler: Handler) -> None: ...


# -- validators ----------------------------------------------------------------------------


def only(params: Mapping[str, Any], *keys: str) -> None:
    """InputError naming the first param (in sorted order) that is not one of ``keys``."""
    extra = sorted(set(params) - set(keys))
    if extra:
        raise InputError(extra[0], "unknown parameter")


def _int_of(key: str, value: Any, expected: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(key, f"expected {expected}, got {value!r}")
    return value


def integer(
    params: Mapping[str, Any], key: str, *, low: int = INT64_MIN, high: int = INT64_MAX
) -> int:
    """``params[key]``: an integer in ``low..high`` (a missing one is wrong too)."""
    value = _int_of(key, params.get(key), "an integer")
    if not low <= value <= high:
        raise InputError(key, f"must be in {low}..{high}")
    return value


def opt_integer(
    params: Mapping[str, Any], key: str, *, low: int = INT64_MIN, high: int = INT64_MAX
) -> int | None:
    return None if params.get(key) is None else integer(params, key, low=low, high=high)


def natural(params: Mapping[str, Any], key: str) -> int:
    """``params[key]``: an integer from 0 to ``INT64_MAX``."""
    value = params.get(key)
    if _int_of(key, value, "an integer >= 0") < 0:
        raise InputError(key, f"expected an integer >= 0, got {value!r}")
    return integer(params, key, low=0)


def opt_natural(params: Mapping[str, Any], key: str) -> int | None:
    return None if params.get(key) is None else natural(params, key)


def opt_number(params: Mapping[str, Any], key: str, expected: str = "a number") -> float | None:
    """``params[key]`` as given (an int stays an int, so it travels back unchanged)."""
    value = params.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(key, f"expected {expected}, got {value!r}")
    number: float = value
    return number


def printable(key: str, value: str, limit: int) -> str:
    """``value`` if it is at most ``limit`` characters, all printable (no newline, tab,
    ANSI escape or other control character), else InputError naming ``key``."""
    if len(value) > limit:
        raise InputError(key, f"is {len(value)} characters long; at most {limit}")
    if not value.isprintable():
        bad = next(c for c in value if not c.isprintable())
        raise InputError(key, f"must be printable; it contains {bad!r}")
    return value


def opt_bool(params: Mapping[str, Any], key: str) -> bool | None:
    value = params.get(key)
    if value is not None and not isinstance(value, bool):
        raise InputError(key, f"expected true or false, got {value!r}")
    return value


def opt_text(
    params: Mapping[str, Any], key: str, problem: str = "expected a string", *, empty: bool = True
) -> str | None:
    """``params[key]``: a string (``empty=False``: a non-empty one), else ``problem``."""
    value = params.get(key)
    if value is not None and (not isinstance(value, str) or (not empty and not value)):
        raise InputError(key, problem)
    return value


# -- requests ------------------------------------------------------------------------------


class Params:
    """A method's parameters, as a frozen dataclass that ``parse`` builds and checks.

    ``to_params`` is what a client sends: every field except those at their default (the
    daemon applies the same default), so a request carries only what its user gave.
    """

    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]  # every subclass is a dataclass

    @classmethod
    def parse(cls, params: Mapping[str, Any]) -> Self:
        only(params)
        return cls()

    def to_params(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Params):
                out.update(value.to_params())
            elif value != f.default:
                out[f.name] = value
        return out


@dataclass(frozen=True)
class NoParams(Params):
    """``status``, ``health``, ``version``, ``actors.list``, ``reload``, ``flash.status``,
    ``flash.rollback``: no params."""


@dataclass(frozen=True)
class JobOptions(Params):
    """A job's training options (``jobs.submit``; the scheduler checks their ranges)."""

    epochs: int | None = None
    population: int | None = None
    generations: int | None = None
    difficulty_bits: int | None = None
    seed: int | None = None
    zero_bits: int | None = None  # a job at a chip device's zero bits runs on that chip
    passes: int | None = None
    strict: bool | None = None

    @classmethod
    def parse(cls, params: Mapping[str, Any]) -> Self:
        """Checked in the order given; an unknown key is an unknown option."""
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        for key in params:
            if key not in known:
                names = ", ".join(sorted(known))
                raise InputError(key, f"unknown option (known: {names})")
            values[key] = _option(params, key)
        return cls(**values)


def _option(params: Mapping[str, Any], key: str) -> int | bool | None:
    """One job option: ``strict`` a boolean, the rest integers within ``JOB_BOUNDS``."""
    if key == "strict":
        return opt_bool(params, key)
    if key not in JOB_BOUNDS or params.get(key) is None:
        return opt_integer(params, key)
    value = _int_of(key, params[key], "an integer")
    low, high, config_key = JOB_BOUNDS[key]
    if not low <= value <= high:
        raise InputError(key, f"must be in {low}..{high} ({config_key})")
    return value


@dataclass(frozen=True)
class SubmitJob(Params):
    """``jobs.submit``: the dataset (an absolute path), a name, the options, a priority
    (None: the jobs table's default)."""

    data: str
    name: str | None = None
    options: JobOptions = field(default_factory=JobOptions)
    priority: int | None = None

    @classmethod
    def parse(cls, params: Mapping[str, Any]) -> Self:
        data = params.get("data")
        if not isinstance(data, str) or not data:
            raise InputError("data", "expected the path of a dataset file or directory")
        printable("data", data, MAX_PATH)
        if not PurePath(data).is_absolute():
            raise InputError(
                "data",
                f"{data!r} must be an absolute path (the daemon's working directory is not yours)",
            )
        name = opt_text(params, "name") or None
        if name is not None:
            printable("name", name, MAX_NAME)
        rest = {k: v for k, v in params.items() if k not in ("data", "name", "priority")}
        priority = opt_integer(params, "priority", low=MIN_PRIORITY, high=MAX_PRIORITY)
        return cls(data, name, JobOptions.parse(rest), priority)


@dataclass(frozen=True)
class ListJobs(Params):
    """``jobs.list``: the jobs in one status, or all."""

    status: str | None = None

    @classmethod
    def parse(cls, params: Mapping[str, Any]) -> Self:
        only(params, "status")
        status = opt_text(params, "status")
        if status is not None and status not in set(JobStatus):
            known = ", ".join(JobStatus)
            raise InputError("status", f"{status[:MAX_NAME]!r} is not a job status ({known})")
        return cls(status)


@dataclass(frozen=True)
class JobRef(Params):
    """``jobs.show``, ``jobs.pause``, ``jobs.resume``, ``jobs.cancel``: one job."""

    id: int

    @classmethod
    def parse(cls, params: Mapping[str, Any]) -> Self:
        only(params, "id")
        return cls(integer(params, "id"))


@dataclass(frozen=True)
class SetPriority(Params):
    """``jobs.set_priority``: one job's share weight, applied at once if it runs."""

    id: int
    priority: int

    @classmethod
    def parse(cls, params: Mapping[str, Any]) -> Self:
        only(params, "id", "priority")
        job_id = integer(params, "id")
        return cls(job_id, integer(params, "priority", low=MIN_PRIORITY, high=MAX_PRIORITY))


@dataclass(frozen=True)
class ListWeights(Params):
    """``weights.list``: the weights of a dataset, a layer, a run or job, a kernel, at
    most ``limit`` of them."""

    dataset: int | None = None
    layer: int | None = None
    limit: int | None = None
    run: int | None = None  # the weights this run found (job: its job's run)
    job: int | None = None
    kernel: str | None = None  # zb=K/p=P/tb=B/mem=HEX, any of the parts

    @classmethod
    def parse(cls, params: Mapping[str, Any]) -> Self:
        only(params, "dataset", "layer", "limit", "run", "job", "kernel")
        limit = opt_integer(params, "limit", low=0, high=MAX_LIST)
        run, job = opt_integer(params, "run"), opt_integer(params, "job")
        kernel = opt_text(params, "kernel", "expected zb=K/p=P/tb=B/mem=HEX", empty=False)
        return cls(
            opt_integer(params, "dataset"), opt_integer(params, "layer"), limit, run, job, kernel
        )


@dataclass(frozen=True)
class RestartActor(Params):
    """``actors.restart``: one actor, by name."""

    name: str

    @classmethod
    def parse(cls, params: Mapping[str, Any]) -> Self:
        only(params, "name")
        name = params.get("name")
        if not isinstance(name, str):
            raise InputError("name", f"expected an actor name, got {name!r}")
        return cls(name)


_EVALUATOR = "expected an evaluator name, got {!r}"


@dataclass(frozen=True)
class StartValidation(Params):
    """``validate.start``: which weights (a job's, a run's, a sample), on which two sides."""

    job: int | None = None
    run: int | None = None
    sample: float | None = None  # in (0, 1]; None: every weight
    seed: int | None = None
    evaluator: str | None = None  # None: the daemon's default sides
    against: str | None = None
    kernel: str | None = None  # zb=K/p=P/tb=B/mem=HEX, any of the parts

    @classmethod
    def parse(cls, params: Mapping[str, Any]) -> Self:
        only(params, "job", "run", "sample", "seed", "evaluator", "against", "kernel")
        sample = opt_number(params, "sample", "a number in (0, 1]")
        if sample is not None and not 0.0 < sample <= 1.0:
            raise InputError("sample", f"{sample} is outside (0, 1]")
        return cls(
            opt_integer(params, "job"),
            opt_integer(params, "run"),
            sample,
            opt_integer(params, "seed"),
            _evaluator(params, "evaluator"),
            _evaluator(params, "against"),
            opt_text(params, "kernel", "expected zb=K/p=P/tb=B/mem=HEX", empty=False),
        )


def _evaluator(params: Mapping[str, Any], key: str) -> str | None:
    """A configured device's name (the daemon checks that it is one) or an in-process
    evaluator (``LOCAL_EVALUATORS``, with a thread count or a GPU index)."""
    spec = opt_text(params, key, _EVALUATOR.format(params.get(key)), empty=False)
    if spec is None:
        return None
    kind, colon, arg = spec.partition(":")
    if not colon and _DEVICE_NAME.fullmatch(spec):
        return spec
    pattern = _LOCAL_ARGUMENT.get(kind, "")
    if kind in LOCAL_EVALUATORS and pattern is not None and re.fullmatch(pattern, arg):
        return spec
    raise InputError(key, f"{spec[:MAX_NAME]!r}: {LOCAL_ONLY}")


LOCAL_ONLY = (
    "the control socket takes a configured device's name or an in-process evaluator "
    "(reference, numba[:THREADS], cuda[:GPU]); asic:, rpc: and socket:// evaluators are "
    "for the command line and the config file"
)


@dataclass(frozen=True)
class ShowValidation(Params):
    """``validate.show``: one validation, or the last."""

    id: int | None = None

    @classmethod
    def parse(cls, params: Mapping[str, Any]) -> Self:
        only(params, "id")
        return cls(opt_integer(params, "id"))


@dataclass(frozen=True)
class DeployLayer(Params):
    """``flash.deploy``: a layer, the gates its weights pass, or only a dry run."""

    layer: int
    dry_run: bool = False
    target_fitness: float | None = None
    min_difficulty: int | None = None
    validation_mode: str | None = None  # None: deployment.validation_mode
    kernel: str | None = None  # which kernel, when the layer holds several (or run, job)
    run: int | None = None
    job: int | None = None

    @classmethod
    def parse(cls, params: Mapping[str, Any]) -> Self:
        only(
            params,
            "layer",
            "dry_run",
            "target_fitness",
            "min_difficulty",
            "validation_mode",
            "kernel",
            "run",
            "job",
        )
        fitness = opt_number(params, "target_fitness", "a number in [0, 1]")
        if fitness is not None and not 0 <= fitness <= 1:
            raise InputError("target_fitness", f"{fitness} is outside [0, 1]")
        difficulty = opt_natural(params, "min_difficulty")
        if difficulty is not None and difficulty > MAX_DIFFICULTY:
            raise InputError("min_difficulty", f"must be in 0..{MAX_DIFFICULTY}")
        return cls(
            natural(params, "layer"),
            bool(opt_bool(params, "dry_run")),
            fitness,
            difficulty,
            opt_text(params, "validation_mode", "expected strict or lenient"),
            opt_text(params, "kernel", "expected zb=K/p=P/tb=B/mem=HEX", empty=False),
            opt_natural(params, "run"),
            opt_natural(params, "job"),
        )


P = TypeVar("P", bound=Params)


def typed(kind: type[P], handler: Callable[[P], Awaitable[Any]]) -> Handler:
    """The server's handler for ``handler``: the params parsed into ``kind`` first."""

    async def handle(params: dict[str, Any]) -> Any:
        return await handler(kind.parse(params))

    return handle
