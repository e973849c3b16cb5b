"""The error hierarchy: one root, one subclass per layer, each carrying its data.

Nothing in hasherd turns a failure into a made-up value; it raises one of these.
"""

from __future__ import annotations

from collections.abc import Iterator


class HasherError(Exception):
    """Root of every error hasherd raises on purpose.

    Errors pickle with their message and fields, whatever their constructor takes: an
    evaluator on another machine (a Ray node) raises them across a process boundary, and
    the default pickling calls ``cls(*args)`` with the one formatted message.
    """

    def __reduce__(self) -> tuple[object, ...]:
        return (_restore, (type(self), self.args, self.__dict__))


def _restore(
    cls: type[HasherError], args: tuple[object, ...], state: dict[str, object]
) -> HasherError:
    """An error rebuilt from its message and fields, without its constructor."""
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class InputError(HasherError, ValueError):
    """A value handed to the kernel is out of its domain.

    ``field`` names the offending field (``slots[3]``, ``seeds[17]``, ``zero_bits``) and
    ``where`` the place it came from (a file and section, a request id), when known.
    """

    def __init__(self, field: str, problem: str, where: str | None = None) -> None:
        self.field = field
        self.problem = problem
        self.where = where
        place = f"{where}: " if where else ""
        super().__init__(f"{place}{field}: {problem}")

    def at(self, where: str) -> InputError:
        """The same error, placed (``where`` is prefixed to any place already known)."""
        inner = f"{where}: {self.where}" if self.where else where
        return InputError(self.field, self.problem, inner)


class VectorsError(HasherError):
    """A conformance-vectors file is unreadable or malformed."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class EvaluatorError(HasherError):
    """An evaluator is unknown, unavailable on this machine, or failed."""

    def __init__(self, evaluator: str, problem: str) -> None:
        self.evaluator = evaluator
        self.problem = problem
        super().__init__(f"evaluator {evaluator!r}: {problem}")


class ConfigError(HasherError):
    """A configuration key is missing, of the wrong type, or out of range."""

    def __init__(self, key: str, problem: str, source: str | None = None) -> None:
        self.key = key
        self.problem = problem
        self.source = source
        place = f"{source}: " if source else ""
        super().__init__(f"{place}{key}: {problem}")


def leaves(exc: BaseException) -> Iterator[BaseException]:
    """The exceptions inside ``exc``, depth first: anyio's task groups wrap what their
    tasks raise in (nested) exception groups; a plain exception is its own leaf."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from leaves(inner)
    else:
        yield exc


def first_hasher_error(
    exc: BaseException, *, skip: tuple[type[HasherError], ...] = ()
) -> HasherError | None:
    """The first HasherError in ``exc`` (itself, or inside its exception groups) that is
    not one of ``skip``; None when there is none. The one place that looks through task
    groups for the error a user should see."""
    return next(
        (e for e in leaves(exc) if isinstance(e, HasherError) and not isinstance(e, skip)),
        None,
    )
