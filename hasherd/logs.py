"""Logging setup from the ``logging`` config section (shared by the commands and the
daemon): level, text or JSON lines, stdout/stderr or a file with rotation and retention."""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import sys
import time
from pathlib import Path

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


def setup_logging(cfg: Config, verbose: bool = False) -> None:
    """Apply the ``logging`` section: level, format, output, rotation and retention."""
    lc = cfg.logging
    level = lc.level.upper()
    level = {"WARN": "WARNING"}.get(level, level)
    handler: logging.Handler
    if lc.output in ("stdout", "stderr"):
        handler = logging.StreamHandler(sys.stdout if lc.output == "stdout" else sys.stderr)
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
    fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    handler.setFormatter(JsonFormatter() if lc.format == "json" else logging.Formatter(fmt))
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
