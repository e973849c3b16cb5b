"""The upstream encoder's output trained for real: each of its formats trains and verifies
(slots >= 2^31 included), an upstream folder loads each record once, ``hasherd export
--format frames`` writes the Go trainer's ``_with_seeds`` file, and its seeds start the
next training (a seed that already wins is stored by the first generation). An unreadable
data directory is one line and exit 2."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from hasherd.cli.main import main
from hasherd.data import load_dataset
from hasherd.kernel.evaluators.base import Evaluator
from tests.helpers import db_rows

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "upstream"
POPULATION = 64
ARGS = ["--epochs", "2", "--population", str(POPULATION), "--difficulty-bits", "8", "--seed", "5"]
WEIGHTS = "SELECT record_id, seed, prefix_bits, generation, epoch FROM weights ORDER BY 1"


def _train(data: Path, db: Path, *extra: str) -> int:
    return main(["train", "--data", str(data), "--db", str(db), *ARGS, *extra])


@pytest.mark.parametrize(
    "name",
    [
        "training_frames.json",
        "training_frames.arrow",
        "training_frames_ipcfile.arrow",
        "training_frames.parquet",
    ],
)
def test_each_encoder_format_trains_and_verifies(
    name: str, tmp_path: Path, numba_eval: Evaluator, capsys: Any
) -> None:
    db = tmp_path / "h.db"
    assert _train(FIXTURES / name, db) == 0
    assert "records with a winner  6 of 6" in capsys.readouterr().out
    slots = [bytes(s) for (s,) in db_rows(db, "SELECT slots FROM weights")]
    assert any(
        int.from_bytes(s[i : i + 4], "little") >= 2**31 for s in slots for i in range(0, 48, 4)
    )
    assert main(["verify", "--db", str(db)]) == 0
    assert "6 agree, 0 differ" in capsys.readouterr().out


def _upstream(tmp_path: Path) -> Path:
    frames = tmp_path / "DATA" / "frames"
    frames.mkdir(parents=True)
    for name in ("training_frames.json", "training_frames.arrow"):
        shutil.copy(FIXTURES / name, frames / name)
    (frames / "training_frames.json.checkpoint.json").write_text("{}")
    return tmp_path / "DATA"


def test_exported_seeds_start_the_next_training(
    tmp_path: Path, numba_eval: Evaluator, capsys: Any
) -> None:
    data, first, second = _upstream(tmp_path), tmp_path / "a.db", tmp_path / "b.db"
    assert _train(data, first) == 0
    err = capsys.readouterr().err
    assert "rows: 6 read, 6 loaded, 0 skipped" in err and "not loaded again" in err
    export = ["export", "--db", str(first), "--format", "frames", "--data", str(data)]
    assert main([*export, "--out", str(data / "frames")]) == 0
    written = data / "frames" / "training_frames_with_seeds.json"
    assert f"6 frames, 6 with a seed -> {written}" in capsys.readouterr().out
    frames = json.loads(written.read_text())
    original = json.loads((FIXTURES / "training_frames.json").read_text())
    assert [{k: v for k, v in f.items() if k != "best_seed"} for f in frames] == original
    trained = {r[0]: r[1] for r in db_rows(first, WEIGHTS)}
    assert [base64.b64decode(f["best_seed"]) for f in frames] == [trained[i] for i in range(1, 7)]

    # The same folder again, into a new database: 6 records (the seeds file is not more
    # records), every record starts with its seed, which wins at once: one generation each.
    assert _train(data, second) == 0
    out = capsys.readouterr()
    assert "rows: 6 read, 6 loaded" in out.err and "6 records start with a given seed" in out.err
    assert f"candidates evaluated   {6 * POPULATION} " in out.out
    weights = db_rows(second, WEIGHTS)
    assert len(weights) == 6 and all(w[3] == 0 and w[4] == 1 for w in weights)
    first_bits = {r[0]: r[2] for r in db_rows(first, WEIGHTS)}
    assert all(w[2] >= first_bits[w[0]] for w in weights)
    assert main(["verify", "--db", str(second)]) == 0

    # Without the seeds the first generation is another one: a run of its own.
    assert _train(data, second, "--no-init-seeds") == 0
    assert "start with a given seed" not in capsys.readouterr().err
    assert len(db_rows(second, "SELECT id FROM runs")) == 2


def test_export_frames_needs_the_data(tmp_path: Path, numba_eval: Evaluator, capsys: Any) -> None:
    db = tmp_path / "h.db"
    assert _train(FIXTURES / "training_frames.parquet", db) == 0
    capsys.readouterr()
    out = tmp_path / "seeded.json"
    assert main(["export", "--db", str(db), "--format", "frames", "--out", str(out)]) == 2
    assert "--data" in capsys.readouterr().err
    data = FIXTURES / "training_frames.parquet"
    args = ["export", "--db", str(db), "--format", "frames", "--data", str(data)]
    assert main([*args, "--layer", "0", "--out", str(out)]) == 2
    assert "--layer" in capsys.readouterr().err
    assert main([*args, "--out", str(out)]) == 0
    frames = json.loads(out.read_text())
    assert len(frames) == 6 and all(len(base64.b64decode(f["best_seed"])) == 32 for f in frames)
    assert min(f["asic_slot_5"] for f in frames) < 0  # int32, as the encoder writes them
    assert load_dataset(out).slots.tolist() == load_dataset(data).slots.tolist()


def _unprivileged(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    """``cmd`` as root without capabilities: file modes apply to it as to any user."""
    drop = ["setpriv", "--bounding-set=-all", "--inh-caps=-all"]
    return subprocess.run([*drop, *cmd], capture_output=True, text=True, timeout=120)


def test_an_unreadable_data_directory_is_exit_2_naming_it() -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    d = Path(tempfile.mkdtemp(prefix="hd-"))
    try:
        locked, folder = d / "locked", d / "DATA" / "frames"
        locked.mkdir(mode=0)
        folder.mkdir(parents=True)
        shutil.copy(FIXTURES / "training_frames.json", folder)
        locked.chmod(0)
        folder.chmod(0o444)  # listed, but not searchable
        probe = _unprivileged(["ls", str(locked)])
        if probe.returncode == 0:
            pytest.skip("dropping capabilities does not restrict this process")
        # One interpreter for both cases: each ``hasherd train`` as ``main`` returns it.
        script = (
            "import sys\nfrom hasherd.cli.main import main\n"
            "for data in sys.argv[2:]:\n"
            "    print(main(['train', '--data', data, '--db', sys.argv[1]]), flush=True)\n"
        )
        cases = (locked, d / "DATA")
        done = _unprivileged([sys.executable, "-c", script, str(d / "h.db"), *map(str, cases)])
        assert done.stdout.split() == ["2", "2"], done.stderr
        assert "Traceback" not in done.stderr
        errors = [line for line in done.stderr.splitlines() if "error:" in line]
        assert errors == [
            f"hasherd train: error: {named}: cannot list the directory (Permission denied)"
            for named in (locked, folder)
        ]
    finally:
        for p in (d / "locked", d / "DATA" / "frames"):
            if p.exists():
                os.chmod(p, 0o755)
        shutil.rmtree(d, ignore_errors=True)
