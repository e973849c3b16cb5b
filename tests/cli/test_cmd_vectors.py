"""``hasherd vectors check``: exit status, table, JSON and error messages."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hasherd import backends
from hasherd.cli.main import main
from hasherd.kernel.vectors import KERNEL_SECTIONS

VECTORS = Path(__file__).parents[1] / "data" / "kernel-v1.json"
DATA: dict[str, Any] = json.loads(VECTORS.read_text())
KERNEL_JSON = {s: {"passed": len(DATA[s]), "failed": 0} for s in KERNEL_SECTIONS}


def write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "vectors.json"
    path.write_text(json.dumps(data))
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(["vectors", "check", *args])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.slow  # the numba evaluator compiles on its first use on a machine
@pytest.mark.timeout(300)
def test_shipped_file_passes_every_available_evaluator(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, str(VECTORS), "--json")
    assert status == 0
    loop = {"loop": {"passed": len(DATA["loop"]), "failed": 0}}
    names = backends.available()
    assert {"reference", "numba"} <= set(names)
    expected = {"kernel": KERNEL_JSON, **{name: loop for name in names}}
    assert json.loads(out) == {"evaluators": expected}


def test_table_output(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, str(VECTORS), "--evaluator", "reference")
    assert (status, err) == (0, "")
    rows = [line.split() for line in out.splitlines()]
    assert ["reference", "loop", str(len(DATA["loop"])), "0", "0"] in rows
    assert ["kernel", "jitter", str(len(DATA["jitter"])), "0", "0"] in rows
    assert out.rstrip().endswith("all cases passed")


def test_kernel_alone_checks_only_the_kernel_sections(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, _ = run(capsys, str(VECTORS), "-e", "kernel", "--json")
    assert status == 0
    assert json.loads(out) == {"evaluators": {"kernel": KERNEL_JSON}}


def test_corrupted_loop_case_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = copy.deepcopy(DATA)
    data["loop"][9]["output"] ^= 1 << 31
    path = str(write(tmp_path, data))
    status, out, _ = run(capsys, path, "-e", "reference", "--json")
    assert status == 1
    loop = {"passed": len(DATA["loop"]) - 1, "failed": 1}
    assert json.loads(out) == {"evaluators": {"kernel": KERNEL_JSON, "reference": {"loop": loop}}}

    status, out, _ = run(capsys, path, "-e", "reference")
    assert status == 1
    expected, got = data["loop"][9]["output"], DATA["loop"][9]["output"]
    assert "reference loop: 1 failed; first: loop[9]" in out
    assert "  field:    output\n" in out
    assert f"  expected: {expected} (0x{expected:08x})\n" in out
    assert f"  got:      {got} (0x{got:08x})\n" in out
    assert out.rstrip().endswith("FAILED: 1 case(s)")


def test_mismatched_bytes_are_shown_in_hex(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = copy.deepcopy(DATA)
    data["header"][2]["header"] = "00" * 80
    status, out, _ = run(capsys, str(write(tmp_path, data)), "-e", "kernel")
    assert status == 1
    assert "kernel header: 1 failed; first: header[2]" in out
    assert f"  expected: {'00' * 80}\n" in out
    assert f"  got:      {DATA['header'][2]['header']}\n" in out


def _set(section: str, index: int, key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(data: dict[str, Any]) -> None:
        data[section][index][key] = value

    return mutate


def _seed_31(data: dict[str, Any]) -> None:
    data["loop"][3]["seed"] = data["loop"][3]["seed"][:62]


def _slots_11(data: dict[str, Any]) -> None:
    data["header"][1]["slots"] = data["header"][1]["slots"][:11]


def _slot_2_32(data: dict[str, Any]) -> None:
    data["loop"][2]["slots"][5] = 2**32


def _bad_frame(data: dict[str, Any]) -> None:
    data["jitter"][2]["memory"][1] = [1, 2]


def _short_trace(data: dict[str, Any]) -> None:
    data["loop"][1]["pass_keys"].pop()


def _no_epoch(data: dict[str, Any]) -> None:
    del data["dds"][0]["epoch"]


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda d: d.update(spec="hasher-kernel/2"), "spec: expected 'hasher-kernel/1'"),
        (lambda d: d.pop("spec"), "spec: expected 'hasher-kernel/1', got None"),
        (lambda d: d.update(extra=[]), "unknown top-level key 'extra'"),
        (lambda d: d.pop("loop"), "missing section 'loop'"),
        (lambda d: d.update(dds={}), "dds: expected a list of cases, got dict"),
        (_seed_31, "loop[3].seed: expected 32 bytes, got 31"),
        (_set("loop", 0, "seed", "zz" * 32), "loop[0].seed: expected a lowercase hex"),
        (_slots_11, "header[1].slots: expected 12 values, got 11"),
        (_slot_2_32, "loop[2].slots[5]: 4294967296 is outside 0..4294967295"),
        (_set("loop", 4, "zero_bits", 33), "loop[4].zero_bits: 33 is outside 0..32"),
        (_set("loop", 0, "passes", 0), "loop[0].passes: 0 is outside 1..65536"),
        (_bad_frame, "jitter[2].memory[1]: expected 12 values, got 2"),
        (_short_trace, "loop[1].pass_keys: expected 21 values (one a pass), got 20"),
        (_no_epoch, "dds[0].epoch: missing"),
        (_set("dds", 1, "epochs", 2), "dds[1].epochs: unknown field"),
        (_set("reward", 0, "expect", {}), "reward[0].expect.target_word: missing"),
        (_set("advantage", 2, "rewards", [0.1]), "advantage[2].advantages: expected 1 values"),
        (_set("jitter", 0, "found", 1), "jitter[0].found: expected true or false, got int"),
        (_set("header", 0, "note", 5), "header[0].note: expected a string, got int"),
    ],
)
def test_malformed_file_exits_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    mutate: Callable[[dict[str, Any]], object],
    problem: str,
) -> None:
    data = copy.deepcopy(DATA)
    mutate(data)
    path = write(tmp_path, data)
    status, out, err = run(capsys, str(path), "-e", "reference", "--json")
    assert (status, out) == (2, "")
    assert err.startswith(f"hasherd vectors: error: {path}: {problem}")


def test_not_json_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "v.json"
    path.write_text('{"spec": "hasher-kernel/1",')
    status, _, err = run(capsys, str(path))
    assert status == 2
    assert f"{path}: not JSON" in err


def test_unknown_evaluator_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, str(VECTORS), "-e", "reference", "-e", "nope")
    assert (status, out) == (2, "")
    assert "evaluator 'nope': unknown; known kinds:" in err


def test_vectors_needs_a_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["vectors"])
    assert info.value.code == 2
    assert "{check}" in capsys.readouterr().err
