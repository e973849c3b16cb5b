"""``hasherd bench``: structure and consistency of the report (never its speed)."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from hasherd.backends import bench
from hasherd.cli.main import main
from hasherd.errors import EvaluatorError, InputError
from hasherd.kernel import spec

RATES = ("candidates_per_s", "dsha_per_s", "compressions_per_s")


def _positive(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def _check_figures(fig: dict[str, Any], record: str, zero_bits: int, shortcut: bool) -> None:
    for key in RATES:
        assert _positive(fig[key]), (key, fig[key])
    per_cand = fig["dsha_per_s"] / fig["candidates_per_s"]
    if zero_bits == 0:
        assert 14 - 1e-9 <= per_cand <= 22 + 1e-9
        full = record == "miss" or not shortcut
        assert per_cand == pytest.approx(22.0 if full else 14.0)
        assert fig["compressions_per_s"] == pytest.approx(3 * fig["dsha_per_s"])
    else:
        assert per_cand >= 14
        assert fig["nonces_per_s"] == fig["dsha_per_s"]


def _check_entry(entry: dict[str, Any], base: dict[str, Any] | None, zero_bits: int) -> None:
    shortcut = entry["evaluator"].startswith("numba")
    for record, fig in (("miss", entry), ("zone1_hit", entry["zone1_hit"])):
        _check_figures(fig, record, zero_bits, shortcut)
        if base is None:
            assert "ratio_to_baseline" not in fig
            continue
        base_fig = base if record == "miss" else base["zone1_hit"]
        want = fig["candidates_per_s"] / base_fig["candidates_per_s"]
        assert fig["ratio_to_baseline"] == pytest.approx(want)
    assert entry["threads"] >= 1
    assert entry["startup_s"] >= 0
    assert entry["startup_kind"] in ("none", "compile", "cache load", "already loaded")


def _check_report(rep: dict[str, Any], names: list[str], zero_bits: int) -> None:
    assert list(rep)[:2] == ["baseline", "evaluators"]
    assert rep["baseline"]["evaluator"] == "reference"
    assert rep["baseline"]["threads"] == 1
    _check_entry(rep["baseline"], None, zero_bits)
    assert list(rep["evaluators"]) == names
    for entry in rep["evaluators"].values():
        _check_entry(entry, rep["baseline"], zero_bits)
    assert rep["config"]["zero_bits"] == zero_bits
    assert "no zone-1 shortcut" in rep["config"]["records"]["miss"]
    assert _positive(rep["peak_rss_mib"])
    assert rep["cpu"]["cpu_count"] >= 1
    steal = rep["cpu"]["steal_percent"]
    assert steal is None or 0 <= steal <= 100


def test_library_run_k0() -> None:
    cfg = bench.BenchConfig(seconds=0.3, population=32, evaluators=("numba:1",))
    rep = bench.run(cfg).to_dict()
    _check_report(rep, ["numba:1"], 0)
    assert rep["evaluators"]["numba:1"]["threads"] == 1
    assert 1 <= rep["baseline"]["population"] <= 32
    json.dumps(rep)  # plain JSON types only


def test_library_run_zero_bits() -> None:
    cfg = bench.BenchConfig(seconds=0.15, population=4, zero_bits=2, evaluators=("numba",))
    rep = bench.run(cfg).to_dict()
    _check_report(rep, ["numba"], 2)


def test_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--seconds", "0.3", "--population", "32", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    _check_report(rep, list(bench.DEFAULT_EVALUATORS), 0)
    assert rep["evaluators"]["numba:1"]["threads"] == 1
    assert rep["config"]["population"] == 32


def test_cli_table(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["bench", "--seconds", "0.1", "--population", "16", "--evaluator", "numba:1"]
    assert main([*args, "--memory-frames", "50"]) == 0
    out = capsys.readouterr().out
    words = ("reference", "numba:1", "zone-1 hit", "no zone-1 shortcut", "peak RSS")
    for word in words:
        assert word in out


@pytest.mark.parametrize(
    "extra",
    [
        ["--seconds", "0"],
        ["--seconds", "-1"],
        ["--seconds", "nan"],
        ["--population", "0"],
        ["--population", "4097"],
        ["--zero-bits", "-1"],
        ["--zero-bits", "33"],
        ["--memory-frames", "0"],
        ["--evaluator", "nosuch"],
        ["--evaluator", "numba:x"],
    ],
)
def test_cli_bad_arguments(extra: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hasherd bench: error:")


def test_bad_config_raises() -> None:
    with pytest.raises(InputError, match="population"):
        bench.run(bench.BenchConfig(population=5000))
    with pytest.raises(EvaluatorError):
        bench.run(bench.BenchConfig(seconds=0.1, evaluators=("nosuch",)))


def test_workload_records() -> None:
    wl = bench.make_workload(bench.BenchConfig(memory_frames=200))
    frames = wl.memory.frames
    assert frames.shape == (200, spec.N_SLOTS)
    miss, hit = wl.records["miss"], wl.records["zone1_hit"]
    assert not wl.memory.zone1(int(miss[0]))[1]
    assert wl.memory.zone1(int(hit[0]))[1]
    assert set((frames[:, 4] & 0xFF).tolist()) <= set(range(bench.WORD_CLASSES))
    assert set(((frames[:, 10] >> 12) & 0xF).tolist()) <= set(bench.DOMAINS)
    # The miss record's zone-2 group is populated, like a real record's.
    ranges = wl.memory.zone2_ranges(int(miss[4]))
    q = (int(miss[10]) >> 12) & 0xF
    assert ranges[16 + q] > ranges[q]
    assert np.array_equal(
        wl.records["miss"],
        bench.make_workload(bench.BenchConfig(memory_frames=200)).records["miss"],
    )


def test_steal_percent() -> None:
    assert bench.steal_percent((10, 1000), (30, 1200)) == pytest.approx(10.0)
    assert bench.steal_percent(None, (1, 2)) is None
    assert bench.steal_percent((5, 100), (5, 100)) is None
