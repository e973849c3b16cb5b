"""The error hierarchy: one root, one subclass per layer, each carrying its data.

Nothing in hasherd turns a failure into a made-up value; it raises one of these.
"""

from __future__ import annotations


class HasherError(Exception):
    """Root of every error hasherd raises on purpose."""


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
