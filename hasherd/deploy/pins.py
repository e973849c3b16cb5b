"""The pinned objects of one ``bpf_map_path`` (docs/bpf-abi.md), and the bpffs under them.

    <path>            BPF_MAP_TYPE_ARRAY_OF_MAPS, 1 slot: the live layer (an inner hash map)
    <path>_meta       BPF_MAP_TYPE_ARRAY, 1 entry: the live layer's meta
    <path>_live       the live inner map itself, so hasherd can open it with CAP_BPF alone
                      (opening it by id, from the slot, needs CAP_SYS_ADMIN)
    <path>_prev       the inner hash map that was live before (for rollback)
    <path>_prev_meta  BPF_MAP_TYPE_ARRAY, 1 entry: its meta

A pinned object of the wrong shape is never reused or replaced: it is an error that
names it, so a foreign map at the configured path is not overwritten.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from hasherd.deploy import bpf
from hasherd.deploy.abi import KEY_SIZE, META_SIZE, META_V1_SIZE, VALUE_SIZE, Meta
from hasherd.deploy.errors import BpfError, DeployError

SLOT = struct.pack("<I", 0)
OUTER_SHAPE = (bpf.MAP_ARRAY_OF_MAPS, 4, 4, 1)
META_SHAPE = (bpf.MAP_ARRAY, 4, META_SIZE, 1)
META_V1_SHAPE = (bpf.MAP_ARRAY, 4, META_V1_SIZE, 1)  # ABI 1: read, and replaced on a write
INNER_TYPE = bpf.MAP_HASH


@dataclass(frozen=True)
class Paths:
    live: str
    meta: str
    prev: str
    prev_meta: str
    current: str

    @classmethod
    def of(cls, path: str) -> Paths:
        """The pin paths of ``deployment.bpf_map_path``; ``DeployError`` if unusable."""
        if not path or not os.path.isabs(path) or path.endswith("/"):
            raise DeployError(
                f"bpf_map_path {path!r}: expected an absolute path to a pin "
                "(such as /sys/fs/bpf/hasher_weights)"
            )
        if "." in os.path.basename(path):
            raise DeployError(f"bpf_map_path {path}: bpffs does not allow '.' in names")
        if os.path.isdir(path):
            raise DeployError(f"bpf_map_path {path}: is a directory, not a pinned map")
        return cls(path, f"{path}_meta", f"{path}_prev", f"{path}_prev_meta", f"{path}_live")

    @property
    def directory(self) -> str:
        return os.path.dirname(self.live)


def _shape(m: bpf.Map) -> tuple[int, int, int, int]:
    i = m.info
    return (i.type, i.key_size, i.value_size, i.max_entries)


def _expect(m: bpf.Map, shape: tuple[int, int, int, int], what: str, path: str) -> bpf.Map:
    if _shape(m) != shape:
        got = m.info.describe()
        m.close()
        kind = bpf.MAP_TYPE_NAMES[shape[0]]
        raise DeployError(
            f"{path}: a {got} is pinned there, not the {what} hasherd expects "
            f"({kind}, key {shape[1]} B, value {shape[2]} B, {shape[3]} entries); "
            "remove it or choose another deployment.bpf_map_path"
        )
    return m


def check_inner(m: bpf.Map, where: str) -> bpf.Map:
    i = m.info
    if (i.type, i.key_size, i.value_size) != (INNER_TYPE, KEY_SIZE, VALUE_SIZE):
        got = i.describe()
        m.close()
        raise DeployError(f"{where}: holds a {got}, not a layer (hash, key 8 B, value 56 B)")
    return m


def open_pinned(path: str, *, read_only: bool = False) -> bpf.Map | None:
    """The map pinned at ``path``, or None when nothing is pinned there."""
    try:
        return bpf.Map.pinned(path, read_only=read_only)
    except BpfError as exc:
        if exc.errno == errno.ENOENT:
            return None
        raise


def open_outer(path: str, *, read_only: bool = False) -> bpf.Map | None:
    """The outer map pinned at ``path`` (None when nothing is pinned there)."""
    m = open_pinned(path, read_only=read_only)
    return None if m is None else _expect(m, OUTER_SHAPE, "outer map", path)


def open_meta(path: str, *, read_only: bool = False) -> bpf.Map | None:
    """The meta map pinned at ``path`` (None when nothing is pinned there), of ABI 2 or,
    pinned by an older hasherd, of ABI 1 (``ensure_meta`` replaces that one)."""
    m = open_pinned(path, read_only=read_only)
    if m is None or _shape(m) == META_V1_SHAPE:
        return m
    return _expect(m, META_SHAPE, "meta map", path)


def ensure_outer(path: str) -> bpf.Map:
    """The outer map at ``path``, created and pinned (with an empty slot) when missing."""
    m = open_outer(path)
    if m is not None:
        return m
    with bpf.Map.create(INNER_TYPE, KEY_SIZE, VALUE_SIZE, 1, "hasher_tmpl") as template:
        outer = bpf.Map.create(bpf.MAP_ARRAY_OF_MAPS, 4, 4, 1, "hasher_weights", inner=template)
    return _pin_new(outer, path)


def ensure_meta(path: str) -> bpf.Map:
    """The meta map at ``path``, created and pinned (all zero) when missing. A meta of
    ABI 1 (48 bytes, no kernel) is replaced by one of ABI 2 holding the same layer, count,
    time and checksum, its kernel unknown: one rename, so readers never miss it."""
    m = open_meta(path)
    if m is not None and _shape(m) == META_SHAPE:
        return m
    new = bpf.Map.create(bpf.MAP_ARRAY, 4, META_SIZE, 1, "hasher_meta")
    if m is None:
        return _pin_new(new, path)
    try:
        with m:
            new.update(SLOT, read_meta(m).to_bytes())
        pin_replacing(new, path)
    except BaseException:
        new.close()
        raise
    return new


def _pin_new(m: bpf.Map, path: str) -> bpf.Map:
    try:
        m.pin(path)
    except BaseException:
        m.close()
        raise
    return m


def read_meta(meta: bpf.Map) -> Meta:
    raw = meta.lookup(SLOT)
    if raw is None:  # an array always has its entries; a broken kernel would be news
        raise DeployError(f"{meta.path}: entry 0 is missing")
    return Meta.from_bytes(raw)


def live_inner(outer: bpf.Map, current: str, *, read_only: bool = False) -> bpf.Map | None:
    """The inner map in the outer map's slot (None when the slot is empty): the one
    pinned at ``current`` when it is that map, else opened by id (CAP_SYS_ADMIN)."""
    raw = outer.lookup(SLOT)
    if raw is None:
        return None
    (map_id,) = struct.unpack("<I", raw)
    pinned = open_pinned(current, read_only=read_only)
    if pinned is not None and pinned.info.id == map_id:
        return check_inner(pinned, current)
    if pinned is not None:
        pinned.close()
    try:
        inner = bpf.Map.by_id(map_id, read_only=read_only)
    except BpfError as exc:
        if exc.errno != errno.EPERM:
            raise
        raise DeployError(
            f"{outer.path} slot 0 holds map id {map_id}, which is not the map "
            f"pinned at {current} (an interrupted swap, or another writer); "
            "opening it by id needs CAP_SYS_ADMIN: run the next flash or "
            "rollback as root to repair the pins"
        ) from exc
    return check_inner(inner, f"{outer.path} slot 0 (map id {map_id})")


def swap(outer: bpf.Map, inner: bpf.Map) -> None:
    """Point the outer map's slot at ``inner``: one update, atomic for every reader."""
    outer.update(SLOT, struct.pack("<I", inner.fd))


def pin_replacing(m: bpf.Map, path: str) -> None:
    """Pin ``m`` at ``path``, replacing what is there in one rename (never a gap)."""
    tmp = f"{path}_new{os.getpid()}"  # bpffs refuses names with a dot
    bpf.unpin(tmp)
    m.pin(tmp)
    try:
        os.rename(tmp, path)
    except OSError as exc:
        bpf.unpin(tmp)
        raise BpfError(exc.errno or errno.EIO, "rename", path) from None
    m.path = path


def prepare_directory(directory: str, *, allow_mount: bool) -> None:
    """Make sure ``directory`` is on a bpffs: as it is; created inside a bpffs; or, when
    ``allow_mount``, a bpffs mounted on it (only on an empty directory)."""
    if bpf.is_bpffs(directory):
        return
    if not os.path.exists(directory):
        parent = _existing_ancestor(directory)
        if bpf.is_bpffs(parent):
            try:
                os.makedirs(directory, exist_ok=True)
            except OSError as exc:
                raise BpfError(exc.errno or errno.EIO, "mkdir", directory) from None
            return
        raise DeployError(
            f"{directory} does not exist and is not inside a bpffs; create it "
            f"and mount one: mount -t bpf bpf {directory}"
        )
    if not os.path.isdir(directory):
        raise DeployError(f"{directory}: not a directory")
    if not allow_mount:
        raise DeployError(
            f"{directory} is not a bpffs and mounting is not allowed here; "
            f"mount one first: mount -t bpf bpf {directory}"
        )
    if os.listdir(directory):
        raise DeployError(
            f"{directory} is not a bpffs and is not empty; refusing to mount"
            " bpffs over its files (choose another bpf_map_path)"
        )
    bpf.mount_bpffs(directory)


def _existing_ancestor(path: str) -> str:
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path


@contextlib.contextmanager
def locked(directory: str, what: str) -> Iterator[None]:
    """An exclusive flock on the bpffs directory for one deployment or rollback; another
    one in progress is a transient ``DeployError`` (the retry loop waits for it)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DeployError(
                f"{what}: another deployment or rollback is in progress", transient=True
            ) from None
        yield
    finally:
        os.close(fd)
