"""hashcat as a reference point for ``hasherd bench --against hashcat``.

The question the comparison answers: does hasherd's kernel use this CPU as well as a
mature, hand-tuned SHA-256 cracker does? hashcat has no mode for a 3-block Bitcoin-header
double SHA-256; the closest is mode 21400, ``sha256(sha256_bin($pass))``. Its benchmark
(``hashcat -b -m 21400 -D 1``: CPU devices only, through an OpenCL runtime such as PoCL)
uses short passwords, so each hash is 2 SHA-256 compressions: one for the padded password
block, one for the 32-byte binary digest. Both sides are therefore compared in
compressions per second, counted nominally (a compression is one 64-byte block, however
much of its work an implementation folds away: hashcat's brute-force kernel precomputes
the message words that never change, hasherd's kernel hoists the pass-invariant rounds).

hashcat is an optional benchmark dependency (``make bench-deps``); nothing here runs
without it, and a missing binary or output without a speed line is an
``EvaluatorError`` naming what went wrong, never a made-up figure.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

from hasherd.errors import EvaluatorError

NAME = "hashcat"
MODE = 21400
COMPRESSIONS_PER_HASH = 2  # sha256(pass) + sha256(32-byte digest), short passwords
ARGS = ("-b", "-m", str(MODE), "-D", "1")
TIMEOUT_S = 900.0  # the first run compiles its OpenCL kernels (about two minutes here)
INSTALL_HINT = "install it with `make bench-deps` (Debian: hashcat pocl-opencl-icd)"

_UNITS = {"": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
# "Speed.#1.........: 30355.4 kH/s (64.13ms) @ Accel:1024 ..."; "Speed.#*" is the total
# over several devices, printed only when there are several.
_SPEED = re.compile(r"^Speed\.#(\d+|\*)\.*:\s*([0-9.]+)\s*([kMGT]?)H/s", re.MULTILINE)
_DEVICE = re.compile(r"^\* Device #\d+: (.+)$", re.MULTILINE)
_VERSION = re.compile(r"^hashcat \((v[^)]+)\)", re.MULTILINE)


@dataclass(frozen=True)
class HashcatFigures:
    """One hashcat benchmark: its speed and where it ran."""

    hashes_per_s: float
    devices: tuple[str, ...]
    version: str | None
    command: tuple[str, ...]
    runs_hashes_per_s: tuple[float, ...] = ()  # each run's figure, when several were taken

    @property
    def compressions_per_s(self) -> float:
        return COMPRESSIONS_PER_HASH * self.hashes_per_s

    def to_dict(self) -> dict[str, Any]:
        return {
            "command": " ".join(self.command),
            "version": self.version,
            "devices": list(self.devices),
            "mode": MODE,
            "hashes_per_s": self.hashes_per_s,
            "runs_hashes_per_s": list(self.runs_hashes_per_s or (self.hashes_per_s,)),
            "compressions_per_hash": COMPRESSIONS_PER_HASH,
            "compressions_per_s": self.compressions_per_s,
        }


def parse_speed(text: str) -> float:
    """Hashes per second from ``hashcat -b`` output: the ``Speed.#*`` total when there is
    one, else the sum of the per-device ``Speed.#N`` lines."""
    found = _SPEED.findall(text)
    if not found:
        raise EvaluatorError(NAME, "no 'Speed.#' line in its benchmark output")
    total = [float(v) * _UNITS[u] for dev, v, u in found if dev == "*"]
    if total:
        return total[-1]
    return sum(float(v) * _UNITS[u] for _, v, u in found)


def parse_output(text: str, command: tuple[str, ...]) -> HashcatFigures:
    """The figures of one ``hashcat -b`` run from its standard output."""
    version = _VERSION.search(text)
    return HashcatFigures(
        hashes_per_s=parse_speed(text),
        devices=tuple(d.strip() for d in _DEVICE.findall(text)),
        version=version.group(1) if version else None,
        command=command,
    )


def find_binary(binary: str = NAME) -> str:
    """The path of the hashcat binary; an EvaluatorError when there is none."""
    path = shutil.which(binary)
    if path is None:
        raise EvaluatorError(NAME, f"{binary!r} is not installed (not on PATH); {INSTALL_HINT}")
    return path


def run(binary: str = NAME, timeout: float = TIMEOUT_S) -> HashcatFigures:
    """Run ``hashcat -b -m 21400 -D 1`` and parse its speed."""
    command = (find_binary(binary), *ARGS)
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise EvaluatorError(NAME, f"benchmark did not finish within {timeout:.0f} s") from exc
    except OSError as exc:
        raise EvaluatorError(NAME, f"cannot run {command[0]}: {exc}") from exc
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise EvaluatorError(
            NAME, f"exit status {proc.returncode} from {' '.join(command)}: {' / '.join(tail)}"
        )
    return parse_output(proc.stdout, tuple(command))


def bracket(runs: list[HashcatFigures]) -> HashcatFigures:
    """One figure from runs taken before and after hasherd's measurements: their mean.

    On a shared machine the other load changes within seconds; hashcat measured on both
    sides of hasherd's rounds sees what they saw, on average, rather than one moment."""
    if not runs:
        raise EvaluatorError(NAME, "no benchmark run to report")
    speeds = tuple(r.hashes_per_s for r in runs)
    first = runs[0]
    return HashcatFigures(
        sum(speeds) / len(speeds), first.devices, first.version, first.command, speeds
    )
