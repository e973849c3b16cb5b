"""Storage errors name the path and the cause on one line, from real SQLite failures: a
full database, a read-only connection, corrupt pages, a file that is no database."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import pytest

from hasherd.storage import StorageError, Store
from hasherd.storage.errors import from_os_error, from_sqlite, one_line


def _raised(path: Path, sql: str, *, uri: str = "") -> sqlite3.Error:
    conn = sqlite3.connect(f"{path.as_uri()}{uri}" if uri else path, uri=bool(uri))
    try:
        with pytest.raises(sqlite3.Error) as info:
            conn.execute(sql).fetchall()
        return info.value
    finally:
        conn.close()


def _table(path: Path, rows: int = 2000) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, blob BLOB)")
    conn.executemany("INSERT INTO t (blob) VALUES (?)", [(bytes(200),)] * rows)
    conn.commit()
    conn.close()


def test_a_full_database_is_disk_full(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    _table(path, 10)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA max_page_count = 4")  # as a full disk does, SQLite says SQLITE_FULL
    with pytest.raises(sqlite3.Error) as info:
        conn.executemany("INSERT INTO t (blob) VALUES (?)", [(bytes(4000),)] * 10)
    conn.close()
    err = from_sqlite(str(path), info.value)
    assert (err.reason, err.path) == ("disk_full", str(path))
    assert str(err) == f"{path}: disk full (database or disk is full)"


def test_a_write_on_a_read_only_connection_is_a_read_only_database(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    _table(path, 1)
    err = from_sqlite(str(path), _raised(path, "DELETE FROM t", uri="?mode=ro"))
    assert err.reason == "read_only"
    assert str(err) == f"{path}: read-only database (attempt to write a readonly database)"


def test_corrupt_pages_and_a_file_that_is_no_database_are_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    _table(path)
    with path.open("r+b") as f:  # every page after the schema's: the table's b-tree
        f.seek(4096)
        f.write(b"\xa5" * (path.stat().st_size - 4096))
    err = from_sqlite(str(path), _raised(path, "SELECT sum(length(blob)) FROM t"))
    assert err.reason == "corrupt"
    assert str(err) == f"{path}: corrupt database (database disk image is malformed)"
    other = tmp_path / "notes.db"
    other.write_bytes(b"just some notes, not a database\n" * 200)
    err = from_sqlite(str(other), _raised(other, "SELECT * FROM sqlite_master"))
    assert (err.reason, str(err)) == (
        "corrupt",
        f"{other}: corrupt database (file is not a database)",
    )


def test_a_failure_of_the_data_keeps_sqlites_words(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    _table(path, 1)
    err = from_sqlite(str(path), _raised(path, "INSERT INTO t (id) VALUES (1)"))
    assert err.reason is None
    assert str(err) == f"{path}: UNIQUE constraint failed: t.id"


@pytest.mark.parametrize(
    ("code", "reason", "words"),
    [
        (errno.ENOSPC, "disk_full", "disk full"),
        (errno.EROFS, "read_only", "read-only database"),
        (errno.EACCES, "permission_denied", "permission denied"),
        (errno.EIO, "io_error", "I/O error"),
    ],
)
def test_os_errors_name_their_cause(tmp_path: Path, code: int, reason: str, words: str) -> None:
    exc = OSError(code, f"strerror {code}")
    err = from_os_error(str(tmp_path / "h.db"), exc, "cannot open the lock file")
    assert err.reason == reason
    assert str(err) == f"{tmp_path / 'h.db'}: {words} (cannot open the lock file: strerror {code})"


def test_messages_are_one_line() -> None:
    assert one_line("*** in database main ***\nPage 3: never used\n") == (
        "*** in database main *** Page 3: never used"
    )


@pytest.mark.asyncio
async def test_a_full_store_fails_the_write_and_keeps_what_was_committed(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    async with Store.connect(path) as store:
        await store.add_event("kept", {"n": 1})
        pages = await store._fetchall("PRAGMA page_count")
        await store._fetchall(f"PRAGMA max_page_count = {pages[0][0]}")
        with pytest.raises(StorageError) as info:
            await store.add_event("lost", {"blob": "x" * 100_000})
        assert info.value.reason == "disk_full"
        assert str(info.value) == f"{path}: disk full (database or disk is full)"
        assert [e.kind for e in await store.events()] == ["kept"]
        await store._fetchall("PRAGMA max_page_count = 1000000")  # space freed
        await store.add_event("after", {"n": 2})
        assert [e.kind for e in await store.events()] == ["kept", "after"]
