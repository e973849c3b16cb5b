"""Evaluator registry: names on the command line and in config map to evaluator factories.

A name is ``KIND`` or ``KIND:ARG`` (``numba:1`` is the numba evaluator on one thread).
Later kinds (``cuda``, ``rpc:SOCKET``, ``asic:PATH``) register here the same way: add a
factory to ``_FACTORIES`` and, if it can be absent on a machine, an ``_AVAILABLE`` probe.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

from hasherd.errors import EvaluatorError
from hasherd.kernel.evaluators.base import Evaluator


def _reference(arg: str | None) -> Evaluator:
    if arg:
        raise EvaluatorError("reference", f"takes no argument, got {arg!r}")
    from hasherd.kernel.evaluators.reference import ReferenceEvaluator

    return ReferenceEvaluator()


def _numba(arg: str | None) -> Evaluator:
    from hasherd.kernel.evaluators.numba_cpu import NumbaEvaluator

    if arg is None:
        return NumbaEvaluator()
    try:
        threads = int(arg)
    except ValueError:
        raise EvaluatorError("numba", f"argument must be a thread count, got {arg!r}") from None
    return NumbaEvaluator(threads)


def _numba_available() -> bool:
    # find_spec, not import: importing numba costs half a second.
    return importlib.util.find_spec("numba") is not None


def _cuda(arg: str | None) -> Evaluator:
    from hasherd.kernel.evaluators.cuda import factory

    return factory(arg)


def _cuda_available() -> bool:
    from hasherd.kernel.evaluators.cuda import available

    return available()


def _rpc(arg: str | None) -> Evaluator:
    from hasherd.backends.rpc import factory

    return factory(arg)


def _asic(arg: str | None) -> Evaluator:
    from hasherd.backends.asic import factory

    return factory(arg)


_FACTORIES: dict[str, Callable[[str | None], Evaluator]] = {
    "reference": _reference,
    "numba": _numba,
    "cuda": _cuda,
    "rpc": _rpc,
    "asic": _asic,
}
_AVAILABLE: dict[str, Callable[[], bool]] = {"numba": _numba_available, "cuda": _cuda_available}
# Kinds that need an argument (a socket, a device) are not part of "every available".
_NEEDS_ARGUMENT: set[str] = {"rpc", "asic"}


def kinds() -> list[str]:
    return sorted(_FACTORIES)


def available() -> list[str]:
    """Names of the evaluators that can run here without an argument."""
    return [k for k in _FACTORIES if k not in _NEEDS_ARGUMENT and _AVAILABLE.get(k, lambda: True)()]


def create(name: str) -> Evaluator:
    """The evaluator a name stands for, or an EvaluatorError saying why not."""
    kind, sep, arg = name.partition(":")
    factory = _FACTORIES.get(kind)
    if factory is None:
        raise EvaluatorError(name, f"unknown; known kinds: {', '.join(kinds())}")
    if not _AVAILABLE.get(kind, lambda: True)():
        raise EvaluatorError(name, "not available on this machine")
    return factory(arg if sep else None)


__all__ = ["available", "create", "kinds"]
