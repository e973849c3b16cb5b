"""Backup files of replaced layers, so a rollback works after a reboot emptied bpffs.

One file per swap, holding the layer that stopped being live (format in ``abi``):
``<backup_path>/<map name>.<unix ms, 13 digits>.layer<N>.bak``, written atomically
(temporary file, fsync, rename, fsync of the directory). The newest ``KEEP`` files of a
map are kept; older ones are removed after each write.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from hasherd.deploy.abi import Entries, Meta, decode_backup, encode_backup
from hasherd.deploy.errors import DeployError
from hasherd.fileio import write_atomic

KEEP = 10


def _pattern(stem: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(stem)}\.(\d{{13}})\.layer(\d+)\.bak$")


def backups(directory: str | Path, stem: str) -> list[Path]:
    """The backup files of map ``stem`` (the pin's file name), oldest first."""
    d = Path(directory)
    if not d.is_dir():
        return []
    pattern = _pattern(stem)
    found = [(m.group(1), p) for p in d.iterdir() if (m := pattern.match(p.name))]
    return [p for _, p in sorted(found)]


def latest(directory: str | Path, stem: str) -> Path | None:
    files = backups(directory, stem)
    return files[-1] if files else None


def write(directory: str | Path, stem: str, meta: Meta, entries: Entries) -> Path:
    """Write one backup; its path. ``DeployError`` when it cannot be written."""
    d = Path(directory)
    stamp = max(time.time_ns() // 1_000_000, _newest_stamp(d, stem) + 1)
    target = d / f"{stem}.{stamp:013d}.layer{meta.layer}.bak"
    try:
        d.mkdir(parents=True, exist_ok=True)
        write_atomic(target, encode_backup(meta, entries))
    except OSError as exc:
        raise DeployError(f"cannot write the backup {target}: {exc.strerror}") from None
    _prune(d, stem)
    return target


def read(path: str | Path) -> tuple[Meta, Entries]:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise DeployError(f"cannot read the backup {path}: {exc.strerror}") from None
    return decode_backup(data, str(path))


def _newest_stamp(d: Path, stem: str) -> int:
    newest = latest(d, stem)
    match = _pattern(stem).match(newest.name) if newest else None
    return int(match.group(1)) if match else 0


def _prune(d: Path, stem: str) -> None:
    for old in backups(d, stem)[:-KEEP]:
        old.unlink(missing_ok=True)
