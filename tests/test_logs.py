"""journald-native logging: under systemd (``JOURNAL_STREAM`` naming the output stream)
every line carries its syslog priority and no timestamp; anywhere else nothing changes."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import pytest

from hasherd import config
from hasherd.cli.main import failed
from hasherd.errors import ConfigError
from hasherd.logs import journal_prefix, journal_stream, setup_logging, syslog_priority

STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ ")


def stream_id(stream: TextIO) -> str:
    """The ``JOURNAL_STREAM`` value systemd would set for ``stream``."""
    st = os.fstat(stream.fileno())
    return f"{st.st_dev}:{st.st_ino}"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Puts back ``sys.excepthook`` (the root logger's handlers and levels are put back
    after every test by ``tests/conftest.py``'s ``own_logging``)."""
    saved = sys.excepthook
    try:
        yield
    finally:
        sys.excepthook = saved


@pytest.fixture
def stderr_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restore_logging: None
) -> Iterator[TextIO]:
    """A real file standing in for stderr (journald's stream is a socket; any file has a
    device and an inode). Tests install it with ``setup_on``: pytest's capture sets
    ``sys.stderr`` again between a fixture and the test."""
    with (tmp_path / "stderr").open("w+") as stream:
        yield stream


def setup_on(stream: TextIO, cfg: config.Config) -> None:
    """``setup_logging`` with ``stream`` as stderr."""
    saved, sys.stderr = sys.stderr, stream
    try:
        setup_logging(cfg)
    finally:
        sys.stderr = saved


def log_some(stream: TextIO, cfg: config.Config) -> None:
    setup_on(stream, cfg)
    log = logging.getLogger("hasherd.test")
    log.debug("counting %d", 1)
    log.info("running")
    log.warning("slow device")
    log.error("storage failed")
    try:
        raise ValueError("bad value")
    except ValueError:
        log.exception("job crashed")


def lines(stream: TextIO) -> list[str]:
    for handler in logging.getLogger().handlers:
        handler.flush()
    stream.seek(0)
    return stream.read().splitlines()


DEBUG_TEXT = config.from_mapping({"logging": {"level": "debug"}}, "test")


def test_priorities_of_the_logging_levels() -> None:
    levels = [logging.CRITICAL, logging.ERROR, logging.WARNING, logging.INFO, logging.DEBUG]
    assert [syslog_priority(level) for level in levels] == [2, 3, 4, 6, 7]
    assert syslog_priority(25) == 6 and syslog_priority(45) == 3  # between two levels


def test_under_journald_each_line_carries_its_priority_and_no_timestamp(
    stderr_file: TextIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", stream_id(stderr_file))
    log_some(stderr_file, DEBUG_TEXT)
    out = lines(stderr_file)
    assert out[:4] == [
        "<7>DEBUG hasherd.test: counting 1",
        "<6>INFO hasherd.test: running",
        "<4>WARNING hasherd.test: slow device",
        "<3>ERROR hasherd.test: storage failed",
    ]
    # the traceback's lines too: journald stores each line as an entry of its own
    assert out[4] == "<3>ERROR hasherd.test: job crashed"
    assert out[5] == "<3>Traceback (most recent call last):"
    assert out[-1] == "<3>ValueError: bad value"
    assert all(line.startswith("<3>") for line in out[4:])


def test_json_lines_under_journald_keep_their_object(
    stderr_file: TextIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", stream_id(stderr_file))
    setup_on(stderr_file, config.from_mapping({"logging": {"format": "json"}}, "test"))
    logging.getLogger("hasherd.test").error("storage failed")
    (line,) = lines(stderr_file)
    assert line.startswith("<3>{")
    assert json.loads(line[3:])["message"] == "storage failed"


def test_outside_systemd_the_lines_are_unchanged(stderr_file: TextIO) -> None:
    assert "JOURNAL_STREAM" not in os.environ
    log_some(stderr_file, DEBUG_TEXT)
    out = lines(stderr_file)
    assert STAMP.match(out[0]) and out[0].endswith(" DEBUG hasherd.test: counting 1")
    assert STAMP.match(out[3]) and out[3].endswith(" ERROR hasherd.test: storage failed")
    assert not any(line.startswith("<") for line in out)
    assert sys.excepthook.__name__ != "_journal_excepthook"


def test_an_inherited_journal_stream_for_another_stream_is_ignored(
    stderr_file: TextIO, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child of the service whose stderr goes elsewhere inherits the variable: systemd
    says to compare the device and inode, not only to look for the variable."""
    with (tmp_path / "journal").open("w") as journal:
        monkeypatch.setenv("JOURNAL_STREAM", stream_id(journal))
        assert journal_stream(journal) and not journal_stream(stderr_file)
        log_some(stderr_file, DEBUG_TEXT)
    assert STAMP.match(lines(stderr_file)[0])


@pytest.mark.parametrize("value", ["", "12", "a:b", "1:", ":2", "1:2:3"])
def test_a_malformed_journal_stream_is_ignored(
    value: str, stderr_file: TextIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", value)
    assert not journal_stream(stderr_file)
    assert journal_prefix(logging.ERROR, stderr_file) == ""


def test_a_closed_stream_is_not_the_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = (tmp_path / "closed").open("w")
    monkeypatch.setenv("JOURNAL_STREAM", stream_id(stream))
    assert journal_stream(stream)
    stream.close()
    assert not journal_stream(stream)


def command_error(stream: TextIO) -> str:
    """What ``hasherd check-config`` prints on a broken file (``main.failed``, as under
    ``ExecReload=``), with ``stream`` as stderr."""
    saved, sys.stderr = sys.stderr, stream
    try:
        status = failed("check-config", ConfigError("training.epochs", "must be >= 1"))
    finally:
        sys.stderr = saved
    assert status == 2
    stream.seek(0)
    return stream.read()


def test_a_command_error_under_journald_is_stored_at_priority_err(
    stderr_file: TextIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by ``journalctl -p err``: a refused ``systemctl reload`` says why there."""
    monkeypatch.setenv("JOURNAL_STREAM", stream_id(stderr_file))
    assert command_error(stderr_file) == (
        "<3>hasherd check-config: error: training.epochs: must be >= 1\n"
    )


def test_a_command_error_outside_systemd_is_unchanged(stderr_file: TextIO) -> None:
    assert command_error(stderr_file) == (
        "hasherd check-config: error: training.epochs: must be >= 1\n"
    )
