"""What a load read, what it kept, and why it skipped the rest."""

from __future__ import annotations

from dataclasses import dataclass

from hasherd.errors import HasherError

SUMMARY_ERRORS = 20


class DataError(HasherError):
    """A data file is unreadable, of an unsupported format, or holds no valid record.

    ``file`` is the path as given (or ``sample:<name>``), ``location`` the place inside it
    (``line 17``, ``frame 3``, ``byte 120``) when one is known.
    """

    def __init__(self, file: str, problem: str, location: str | None = None) -> None:
        self.file = file
        self.problem = problem
        self.location = location
        place = f"{file}:{location}" if location else file
        super().__init__(f"{place}: {problem}")


@dataclass(frozen=True)
class RowError:
    """One invalid row: where it is and what is wrong with it."""

    file: str
    location: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.location}: {self.reason}"


@dataclass(frozen=True)
class IngestReport:
    """The files a load read, its row counts and every invalid row. ``copies`` are the
    files that held the same records as an earlier one (read, compared, not loaded
    again), as (copy, original); ``seed_files`` the ``*_with_seeds`` files read for their
    seeds only, and ``seeds`` the records that start with a given seed."""

    files: tuple[str, ...]
    rows_read: int
    rows_loaded: int
    errors: tuple[RowError, ...]
    copies: tuple[tuple[str, str], ...] = ()
    seed_files: tuple[str, ...] = ()
    seeds: int = 0

    @property
    def rows_skipped(self) -> int:
        return self.rows_read - self.rows_loaded

    def summary(self) -> str:
        """A multi-line summary; lists the first 20 errors."""
        lines = [f"files: {len(self.files)}"]
        lines += [f"  {f}" for f in self.files]
        lines += [
            f"  {copy}: the same records as {original}, not loaded again"
            for copy, original in self.copies
        ]
        lines += [
            f"  {f}: its original's records with seeds, not loaded as records"
            for f in self.seed_files
        ]
        lines.append(
            f"rows: {self.rows_read} read, {self.rows_loaded} loaded, {self.rows_skipped} skipped"
        )
        if self.errors:
            lines.append(f"errors: {len(self.errors)}")
            lines += [f"  {e}" for e in self.errors[:SUMMARY_ERRORS]]
            if len(self.errors) > SUMMARY_ERRORS:
                lines.append(f"  ... and {len(self.errors) - SUMMARY_ERRORS} more")
        if self.seeds:
            lines.append(f"initial seeds: {self.seeds} records start with a given seed")
        return "\n".join(lines)
