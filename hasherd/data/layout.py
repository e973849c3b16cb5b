"""Which files a load reads: a file, a directory, or the upstream ``DATA/frames`` layout.

The prototype's encoder writes ``DATA/frames/training_frames.json`` and the same records
as ``training_frames.arrow`` beside it, plus its checkpoint
``training_frames.json.checkpoint.json``; its Go trainer writes
``training_frames_with_seeds.json`` (the same records with ``best_seed``) into the same
folder. Read naively, such a folder holds every record two or three times, and the order
of the records is the jitter memory, so that matters. The rules (docs/data.md):

- a directory with a ``frames`` subdirectory is read through it (the upstream layout);
- ``*.checkpoint.*`` files are the encoder's own state, never data;
- a ``<stem>_with_seeds`` frame file beside a frame file of stem ``<stem>`` is read for its
  seeds only; a given file's ``_with_seeds`` sibling likewise;
- frame files sharing a stem (``x.json``, ``x.arrow``) are read in name order; a later one
  is a ``copy_of`` the first, compared with it and loaded only if its records differ.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from hasherd.data.report import DataError
from hasherd.data.upstream import SEEDS_SUFFIX

LOGGER = logging.getLogger(__name__)
FRAMES_DIR = "frames"
CHECKPOINT_MARK = ".checkpoint."


@dataclass(frozen=True)
class Entry:
    """One file to read: its name for messages, its extension, how to get its bytes, and
    the earlier file of the same stem it may be a copy of."""

    file: str
    suffix: str
    read: Callable[[], bytes]
    copy_of: str | None = None


@dataclass(frozen=True)
class Plan:
    """The dataset's name, the files holding its records, and the files of seeds only."""

    name: str
    entries: list[Entry]
    seeds: list[Entry] = field(default_factory=list)


def sample_plan(name: str, supported: Collection[str]) -> Plan:
    root = resources.files("hasherd.data").joinpath("sample")
    items = sorted((t for t in root.iterdir() if t.is_file()), key=lambda t: t.name)
    entries = [
        Entry(f"sample:{t.name}", Path(t.name).suffix.lower(), t.read_bytes)
        for t in items
        if Path(t.name).suffix.lower() in supported
    ]
    return Plan(name, entries)


def path_plan(given: str, supported: Collection[str], frames: Collection[str]) -> Plan:
    """The plan for a file or directory path; DataError when it cannot be read."""
    path = Path(given)
    try:
        is_dir = path.is_dir()
        exists = is_dir or path.exists()
    except OSError as exc:
        raise DataError(given, f"cannot read ({exc.strerror or exc})") from None
    if is_dir:
        return _directory_plan(given, supported, frames)
    if not exists:
        raise DataError(given, "no such file or directory")
    suffix = path.suffix.lower()
    if suffix not in supported:
        raise DataError(given, f"unsupported format {suffix or '(no extension)'!r}")
    seeds = [] if path.stem.endswith(SEEDS_SUFFIX) else _sibling_seeds(path, frames)
    return Plan(path.name, [Entry(given, suffix, path.read_bytes)], seeds)


def _sibling_seeds(path: Path, frames: Collection[str]) -> list[Entry]:
    """The ``<stem>_with_seeds`` frame files beside a given file."""
    found = []
    for suffix in sorted(frames):
        sibling = path.with_name(path.stem + SEEDS_SUFFIX + suffix)
        if sibling.is_file():
            found.append(Entry(str(sibling), suffix, sibling.read_bytes))
    return found


def _listing(folder: str, supported: Collection[str]) -> list[Path]:
    """The data files of ``folder`` in name order; DataError when it cannot be listed."""
    try:
        children = sorted(Path(folder).iterdir(), key=lambda p: p.name)
        return [c for c in children if _wanted(c, supported)]
    except OSError as exc:
        raise DataError(folder, f"cannot list the directory ({exc.strerror or exc})") from None


def _folder(given: str) -> str:
    """``given``, or its ``frames`` subdirectory (the upstream layout) when it has one."""
    try:
        upstream = (Path(given) / FRAMES_DIR).is_dir()
    except OSError as exc:
        raise DataError(given, f"cannot list the directory ({exc.strerror or exc})") from None
    if not upstream:
        return given
    LOGGER.info("%s: the upstream layout, reading %s", given, FRAMES_DIR)
    return os.path.join(given, FRAMES_DIR)


def _directory_plan(given: str, supported: Collection[str], frames: Collection[str]) -> Plan:
    root = Path(given)
    name = root.name or root.resolve().name
    folder = _folder(given)
    files = _listing(folder, supported)
    if not files:
        raise DataError(folder, f"no supported files ({', '.join(sorted(supported))})")
    stems = {c.stem for c in files if c.suffix.lower() in frames}
    plan = Plan(name, [])
    first: dict[str, str] = {}
    for child in files:
        suffix = child.suffix.lower()
        entry = Entry(os.path.join(folder, child.name), suffix, child.read_bytes)
        if suffix in frames and _is_seeds_of(child.stem, stems):
            plan.seeds.append(entry)
            continue
        if suffix in frames:
            original = first.setdefault(child.stem, entry.file)
            if original != entry.file:
                entry = Entry(entry.file, suffix, entry.read, copy_of=original)
        plan.entries.append(entry)
    return plan


def _is_seeds_of(stem: str, stems: Collection[str]) -> bool:
    return stem.endswith(SEEDS_SUFFIX) and stem[: -len(SEEDS_SUFFIX)] in stems


def _wanted(child: Path, supported: Collection[str]) -> bool:
    """Whether a directory entry is a data file (the others are logged or ignored)."""
    if child.name.startswith(".") or not child.is_file():
        return False
    if CHECKPOINT_MARK in child.name:
        LOGGER.info("%s: skipped, the encoder's checkpoint (not data)", child.name)
        return False
    if child.suffix.lower() not in supported:
        LOGGER.info("%s: skipped, not a supported format", child.name)
        return False
    return True
