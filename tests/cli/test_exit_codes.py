"""Exit codes at the command boundary: a HasherError is one line and exit 2 even when an
anyio task group wraps it, and storage failures met for real (a full tmpfs, a read-only
mount, a file another user owns, corrupt pages) read as one line naming the path and the
cause. The same command resumes once space is freed, with an uninterrupted run's weights.

The mounts need root (mount(2)); elsewhere those tests are skipped.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hasherd.cli.main import failed
from hasherd.errors import InputError, first_hasher_error
from hasherd.kernel.evaluators.base import Evaluator
from hasherd.storage import StorageError
from tests.helpers import HASHERD, db_rows, write_frames
from tests.mounts import mount, need_mounts, umount

ARGS = ["--epochs", "2", "--population", "64", "--difficulty-bits", "9", "--seed", "11"]
# tmpfs sizes tried in turn: the run must stop on a full disk after its first weights.
SIZES = ("256k", "384k", "512k", "768k", "1m", "1536k", "2m", "3m")
WEIGHTS = "SELECT record_id, seed, output, golden_nonce, prefix_bits FROM weights ORDER BY 1"


# -- the boundary ---------------------------------------------------------------------


def test_a_hasher_error_inside_task_groups_is_one_line_and_exit_2(capsys: Any) -> None:
    inner = StorageError("/x/h.db", "disk full (database or disk is full)", "disk_full")
    group = BaseExceptionGroup("outer", [ExceptionGroup("inner", [inner])])
    assert first_hasher_error(group) is inner
    assert failed("train", group) == 2
    assert capsys.readouterr().err == (
        "hasherd train: error: /x/h.db: disk full (database or disk is full)\n"
    )
    assert failed("export", InputError("--layer", "negative")) == 2
    assert capsys.readouterr().err == "hasherd export: error: --layer: negative\n"


def test_an_interrupt_in_a_group_is_130_and_a_bug_keeps_its_traceback() -> None:
    assert failed("train", BaseExceptionGroup("g", [KeyboardInterrupt()])) == 130
    bug = ExceptionGroup("g", [ZeroDivisionError("a bug")])
    with pytest.raises(ExceptionGroup) as info:
        failed("train", bug)
    assert info.value is bug


# -- storage errors met for real ------------------------------------------------------


def _dataset(path: Path, n: int = 24) -> Path:
    write_frames(path, n, 5)
    path.chmod(0o644)
    return path


def _train(
    data: Path, db: Path, *, user: int | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    as_user = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] if user else []
    cmd = [*as_user, *HASHERD, "train", "--data", str(data), "--db", str(db), *ARGS]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


def _error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The command's one error line: the last line, the only one that says error."""
    assert "Traceback" not in done.stderr and "ExceptionGroup" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert [line for line in lines if "error" in line] == lines[-1:], done.stderr
    return lines[-1]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def mounts(tmp_path: Path) -> Iterator[list[Path]]:
    """Mount points the test fills; each is unmounted in the teardown."""
    need_mounts(tmp_path)
    points: list[Path] = []
    try:
        yield points
    finally:
        for point in reversed(points):
            umount(point)


@pytest.fixture(scope="module")
def trained(numba_eval: Evaluator) -> Iterator[tuple[Path, Path]]:
    """(dataset, database) of an uninterrupted run on a roomy disk."""
    d = Path(tempfile.mkdtemp(prefix="hd-"))
    try:
        data, db = _dataset(d / "frames.json"), d / "h.db"
        done = _train(data, db)
        assert done.returncode == 0, done.stderr
        yield data, db
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _fill_mid_run(data: Path, mnt: Path) -> subprocess.CompletedProcess[str]:
    """Train onto a tmpfs too small for the run: at the first size in SIZES where the run
    stops on a full disk after committing some weights (the tmpfs is left that size)."""
    db = mnt / "h.db"
    for size in SIZES:
        for f in mnt.iterdir():
            f.unlink()
        mount("-o", f"remount,size={size}", str(mnt))
        done = _train(data, db)
        assert done.returncode in (0, 2), done.stderr
        if done.returncode == 0:
            pytest.fail(f"the whole run fits in {size}: no size in {SIZES} fills the disk")
        if db.exists() and db_rows(db, "SELECT count(*) FROM weights")[0][0] > 0:
            return done
    pytest.fail(f"no size in {SIZES} lets a weight be committed before the disk fills")


@pytest.mark.timeout(600)
def test_a_full_disk_is_one_line_exit_2_and_the_same_command_resumes(
    tmp_path: Path, mounts: list[Path], trained: tuple[Path, Path]
) -> None:
    data, roomy = trained
    mnt = tmp_path / "small"
    mnt.mkdir()
    mount("-t", "tmpfs", "-o", f"size={SIZES[0]}", "tmpfs", str(mnt))
    mounts.append(mnt)
    db = mnt / "h.db"
    full = _fill_mid_run(data, mnt)
    assert full.returncode == 2
    # SQLite's words in the parentheses vary with the file it could not grow.
    assert _error_line(full).startswith(f"hasherd train: error: {db}: disk full (")
    assert db_rows(db, "PRAGMA integrity_check") == [("ok",)]
    stored = db_rows(db, WEIGHTS)
    verify = subprocess.run(
        [*HASHERD, "verify", "--db", str(db)], capture_output=True, text=True, timeout=300
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert f"{len(stored)} agree, 0 differ" in verify.stdout  # every stored weight intact
    mount("-o", "remount,size=64m", str(mnt))  # space freed
    done = _train(data, db)
    assert done.returncode == 0, done.stderr
    assert "(resumed), finished" in done.stdout
    assert db_rows(db, WEIGHTS) == db_rows(roomy, WEIGHTS)
    assert len(db_rows(db, "SELECT id FROM runs")) == 1


def test_a_read_only_mount_is_one_line_and_exit_2(
    tmp_path: Path, mounts: list[Path], trained: tuple[Path, Path]
) -> None:
    data, roomy = trained
    d = tmp_path / "d"
    d.mkdir()
    shutil.copy(roomy, d / "h.db")
    ro = tmp_path / "ro"
    ro.mkdir()
    mount("--bind", str(d), str(ro))
    mounts.append(ro)
    mount("-o", "remount,bind,ro", str(ro))
    db = ro / "h.db"
    done = _train(data, db)
    assert done.returncode == 2
    assert _error_line(done) == (
        f"hasherd train: error: {db}: read-only file system "
        f"(cannot open the lock file {db}.lock: Read-only file system)"
    )
    # Only the file read-only: the lock is taken beside it, the database is refused.
    db = d / "h.db"
    mount("--bind", str(db), str(db))
    mounts.append(db)
    mount("-o", "remount,bind,ro", str(db))
    digest = _sha(db)
    done = _train(data, db)
    assert done.returncode == 2
    assert _error_line(done) == (
        f"hasherd train: error: {db}: read-only file system "
        "(cannot open for writing: Read-only file system)"
    )
    assert _sha(db) == digest


def test_a_database_of_another_user_is_permission_denied(trained: tuple[Path, Path]) -> None:
    if os.geteuid() != 0:
        pytest.skip("running a command as another user needs root")
    data, roomy = trained
    d = Path(tempfile.mkdtemp(prefix="hd-", dir="/tmp"))  # a path nobody may traverse
    try:
        d.chmod(0o755)
        shutil.copy(data, d / "frames.json")
        shutil.copy(roomy, d / "h.db")
        (d / "h.db.lock").touch()
        cache = d / "numba-cache"  # numba's cache beside the package is root's
        cache.mkdir(mode=0o777)
        cache.chmod(0o777)
        env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
        done = _train(d / "frames.json", d / "h.db", user=65534, env=env)
        assert done.returncode == 2
        assert _error_line(done) == (
            f"hasherd train: error: {d / 'h.db'}: permission denied "
            f"(cannot open the lock file {d / 'h.db.lock'}: Permission denied)"
        )
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_corrupt_pages_are_one_line_and_exit_2(tmp_path: Path, trained: tuple[Path, Path]) -> None:
    data, roomy = trained
    db = tmp_path / "h.db"
    shutil.copy(roomy, db)
    page = int(db_rows(db, "PRAGMA page_size")[0][0])
    with db.open("r+b") as f:  # every page after the first (the schema's)
        f.seek(page)
        f.write(bytes((i * 131 + 7) % 256 for i in range(db.stat().st_size - page)))
    digest = _sha(db)
    done = _train(data, db)
    assert done.returncode == 2
    assert _error_line(done).startswith(f"hasherd train: error: {db}: corrupt database (")
    export = subprocess.run(
        [*HASHERD, "export", "--db", str(db), "--format", "json", "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert export.returncode == 2
    assert _error_line(export).startswith(f"hasherd export: error: {db}: corrupt database (")
    assert _sha(db) == digest
