"""The deploy layer's errors: a failed deployment, and a failed bpf(2) or mount(2) call."""

from __future__ import annotations

import errno as errno_mod
import os

from hasherd.errors import HasherError

ENOTSUPP = 524  # the kernel's internal "not supported", which bpf(2) leaks to user space

# What a failed call most likely means, by errno (the op may refine it, see ``_hint``).
_HINTS = {
    errno_mod.EPERM: "need CAP_BPF or root",
    errno_mod.EACCES: "permission denied (need CAP_BPF or root; check the bpffs mode)",
    errno_mod.ENOENT: "nothing is pinned there",
    errno_mod.EEXIST: "something is already pinned there",
    errno_mod.E2BIG: "too many entries for the map",
    errno_mod.EINVAL: "invalid argument (a kernel too old for this map type or flag?)",
    errno_mod.ENOMEM: "out of memory (or RLIMIT_MEMLOCK too low, on kernels before 5.11)",
    errno_mod.ENOSYS: "this kernel has no bpf(2) (CONFIG_BPF_SYSCALL is off)",
    errno_mod.EBADF: "not an open BPF object",
    errno_mod.ENOTDIR: "a parent of the path is not a directory",
    errno_mod.ENOSPC: "no space left",
    errno_mod.EBUSY: "busy",
    ENOTSUPP: "not supported for this map type",
}
_OP_HINTS = {
    ("mount", errno_mod.EPERM): "need CAP_SYS_ADMIN (root) to mount bpffs",
    ("BPF_MAP_GET_FD_BY_ID", errno_mod.EPERM): "need CAP_SYS_ADMIN (root) to open a map by id",
    ("BPF_MAP_LOOKUP_ELEM", errno_mod.ENOENT): "no such key",
    ("BPF_MAP_GET_FD_BY_ID", errno_mod.ENOENT): "no map with that id (freed meanwhile?)",
}


class DeployError(HasherError):
    """A deployment, rollback or status read cannot be carried out, and why.

    ``transient`` tells the retry loop whether another attempt may succeed (a busy or
    out-of-memory kernel, a read-back mismatch) or not (no permission, a bad path,
    nothing passes the gates).
    """

    def __init__(self, problem: str, *, transient: bool = False) -> None:
        self.problem = problem
        self.transient = transient
        super().__init__(problem)


class BpfError(DeployError):
    """A bpf(2) command (or the mount(2) of bpffs) failed: ``errno``, the ``op`` (the
    command's name, as in ``BPF_OBJ_GET``), and the bpffs ``path`` it was about, if any."""

    def __init__(self, errno: int, op: str, path: str | None = None) -> None:
        self.errno = errno
        self.op = op
        self.path = path
        name = errno_mod.errorcode.get(errno, "ENOTSUPP" if errno == ENOTSUPP else str(errno))
        where = f" {path}" if path else ""
        hint = _OP_HINTS.get((op, errno)) or _HINTS.get(errno) or os.strerror(errno)
        transient = errno in (errno_mod.EAGAIN, errno_mod.EBUSY, errno_mod.EINTR, errno_mod.ENOMEM)
        super().__init__(f"{op}{where}: {name}: {hint}", transient=transient)
