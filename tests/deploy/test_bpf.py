"""The bpf(2) layer against the real kernel: maps, batches and their fallback, pins,
map-in-map, bpffs detection and mounting, and the errors it raises (as root)."""

from __future__ import annotations

import errno
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hasherd.deploy import bpf
from hasherd.deploy.errors import BpfError


def pairs(n: int) -> list[tuple[bytes, bytes]]:
    return [(struct.pack("<II", i, i * 7 + 1), struct.pack("<I", i) * 14) for i in range(n)]


def test_hash_map_batches_and_the_single_call_fallback(bpffs: Path, bpftool: str, h: Any) -> None:
    with bpf.Map.create(bpf.MAP_HASH, 8, 56, 3000, "t_batch") as m:
        assert (m.info.type, m.info.key_size, m.info.value_size, m.info.max_entries) == (
            bpf.MAP_HASH,
            8,
            56,
            3000,
        )
        m.update_batch(pairs(2500))
        assert m.batch  # this kernel has the batch ops
        assert m.items() == dict(pairs(2500))
        m.pin(str(bpffs / "t"))
        dumped = h.bpftool_json(bpftool, "map", "dump", "pinned", str(bpffs / "t"))
        assert {h.hex_bytes(e["key"]): h.hex_bytes(e["value"]) for e in dumped} == dict(pairs(2500))
    with bpf.Map.create(bpf.MAP_HASH, 8, 56, 100, "t_single") as m:
        m.batch = False  # as on a kernel without BPF_MAP_*_BATCH
        m.update_batch(pairs(100))
        assert m.items() == dict(pairs(100))
        assert sorted(m.keys()) == sorted(k for k, _ in pairs(100))
        assert m.lookup(pairs(100)[5][0]) == pairs(100)[5][1]
        with pytest.raises(BpfError, match="BPF_MAP_UPDATE_ELEM: E2BIG: too many entries"):
            m.update(struct.pack("<II", 9999, 0), bytes(56))
        assert m.delete(pairs(100)[5][0]) and not m.delete(pairs(100)[5][0])
        assert m.lookup(pairs(100)[5][0]) is None


def test_map_in_map_and_pins(bpffs: Path) -> None:
    with bpf.Map.create(bpf.MAP_HASH, 8, 56, 1, "tmpl") as tmpl:
        outer = bpf.Map.create(bpf.MAP_ARRAY_OF_MAPS, 4, 4, 1, "outer", inner=tmpl)
    with outer, bpf.Map.create(bpf.MAP_HASH, 8, 56, 10, "inner") as inner:
        assert outer.lookup(bytes(4)) is None  # an empty slot
        outer.update(bytes(4), struct.pack("<I", inner.fd))
        assert outer.lookup(bytes(4)) == struct.pack("<I", inner.info.id)
        outer.pin(str(bpffs / "outer"))
        with bpf.Map.pinned(str(bpffs / "outer"), read_only=True) as again:
            assert again.info == outer.info
            with bpf.Map.by_id(inner.info.id) as by_id:
                assert by_id.info == inner.info


def test_errors_name_the_call_the_path_and_the_cause(bpffs: Path) -> None:
    with pytest.raises(BpfError) as caught:
        bpf.Map.pinned(str(bpffs / "absent"))
    e = caught.value
    assert (e.errno, e.op, e.path) == (errno.ENOENT, "BPF_OBJ_GET", str(bpffs / "absent"))
    assert str(e) == f"BPF_OBJ_GET {bpffs / 'absent'}: ENOENT: nothing is pinned there"
    with pytest.raises(BpfError, match="BPF_MAP_CREATE: EINVAL"):
        bpf.Map.create(bpf.MAP_HASH, 0, 56, 1, "bad")
    with (
        bpf.Map.create(bpf.MAP_HASH, 8, 56, 1, "x") as m,
        pytest.raises(BpfError, match="key of 3 B for a 8 B field"),
    ):
        m.lookup(b"abc")


def test_bpffs_detection_and_mount(tmp_path: Path, bpffs: Path, h: Any) -> None:
    assert bpf.is_bpffs(str(bpffs))
    assert not bpf.is_bpffs(str(tmp_path))
    assert bpf.fs_magic(str(tmp_path / "missing")) is None
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    bpf.mount_bpffs(str(fresh))
    try:
        assert bpf.fs_magic(str(fresh)) == bpf.BPF_FS_MAGIC
    finally:
        h.umount(fresh)


NO_CAPS = ["setpriv", "--bounding-set=-bpf,-sys_admin,-perfmon"]


def test_without_cap_bpf_the_error_says_what_is_needed(tmp_path: Path, h: Any) -> None:
    h.need_root()
    if Path("/proc/sys/kernel/unprivileged_bpf_disabled").read_text().strip() == "0":
        pytest.skip("this kernel lets unprivileged users create maps: no EPERM to see")
    empty = tmp_path / "empty"
    empty.mkdir()
    script = (
        "import sys\n"
        "from hasherd.deploy import bpf\n"
        "from hasherd.deploy.errors import BpfError\n"
        "for call in (lambda: bpf.Map.create(bpf.MAP_HASH, 8, 56, 1, 'x'),\n"
        "             lambda: bpf.mount_bpffs(sys.argv[1])):\n"
        "    try:\n"
        "        call()\n"
        "    except BpfError as exc:\n"
        "        print(exc)\n"
    )
    done = subprocess.run(
        [*NO_CAPS, sys.executable, "-c", script, str(empty)],
        capture_output=True,
        text=True,
        check=True,
        cwd=os.getcwd(),
    )
    assert done.stdout.splitlines() == [
        "BPF_MAP_CREATE: EPERM: need CAP_BPF or root",
        f"mount {empty}: EPERM: need CAP_SYS_ADMIN (root) to mount bpffs",
    ]
