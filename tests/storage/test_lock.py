"""One writer per database: the lock file beside it, real flocks, real processes."""

from __future__ import annotations

import fcntl
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from hasherd.storage import StorageError, Store
from hasherd.storage.lock import DatabaseInUse, DatabaseLock, Holder, lock_path, read_holder
from hasherd.storage.migrations import migrations, newest_version

HOLD = (
    "import sys, time\n"
    "from pathlib import Path\n"
    "from hasherd.storage.lock import DatabaseLock\n"
    "lock = DatabaseLock.acquire(Path(sys.argv[1]), 'hasherd train --db ' + sys.argv[1])\n"
    "print('held', flush=True)\n"
    "time.sleep(600)\n"
)


def test_a_second_writer_is_refused_naming_the_holder(tmp_path: Path) -> None:
    db = tmp_path / "sub" / "h.db"
    with DatabaseLock.acquire(db, "hasherd train --db h.db") as lock:
        assert lock.held and lock_path(db) == tmp_path / "sub" / "h.db.lock"
        assert read_holder(db) == Holder(os.getpid(), "hasherd train --db h.db")
        with pytest.raises(DatabaseInUse) as info:
            DatabaseLock.acquire(db, "hasherd run")
        assert info.value.reason == "in_use" and info.value.path == str(db)
        assert str(info.value) == (
            f"{db}: already in use by pid {os.getpid()} (hasherd train --db h.db)"
        )
        assert read_holder(db) == Holder(os.getpid(), "hasherd train --db h.db")  # untouched
    assert not lock.held
    with DatabaseLock.acquire(db, "hasherd run", "/run/hasherd/control.sock"):
        assert read_holder(db) == Holder(os.getpid(), "hasherd run", "/run/hasherd/control.sock")
    assert not db.exists()  # the lock never creates the database itself


def test_every_path_to_one_database_meets_the_same_lock(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    db = tmp_path / "real" / "h.db"
    db.touch()
    (tmp_path / "link.db").symlink_to(db)
    (tmp_path / "dir").symlink_to(tmp_path / "real")
    with DatabaseLock.acquire(db, "hasherd run"):
        for other in (tmp_path / "link.db", tmp_path / "dir" / "h.db"):
            with pytest.raises(DatabaseInUse, match=r"\(hasherd run\)$"):
                DatabaseLock.acquire(other, "hasherd train")
    assert not (tmp_path / "link.db.lock").exists()


def test_the_kernel_releases_the_lock_of_a_killed_holder(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(db)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        with pytest.raises(DatabaseInUse) as info:
            DatabaseLock.acquire(db, "hasherd train")
        assert info.value.holder == Holder(holder.pid, f"hasherd train --db {db}")
        assert f"already in use by pid {holder.pid} (hasherd train --db {db})" in str(info.value)
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        with DatabaseLock.acquire(db, "the next writer"):
            assert read_holder(db) == Holder(os.getpid(), "the next writer")
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


def test_a_record_left_by_a_dead_process_is_not_taken_for_the_holder(tmp_path: Path) -> None:
    """A refused writer names only a holder that runs: the record of a process that has
    died (the kernel released its lock) is not the holder's."""
    db = tmp_path / "h.db"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    lock_path(db).write_text(Holder(int(dead.stdout), "hasherd train").to_json())
    fd = os.open(lock_path(db), os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # held, but its holder has not written itself yet
        with pytest.raises(DatabaseInUse) as info:
            DatabaseLock.acquire(db, "hasherd train")
        assert info.value.holder is None
        assert "already in use by another process (which did not say)" in str(info.value)
    finally:
        os.close(fd)


def test_a_lock_file_that_cannot_be_created_is_a_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the database's directory should be")
    with pytest.raises(StorageError) as info:
        DatabaseLock.acquire(blocker / "h.db", "hasherd train")
    assert str(info.value).startswith(f"{blocker / 'h.db'}: ")
    assert "cannot open the lock file" in str(info.value) and "\n" not in str(info.value)


def _old_schema(path: Path) -> None:
    """A database one schema version behind this hasherd's, as an older one left it."""
    conn = sqlite3.connect(path)
    try:
        for m in migrations()[:-1]:
            for statement in m.statements:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {newest_version() - 1}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.commit()
    finally:
        conn.close()


def _version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


@pytest.mark.asyncio
async def test_a_reader_never_writes_and_migrates_only_under_the_lock(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    async with Store.connect(db):
        pass
    async with await Store.open_reader(db) as store:
        assert await store.weights() == []
        with pytest.raises(StorageError, match="readonly"):
            await store.add_event("note", {})
    assert not lock_path(db).exists()  # readers take no lock
    old = tmp_path / "old.db"
    _old_schema(old)
    in_use = pytest.raises(DatabaseInUse, match=r"already in use by pid \d+ \(hasherd run\)")
    with DatabaseLock.acquire(old, "hasherd run"), in_use:
        await Store.open_reader(old)
    assert _version(old) == newest_version() - 1
    async with await Store.open_reader(old, command="hasherd export") as store:
        assert await store.weights() == []
    assert _version(old) == newest_version()
    assert read_holder(old) == Holder(os.getpid(), "hasherd export")
