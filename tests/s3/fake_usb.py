"""``FakeUsbDevice``: a FAKE of the physical Antminer S3 USB device, for tests only."""

from __future__ import annotations

import array
import errno
import threading
import time

import usb.core

from hasherd.emulate.s3 import S3Engine
from hasherd.transport.usb_link import EP_IN, EP_OUT, MAX_PACKET


class FakeUsbDevice:
    """A fake standing in for the physical S3 USB device (VID:PID 0x4254:0x4153).

    The USB device itself is the one seam that cannot run here (no hardware, no libusb
    backend), so this object plays ``usb.core.Device`` for ``UsbLink``: the production
    link and the S3 driver run above it unchanged. It has pyusb's ``write(ep, data,
    timeout)`` / ``read(ep, size, timeout)`` / ``reset()`` API, with timeouts in ms:

    - a bulk OUT write to EP 0x01 goes to the emulator engine in 64-byte packets;
    - a bulk IN read from EP 0x81 returns the engine's reply bytes in 64-byte packets
      (the transfer ends when ``size`` is filled or a short packet ends it), and raises
      pyusb's ``USBTimeoutError`` when nothing is there within the timeout;
    - ``unplug()`` makes every later call fail with ENODEV, as a removed device does;
    - ``inject(data)`` queues raw bytes on the IN side (a controller misbehaving).

    Calls may come from several worker threads at once; the engine sits behind a lock.
    """

    def __init__(self, engine: S3Engine) -> None:
        self.engine = engine
        self.bus = 1
        self.address = 7
        self.writes = 0
        self.resets = 0
        self._inbox = bytearray()
        self._cond = threading.Condition()
        self._gone = False

    def unplug(self) -> None:
        with self._cond:
            self._gone = True
            self._cond.notify_all()

    def inject(self, data: bytes) -> None:
        with self._cond:
            self._inbox += data
            self._cond.notify_all()

    def _check(self, endpoint: int, expected: int) -> None:
        if self._gone:
            raise usb.core.USBError("No such device", error_code=-4, errno=errno.ENODEV)
        if endpoint != expected:
            raise usb.core.USBError("Invalid parameter", error_code=-2, errno=errno.EINVAL)

    def write(self, endpoint: int, data: bytes, timeout: int | None = None) -> int:
        with self._cond:
            self._check(endpoint, EP_OUT)
            payload = bytes(data)
            for at in range(0, len(payload), MAX_PACKET):
                self._inbox += self.engine.feed(payload[at : at + MAX_PACKET])
            self.writes += 1
            self._cond.notify_all()
            return len(payload)

    def read(
        self, endpoint: int, size_or_buffer: int, timeout: int | None = None
    ) -> array.array[int]:
        deadline = time.monotonic() + (timeout or 1000) / 1000
        with self._cond:
            while True:
                self._check(endpoint, EP_IN)
                self._inbox += self.engine.take()
                if self._inbox:
                    return array.array("B", self._packets(size_or_buffer))
                now = time.monotonic()
                if now >= deadline:
                    raise usb.core.USBTimeoutError(
                        "Operation timed out", error_code=-7, errno=errno.ETIMEDOUT
                    )
                due = self.engine.next_due()
                wake = deadline if due is None else min(deadline, max(due, now + 0.001))
                self._cond.wait(wake - now)

    def _packets(self, size: int) -> bytes:
        out = bytearray()
        while self._inbox and len(out) + MAX_PACKET <= max(size, MAX_PACKET):
            packet = self._inbox[:MAX_PACKET]
            del self._inbox[:MAX_PACKET]
            out += packet
            if len(packet) < MAX_PACKET:
                break  # a short packet ends the transfer
        return bytes(out)

    def reset(self) -> None:
        with self._cond:
            self._check(EP_OUT, EP_OUT)
            self.resets += 1
