"""Two trainings of the same data under different kernels (zero_bits 0 and 2): both sets
of weights stay; each verifies, exports and flashes with its own kernel, written into
``_meta``; a layer that would mix them is refused; every command finds the database from
``--config`` alone; and a ``_meta`` pinned by ABI 1 is read, then replaced."""

from __future__ import annotations

import json
import sqlite3
import struct
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hasherd.cli import main as hasherd_main
from hasherd.deploy import bpf, pins
from hasherd.deploy.abi import (
    BACKUP_HEADER_V1,
    META_SIZE,
    META_V1,
    Meta,
    checksum,
    decode_backup,
    encode_backup,
    pack_key,
)
from hasherd.deploy.engine import Settings
from hasherd.deploy.errors import DeployError
from hasherd.storage.rows import Kernel

HASHERD = [sys.executable, "-m", "hasherd.cli.main"]
LAYER_SIZE = 1000
RECORDS = 12


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A storage.base_path whose hasherd.db holds the weights of two kernels, trained by
    the real ``hasherd train`` with only ``--config`` naming the database."""
    d = tmp_path_factory.mktemp("kernels")
    (d / "hasherd.toml").write_text(
        f'[storage]\nbase_path = "{d}"\nlayer_size = {LAYER_SIZE}\n'
        "[training]\nvalidation_split = 0.0\n"
    )
    data = d / "f.json"
    rng = np.random.default_rng(11)
    frames = [
        {
            "feature_vector": rng.integers(0, 2**32, size=12, dtype=np.uint64).tolist(),
            "target_token": int(rng.integers(0, 2 * LAYER_SIZE)),
        }
        for _ in range(RECORDS)
    ]
    data.write_text(json.dumps(frames))
    for zero_bits in ("0", "2"):
        done = subprocess.run(
            [
                *(*HASHERD, "train", "--data", str(data), "--config", str(d / "hasherd.toml")),
                *("--difficulty-bits", "5", "--epochs", "1", "--population", "16", "--seed", "5"),
                *("--evaluator", "reference", "--zero-bits", zero_bits),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode in (0, 1), done.stderr
    return d


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = hasherd_main.main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def kernels_by_record(db: Path) -> dict[int, set[int]]:
    con = sqlite3.connect(db)
    try:
        rows = con.execute("SELECT record_id, zero_bits FROM weights").fetchall()
    finally:
        con.close()
    found: dict[int, set[int]] = {}
    for rec, zb in rows:
        found.setdefault(int(rec), set()).add(int(zb))
    return found


def test_both_kernels_keep_their_weights_and_verify(
    base: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    found = kernels_by_record(base / "hasherd.db")
    assert {2} <= set().union(*found.values()) and {0} <= set().union(*found.values())
    assert sum(1 for zbs in found.values() if zbs == {0, 2}) >= 1  # one record, two weights
    cfg = ["--config", str(base / "hasherd.toml")]
    status, out, err = run(capsys, "verify", *cfg)
    assert status == 0, out + err
    for spec, run_id in (("zb=0", "1"), ("zb=2/p=21", "2")):
        by_kernel = run(capsys, "verify", *cfg, "--kernel", spec)
        by_run = run(capsys, "verify", *cfg, "--run", run_id)
        assert by_kernel[0] == 0 and by_run[0] == 0
        assert by_kernel[1].splitlines()[-1] == by_run[1].splitlines()[-1]
    status, _, err = run(capsys, "verify", *cfg, "--kernel", "zb=7")
    assert status == 2
    assert "no weights for kernel zb=7; stored: zb=0/p=21/tb=17/mem=" in err


def test_export_one_kernel_per_layer(
    base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = ["--config", str(base / "hasherd.toml")]
    status, _, err = run(capsys, "export", *cfg, "--format", "json", "--out", str(tmp_path / "x"))
    assert status == 2 and "holds weights of 2 kernels: zb=0/p=21" in err
    assert "export one with --kernel, --run or --job" in err
    out = tmp_path / "zb2"
    assert run(capsys, "export", *cfg, "--format", "json", "--out", str(out), "--run", "2")[0] == 0
    rows = [r for f in sorted(out.iterdir()) for r in json.loads(f.read_text())]
    assert rows and {(r["zero_bits"], r["passes"], r["token_bits"]) for r in rows} == {(2, 21, 17)}
    status, _, err = run(
        capsys, "export", *cfg, "--format", "csv", "--layer", "0", "--out", str(tmp_path)
    )
    assert (status, err) == (
        2,
        f"hasherd export: error: --out: {tmp_path} is a directory; with --layer it names a file\n",
    )


def test_flash_one_kernel_and_refuse_a_mix(
    base: Path, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    common = [
        *("flash", "--config", str(base / "hasherd.toml"), "--map-path", settings.map_path),
        *("--backup-path", str(settings.backup_path), "--validation-mode", "lenient"),
    ]
    status, _, err = run(capsys, *common, "--layer", "0", "--dry-run")
    assert status == 2 and "layer 0 holds weights of 2 kernels" in err
    assert "a layer never mixes kernels: choose one with --kernel, --run or --job" in err
    status, out, err = run(capsys, *common, "--layer", "0", "--kernel", "zb=2", "--json")
    assert status == 0, out + err
    report = json.loads(out)
    assert (report["kernel"]["zero_bits"], report["kernel"]["passes"]) == (2, 21)
    with pins.open_meta(settings.map_path + "_meta", read_only=True) as m:  # type: ignore[union-attr]
        live = pins.read_meta(m)
    assert live.kernel is not None and live.kernel.zero_bits == 2
    assert live.kernel.memory_id == report["kernel"]["memory_id"]
    assert run(capsys, *common, "--layer", "0", "--run", "1")[0] == 0
    status, out, err = run(capsys, *common[:5], "status", "--json")
    assert status == 0, err
    assert json.loads(out)["live"]["kernel"]["zero_bits"] == 0


def test_an_abi_1_meta_is_read_then_replaced(
    base: Path, settings: Settings, capsys: pytest.CaptureFixture[str], h: Any, bpftool: str
) -> None:
    """An older hasherd pinned a 48-byte _meta: status reads it (kernel unknown), and the
    next deployment replaces it by a 96-byte one with the kernel."""
    path = settings.map_path + "_meta"
    old = bpf.Map.create(bpf.MAP_ARRAY, 4, META_V1.size, 1, "hasher_meta")
    with old:
        old.update(pins.SLOT, META_V1.pack(3, 0, 1_700_000_000, bytes(32)))
        old.pin(path)
    with pins.open_meta(path, read_only=True) as m:  # type: ignore[union-attr]
        assert pins.read_meta(m) == Meta(3, 0, 1_700_000_000, bytes(32), None)
    common = [
        *("flash", "--config", str(base / "hasherd.toml"), "--map-path", settings.map_path),
        *("--backup-path", str(settings.backup_path), "--validation-mode", "lenient"),
    ]
    assert run(capsys, *common, "--layer", "1", "--job", "0")[0] == 2  # no job 0
    status, _, err = run(capsys, *common, "--layer", "1", "--kernel", "zb=0")
    assert status == 0, err
    (entry,) = h.bpftool_json(bpftool, "map", "dump", "pinned", path)
    raw = h.hex_bytes(entry["value"])
    assert len(raw) == META_SIZE and struct.unpack_from("<I", raw)[0] == 1
    assert struct.unpack_from("<IIII", raw, 48)[:3] == (2, 21, 0)  # ABI 2, passes, zero bits


def test_meta_and_backup_carry_the_kernel_and_read_abi_1(tmp_path: Path) -> None:
    kernel = Kernel(21, 4, 17, "5d" * 32)
    entries = {pack_key(1, 2): bytes(range(56))}
    meta = Meta(3, 1, 1_700_000_000, checksum(entries), kernel)
    raw = meta.to_bytes()
    assert len(raw) == 96 and Meta.from_bytes(raw) == meta
    assert Meta.from_bytes(raw[:48]) == Meta(3, 1, 1_700_000_000, checksum(entries), None)
    assert decode_backup(encode_backup(meta, entries), "b") == (meta, entries)
    # A version-1 backup (64-byte header, no kernel) still restores, its kernel unknown.
    head = BACKUP_HEADER_V1.pack(b"HSHRBAK1", 1, 3, 1, 0, 1_700_000_000, checksum(entries))
    body = b"".join(k + v for k, v in entries.items())
    assert decode_backup(head + body, "old")[0] == replace(meta, kernel=None)
    with pytest.raises(DeployError, match="not 64 hex digits"):
        replace(meta, kernel=replace(kernel, memory_id="mem-1")).to_bytes()
