"""What every chip-chain driver shares: the ``ChipChain`` protocol the ``asic:`` backend
drives, the ``Driver`` each driver module exports as ``DRIVER``, the neutral settings a
chain is opened with, and the types both drivers report in.

A driver module (``devices/bm1370.py``, ``devices/s3.py``) holds its chain class, its own
config checks and how ``hasherd emulate`` runs its emulator; ``devices/registry.py`` names
the module. Nothing here imports serial or USB code, nor the config: the config and the
backends hand a driver plain values (``ChainSettings``, a ``ChipTable``).
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeVar

from hasherd.errors import HasherError, InputError

if TYPE_CHECKING:
    import argparse

__all__ = [
    "NONCE_SPACE",
    "ChainError",
    "ChainSettings",
    "ChainStats",
    "ChipChain",
    "ChipStats",
    "ChipTable",
    "Driver",
    "EmulatorCommand",
    "MineResult",
    "Problem",
    "SweepBound",
    "collect",
    "covered_prefix",
]

T = TypeVar("T")

NONCE_SPACE = 1 << 32

Problem = tuple[str, str]  # (key, what is wrong with its value), as config errors name them


class ChainError(HasherError):
    """The chain did not answer as expected (no chips, wrong chip ID, a bad argument)."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"chain {path}: {problem}")


@dataclass(frozen=True, slots=True)
class SweepBound:
    """What one job covers and how long it may take: each chip sweeps ``nonces_per_chip``
    nonces of its share (0: the whole share, ``2^32 // chips``, as silicon does) within
    ``seconds``; after that, ``quiet`` seconds with no response end the job. ``max_wait``
    caps the whole wait (a chain that never stops talking)."""

    nonces_per_chip: int
    seconds: float
    quiet: float = 0.05
    max_wait: float = 30.0

    def __post_init__(self) -> None:
        if not 0 <= self.nonces_per_chip <= NONCE_SPACE:
            raise InputError("nonces_per_chip", f"{self.nonces_per_chip} is outside 0..2^32")
        if not (self.seconds >= 0 and self.quiet > 0 and self.max_wait >= self.seconds):
            raise InputError("sweep bound", "needs seconds >= 0, quiet > 0, max_wait >= seconds")


@dataclass(frozen=True, slots=True)
class ChainSettings:
    """How to open a chain, whatever its driver: the sweep bound, the chips' hard-wired
    zero bits, the chip count to insist on (None: as many as answer), a baud rate to
    switch to after init (None: stay), and how long a quiet line ends enumeration. A
    driver ignores what its chip has no use for; its ``check`` refuses what it cannot do."""

    bound: SweepBound
    base_zero_bits: int = 32
    expected_chips: int | None = None
    baud: float | None = None
    enumerate_quiet: float = 0.2


class ChipTable(Protocol):
    """What a driver's ``check`` reads of a chain's settings: a ``[[devices.chips]]`` table
    (``baud`` 0 = none) or the ``ChainSettings`` of an ``asic:`` evaluator (None = none)."""

    @property
    def baud(self) -> float | None: ...


def covered_prefix(chips: int, nonces_per_chip: int) -> int:
    """How many nonces from n0 on, in scan order, a job covers without a gap: chip i
    sweeps ``[i * floor(2^32 / chips), + nonces_per_chip)`` of the offsets."""
    share = NONCE_SPACE // chips
    prefix = 0
    for i in range(chips):
        start = i * share
        if start > prefix:
            break
        prefix = max(prefix, start + nonces_per_chip)
    return min(prefix, NONCE_SPACE)


async def collect(
    read: Callable[[float], Awaitable[bytes]],
    feed: Callable[[bytes], list[T]],
    timeouts: tuple[type[Exception], ...],
    quiet: float,
    max_wait: float,
    until: float | None = None,
    enough: Callable[[list[T]], bool] = lambda out: False,
) -> list[T]:
    """What ``feed`` decodes of the bytes ``read(timeout)`` returns, until ``quiet`` s of
    silence (and not before ``until``, monotonic), ``max_wait`` s in all, or until
    ``enough`` of it came. A ``timeouts`` error from ``read`` is silence."""
    out: list[T] = []
    stop = time.monotonic() + max_wait
    while not enough(out):
        now = time.monotonic()
        wait = quiet if until is None or now >= until else max(quiet, until - now)
        wait = min(wait, max(0.0, stop - now))
        if wait <= 0:
            return out
        try:
            data = await read(wait)
        except timeouts:
            if until is None or time.monotonic() >= until:
                return out
            continue
        out += feed(data)
    return out


@dataclass
class ChipStats:
    """Per chip: nonces hashed, valid nonces, invalid ones (hardware errors), duplicates
    dropped."""

    address: int
    hashes: int = 0
    nonces: int = 0
    invalid: int = 0
    duplicates: int = 0


@dataclass
class ChainStats:
    """The chain's counters. CRC errors, garbage and unknown frames come from the response
    decoder: a frame that fails its CRC cannot be attributed to a chip (its bytes are not
    trustworthy), so they are chain-wide. ``stale`` counts nonces for another job ID."""

    chips: list[ChipStats] = field(default_factory=list)
    jobs: int = 0
    crc_errors: int = 0
    garbage_bytes: int = 0
    unknown_frames: int = 0
    stale: int = 0
    unexpected: int = 0  # register frames or 9-byte nonces while mining

    @property
    def invalid(self) -> int:
        return sum(c.invalid for c in self.chips)

    @property
    def duplicates(self) -> int:
        return sum(c.duplicates for c in self.chips)


@dataclass(frozen=True, slots=True)
class MineResult:
    """One job: the valid nonces as ``(chip index, nonce)`` in scan order from n0."""

    job_id: int
    found: tuple[tuple[int, int], ...]
    swept: int  # nonces the chain hashed (chips * nonces_per_chip)
    lost: int = 0  # frames that failed their CRC (or were unknown) while it ran


class ChipChain(Protocol):
    """An initialised chain, as the ``asic:`` backend drives it: one job per ``mine``."""

    @property
    def chips(self) -> int:
        """Chips that answered at init."""
        ...

    async def mine(self, header: bytes, zero_bits: int) -> MineResult:
        """One job for the 80-byte ``header`` (its nonce is where the scan starts), its
        sweep waited out; every returned nonce was verified on the host."""
        ...

    def window_at(self, n0: int) -> int:
        """How many nonces from ``n0`` on, in scan order, one job covers without a gap:
        only a first nonce inside it is proven first."""
        ...

    def stats(self) -> ChainStats:
        """The live counters (copy to keep)."""
        ...

    async def close(self) -> None:
        """Release the link; the chain is unusable afterwards."""
        ...


class EmulatorCommand(Protocol):
    """The module behind ``hasherd emulate NAME``: the subcommand's description, its
    options, and the handler that serves the emulator until a signal (exit status)."""

    DESCRIPTION: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


def _no_problems(table: ChipTable) -> list[Problem]:
    return []


@dataclass(frozen=True)
class Driver:
    """A chip family, as its module exports it (``DRIVER``) for the registry.

    ``open(path, settings)`` opens the link and initialises the chain (closing the link on
    failure). ``check`` returns the ``(key, problem)`` of every setting the chip cannot
    honour, for the config validator and the ``asic:`` backend alike. ``emulator`` names
    the module of ``hasherd emulate NAME`` (None: no emulator), imported only when the CLI
    asks (:meth:`emulator_command`).
    """

    name: str
    description: str
    open: Callable[[str, ChainSettings], Awaitable[ChipChain]]
    check: Callable[[ChipTable], list[Problem]] = _no_problems
    emulator: str | None = None

    def emulator_command(self) -> EmulatorCommand:
        """The ``hasherd emulate`` module of this chip; InputError when it has none."""
        if self.emulator is None:
            raise InputError("driver", f"{self.name} has no emulator")
        module: EmulatorCommand = importlib.import_module(self.emulator)
        return module
