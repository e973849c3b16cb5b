"""The storage layer's error: which database file, and what went wrong with it."""

from __future__ import annotations

from hasherd.errors import HasherError


class StorageError(HasherError):
    """The database file is unusable, or a read or write against it failed.

    ``path`` is the database file and ``problem`` says what is wrong with it (what
    ``integrity_check`` reported, which constraint a write broke, ...).
    """

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")
