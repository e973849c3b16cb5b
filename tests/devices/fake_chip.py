"""A fake chip driver, named as such: an in-memory chain that hashes a fixed window from
the header's nonce with hashlib. It stands for a new chip family in the registry tests:
this one module and one registry line are all the config, the daemon, the ``asic:``
backend and ``hasherd emulate`` need. Its module is also its emulator command."""

from __future__ import annotations

import argparse

from hasherd.devices.chain import (
    NONCE_SPACE,
    ChainError,
    ChainSettings,
    ChainStats,
    ChipStats,
    ChipTable,
    Driver,
    MineResult,
    Problem,
)
from hasherd.kernel import spec

WINDOW = 1 << 12
DESCRIPTION = "Pretend to emulate the fake chip: print a line and exit."


class FakeChain:
    """One chip that sweeps ``WINDOW`` nonces from the header's own nonce."""

    chips = 1

    def __init__(self, settings: ChainSettings) -> None:
        self.settings = settings
        self.closed = False
        self._stats = ChainStats([ChipStats(0)])

    async def mine(self, header: bytes, zero_bits: int) -> MineResult:
        n0 = spec.scan_start(header)
        found = []
        for t in range(WINDOW):
            nonce = (n0 + t) % NONCE_SPACE
            if spec.meets(spec.dsha256(header[:76] + nonce.to_bytes(4, "little")), zero_bits):
                found.append((0, nonce))
        self._stats.jobs += 1
        self._stats.chips[0].hashes += WINDOW
        return MineResult(self._stats.jobs, tuple(found), WINDOW)

    def window_at(self, n0: int) -> int:
        return WINDOW

    def stats(self) -> ChainStats:
        return self._stats

    async def close(self) -> None:
        self.closed = True


def _check(table: ChipTable) -> list[Problem]:
    return [("baud", "the fake chip has no baud switch")] if table.baud else []


async def _open(path: str, settings: ChainSettings) -> FakeChain:
    if path != "fake0":
        raise ChainError(path, "no fake chip there")
    return FakeChain(settings)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--chips", type=int, default=1)


def run(args: argparse.Namespace) -> int:
    print(f"fake chain of {args.chips}", flush=True)
    return 0


DRIVER = Driver("fake", "a fake chip (tests only)", _open, _check, "tests.devices.fake_chip")
