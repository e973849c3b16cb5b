"""What ``hasherd train`` logs: a line per epoch, with ``--verbose`` one per winner, and
never the libraries' debug traces; ``--log-level`` in any case."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from hasherd.cli.main import build_parser, main
from hasherd.kernel.evaluators.base import Evaluator
from tests.helpers import db_rows, frame_rows

WINNER = re.compile(r"DEBUG hasherd\.scheduler\.trainer: winner: record (\d+) \(token (\d+)\)")


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The commands configure the process's loggers; later tests get them back as found."""
    root, own = logging.getLogger(), logging.getLogger("hasherd")
    saved = (list(root.handlers), root.level, own.level)
    yield
    for h in root.handlers:
        if h not in saved[0]:
            h.close()
    root.handlers[:], root.level = saved[0], saved[1]
    own.setLevel(saved[2])


def _train(tmp_path: Path, *words: str) -> tuple[int, Path]:
    data, db = tmp_path / "frames.json", tmp_path / "h.db"
    data.write_text(json.dumps(frame_rows(6, 21)))
    args = ["--epochs", "2", "--population", "32", "--difficulty-bits", "5", "--seed", "1"]
    top = [w for w in words[:2] if w]  # options before the command (--log-level)
    status = main([*top, "train", "--data", str(data), "--db", str(db), *args, *words[2:]])
    return status, db


def test_verbose_shows_epochs_and_winners_not_library_traces(
    tmp_path: Path, numba_eval: Evaluator, capsys: pytest.CaptureFixture[str]
) -> None:
    status, db = _train(tmp_path, "", "", "--verbose")
    err = capsys.readouterr().err
    assert status == 0
    assert "epoch 1: difficulty 5 bits, 6 of 6 records to train" in err
    assert "epoch 1 done: 6 of 6 records hold a winner at 5 bits" in err
    assert "epoch 2 done: 6 of 6 records hold a winner at 6 bits" in err
    events = db_rows(db, "SELECT record_id FROM events WHERE kind = 'winner'")
    assert len(WINNER.findall(err)) == len(events) >= 6  # every record won in epoch 1
    for library in ("aiosqlite", "numba", "asyncio"):
        assert library not in err, library


def test_without_verbose_epochs_only(
    tmp_path: Path, numba_eval: Evaluator, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _ = _train(tmp_path, "", "")
    err = capsys.readouterr().err
    assert status == 0 and "epoch 2 done" in err and not WINNER.search(err)


@pytest.mark.parametrize("level", ["debug", "DEBUG", "Debug"])
def test_log_level_in_any_case_replaces_logging_level(
    tmp_path: Path, numba_eval: Evaluator, capsys: pytest.CaptureFixture[str], level: str
) -> None:
    status, _ = _train(tmp_path, "--log-level", level)
    err = capsys.readouterr().err
    assert status == 0 and WINNER.search(err) and "aiosqlite" not in err


def test_log_level_warning_hides_the_epoch_lines(
    tmp_path: Path, numba_eval: Evaluator, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _ = _train(tmp_path, "--log-level", "warn")
    assert status == 0 and "epoch 1 done" not in capsys.readouterr().err


def test_an_unknown_log_level_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--log-level", "loud", "check-config"])
    assert exit_.value.code == 2 and "--log-level" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("given", "level"), [("info", "INFO"), ("Warn", "WARNING"), ("ERROR", "ERROR")]
)
def test_log_level_is_parsed_in_any_case(given: str, level: str) -> None:
    assert build_parser().parse_args(["--log-level", given, "check-config"]).log_level == level
    assert build_parser().parse_args(["check-config"]).log_level is None  # the root's WARNING
