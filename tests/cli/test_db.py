"""``hasherd db stats`` against a real trained database: text, JSON, the config's default
path, and a read beside a process that holds the database's writer lock."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hasherd.cli.main import main
from hasherd.kernel.evaluators.base import Evaluator
from hasherd.storage.lock import DatabaseLock


@pytest.fixture
def trained(tmp_path: Path, numba_eval: Evaluator) -> Path:
    rng = np.random.default_rng(2)
    frames = [
        {
            "feature_vector": rng.integers(0, 2**32, size=12, dtype=np.uint64).tolist(),
            "target_token": int(rng.integers(0, 100_000)),
        }
        for _ in range(12)
    ]
    data, db = tmp_path / "frames.json", tmp_path / "h.db"
    data.write_text(json.dumps(frames))
    args = ["--epochs", "2", "--population", "64", "--difficulty-bits", "9", "--seed", "4"]
    assert main(["train", "--data", str(data), "--db", str(db), *args]) == 0
    return db


def test_stats_as_json_count_every_row(trained: Path, capsys: Any) -> None:
    capsys.readouterr()
    assert main(["db", "stats", "--db", str(trained), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    tables = {t["name"]: t for t in got["tables"]}
    with sqlite3.connect(trained) as conn:
        for name, table in tables.items():
            assert table["rows"] == conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]
    conn.close()
    assert tables["records"]["rows"] == 12 and tables["weights"]["rows"] == 12
    assert tables["seen"]["rows"] == 0 and got["seen_bytes"] <= tables["seen"]["bytes"]
    assert got["file_bytes"] == trained.stat().st_size and got["auto_vacuum"] == "incremental"
    assert sum(t["bytes"] for t in got["tables"]) <= got["pages"] * got["page_size"]


def test_stats_as_text_beside_a_writer_and_from_the_config(
    trained: Path, tmp_path: Path, capsys: Any
) -> None:
    config = tmp_path / "hasherd.toml"
    config.write_text(f'[daemon]\ndatabase = "{trained}"\n')
    capsys.readouterr()
    with DatabaseLock.acquire(trained, "hasherd run"):  # a daemon on it: reading works
        assert main(["db", "stats", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert f"database      {trained}" in out
    assert "auto_vacuum incremental" in out and "seen history" in out
    lines = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    assert lines["records"][1] == "12" and lines["weights"][1] == "12"


def test_stats_of_a_missing_database_is_an_error(tmp_path: Path, capsys: Any) -> None:
    assert main(["db", "stats", "--db", str(tmp_path / "absent.db")]) == 2
    assert "absent.db" in capsys.readouterr().err
    assert not (tmp_path / "absent.db").exists()
