"""The bpf(2) system call through ctypes: maps, pins and bpffs, without libbpf or bcc.

Each command's ``union bpf_attr`` member is a packed ctypes structure laid out as in
``include/uapi/linux/bpf.h`` (u64 fields at 8-byte offsets, explicit padding), passed with
its own size: the kernel zero-fills the rest of the union. A failed call raises
``BpfError(errno, op, path)``; nothing here returns a made-up value.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import platform
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from hasherd.deploy.errors import ENOTSUPP, BpfError

# enum bpf_cmd
MAP_CREATE, MAP_LOOKUP_ELEM, MAP_UPDATE_ELEM, MAP_DELETE_ELEM, MAP_GET_NEXT_KEY = 0, 1, 2, 3, 4
PROG_LOAD, OBJ_PIN, OBJ_GET, PROG_TEST_RUN = 5, 6, 7, 10
MAP_GET_FD_BY_ID, OBJ_GET_INFO_BY_FD = 14, 15
MAP_LOOKUP_BATCH, MAP_UPDATE_BATCH = 24, 26
_CMD_NAMES = {
    MAP_CREATE: "BPF_MAP_CREATE",
    MAP_LOOKUP_ELEM: "BPF_MAP_LOOKUP_ELEM",
    MAP_UPDATE_ELEM: "BPF_MAP_UPDATE_ELEM",
    MAP_DELETE_ELEM: "BPF_MAP_DELETE_ELEM",
    MAP_GET_NEXT_KEY: "BPF_MAP_GET_NEXT_KEY",
    PROG_LOAD: "BPF_PROG_LOAD",
    OBJ_PIN: "BPF_OBJ_PIN",
    OBJ_GET: "BPF_OBJ_GET",
    PROG_TEST_RUN: "BPF_PROG_TEST_RUN",
    MAP_GET_FD_BY_ID: "BPF_MAP_GET_FD_BY_ID",
    OBJ_GET_INFO_BY_FD: "BPF_OBJ_GET_INFO_BY_FD",
    MAP_LOOKUP_BATCH: "BPF_MAP_LOOKUP_BATCH",
    MAP_UPDATE_BATCH: "BPF_MAP_UPDATE_BATCH",
}

# enum bpf_map_type
MAP_HASH, MAP_ARRAY, MAP_ARRAY_OF_MAPS = 1, 2, 12
MAP_TYPE_NAMES = {MAP_HASH: "hash", MAP_ARRAY: "array", MAP_ARRAY_OF_MAPS: "array_of_maps"}
# map update flags; the open flag of BPF_OBJ_GET and BPF_MAP_GET_FD_BY_ID
ANY, NOEXIST, EXIST = 0, 1, 2
F_RDONLY = 1 << 3

BPF_FS_MAGIC = 0xCAFE4A11
_BATCH_UNSUPPORTED = (errno.EINVAL, errno.EOPNOTSUPP, ENOTSUPP)  # old kernel, or map type
_LOOKUP_CHUNK = 4096

# __NR_bpf by machine (uname -m) and pointer size: 32-bit user space on a 64-bit kernel
# uses the compat numbers of the 32-bit architecture.
_NR_BPF = {
    ("x86_64", 8): 321,
    ("x86_64", 4): 357,
    ("i386", 4): 357,
    ("i686", 4): 357,
    ("aarch64", 8): 280,
    ("aarch64", 4): 386,
    ("arm", 4): 386,
    ("riscv64", 8): 280,
    ("ppc64le", 8): 361,
    ("ppc64", 8): 361,
    ("s390x", 8): 351,
    ("mips", 4): 4351,
    ("mips64", 8): 5315,
    ("mips64", 4): 4351,
    ("loongarch64", 8): 280,
}


@functools.cache
def _nr_bpf() -> int:
    machine = platform.machine()
    machine = "arm" if machine.startswith("arm") and machine != "arm64" else machine
    machine = {"arm64": "aarch64", "mipsel": "mips", "mips64el": "mips64"}.get(machine, machine)
    nr = _NR_BPF.get((machine, ctypes.sizeof(ctypes.c_void_p)))
    if nr is None:
        raise BpfError(errno.ENOSYS, f"bpf(2) on {machine}")
    return nr


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]


class _Attr(ctypes.Structure):
    _pack_ = 1


class MapCreateAttr(_Attr):
    _fields_ = [
        ("map_type", ctypes.c_uint32),
        ("key_size", ctypes.c_uint32),
        ("value_size", ctypes.c_uint32),
        ("max_entries", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
        ("inner_map_fd", ctypes.c_uint32),
        ("numa_node", ctypes.c_uint32),
        ("map_name", ctypes.c_char * 16),
        ("map_ifindex", ctypes.c_uint32),
    ]


class ElemAttr(_Attr):
    _fields_ = [
        ("map_fd", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
        ("key", ctypes.c_uint64),
        ("value", ctypes.c_uint64),
        ("flags", ctypes.c_uint64),
    ]


class BatchAttr(_Attr):
    _fields_ = [
        ("in_batch", ctypes.c_uint64),
        ("out_batch", ctypes.c_uint64),
        ("keys", ctypes.c_uint64),
        ("values", ctypes.c_uint64),
        ("count", ctypes.c_uint32),
        ("map_fd", ctypes.c_uint32),
        ("elem_flags", ctypes.c_uint64),
        ("flags", ctypes.c_uint64),
    ]


class ObjAttr(_Attr):
    _fields_ = [
        ("pathname", ctypes.c_uint64),
        ("bpf_fd", ctypes.c_uint32),
        ("file_flags", ctypes.c_uint32),
    ]


class IdAttr(_Attr):
    _fields_ = [
        ("id", ctypes.c_uint32),
        ("next_id", ctypes.c_uint32),
        ("open_flags", ctypes.c_uint32),
    ]


class InfoAttr(_Attr):
    _fields_ = [
        ("bpf_fd", ctypes.c_uint32),
        ("info_len", ctypes.c_uint32),
        ("info", ctypes.c_uint64),
    ]


class MapInfoStruct(_Attr):
    """The head of ``struct bpf_map_info`` (the kernel copies only what we ask for)."""

    _fields_ = [
        ("type", ctypes.c_uint32),
        ("id", ctypes.c_uint32),
        ("key_size", ctypes.c_uint32),
        ("value_size", ctypes.c_uint32),
        ("max_entries", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
        ("name", ctypes.c_char * 16),
    ]


def _addr(obj: Any) -> int:
    return ctypes.addressof(obj)


def sys_bpf(cmd: int, attr: ctypes.Structure, path: str | None = None) -> int:
    """bpf(cmd, &attr, sizeof attr); its non-negative result, else ``BpfError``."""
    ret = _libc.syscall(
        ctypes.c_long(_nr_bpf()),
        ctypes.c_int(cmd),
        ctypes.c_void_p(_addr(attr)),
        ctypes.c_uint(ctypes.sizeof(attr)),
    )
    if ret < 0:
        raise BpfError(ctypes.get_errno(), _CMD_NAMES.get(cmd, f"bpf cmd {cmd}"), path)
    return int(ret)


@dataclass(frozen=True)
class MapInfo:
    type: int
    id: int
    key_size: int
    value_size: int
    max_entries: int
    flags: int
    name: str

    @property
    def type_name(self) -> str:
        return MAP_TYPE_NAMES.get(self.type, f"type {self.type}")

    def describe(self) -> str:
        return (
            f"{self.type_name} map (key {self.key_size} B, value {self.value_size} B, "
            f"{self.max_entries} entries)"
        )


def map_info(fd: int, path: str | None = None) -> MapInfo:
    info = MapInfoStruct()
    attr = InfoAttr(bpf_fd=fd, info_len=ctypes.sizeof(info), info=_addr(info))
    sys_bpf(OBJ_GET_INFO_BY_FD, attr, path)
    name = info.name.decode("ascii", "replace")
    return MapInfo(
        info.type, info.id, info.key_size, info.value_size, info.max_entries, info.map_flags, name
    )


def _is_map_fd(fd: int) -> bool:
    try:
        return os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:bpf-map"
    except OSError:  # no /proc: trust the info call
        return True


class Map:
    """An open BPF map (it owns ``fd``; ``close()`` or ``with``), with its shape in ``info``.

    ``batch`` says whether the batch commands are tried; it turns off by itself the first
    time the kernel refuses them (kernels before 5.6, map types without batch ops).
    """

    def __init__(self, fd: int, path: str | None = None) -> None:
        self.fd = fd
        self.path = path
        self.batch = True
        try:
            if not _is_map_fd(fd):
                raise BpfError(errno.EINVAL, "BPF_OBJ_GET (a BPF object, but not a map)", path)
            self.info = map_info(fd, path)
        except BaseException:
            os.close(fd)
            raise

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        map_type: int,
        key_size: int,
        value_size: int,
        max_entries: int,
        name: str,
        *,
        flags: int = 0,
        inner: Map | None = None,
    ) -> Map:
        attr = MapCreateAttr(
            map_type=map_type,
            key_size=key_size,
            value_size=value_size,
            max_entries=max_entries,
            map_flags=flags,
            inner_map_fd=inner.fd if inner else 0,
            map_name=name.encode("ascii")[:15],
        )
        return cls(sys_bpf(MAP_CREATE, attr))

    @classmethod
    def pinned(cls, path: str, *, read_only: bool = False) -> Map:
        raw = ctypes.create_string_buffer(os.fsencode(path))
        attr = ObjAttr(pathname=_addr(raw), file_flags=F_RDONLY if read_only else 0)
        return cls(sys_bpf(OBJ_GET, attr, path), path)

    @classmethod
    def by_id(cls, map_id: int, *, read_only: bool = False) -> Map:
        attr = IdAttr(id=map_id, open_flags=F_RDONLY if read_only else 0)
        return cls(sys_bpf(MAP_GET_FD_BY_ID, attr, f"(map id {map_id})"))

    def pin(self, path: str) -> None:
        raw = ctypes.create_string_buffer(os.fsencode(path))
        sys_bpf(OBJ_PIN, ObjAttr(pathname=_addr(raw), bpf_fd=self.fd), path)
        self.path = path

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def __enter__(self) -> Map:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- elements ------------------------------------------------------------------------

    def _buffers(self, key: bytes | None) -> tuple[Any, Any]:
        k = ctypes.create_string_buffer(bytes(key) if key else b"", self.info.key_size)
        return k, ctypes.create_string_buffer(self.info.value_size)

    def _check(self, what: str, data: bytes, size: int) -> None:
        if len(data) != size:
            raise BpfError(errno.EINVAL, f"{what} of {len(data)} B for a {size} B field", self.path)

    def lookup(self, key: bytes) -> bytes | None:
        """The value at ``key`` (for a map of maps: the inner map's id), None if absent."""
        self._check("key", key, self.info.key_size)
        k, v = self._buffers(key)
        attr = ElemAttr(map_fd=self.fd, key=_addr(k), value=_addr(v))
        try:
            sys_bpf(MAP_LOOKUP_ELEM, attr, self.path)
        except BpfError as exc:
            if exc.errno == errno.ENOENT:
                return None
            raise
        return bytes(v.raw)

    def update(self, key: bytes, value: bytes, flags: int = ANY) -> None:
        """Set ``key`` to ``value`` (for a map of maps: an inner map's fd as 4 bytes)."""
        self._check("key", key, self.info.key_size)
        self._check("value", value, self.info.value_size)
        k = ctypes.create_string_buffer(bytes(key), len(key))
        v = ctypes.create_string_buffer(bytes(value), len(value))
        attr = ElemAttr(map_fd=self.fd, key=_addr(k), value=_addr(v), flags=flags)
        sys_bpf(MAP_UPDATE_ELEM, attr, self.path)

    def delete(self, key: bytes) -> bool:
        self._check("key", key, self.info.key_size)
        k = ctypes.create_string_buffer(bytes(key), len(key))
        try:
            sys_bpf(MAP_DELETE_ELEM, ElemAttr(map_fd=self.fd, key=_addr(k)), self.path)
        except BpfError as exc:
            if exc.errno == errno.ENOENT:
                return False
            raise
        return True

    def next_key(self, key: bytes | None) -> bytes | None:
        """The key after ``key`` (None: the first key); None at the end."""
        k, _ = self._buffers(key)
        nxt = ctypes.create_string_buffer(self.info.key_size)
        attr = ElemAttr(map_fd=self.fd, key=_addr(k) if key is not None else 0, value=_addr(nxt))
        try:
            sys_bpf(MAP_GET_NEXT_KEY, attr, self.path)
        except BpfError as exc:
            if exc.errno == errno.ENOENT:
                return None
            raise
        return bytes(nxt.raw)

    def keys(self) -> Iterator[bytes]:
        key = self.next_key(None)
        while key is not None:
            yield key
            key = self.next_key(key)

    # -- batches -------------------------------------------------------------------------

    def update_batch(self, pairs: Sequence[tuple[bytes, bytes]], flags: int = ANY) -> None:
        """Set every (key, value): one BPF_MAP_UPDATE_BATCH, or single updates when the
        kernel has no batch ops for this map."""
        if not pairs:
            return
        if self.batch:
            try:
                self._update_batch(pairs, flags)
                return
            except BpfError as exc:
                if exc.errno not in _BATCH_UNSUPPORTED:
                    raise
                self.batch = False
        for key, value in pairs:
            self.update(key, value, flags)

    def _update_batch(self, pairs: Sequence[tuple[bytes, bytes]], flags: int) -> None:
        for key, value in pairs:
            self._check("key", key, self.info.key_size)
            self._check("value", value, self.info.value_size)
        keys = ctypes.create_string_buffer(b"".join(k for k, _ in pairs))
        values = ctypes.create_string_buffer(b"".join(v for _, v in pairs))
        attr = BatchAttr(
            keys=_addr(keys),
            values=_addr(values),
            count=len(pairs),
            map_fd=self.fd,
            elem_flags=flags,
        )
        sys_bpf(MAP_UPDATE_BATCH, attr, self.path)
        if attr.count != len(pairs):  # the kernel stopped early without an error
            raise BpfError(
                errno.EIO, f"BPF_MAP_UPDATE_BATCH ({attr.count} of {len(pairs)})", self.path
            )

    def items(self) -> dict[bytes, bytes]:
        """Every (key, value): BPF_MAP_LOOKUP_BATCH, or key by key without batch ops."""
        if self.batch:
            try:
                return self._lookup_batch()
            except BpfError as exc:
                if exc.errno not in _BATCH_UNSUPPORTED:
                    raise
                self.batch = False
        out: dict[bytes, bytes] = {}
        for key in self.keys():
            value = self.lookup(key)
            if value is not None:  # deleted between the two calls
                out[key] = value
        return out

    def _lookup_batch(self) -> dict[bytes, bytes]:
        ks, vs = self.info.key_size, self.info.value_size
        chunk = max(1, min(self.info.max_entries, _LOOKUP_CHUNK))
        token_in = ctypes.create_string_buffer(max(8, ks))
        token_out = ctypes.create_string_buffer(max(8, ks))
        out: dict[bytes, bytes] = {}
        first, done = True, False
        while not done:
            keys = ctypes.create_string_buffer(chunk * ks)
            values = ctypes.create_string_buffer(chunk * vs)
            attr = BatchAttr(
                in_batch=0 if first else _addr(token_in),
                out_batch=_addr(token_out),
                keys=_addr(keys),
                values=_addr(values),
                count=chunk,
                map_fd=self.fd,
            )
            try:
                sys_bpf(MAP_LOOKUP_BATCH, attr, self.path)
            except BpfError as exc:
                if exc.errno == errno.ENOSPC and attr.count == 0:  # a bucket > chunk
                    chunk *= 2
                    continue
                if exc.errno != errno.ENOENT:  # ENOENT: this was the last chunk
                    raise
                done = True
            for i in range(attr.count):
                out[keys.raw[i * ks : (i + 1) * ks]] = values.raw[i * vs : (i + 1) * vs]
            ctypes.memmove(token_in, token_out, ctypes.sizeof(token_out))
            first = False
        return out


# -- bpffs ---------------------------------------------------------------------------------


def fs_magic(path: str) -> int | None:
    """statfs(path).f_type, or None when the path does not exist."""
    buf = ctypes.create_string_buffer(512)  # larger than any struct statfs
    if _libc.statfs(os.fsencode(path), buf) != 0:
        err = ctypes.get_errno()
        if err in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise BpfError(err, "statfs", path)
    return int(ctypes.c_long.from_buffer(buf).value) & 0xFFFFFFFF


def is_bpffs(path: str) -> bool:
    return fs_magic(path) == BPF_FS_MAGIC


def mount_bpffs(directory: str, mode: int = 0o700) -> None:
    """mount -t bpf bpf DIRECTORY (``mode`` is the root directory's permissions)."""
    data = f"mode={mode:o}".encode()
    if _libc.mount(b"bpf", os.fsencode(directory), b"bpf", 0, data) != 0:
        raise BpfError(ctypes.get_errno(), "mount", directory)


def unpin(path: str) -> bool:
    """Remove a pin (the object lives on while other pins or fds hold it)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise BpfError(exc.errno or errno.EIO, "unlink", path) from None
    return True
