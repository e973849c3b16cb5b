"""Every error class of hasherd survives pickling with its message and fields: an
evaluator on a Ray node raises them across a process boundary."""

from __future__ import annotations

import importlib
import inspect
import pickle
import pkgutil

import pytest

import hasherd
from hasherd.errors import ConfigError, EvaluatorError, HasherError, InputError


def _error_classes() -> list[type[HasherError]]:
    found: dict[str, type[HasherError]] = {}
    for info in pkgutil.walk_packages(hasherd.__path__, "hasherd."):
        if info.name.startswith(("hasherd.backends.cluster", "hasherd.kernel.cuda")):
            continue  # optional dependencies; their errors derive from those below
        module = importlib.import_module(info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, HasherError) and cls.__module__ == info.name:
                found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return [found[k] for k in sorted(found)]


def test_every_error_class_pickles_through_the_root() -> None:
    classes = _error_classes()
    assert len(classes) > 10
    for cls in classes:
        assert cls.__reduce__ is HasherError.__reduce__, f"{cls.__qualname__} pickles its own way"


@pytest.mark.parametrize(
    "error",
    [
        InputError("slots[3]", "is outside 0..4294967295", "frames.json: row 7"),
        EvaluatorError("asic", "no nonce in the swept window"),
        ConfigError("devices.mailbox", "must be in 1..64", "/etc/hasherd/hasherd.toml"),
    ],
)
def test_an_error_keeps_its_message_and_fields(error: HasherError) -> None:
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error)
    assert str(back) == str(error)
    assert back.__dict__ == error.__dict__
