"""``hasherd bench --records R``: the trainer's call shape (R records per ``evaluate_many``
call), its counts and its refusals (never its speed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from hasherd.backends import bench
from hasherd.cli.cmd_bench import format_against
from hasherd.cli.main import main
from hasherd.errors import InputError
from hasherd.kernel.evaluators.base import EvalRequest, EvalResult
from hasherd.kernel.evaluators.numba_cpu import NumbaEvaluator
from tests.kernel.test_bench import _check_report
from tests.kernel.test_bench_hashcat import CAPTURED, _fake_hashcat


def test_batches_are_distinct_records_of_their_kind() -> None:
    cfg = bench.BenchConfig(memory_frames=200, records_per_call=8)
    wl = bench.make_workload(cfg)
    misses, hits = wl.batches["miss"], wl.batches["zone1_hit"]
    assert misses.shape == hits.shape == (8, 12)
    # The first record of each kind is the one-record run's record.
    one = bench.make_workload(bench.BenchConfig(memory_frames=200))
    assert np.array_equal(misses[0], one.records["miss"])
    assert np.array_equal(hits[0], one.records["zone1_hit"])
    assert np.array_equal(one.batches["miss"], one.records["miss"][np.newaxis, :])
    assert len({r.tobytes() for r in misses}) == 8
    assert len({r.tobytes() for r in hits}) == 8
    for miss, hit in zip(misses, hits, strict=True):
        assert not wl.memory.zone1(int(miss[0]))[1]
        assert wl.memory.zone1(int(hit[0]))[1]


def test_more_records_than_frames_repeat_frames() -> None:
    wl = bench.make_workload(bench.BenchConfig(memory_frames=3, records_per_call=5))
    assert wl.batches["zone1_hit"].shape == (5, 12)
    assert len({r.tobytes() for r in wl.batches["miss"]}) == 5


def test_library_run_records(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[int]] = []
    original = NumbaEvaluator.evaluate_many

    def evaluate_many(ev: NumbaEvaluator, reqs: Sequence[EvalRequest]) -> list[EvalResult]:
        calls.append([r.n for r in reqs])
        return original(ev, reqs)

    monkeypatch.setattr(NumbaEvaluator, "evaluate_many", evaluate_many)
    cfg = bench.BenchConfig(seconds=0.3, population=16, records_per_call=3, evaluators=("numba:1",))
    rep = bench.run(cfg).to_dict()
    _check_report(rep, ["numba:1"], 0)  # per candidate: 22 dsha (miss), 14 (zone-1 hit)
    assert rep["config"]["records_per_call"] == 3
    assert rep["config"]["shape"] == "3 records x 16"
    entry = rep["evaluators"]["numba:1"]
    for fig in (entry, entry["zone1_hit"]):
        assert fig["records_per_call"] == 3
        assert fig["population"] == 16
        assert fig["candidates_per_call"] == 48
        assert fig["calls"] >= 3  # at least one per round
    # Every call of the measured evaluator is one evaluate_many of 3 records of 16.
    assert calls and all(call == [16, 16, 16] for call in calls)
    # The baseline is cut to one record per call, as before.
    assert rep["baseline"]["records_per_call"] == 1
    json.dumps(rep)


def test_one_record_is_todays_shape(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["bench", "--seconds", "0.1", "--population", "16", "--evaluator", "numba:1"]
    assert main([*args, "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["config"]["records_per_call"] == 1
    assert rep["config"]["shape"] == "1 record x 16"
    assert rep["evaluators"]["numba:1"]["candidates_per_call"] == 16
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "median round; population 16, zero_bits 0" in out
    assert "records x" not in out


def test_cli_table_names_the_shape(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["bench", "--seconds", "0.1", "--population", "16", "--records", "4"]
    assert main([*args, "--evaluator", "numba:1", "--memory-frames", "50"]) == 0
    out = capsys.readouterr().out
    assert "4 records x 16 candidates per call (evaluate_many)" in out
    assert "baseline population: " in out and " of one record " in out


def test_against_hashcat_names_the_shape(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bindir = _fake_hashcat(tmp_path, f"cat '{CAPTURED}'\n")
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    args = ["bench", "--seconds", "0.1", "--population", "16", "--records", "2"]
    assert main([*args, "--evaluator", "numba:1", "--against", "hashcat", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    against = rep["against"]
    assert against["records_per_call"] == 2 and against["shape"] == "2 records x 16"
    hc = against["hashcat"]["compressions_per_s"]
    for rec, fig in against["evaluators"]["numba:1"].items():
        ev = rep["evaluators"]["numba:1"]
        nominal = (ev if rec == "miss" else ev["zone1_hit"])["compressions_per_s"]
        assert fig["ratio"] == pytest.approx(nominal / hc)
    text = "\n".join(format_against(against))
    assert "numba:1 miss (2 records x 16):" in text


@pytest.mark.parametrize("value", ["0", "-1", "4097"])
def test_cli_bad_records(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--seconds", "0.1", "--records", value]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hasherd bench: error:") and "records_per_call" in err


@pytest.mark.parametrize("value", ["x", "1.5"])
def test_cli_records_not_an_integer(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--records", value])
    assert exc.value.code == 2
    assert "argument --records: invalid int value" in capsys.readouterr().err


def test_bad_records_exit_status_of_the_command() -> None:
    """The installed command's exit status, in a process of its own."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    cmd = [sys.executable, "-m", "hasherd.cli.main", "bench", "--records", "0"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2
    assert "records_per_call" in proc.stderr and proc.stdout == ""


def test_too_many_candidates_per_call(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(InputError, match="records_per_call"):
        bench.BenchConfig(population=4096, records_per_call=257).validate()
    assert main(["bench", "--population", "4096", "--records", "257"]) == 2
    assert "candidates per call" in capsys.readouterr().err
