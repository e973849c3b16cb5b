"""The USB path: the production ``UsbLink`` and ``S3Chain`` over ``FakeUsbDevice`` (the fake
of the physical device, the one seam that cannot run here) in front of the emulator
engine; and ``open_usb`` with no device attached."""

from __future__ import annotations

import asyncio

import pytest

from hasherd.devices.chain import SweepBound
from hasherd.devices.s3 import S3Chain, open_s3_chain
from hasherd.emulate.s3 import S3Engine
from hasherd.protocol.s3 import NonceEntry, RxNonce, RxStatus
from hasherd.transport.usb_link import (
    EP_IN,
    UsbClosedError,
    UsbLink,
    UsbLinkError,
    UsbNotFoundError,
    UsbTimeoutError,
    open_usb,
    parse_selector,
)
from tests.s3.fake_usb import FakeUsbDevice
from tests.s3.s3_helpers import DETECT, brute_force, header_of, zero_bits_of

SWEEP = 2048
BOUND = SweepBound(SWEEP, seconds=0.15, quiet=0.1)


def usb_chain(engine: S3Engine) -> tuple[S3Chain, FakeUsbDevice, list[str]]:
    device = FakeUsbDevice(engine)
    released: list[str] = []
    link = UsbLink(device, "fake-s3", release=lambda: released.append("released"))
    return S3Chain(link, BOUND, base_zero_bits=8), device, released


def test_driver_over_usb_mines_exactly() -> None:
    engine = S3Engine(4, 8, sweep_limit=SWEEP)
    engine.warm_up()
    chain, device, released = usb_chain(engine)

    async def main() -> None:
        try:
            assert await chain.init(expected_chips=4) == 4
            for seed in (11, 12):
                header = header_of(seed)
                res = await chain.mine(header, 8)
                assert [n for _, n in res.found] == brute_force(header, 4, 8, SWEEP)
        finally:
            await chain.close()
            await chain.close()

    asyncio.run(main())
    s = chain.stats()
    assert s.jobs == 2 and s.invalid == s.duplicates == s.missing == s.crc_errors == 0
    assert device.writes == 4  # config, detect, two works
    assert released == ["released"]  # close is idempotent


def test_usb_faults_are_counted() -> None:
    engine = S3Engine(4, 8, {"bad_crc", "duplicate", "stale_job"}, sweep_limit=SWEEP)
    engine.warm_up()
    chain, _, _ = usb_chain(engine)

    async def main() -> list[list[int]]:
        try:
            await chain.init()
            return [[n for _, n in (await chain.mine(header_of(i), 8)).found] for i in (13, 14)]
        finally:
            await chain.close()

    got = asyncio.run(main())
    s = chain.stats()
    for seed, found in zip((13, 14), got, strict=True):
        assert set(found) <= set(brute_force(header_of(seed), 4, 8, SWEEP))
    assert s.crc_errors > 0 and s.duplicates > 0 and s.unknown_work > 0 and s.invalid == 0


def test_invalid_nonces_are_hardware_errors() -> None:
    engine = S3Engine(4, 8, sweep_limit=SWEEP)
    engine.warm_up()
    chain, device, _ = usb_chain(engine)
    header = header_of(14)
    bad = next(n for n in range(SWEEP) if zero_bits_of(header, n) < 8)

    async def main() -> list[int]:
        try:
            await chain.init()
            # the next work will be ID 1: a controller answering it with a nonce that fails
            entry = NonceEntry(1, int.from_bytes(bad.to_bytes(4, "little"), "big"))
            device.inject(RxNonce(64, (entry,)).to_bytes())
            return [n for _, n in (await chain.mine(header, 8)).found]
        finally:
            await chain.close()

    got = asyncio.run(main())
    assert bad not in got and got == brute_force(header, 4, 8, SWEEP)
    assert chain.stats().invalid == 1 and chain.stats().chips[0].invalid == 1


def test_link_timeout_packets_and_unplug_are_typed() -> None:
    device = FakeUsbDevice(S3Engine(2, 8, chains=2))
    link = UsbLink(device, "fake-s3")

    async def main() -> None:
        with pytest.raises(UsbTimeoutError):
            await link.read(0.02)
        await link.write(DETECT * 8)  # 96 bytes: two packets in, eight replies out
        data = b""
        while len(data) < 8 * 46:
            packet = await link.read(0.5)
            assert 1 <= len(packet) <= 64
            data += packet
        await link.reset()
        device.unplug()
        with pytest.raises(UsbClosedError, match="gone"):
            await link.write(DETECT)
        with pytest.raises(UsbClosedError):
            await link.read(0.05)
        await link.close()
        with pytest.raises(UsbClosedError, match="closed"):
            await link.read(0.05)

    asyncio.run(main())
    assert device.resets == 1


def test_fake_device_rejects_the_wrong_endpoint() -> None:
    device = FakeUsbDevice(S3Engine(1, 8))
    with pytest.raises(OSError):
        device.write(EP_IN, DETECT)
    status = RxStatus.from_bytes(S3Engine(1, 8).feed(DETECT))
    assert status.chain_asic_num == (1,)


def test_open_usb_without_a_device_raises_the_typed_error() -> None:
    async def main() -> None:
        # whatever this machine has (no libusb backend, or no S3 attached): a typed error
        with pytest.raises(UsbNotFoundError, match="4254:4153"):
            await open_usb()
        with pytest.raises(UsbNotFoundError, match="no USB device 4254:4153 is attached"):
            await open_usb(find=lambda **_: iter(()))
        with pytest.raises(UsbNotFoundError, match="at bus 3 address 9"):
            await open_usb("4254:4153@3.9", find=lambda **_: [FakeUsbDevice(S3Engine(1, 8))])
        with pytest.raises(UsbLinkError, match="expected VVVV:PPPP"):
            await open_usb("s3")
        with pytest.raises(UsbNotFoundError, match="4254:4153"):
            await open_s3_chain("usb", BOUND)

    asyncio.run(main())
    assert parse_selector("4254:4153@1.7") == (0x4254, 0x4153, 1, 7)
