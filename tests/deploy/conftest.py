"""Fixtures for the deploy tests: a bpffs mounted in a temporary directory, a database
trained by the real ``hasherd train`` (reference evaluator, low difficulty), bpftool.

These tests need root (bpf(2), mount(2)); as another user they are skipped. A missing
bpftool fails the tests that dump maps with it: run tools/install-system-deps.sh.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hasherd.deploy.engine import Settings

LAYER_SIZE = 1000
RECORDS = 24


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("BPF maps and bpffs mounts need root (CAP_BPF, CAP_SYS_ADMIN)")


@pytest.fixture
def h() -> Any:
    """This module's helpers, for the tests (conftest is not importable by name)."""
    return sys.modules[__name__]


def mount_bpffs(d: Path) -> None:
    subprocess.run(["mount", "-t", "bpf", "bpf", str(d)], check=True, capture_output=True)


def umount(d: Path) -> None:
    subprocess.run(["umount", str(d)], check=True, capture_output=True)


@pytest.fixture
def bpffs(tmp_path: Path) -> Iterator[Path]:
    """A fresh bpffs, mounted on tmp_path/bpf for the test and unmounted after it."""
    need_root()
    d = tmp_path / "bpf"
    d.mkdir()
    mount_bpffs(d)
    try:
        yield d
    finally:
        umount(d)


@pytest.fixture
def bpftool() -> str:
    path = shutil.which("bpftool")
    if path is None and os.access("/usr/sbin/bpftool", os.X_OK):  # root's PATH, not ours
        path = "/usr/sbin/bpftool"
    if path is None:
        pytest.fail("bpftool is missing: run tools/install-system-deps.sh (as root)")
    return path


def _dataset(path: Path) -> Path:
    rng = np.random.default_rng(7)
    frames = [
        {
            "feature_vector": rng.integers(0, 2**32, size=12, dtype=np.uint64).tolist(),
            "target_token": int(rng.integers(0, 2 * LAYER_SIZE)),
        }
        for _ in range(RECORDS)
    ]
    path.write_text(json.dumps(frames))
    return path


@pytest.fixture(scope="session")
def trained_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database from a real (short) training run: two layers, some weights validated."""
    d = tmp_path_factory.mktemp("trained")
    cfg = d / "train.toml"
    cfg.write_text(f"[training]\nvalidation_split = 0.5\n[storage]\nlayer_size = {LAYER_SIZE}\n")
    db = d / "h.db"
    cmd = [
        sys.executable,
        "-m",
        "hasherd.cli.main",
        "train",
        "--data",
        str(_dataset(d / "f.json")),
        "--db",
        str(db),
        "--config",
        str(cfg),
        "--difficulty-bits",
        "6",
        "--epochs",
        "1",
        "--population",
        "16",
        "--seed",
        "5",
        "--evaluator",
        "reference",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode in (0, 1), done.stderr
    return db


@pytest.fixture
def db(trained_db: Path, tmp_path: Path) -> Path:
    """A copy of the trained database for one test (deployments add events)."""
    copy = tmp_path / "h.db"
    src = sqlite3.connect(trained_db)
    dst = sqlite3.connect(copy)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()
    return copy


@pytest.fixture
def settings(bpffs: Path, tmp_path: Path) -> Settings:
    return Settings(
        str(bpffs / "hasher_weights"),
        str(tmp_path / "backups"),
        timeout=60.0,
        max_retries=2,
        retry_delay=0.01,
    )


# -- what the database says, read with plain SQL (not through hasherd.deploy) -------------


def expected_layer(
    db: Path, layer: int, *, strict: bool = False, min_fitness: float | None = None
) -> dict[tuple[int, int], tuple[Any, ...]]:
    """{(token_id, context_key): (seed, output, golden_nonce, prefix_bits, generation,
    fitness as f32, flags)} for the layer's deployable weights."""
    con = sqlite3.connect(db)
    try:
        rows = con.execute(
            "SELECT token_id, context_key, seed, output, golden_nonce, prefix_bits, generation,"
            " fitness, validation FROM weights WHERE layer = ? AND validation != ?",
            (layer, "non-deterministic"),
        ).fetchall()
    finally:
        con.close()
    out = {}
    for tok, ctx, seed, output, nonce, bits, gen, fitness, validation in rows:
        if strict and validation != "validated":
            continue
        if min_fitness is not None and fitness < min_fitness:
            continue
        f32 = struct.unpack("<f", struct.pack("<f", fitness))[0]
        flags = int(validation == "validated")
        out[(tok, ctx)] = (bytes(seed), output, nonce, bits, gen, f32, flags)
    return out


def decode_value(raw: bytes) -> tuple[Any, ...]:
    return struct.unpack("<32sIIIIfI", raw)


def bpftool_json(tool: str, *args: str) -> Any:
    done = subprocess.run([tool, *args, "-j"], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def hex_bytes(items: list[str]) -> bytes:
    return bytes(int(x, 16) for x in items)


def dump_live(tool: str, map_path: Path) -> dict[tuple[int, int], tuple[Any, ...]]:
    """The live layer as bpftool sees it: the outer map's slot, then that inner map."""
    outer = bpftool_json(tool, "map", "dump", "pinned", str(map_path))
    assert len(outer) == 1 and hex_bytes(outer[0]["key"]) == bytes(4)
    (inner_id,) = struct.unpack("<I", hex_bytes(outer[0]["value"]))
    return dump_id(tool, inner_id)


def dump_id(tool: str, map_id: int) -> dict[tuple[int, int], tuple[Any, ...]]:
    entries = bpftool_json(tool, "map", "dump", "id", str(map_id))
    return {
        struct.unpack("<II", hex_bytes(e["key"])): decode_value(hex_bytes(e["value"]))
        for e in entries
    }
