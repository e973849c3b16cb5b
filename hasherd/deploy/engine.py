"""The synchronous deploy steps, run in a worker thread: build, fill, verify and swap a
layer; roll back; read what is live. ``flash`` (the async side) adds the database, the
gates, retries and events.

A deployment never writes into the live inner map. It builds a new one, fills it in
batches, reads it all back and compares, and only then points the outer slot at it (one
map update). Until that update every failure leaves the live layer as it was; the new
map, pinned nowhere, is freed when its fd closes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from hasherd.config import DeploymentConfig
from hasherd.deploy import backups, bpf, pins
from hasherd.deploy.abi import KEY_SIZE, VALUE_SIZE, Entries, Meta, checksum, sorted_entries
from hasherd.deploy.errors import DeployError
from hasherd.storage.rows import Kernel

BATCH = 512  # entries per BPF_MAP_UPDATE_BATCH
Fault = Callable[[int, int], None]  # test hook: (entries written, total) after each batch


@dataclass(frozen=True)
class Settings:
    """The deployment keys the engine uses (``DeploymentConfig`` plus command-line choices)."""

    map_path: str
    backup_path: str | None  # None: no backup files
    timeout: float = 300.0
    max_retries: int = 3
    retry_delay: float = 5.0
    rollback_enabled: bool = True
    allow_mount: bool = True
    batch: int = BATCH

    @classmethod
    def from_config(cls, cfg: DeploymentConfig, **changes: Any) -> Settings:
        base = cls(
            cfg.bpf_map_path,
            cfg.backup_path if cfg.backup_enabled else None,
            cfg.deployment_timeout,
            cfg.max_retries,
            cfg.retry_delay,
            cfg.rollback_enabled,
        )
        return cls(**{**base.__dict__, **{k: v for k, v in changes.items() if v is not None}})

    @property
    def stem(self) -> str:
        return os.path.basename(self.map_path)


@dataclass(frozen=True)
class LayerInfo:
    layer: int
    count: int
    checksum: str
    deployed_at: int

    @classmethod
    def of(cls, meta: Meta) -> LayerInfo:
        return cls(meta.layer, meta.count, meta.checksum.hex(), meta.deployed_at)

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Diff:
    added: int
    changed: int
    removed: int
    unchanged: int

    @classmethod
    def between(cls, live: Mapping[bytes, bytes], new: Mapping[bytes, bytes]) -> Diff:
        both = live.keys() & new.keys()
        changed = sum(1 for k in both if live[k] != new[k])
        return cls(len(new.keys() - both), changed, len(live.keys() - both), len(both) - changed)


@dataclass(frozen=True)
class Swap:
    """What one swap did: the layer now live, the one it replaced, the backup written."""

    live: LayerInfo
    previous: LayerInfo | None
    diff: Diff
    backup: str | None
    source: str = "database"  # rollbacks: "prev" (the pinned map) or "backup" (a file)


def deadline_check(deadline: float, step: str) -> None:
    if time.monotonic() >= deadline:
        raise DeployError(f"deployment_timeout passed while {step}; the live layer is untouched")


# -- building and swapping -----------------------------------------------------------------


def build(
    entries: Entries, layer: int, s: Settings, deadline: float, fault: Fault | None
) -> bpf.Map:
    """A new inner map holding exactly ``entries``: filled in batches, read back, compared."""
    rows = sorted_entries(entries)
    inner = bpf.Map.create(
        pins.INNER_TYPE, KEY_SIZE, VALUE_SIZE, max(1, len(rows)), f"hasher_l{layer}"[:15]
    )
    try:
        for start in range(0, len(rows), s.batch):
            inner.update_batch(rows[start : start + s.batch], bpf.NOEXIST)
            if fault is not None:
                fault(min(start + s.batch, len(rows)), len(rows))
            deadline_check(deadline, f"filling layer {layer}")
        back = inner.items()
        if back != entries:
            bad = len(back.keys() ^ entries.keys()) + sum(
                1 for k in back.keys() & entries.keys() if back[k] != entries[k]
            )
            raise DeployError(
                f"layer {layer}: read-back differs in {bad} entries; the live layer is untouched",
                transient=True,
            )
        return inner
    except BaseException:
        inner.close()
        raise


def switch(
    s: Settings,
    outer: bpf.Map,
    meta: bpf.Map,
    new: bpf.Map,
    new_meta: Meta,
    new_entries: Entries,
    deadline: float,
    *,
    consumes_prev: bool = False,
) -> tuple[LayerInfo | None, Diff, str | None]:
    """Make ``new`` live; the layer it replaces becomes ``_prev`` and a backup file.

    ``consumes_prev``: ``new`` is the ``_prev`` map (a rollback), so with nothing live
    before, the ``_prev`` pins go (the layer they name is live now)."""
    paths = pins.Paths.of(s.map_path)
    old = pins.live_inner(outer, paths.current)
    try:
        old_entries = old.items() if old is not None else {}
        old_meta = _describe(pins.read_meta(meta), old_entries)
        backup = None
        if old is not None and s.backup_path is not None:
            backup = str(backups.write(s.backup_path, s.stem, old_meta, old_entries))
        deadline_check(deadline, f"preparing the swap to layer {new_meta.layer}")
        pins.swap(outer, new)  # the one step readers see; after it, nothing is undone
        try:
            meta.update(pins.SLOT, new_meta.to_bytes())
            pins.pin_replacing(new, paths.current)
            if old is not None:
                _keep_prev(old, old_meta, paths)
            elif consumes_prev:
                bpf.unpin(paths.prev)
                bpf.unpin(paths.prev_meta)
        except DeployError as exc:
            raise DeployError(
                f"layer {new_meta.layer} is live, but recording it failed: "
                f"{exc} (see `flash status`)"
            ) from exc
    finally:
        if old is not None:
            old.close()
    previous = LayerInfo.of(old_meta) if old is not None else None
    return previous, Diff.between(old_entries, new_entries), backup


def _describe(meta: Meta, entries: Entries) -> Meta:
    """The meta of a live map as it is (count and checksum from its content)."""
    return Meta(meta.layer, len(entries), meta.deployed_at, checksum(entries), meta.kernel)


def _keep_prev(old: bpf.Map, old_meta: Meta, paths: pins.Paths) -> None:
    with pins.ensure_meta(paths.prev_meta) as prev_meta:
        prev_meta.update(pins.SLOT, old_meta.to_bytes())
    pins.pin_replacing(old, paths.prev)


def _open_live(s: Settings, stack: ExitStack) -> tuple[bpf.Map, bpf.Map]:
    """The outer and meta maps, created when missing, under the directory's lock."""
    paths = pins.Paths.of(s.map_path)
    pins.prepare_directory(paths.directory, allow_mount=s.allow_mount)
    stack.enter_context(pins.locked(paths.directory, s.map_path))
    outer = stack.enter_context(pins.ensure_outer(paths.live))
    meta = stack.enter_context(pins.ensure_meta(paths.meta))
    return outer, meta


def flash(
    s: Settings,
    layer: int,
    entries: Entries,
    deadline: float,
    fault: Fault | None = None,
    kernel: Kernel | None = None,
) -> Swap:
    """One attempt at making ``entries`` the live layer ``layer``, whose seeds need
    ``kernel`` (written into ``_meta``)."""
    with ExitStack() as stack:
        outer, meta = _open_live(s, stack)
        new = stack.enter_context(build(entries, layer, s, deadline, fault))
        new_meta = Meta(layer, len(entries), int(time.time()), checksum(entries), kernel)
        previous, diff, backup = switch(s, outer, meta, new, new_meta, entries, deadline)
    return Swap(LayerInfo.of(new_meta), previous, diff, backup)


def rollback(s: Settings, deadline: float) -> Swap:
    """Make the previous layer live again: the pinned ``_prev`` map when there is one,
    else the newest backup file (after a reboot emptied bpffs)."""
    if not s.rollback_enabled:
        raise DeployError("rollback is disabled (deployment.rollback_enabled = false)")
    paths = pins.Paths.of(s.map_path)
    with ExitStack() as stack:
        outer, meta = _open_live(s, stack)
        prev = pins.open_pinned(paths.prev)
        if prev is not None:
            new = stack.enter_context(pins.check_inner(prev, paths.prev))
            entries, prev_meta = _checked_prev(new, paths)
            source = "prev"
        else:
            prev_meta, entries = backups.read(_latest_backup(s))
            new = stack.enter_context(build(entries, prev_meta.layer, s, deadline, None))
            source = "backup"
        new_meta = Meta(
            prev_meta.layer, len(entries), int(time.time()), checksum(entries), prev_meta.kernel
        )
        previous, diff, backup = switch(
            s, outer, meta, new, new_meta, entries, deadline, consumes_prev=source == "prev"
        )
    return Swap(LayerInfo.of(new_meta), previous, diff, backup, source)


def _checked_prev(prev: bpf.Map, paths: pins.Paths) -> tuple[Entries, Meta]:
    entries = prev.items()
    meta_map = pins.open_meta(paths.prev_meta)
    if meta_map is None:
        raise DeployError(
            f"{paths.prev_meta} is missing; remove {paths.prev} to roll back "
            "from the newest backup file instead"
        )
    with meta_map:
        meta = pins.read_meta(meta_map)
    if checksum(entries) != meta.checksum or len(entries) != meta.count:
        raise DeployError(
            f"{paths.prev}: its content does not match {paths.prev_meta} "
            "(changed since it was live); not rolling back to it"
        )
    return entries, meta


def _latest_backup(s: Settings) -> str:
    file = backups.latest(s.backup_path, s.stem) if s.backup_path else None
    if file is None:
        where = f"in {s.backup_path}" if s.backup_path else "(backups are disabled)"
        raise DeployError(
            f"nothing to roll back to: no {s.map_path}_prev pinned and no "
            f"backup of {s.stem} {where}"
        )
    return str(file)


# -- reading -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Live:
    """What is live, read without changing anything."""

    meta: Meta | None  # None: no outer map pinned at the path
    entries: Entries
    map_id: int | None  # the live inner map's id; None: the slot is empty
    previous: Meta | None  # the meta of ``_prev``, when it is pinned


def read_live(s: Settings) -> Live:
    """The live layer (nothing is created, mounted or locked)."""
    paths = pins.Paths.of(s.map_path)
    if not bpf.is_bpffs(paths.directory):
        return Live(None, {}, None, None)
    previous = _prev_meta(paths)
    outer = pins.open_outer(paths.live, read_only=True)
    if outer is None:
        return Live(None, {}, None, previous)
    with outer:
        meta = _read_meta_at(paths.meta) or Meta(0, 0, 0, bytes(32))
        inner = pins.live_inner(outer, paths.current, read_only=True)
        if inner is None:
            return Live(meta, {}, None, previous)
        with inner:
            return Live(meta, inner.items(), inner.info.id, previous)


def _read_meta_at(path: str) -> Meta | None:
    m = pins.open_meta(path, read_only=True)
    if m is None:
        return None
    with m:
        return pins.read_meta(m)


def _prev_meta(paths: pins.Paths) -> Meta | None:
    prev = pins.open_pinned(paths.prev, read_only=True)
    if prev is None:
        return None
    prev.close()
    return _read_meta_at(paths.prev_meta)
