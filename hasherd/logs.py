"""Logging setup from the ``logging`` config section (shared by the commands and the
daemon): level, text or JSON lines, stdout/stderr or a file with rotation and retention.

Under systemd, when the output stream is journald's (``JOURNAL_STREAM``), every line
starts with its syslog priority (``<3>`` for an error, sd-daemon(3)) and carries no
timestamp of its own: journald stores the priority (``journalctl -p err``) and stamps each
entry itself. Anywhere else the lines are unchanged."""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import sys
import time
import traceback
from pathlib import Path
from types import TracebackType
from typing import TextIO

from hasherd.config import Config
from hasherd.errors import ConfigError


class JsonFormatter(logging.Formatter):
    """One JSON object a line (logging.format = "json")."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "at": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


# syslog(3) priorities for the logging levels, highest first: journald reads one from a
# "<N>" prefix on each line of a stream it collects (sd-daemon(3), SyslogLevelPrefix=).
SYSLOG_PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4))
PRIORITY_INFO = 6
PRIORITY_DEBUG = 7
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
PLAIN_FORMAT = "%(levelname)s %(name)s: %(message)s"


def syslog_priority(levelno: int) -> int:
    """The syslog priority of a logging level (NOTICE has no logging level: INFO is 6)."""
    for threshold, priority in SYSLOG_PRIORITIES:
        if levelno >= threshold:
            return priority
    return PRIORITY_INFO if levelno >= logging.INFO else PRIORITY_DEBUG


def journal_stream(stream: TextIO) -> bool:
    """Whether ``stream`` is the journald stream systemd connected to the service.

    systemd sets ``JOURNAL_STREAM=<device>:<inode>`` of that stream (systemd.exec(5)).
    The variable is inherited by children whose output goes elsewhere (a pipe, a file),
    so only a stream with the same device and inode counts."""
    dev, sep, ino = os.environ.get("JOURNAL_STREAM", "").partition(":")
    if not (sep and dev.isdigit() and ino.isdigit()):
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError):  # closed, or no file descriptor (io.UnsupportedOperation)
        return False
    return (st.st_dev, st.st_ino) == (int(dev), int(ino))


def journal_prefix(levelno: int, stream: TextIO | None = None) -> str:
    """``"<N>"`` for a line written straight to ``stream`` (stderr by default) when journald
    collects it, else ``""``: for messages printed outside logging (a command's error)."""
    journal = journal_stream(sys.stderr if stream is None else stream)
    return f"<{syslog_priority(levelno)}>" if journal else ""


class JournalFormatter(logging.Formatter):
    """Another formatter's text with the record's priority on each of its lines.

    journald splits a stream into one entry per line, so a traceback's lines carry the
    prefix too: otherwise they would be stored at the default priority, away from their
    error in ``journalctl -p err``."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{syslog_priority(record.levelno)}>"
        lines = self.inner.format(record).splitlines() or [""]
        return "\n".join(prefix + line for line in lines)


def _journal_excepthook(
    kind: type[BaseException], exc: BaseException, tb: TracebackType | None
) -> None:
    """An uncaught exception's traceback at priority 2 (critical), line by line."""
    for chunk in traceback.format_exception(kind, exc, tb):
        for line in chunk.splitlines():
            sys.stderr.write(f"<2>{line}\n")
    sys.stderr.flush()


def stream_formatter(fmt: str, stream: TextIO, text_format: str = TEXT_FORMAT) -> logging.Formatter:
    """The formatter for a stream handler: as configured, or its journald form (and then
    uncaught tracebacks get their priority too)."""
    journal = journal_stream(stream)
    inner = (
        JsonFormatter()
        if fmt == "json"
        else logging.Formatter(PLAIN_FORMAT if journal else text_format)
    )
    if not journal:
        return inner
    sys.excepthook = _journal_excepthook
    return JournalFormatter(inner)


def setup_basic_logging(level: str | None) -> None:
    """The commands' logging before any config is read: plain lines on stderr, library
    debug traces kept out (``set_levels``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(stream_formatter("text", sys.stderr, PLAIN_FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
    if level is not None:  # None: no --log-level, the config's level comes later
        set_levels(level)


def setup_logging(cfg: Config, verbose: bool = False) -> None:
    """Apply the ``logging`` section: level, format, output, rotation and retention."""
    lc = cfg.logging
    level = lc.level.upper()
    level = {"WARN": "WARNING"}.get(level, level)
    handler: logging.Handler
    if lc.output in ("stdout", "stderr"):
        stream = sys.stdout if lc.output == "stdout" else sys.stderr
        handler = logging.StreamHandler(stream)
        handler.setFormatter(stream_formatter(lc.format, stream))
    else:
        path = Path(lc.output)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            _expire_backups(path, lc.max_age)
            handler = logging.handlers.RotatingFileHandler(
                path, maxBytes=lc.max_size * 1024 * 1024, backupCount=lc.max_backups
            )
        except OSError as exc:
            raise ConfigError("logging.output", f"cannot open {path}: {exc.strerror}") from None
        text = logging.Formatter(TEXT_FORMAT)
        handler.setFormatter(JsonFormatter() if lc.format == "json" else text)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    set_levels(level, verbose)


def set_levels(level: str, verbose: bool = False) -> None:
    """hasherd's own loggers at ``level`` (DEBUG with ``verbose``), the libraries' at
    ``level`` but never below INFO: their DEBUG output (aiosqlite's trace of every SQL
    statement, numba's compiler, asyncio's selector) would bury the epoch and winner
    lines. Above DEBUG, hasherd's loggers simply follow the root's level."""
    number = logging.getLevelNamesMapping()[level]
    debug = verbose or number <= logging.DEBUG
    logging.getLogger("hasherd").setLevel(logging.DEBUG if debug else logging.NOTSET)
    logging.getLogger().setLevel(max(number, logging.INFO))


def _expire_backups(path: Path, max_age_days: int) -> None:
    """Delete rotated files (``name.1``, ``name.2``, ...) older than ``max_age`` days."""
    if max_age_days <= 0:
        return
    cutoff = time.time() - max_age_days * 86400
    for old in path.parent.glob(path.name + ".*"):
        if old.suffix.lstrip(".").isdigit() and old.stat().st_mtime < cutoff:
            os.unlink(old)
