"""Mounting for the tests that need a file system of their own (a small tmpfs to fill, a
read-only bind): root only; a test calls ``need_mounts`` first and is skipped elsewhere."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, timeout=60)


def umount(path: Path) -> None:
    subprocess.run(["umount", str(path)], check=True, capture_output=True, timeout=60)


def need_mounts(where: Path) -> None:
    """Skip the test unless this process may mount (root, and mount(2) permitted)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs or a read-only bind needs root")
    probe = where / "probe"
    probe.mkdir()
    try:
        mount("-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe))
    except subprocess.CalledProcessError as exc:
        probe.rmdir()
        pytest.skip(f"mount is not permitted here: {exc.stderr.strip()}")
    umount(probe)
    probe.rmdir()
