"""``hasherd bench --against hashcat``: hashcat's output parsed, its absence named.

Nothing here runs hashcat's benchmark (minutes, and not installed everywhere): the parser
reads a real captured ``hashcat -b -m 21400 -D 1`` output, and a fake ``hashcat`` on PATH
stands in for output the parser must refuse.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from hasherd.backends import bench, hashcat
from hasherd.cli.cmd_bench import format_against
from hasherd.cli.main import main
from hasherd.errors import EvaluatorError, InputError

CAPTURED = Path(__file__).resolve().parents[1] / "data" / "hashcat-bench-m21400-pocl.txt"


def test_parse_captured_output() -> None:
    text = CAPTURED.read_text()
    figs = hashcat.parse_output(text, ("hashcat", *hashcat.ARGS))
    assert figs.hashes_per_s == pytest.approx(30355.4e3)
    assert figs.compressions_per_s == pytest.approx(2 * 30355.4e3)
    assert figs.version == "v6.2.6"
    assert figs.devices == (
        "pthread-skylake-avx512-AMD EPYC, 10996/22057 MB (4096 MB allocatable), 2MCU",
    )
    assert figs.to_dict()["mode"] == 21400


@pytest.mark.parametrize(
    ("line", "want"),
    [
        ("Speed.#1.........:   123 H/s (1.0ms)", 123.0),
        ("Speed.#1.........: 56.5 MH/s (64ms) @ Accel:1024", 56.5e6),
        ("Speed.#2.........: 1.5 GH/s (64ms)", 1.5e9),
    ],
)
def test_parse_units(line: str, want: float) -> None:
    assert hashcat.parse_speed(line) == pytest.approx(want)


def test_parse_several_devices_takes_the_total() -> None:
    text = "Speed.#1.........: 10.0 MH/s (1ms)\nSpeed.#2.........: 5.0 MH/s (1ms)\n"
    assert hashcat.parse_speed(text) == pytest.approx(15e6)
    text += "Speed.#*.........: 15.5 MH/s\n"
    assert hashcat.parse_speed(text) == pytest.approx(15.5e6)


def test_unparsable_output_is_an_error() -> None:
    text = CAPTURED.read_text().replace("Speed.#1", "Velocity")
    with pytest.raises(EvaluatorError, match=r"no 'Speed\.#' line"):
        hashcat.parse_output(text, ("hashcat",))


def _fake_hashcat(tmp_path: Path, script: str) -> Path:
    path = tmp_path / "hashcat"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return tmp_path


def test_run_parses_and_refuses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bindir = _fake_hashcat(tmp_path, f"cat '{CAPTURED}'\n")
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    figs = hashcat.run()
    assert figs.hashes_per_s == pytest.approx(30355.4e3)
    assert figs.command[1:] == hashcat.ARGS
    _fake_hashcat(tmp_path, "echo 'No OpenCL installation found'\nexit 255\n")
    with pytest.raises(EvaluatorError, match=r"exit status 255.*No OpenCL"):
        hashcat.run()
    _fake_hashcat(tmp_path, "echo 'benchmark done'\n")
    with pytest.raises(EvaluatorError, match=r"no 'Speed\.#' line"):
        hashcat.run()


def test_missing_hashcat(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no hashcat
    with pytest.raises(EvaluatorError, match=r"not installed.*make bench-deps"):
        hashcat.find_binary()
    assert main(["bench", "--seconds", "0.1", "--against", "hashcat"]) == 2
    err = capsys.readouterr().err
    assert "hashcat" in err and "not installed" in err


def test_unknown_reference() -> None:
    with pytest.raises(InputError, match="against"):
        bench.BenchConfig(against="john").validate()


def test_report_against_hashcat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bindir = _fake_hashcat(tmp_path, f"cat '{CAPTURED}'\n")
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    cfg = bench.BenchConfig(seconds=0.1, population=16, evaluators=("numba:1",), against="hashcat")
    rep = bench.run(cfg).to_dict()
    hc = rep["against"]["hashcat"]
    assert hc["compressions_per_s"] == pytest.approx(2 * 30355.4e3)
    assert hc["runs_hashes_per_s"] == pytest.approx([30355.4e3, 30355.4e3])  # before, after
    mine = rep["against"]["evaluators"]["numba:1"]
    for rec, fig in mine.items():
        ev = rep["evaluators"]["numba:1"]
        nominal = (ev if rec == "miss" else ev["zone1_hit"])["compressions_per_s"]
        assert fig["compressions_per_s"] == pytest.approx(nominal)
        assert fig["ratio"] == pytest.approx(nominal / hc["compressions_per_s"])
        # The kernel hoists pass-invariant rounds: it performs less than the nominal work.
        assert 0 < fig["performed_compressions_per_s"] < nominal
        assert fig["compressions_per_cpu_s"] > 0
        # As the function counts them: 66 a candidate at P = 21, skipped passes included.
        function = (ev if rec == "miss" else ev["zone1_hit"])["candidates_per_s"] * 66
        assert fig["function_compressions_per_candidate"] == 66
        assert fig["function_compressions_per_s"] == pytest.approx(function)
        assert fig["function_ratio"] == pytest.approx(function / hc["compressions_per_s"])
        if rec == "miss":  # every pass hashed: the two counts agree
            assert fig["function_compressions_per_s"] == pytest.approx(nominal)
        else:  # passes 0..7 skipped: 14 of 22 double SHA-256 hashed
            assert fig["dsha_per_candidate"] == 14
            assert fig["function_compressions_per_s"] == pytest.approx(nominal * 22 / 14)
    text = "\n".join(format_against(rep["against"]))
    assert "x hashcat" in text and "numba:1 miss" in text
    assert "as the function counts them (66 a candidate)" in text
    assert "(14.0 double SHA-256 a candidate)" in text and "(22.0 double SHA-256" in text


def test_bracket_is_the_mean_of_the_runs() -> None:
    runs = [
        hashcat.parse_output(f"Speed.#1.........: {v} MH/s (1ms)", ("hashcat",)) for v in (10, 30)
    ]
    both = hashcat.bracket(runs)
    assert both.hashes_per_s == pytest.approx(20e6)
    assert both.to_dict()["runs_hashes_per_s"] == pytest.approx([10e6, 30e6])
    with pytest.raises(EvaluatorError, match="no benchmark run"):
        hashcat.bracket([])
