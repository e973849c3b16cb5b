"""The S3 driver against the S3 emulator over a real pty (the S2 character-device path),
every fault kind counted on the host, and the ``hasherd emulate s3`` command."""

from __future__ import annotations

import argparse
import asyncio
import os
import select
import signal
import subprocess
import sys
import tty
from collections.abc import Iterator

import pytest

from hasherd.cli import cmd_emulate
from hasherd.devices.chain import ChainError, SweepBound
from hasherd.devices.s3 import INIT_CONFIG, S3Chain, covered_run, open_s3_chain
from hasherd.emulate.s3 import S3Emulator
from hasherd.protocol.s3 import RxDecoder, RxStatus
from hasherd.transport.serial_link import open_serial
from tests.s3.s3_helpers import DETECT, SPACE, TX_CONFIG, brute_force, header_of

SWEEP = 2048
BOUND = SweepBound(SWEEP, seconds=0.15, quiet=0.1)


@pytest.fixture
def emu4() -> Iterator[S3Emulator]:
    with S3Emulator(4, 8, sweep_limit=SWEEP) as emu:
        yield emu


async def mine_all(path: str, seeds: list[int]) -> tuple[S3Chain, list[list[int]]]:
    chain = await open_s3_chain(path, BOUND, base_zero_bits=8, expected_chips=4)
    try:
        out = []
        for seed in seeds:
            res = await chain.mine(header_of(seed), 8)
            out.append([n for _, n in res.found])
        return chain, out
    finally:
        await chain.close()


def test_init_config_is_the_section_3_vector() -> None:
    assert INIT_CONFIG.to_bytes() == TX_CONFIG


def test_init_and_mine_four_chips_exactly(emu4: S3Emulator) -> None:
    async def main() -> None:
        chain = await open_s3_chain(emu4.slave_path, BOUND, base_zero_bits=8)
        try:
            assert chain.chips == 4 and chain.chain_asic_num == (4,)
            total = 0
            for seed in (1, 2):
                header = header_of(seed)
                res = await chain.mine(header, 8)
                assert [n for _, n in res.found] == brute_force(header, 4, 8, SWEEP)
                assert {c for c, _ in res.found} == {0, 1, 2, 3}
                assert all(c == n // (SPACE // 4) for c, n in res.found)
                assert res.swept == 4 * SWEEP and res.job_id == seed
                total += len(res.found)
            header = header_of(3)
            res = await chain.mine(header, 10)  # diff 2 on the wire
            assert [n for _, n in res.found] == brute_force(header, 4, 10, SWEEP)
            total += len(res.found)
            s = chain.stats()
            assert s.jobs == 3 and s.invalid == s.duplicates == s.stale == s.unknown_work == 0
            assert s.missing == 0 and s.unhealthy == () and s.crc_errors == 0
            assert sum(c.nonces for c in s.chips) == total
            with pytest.raises(ChainError, match="below"):
                await chain.mine(header, 7)
        finally:
            await chain.close()
        stats = emu4.stats()
        assert stats.configs == 1 and stats.status_requests == 1 and stats.works == 3

    asyncio.run(main())


def test_mine_before_init_and_silent_link_fail_typed(emu4: S3Emulator) -> None:
    async def main() -> None:
        link = await open_serial(emu4.slave_path)
        chain = S3Chain(link, BOUND, status_timeout=0.05)
        try:
            with pytest.raises(ChainError, match="not initialised"):
                await chain.mine(header_of(1), 32)
        finally:
            await chain.close()

    asyncio.run(main())
    master, slave = os.openpty()  # a pty nobody answers on
    try:
        tty.setraw(slave)

        async def silent() -> None:
            with pytest.raises(ChainError, match="detect"):
                await open_s3_chain(os.ttyname(slave), BOUND, status_timeout=0.05)

        asyncio.run(silent())
    finally:
        os.close(master)
        os.close(slave)


@pytest.mark.parametrize("fault", ["bad_crc", "garbage", "duplicate", "stale_job", "drop_nonce"])
def test_each_fault_is_counted_not_trusted(fault: str) -> None:
    seeds = [4, 5]
    with S3Emulator(4, 8, {fault}, sweep_limit=SWEEP) as emu:
        chain, got = asyncio.run(mine_all(emu.slave_path, seeds))
        emitted = emu.stats()
    s = chain.stats()
    want = [brute_force(header_of(seed), 4, 8, SWEEP) for seed in seeds]
    assert s.invalid == 0
    for seed, found, expected in zip(seeds, got, want, strict=True):
        n0 = int.from_bytes(header_of(seed)[76:80], "little")
        assert set(found) <= set(expected)
        assert found == sorted(found, key=lambda n: (n - n0) % SPACE)  # scan order from n0
    lost = sum(len(w) for w in want) - sum(len(f) for f in got)
    if fault == "bad_crc":
        assert s.crc_errors > 0 and lost > 0 and s.missing == lost
    elif fault == "garbage":
        assert s.garbage_bytes >= emitted.garbage_bytes_sent > 0 and got == want
    elif fault == "duplicate":
        assert s.duplicates > 0 and got == want
    elif fault == "stale_job":
        assert s.unknown_work > 0 and got == want
    else:
        assert s.missing == emitted.nonces_dropped == lost > 0


def test_dead_chip_is_reported_unhealthy_and_finds_nothing() -> None:
    with S3Emulator(4, 8, {"dead_chip"}, sweep_limit=SWEEP) as emu:
        chain, got = asyncio.run(mine_all(emu.slave_path, [6]))
    s = chain.stats()
    assert s.unhealthy == (3,) and s.chips[3].nonces == 0 and s.missing == 0
    assert got == [brute_force(header_of(6), 4, 8, SWEEP, alive=[0, 1, 2])]


def test_late_nonces_arrive_as_stale() -> None:
    async def main(path: str) -> S3Chain:
        chain = await open_s3_chain(path, SweepBound(SWEEP, 0.02, quiet=0.02), base_zero_bits=8)
        try:
            first = await chain.mine(header_of(7), 8)
            assert first.found == ()  # held back by the controller past the job's end
            chain.bound = SweepBound(SWEEP, seconds=0.8, quiet=0.1)
            second = await chain.mine(header_of(8), 8)
            assert [n for _, n in second.found] == brute_force(header_of(8), 4, 8, SWEEP)
            return chain
        finally:
            await chain.close()

    with S3Emulator(4, 8, {"late"}, sweep_limit=SWEEP, late_delay=0.3) as emu:
        chain = asyncio.run(main(emu.slave_path))
    s = chain.stats()
    assert s.stale == len(brute_force(header_of(7), 4, 8, SWEEP)) > 0
    assert s.missing == 0  # the late ones did come, for a job already closed


def test_covered_run() -> None:
    assert covered_run(0, 4, 1024) == 1024
    assert covered_run(1000, 4, 1024) == 24
    assert covered_run(5000, 4, 1024) == 0  # between windows: nothing is proven
    assert covered_run(SPACE // 4, 4, 1024) == 1024
    assert covered_run(0, 4, SPACE // 4) == SPACE
    assert covered_run(SPACE - 8, 1, SPACE) == SPACE
    assert covered_run(SPACE - 8, 2, SPACE // 2) == SPACE
    assert covered_run(7, 3, SPACE // 3) == 3 * (SPACE // 3) - 7  # the remainder is a gap


# -- the command -------------------------------------------------------------------------------


def test_cli_prints_the_pty_and_stops_on_sigterm() -> None:
    script = (
        "import argparse, sys\n"
        "from hasherd.cli import cmd_emulate\n"
        "p = argparse.ArgumentParser(); cmd_emulate.register(p.add_subparsers())\n"
        "a = p.parse_args(sys.argv[1:]); sys.exit(a.handler(a))\n"
    )
    args = ["emulate", "s3", "--chips", "6", "--chains", "2", "--zero-bits", "8"]
    with subprocess.Popen(
        [sys.executable, "-c", script, *args], stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        path = proc.stdout.readline().strip()
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        try:
            tty.setraw(fd)
            os.write(fd, DETECT)
            decoder = RxDecoder()
            got: list[object] = []
            while not got and select.select([fd], [], [], 10)[0]:
                got += decoder.feed(os.read(fd, 4096))
        finally:
            os.close(fd)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    assert isinstance(got[0], RxStatus) and got[0].chain_asic_num == (3, 3)


def test_cli_bench_prints_the_rate(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    cmd_emulate.register(parser.add_subparsers())
    args = parser.parse_args(
        ["emulate", "s3", "--chips", "2", "--sweep-limit", "4096", "--bench", "3"]
    )
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    assert "3 works x 2 chips x 4096 nonces" in out and "nonces/s" in out
