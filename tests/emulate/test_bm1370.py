"""The BM1370 chain emulator over a real pty, driven with the tested codecs."""

from __future__ import annotations

import hashlib
import os
import select
import signal
import subprocess
import sys
import termios
import time
import tty
from collections.abc import Iterator

import pytest

from hasherd.emulate import ChainEmulator, CommandDecoder, HostFrame, share_start
from hasherd.errors import InputError
from hasherd.protocol.bm13xx import (
    ChainInactive,
    Chip,
    FullHeaderJob,
    NonceResponse,
    ReadRegister,
    Register,
    RegisterResponse,
    Response,
    ResponseDecoder,
    SetChipAddress,
    VersionNonceResponse,
    WriteRegister,
    ticket_mask,
    uart_baud_value,
)

CHIP = Chip.BM1370
HEADER = bytes(range(76)) + (0x1234_5678).to_bytes(4, "little")
HEADER_B = bytes(range(1, 77)) + (7).to_bytes(4, "little")
SWEEP = 1024
ZERO_BITS = 8
ROLLING = WriteRegister(Register.MIDSTATE_CONFIG, 0x9000_0000, broadcast=True)
ADDRESSES = (0, 64, 128, 192)


class Host:
    """The host side: the slave path opened raw, as pyserial would."""

    def __init__(self, path: str, frame_size: int = 11) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self.fd)
        self.decoder = ResponseDecoder(frame_size)

    def close(self) -> None:
        os.close(self.fd)

    def send(self, *frames: bytes | HostFrame) -> None:
        for frame in frames:
            data = frame if isinstance(frame, bytes) else frame.to_bytes()
            os.write(self.fd, data)

    def collect(
        self, count: int | None = None, quiet: float = 0.3, limit: float = 8.0
    ) -> list[Response]:
        """Responses until ``count`` arrived (or, without it, ``quiet`` s of silence)."""
        out: list[Response] = []
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline and (count is None or len(out) < count):
            wait = quiet if count is None else min(0.2, deadline - time.monotonic())
            ready, _, _ = select.select([self.fd], [], [], max(0.0, wait))
            if ready:
                out += self.decoder.feed(os.read(self.fd, 4096))
            elif count is None:
                break
        return out

    def settle(self, count: int) -> list[Response]:
        """``count`` responses, then whatever else comes before a short silence."""
        return self.collect(count) + self.collect(quiet=0.2)


@pytest.fixture
def chain() -> Iterator[tuple[ChainEmulator, Host]]:
    with ChainEmulator(4, ZERO_BITS, sweep_limit=SWEEP) as emu:
        host = Host(emu.slave_path)
        try:
            yield emu, host
        finally:
            host.close()


def addressed(host: Host) -> None:
    host.send(ROLLING, ChainInactive(), *(SetChipAddress(a) for a in ADDRESSES))


def expected(header: bytes, chips: int, zero_bits: int, alive: range | list[int]) -> set[int]:
    """Every nonce of each live chip's window meeting ``zero_bits``, found independently."""
    start = int.from_bytes(header[76:80], "little")
    found = set()
    for index in alive:
        first = share_start(start, index, chips)
        for step in range(SWEEP):
            nonce = (first + step) % (1 << 32)
            if zero_bits_of(header, nonce) >= zero_bits:
                found.add(nonce)
    return found


def zero_bits_of(header: bytes, nonce: int) -> int:
    full = header[:76] + nonce.to_bytes(4, "little")
    digest = hashlib.sha256(hashlib.sha256(full).digest()).digest()
    return 256 - int.from_bytes(digest, "little").bit_length()


def nonces(responses: list[Response]) -> list[VersionNonceResponse]:
    return [r for r in responses if isinstance(r, VersionNonceResponse)]


# -- chain state ---------------------------------------------------------------------------


def test_enumerates_four_chips(chain: tuple[ChainEmulator, Host]) -> None:
    _, host = chain
    host.send(ROLLING, ReadRegister(Register.CHIP_ID, broadcast=True))
    got = host.collect(4)
    assert len(got) == 4
    assert all(isinstance(r, RegisterResponse) and r.chip_id == 0x1370 for r in got)
    assert got[0].to_bytes() == bytes.fromhex("AA 55 13 70 00 00 00 00 00 00 10")  # 1.4 vector


def test_fresh_chain_answers_in_nine_bytes(chain: tuple[ChainEmulator, Host]) -> None:
    _, host = chain
    host.decoder.frame_size = 9
    host.send(ReadRegister(Register.CHIP_ID, broadcast=True))
    got = host.collect(4)
    assert len(got) == 4
    assert all(isinstance(r, RegisterResponse) and r.size == 9 and r.chip_id == 0x1370 for r in got)


def test_set_addresses(chain: tuple[ChainEmulator, Host]) -> None:
    _, host = chain
    addressed(host)
    host.send(ReadRegister(Register.CHIP_ID, broadcast=True))
    got = [r for r in host.collect(4) if isinstance(r, RegisterResponse)]
    assert sorted(r.chip_address for r in got) == list(ADDRESSES)
    assert all(r.value == 0x1370_0000 | r.chip_address for r in got)
    host.send(ReadRegister(Register.CHIP_ID, chip_address=128))
    assert [(r.chip_address, r.value) for r in host.settle(1)] == [(128, 0x1370_0080)]  # type: ignore[union-attr]


def test_addressing_mode_stops_relaying(chain: tuple[ChainEmulator, Host]) -> None:
    _, host = chain
    host.send(ROLLING, ChainInactive(), SetChipAddress(8), ReadRegister(0, broadcast=True))
    got = host.settle(2)  # chip 1 is still in addressing mode: chips 2 and 3 hear nothing
    assert sorted(r.chip_address for r in got) == [0, 8]  # type: ignore[union-attr]


def test_write_and_read_a_register(chain: tuple[ChainEmulator, Host]) -> None:
    _, host = chain
    addressed(host)
    host.send(WriteRegister(Register.HASH_COUNTING_NUMBER, 0x1EB5, chip_address=64))
    host.send(ReadRegister(Register.HASH_COUNTING_NUMBER, broadcast=True))
    values = {r.chip_address: r.value for r in host.collect(4)}  # type: ignore[union-attr]
    assert values == {0: 0, 64: 0x1EB5, 128: 0, 192: 0}


def test_baud_switch_changes_the_pty_speed(chain: tuple[ChainEmulator, Host]) -> None:
    emu, host = chain
    assert termios.tcgetattr(host.fd)[4] == termios.B115200
    addressed(host)
    host.send(WriteRegister(Register.UART_BAUD, uart_baud_value(0), broadcast=True))
    host.send(ReadRegister(Register.UART_BAUD, chip_address=0))
    got = host.collect(1)  # the answer comes after the switch
    assert [r.value for r in got] == [0x1130_0000]  # type: ignore[union-attr]
    assert termios.tcgetattr(host.fd)[4:6] == [termios.B3000000, termios.B3000000]
    assert emu.stats().baud == 3_125_000 and emu.stats().termios_baud == 3_000_000


# -- jobs ----------------------------------------------------------------------------------


def test_job_nonces_are_real_and_in_their_chips_share(chain: tuple[ChainEmulator, Host]) -> None:
    emu, host = chain
    addressed(host)
    host.send(FullHeaderJob.from_header(0x18, HEADER))
    want = expected(HEADER, 4, ZERO_BITS, range(4))
    got = nonces(host.collect(len(want)))
    assert {r.nonce for r in got} == want and len(got) == len(want) > 4
    start = int.from_bytes(HEADER[76:80], "little")
    owners = set()
    for r in got:
        assert r.job_id(CHIP) == 0x18 and r.version_bits == 0
        assert zero_bits_of(HEADER, r.nonce) >= ZERO_BITS
        owner = [i for i in range(4) if (r.nonce - share_start(start, i, 4)) % (1 << 32) < SWEEP]
        assert len(owner) == 1
        owners.add(owner[0])
        assert r.excess == 2 * (zero_bits_of(HEADER, r.nonce) - ZERO_BITS)
    assert owners == {0, 1, 2, 3}
    assert emu.stats().jobs == 1 and emu.stats().crc_errors == 0


def test_ticket_mask_adds_zero_bits(chain: tuple[ChainEmulator, Host]) -> None:
    _, host = chain
    addressed(host)
    host.send(WriteRegister(Register.TICKET_MASK, ticket_mask(4), broadcast=True))
    host.send(FullHeaderJob.from_header(0x28, HEADER, length=0x36))  # LEN is not used
    want = expected(HEADER, 4, ZERO_BITS + 2, range(4))
    got = nonces(host.collect(len(want)))
    assert want and {r.nonce for r in got} == want and all(r.job_id(CHIP) == 0x28 for r in got)


def test_fresh_chip_nonces_are_nine_bytes(chain: tuple[ChainEmulator, Host]) -> None:
    _, host = chain
    host.decoder.frame_size = 9
    host.send(FullHeaderJob.from_header(0x18, HEADER))
    got = host.settle(len(expected(HEADER, 4, ZERO_BITS, range(4))))
    assert got and all(isinstance(r, NonceResponse) and r.job_byte == 0x18 for r in got)
    assert all(zero_bits_of(HEADER, r.nonce) >= ZERO_BITS for r in got)  # type: ignore[union-attr]


# -- faults --------------------------------------------------------------------------------


def faulty(*faults: str, **kwargs: float) -> ChainEmulator:
    return ChainEmulator(4, ZERO_BITS, set(faults), sweep_limit=SWEEP, **kwargs)  # type: ignore[arg-type]


def test_bad_crc_is_counted_by_the_decoder() -> None:
    with faulty("bad_crc") as emu:
        host = Host(emu.slave_path)
        host.send(ROLLING, ReadRegister(0, broadcast=True))
        got = host.settle(2)
        host.close()
    assert len(got) == 2 and host.decoder.crc_errors == 2


def test_garbage_is_counted_by_the_decoder() -> None:
    with faulty("garbage") as emu:
        host = Host(emu.slave_path)
        host.send(ROLLING, ReadRegister(0, broadcast=True))
        got = host.collect(4)
        host.close()
        sent = emu.stats().garbage_bytes_sent
    assert len(got) == 4 and sent > 0 and host.decoder.garbage_bytes == sent


def test_duplicate_nonces() -> None:
    with faulty("duplicate") as emu:
        host = Host(emu.slave_path)
        addressed(host)
        host.send(FullHeaderJob.from_header(0x18, HEADER))
        want = expected(HEADER, 4, ZERO_BITS, range(4))
        got = [r.nonce for r in nonces(host.settle(len(want) + len(want) // 2))]
        host.close()
    assert set(got) == want and len(got) == len(want) + len(want) // 2


def test_stale_job_nonces_arrive_after_a_new_job() -> None:
    with faulty("stale_job") as emu:
        host = Host(emu.slave_path)
        addressed(host)
        host.send(FullHeaderJob.from_header(0x18, HEADER))
        first = nonces(host.collect(len(expected(HEADER, 4, ZERO_BITS, range(4)))))
        host.send(FullHeaderJob.from_header(0x20, HEADER_B))
        second = nonces(host.settle(len(expected(HEADER_B, 4, ZERO_BITS, range(4))) + 2))
        host.close()
    stale = [r for r in second if r.job_id(CHIP) == 0x18]
    assert first and len(stale) == 2
    assert all(zero_bits_of(HEADER, r.nonce) >= ZERO_BITS for r in stale)  # old job's header
    fresh = {r.nonce for r in second if r.job_id(CHIP) == 0x20}
    assert fresh == expected(HEADER_B, 4, ZERO_BITS, range(4))


def test_dead_chip_is_silent() -> None:
    with faulty("dead_chip") as emu:
        host = Host(emu.slave_path)
        addressed(host)
        host.send(ReadRegister(0, broadcast=True))
        regs = host.settle(3)
        host.send(FullHeaderJob.from_header(0x18, HEADER))
        got = {r.nonce for r in nonces(host.settle(len(expected(HEADER, 4, ZERO_BITS, range(3)))))}
        host.close()
    assert sorted(r.chip_address for r in regs) == [0, 64, 128]  # type: ignore[union-attr]
    assert got == expected(HEADER, 4, ZERO_BITS, range(3))


def test_late_responses_arrive_after_the_delay() -> None:
    with faulty("late", late_delay=0.4) as emu:
        host = Host(emu.slave_path)
        sent = time.monotonic()
        host.send(ROLLING, ReadRegister(0, broadcast=True))
        got = host.collect(4)
        arrived = time.monotonic()
        host.close()
    assert len(got) == 4 and arrived - sent >= 0.4  # a lower bound: never early


# -- the host stream decoder and the API ---------------------------------------------------


def test_command_decoder_one_byte_at_a_time_with_garbage_and_bad_crc() -> None:
    job = FullHeaderJob.from_header(0x18, HEADER)
    good: list[HostFrame] = [ReadRegister(0, broadcast=True), ChainInactive(), SetChipAddress(8)]
    bad = bytearray(WriteRegister(0x14, 0xFF, broadcast=True).to_bytes())
    bad[-1] ^= 1
    stream = b"\x01\x02\x55" + good[0].to_bytes() + bytes(bad) + good[1].to_bytes()
    stream += job.to_bytes() + b"\xaa" + good[2].to_bytes()
    decoder = CommandDecoder()
    out = [frame for byte in stream for frame in decoder.feed(bytes((byte,)))]
    assert out == [good[0], good[1], job, good[2]]
    assert decoder.crc_errors == 1 and decoder.garbage_bytes >= 4


def test_rejects_bad_arguments() -> None:
    with pytest.raises(InputError):
        ChainEmulator(0, 8)
    with pytest.raises(InputError):
        ChainEmulator(2, 8, {"melted"})
    with pytest.raises(InputError):
        ChainEmulator(2, 33)


def test_cli_prints_the_pty_and_stops_on_sigterm() -> None:
    script = (
        "import argparse, sys\n"
        "from hasherd.cli import cmd_emulate\n"
        "p = argparse.ArgumentParser(); cmd_emulate.register(p.add_subparsers())\n"
        "a = p.parse_args(sys.argv[1:]); sys.exit(a.handler(a))\n"
    )
    args = ["emulate", "bm1370", "--chips", "2", "--zero-bits", "8", "--sweep-limit", "64"]
    with subprocess.Popen(
        [sys.executable, "-c", script, *args], stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        path = proc.stdout.readline().strip()
        host = Host(path)
        host.send(ROLLING, ReadRegister(0, broadcast=True))
        got = host.collect(2)
        host.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    assert len(got) == 2
