"""``hasherd validate`` selects by job, run and kernel, finds its database from
``--config``, and never checks zero weights silently: "0 of 0" is an error saying why."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hasherd.cli import cmd_validate
from hasherd.cli import main as cli
from hasherd.config import ValidationConfig
from hasherd.kernel.evaluators.reference import ReferenceEvaluator
from hasherd.storage import Store
from hasherd.storage.selection import NoWeights
from hasherd.validation.core import validate


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A storage.base_path whose hasherd.db a real ``hasherd train`` (zero_bits 0) wrote,
    given only ``--config``."""
    d = tmp_path_factory.mktemp("sel")
    rng = np.random.default_rng(3)
    frames = [
        {
            "feature_vector": rng.integers(0, 2**32, size=12, dtype=np.uint64).tolist(),
            "target_token": int(rng.integers(0, 1000)),
        }
        for _ in range(6)
    ]
    (d / "f.json").write_text(json.dumps(frames))
    (d / "h.toml").write_text(f'[storage]\nbase_path = "{d}"\n')
    cmd = [sys.executable, "-m", "hasherd.cli.main", "train", "--data", str(d / "f.json")]
    cmd += ["--config", str(d / "h.toml"), "--difficulty-bits", "5", "--epochs", "1"]
    cmd += ["--seed", "1", "--evaluator", "reference", "--population", "16"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    return d


def _hasherd(monkeypatch: pytest.MonkeyPatch, *argv: Any) -> int:
    if cmd_validate not in cli.COMMANDS:
        monkeypatch.setattr(cli, "COMMANDS", (*cli.COMMANDS, cmd_validate))
    return cli.main([str(a) for a in argv])


def test_validate_by_kernel_from_the_config_database(
    base: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    sides = ["--config", base / "h.toml", "--evaluator", "reference", "--against", "reference"]
    assert _hasherd(monkeypatch, "validate", *sides, "--kernel", "zb=0/p=21", "--seed", 1) == 0
    out = capsys.readouterr().out
    assert "reference against reference: 6 of 6 weights checked" in out
    assert _hasherd(monkeypatch, "validate", *sides, "--kernel", "zb=3") == 2
    err = capsys.readouterr().err
    assert err.startswith("hasherd validate: error: weights: no weights for kernel zb=3; ")
    assert "stored: zb=0/p=21/tb=17/mem=" in err and "(6)" in err


@pytest.mark.anyio
async def test_a_job_of_another_kernel_is_no_silent_zero(base: Path, tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    src, dst = sqlite3.connect(base / "hasherd.db"), sqlite3.connect(db)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()
    async with Store.connect(db) as store:
        before = len(await store.validations())
        other = json.dumps({"training": {"passes": 21, "zero_bits": 4, "token_bits": 17}})
        run = await store.create_run(1, other, "zb4", 9, "{}")
        job = await store.add_job("zb4", "/data", {"zero_bits": 4})
        await store.move_job(job.id, "running", run_id=run, dataset_id=1)
        ref = ReferenceEvaluator()
        with pytest.raises(NoWeights) as caught:
            await validate(store, ref, ref, config=ValidationConfig(), job_id=job.id)
        assert str(caught.value).startswith(
            f"weights: job {job.id} (run {run}) has no weights for kernel zb=4/p=21/tb=17/mem="
        )
        assert "(no record won yet)" in str(caught.value)
        assert len(await store.validations()) == before  # nothing checked, nothing stored
