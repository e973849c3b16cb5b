"""USB bulk links to an Antminer S3 controller (asic-protocols.md, section 3.1).

The S3 enumerates as VID:PID 0x4254:0x4153; the host uses configuration 1, interface 0,
bulk EP 0x01 OUT and EP 0x81 IN, 64-byte packets. ``open_usb`` finds and claims the device
with pyusb; ``UsbLink`` reads with a timeout, writes and closes, with the same shape as
``SerialLink`` so the S3 driver runs over either. Every blocking pyusb call runs in a
worker thread (``anyio.to_thread``), never on the event loop.

The pyusb device object is the seam: ``UsbLink`` takes anything with pyusb's
``write(ep, data, timeout)`` / ``read(ep, size, timeout)`` / ``reset()`` (the tests drive
it with a fake device in front of the emulator). Failures are typed (``UsbLinkError`` and
its subclasses); nothing is retried here.

Reads ask for one packet at a time: libusb reports a timeout even when part of a longer
transfer arrived, and pyusb then drops those bytes [inf, libusb ``actual_length``], so a
read that cannot end early on a short packet could lose data.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import re
from collections.abc import Callable
from typing import Any, Protocol

import anyio
import anyio.to_thread

from hasherd.errors import HasherError

__all__ = [
    "CONFIGURATION",
    "DEFAULT_SELECTOR",
    "EP_IN",
    "EP_OUT",
    "INTERFACE",
    "MAX_PACKET",
    "PRODUCT_ID",
    "VENDOR_ID",
    "UsbClosedError",
    "UsbDevice",
    "UsbLink",
    "UsbLinkError",
    "UsbNotFoundError",
    "UsbTimeoutError",
    "open_usb",
]

VENDOR_ID = 0x4254
PRODUCT_ID = 0x4153
CONFIGURATION = 1
INTERFACE = 0
EP_OUT = 0x01
EP_IN = 0x81
MAX_PACKET = 64
DEFAULT_SELECTOR = f"{VENDOR_ID:04x}:{PRODUCT_ID:04x}"
_SELECTOR = re.compile(r"([0-9a-fA-F]{4}):([0-9a-fA-F]{4})(?:@(\d{1,3})\.(\d{1,3}))?")
_GONE = (errno.ENODEV, errno.ESHUTDOWN)


class UsbLinkError(HasherError):
    """A USB link could not be found, claimed, read or written."""

    def __init__(self, device: str, problem: str) -> None:
        self.device = device
        self.problem = problem
        super().__init__(f"usb {device}: {problem}")


class UsbNotFoundError(UsbLinkError):
    """No device matches the selector (or no USB backend is installed)."""


class UsbTimeoutError(UsbLinkError):
    """Nothing arrived, or a write did not complete, in time."""


class UsbClosedError(UsbLinkError):
    """The link is closed, or the device went away."""


class UsbDevice(Protocol):
    """The part of ``usb.core.Device`` a link uses (timeouts in milliseconds)."""

    def write(self, endpoint: int, data: bytes, timeout: int | None = None) -> int: ...

    def read(self, endpoint: int, size_or_buffer: int, timeout: int | None = None) -> Any: ...

    def reset(self) -> None: ...


def _usb_core() -> Any:
    import usb.core

    return usb.core


def _failure(device: str, action: str, exc: OSError) -> UsbLinkError:
    """The typed error for a pyusb failure during ``action``."""
    if isinstance(exc, _usb_core().USBTimeoutError):
        return UsbTimeoutError(device, f"{action} timed out")
    if exc.errno in _GONE or getattr(exc, "backend_error_code", None) == -4:  # LIBUSB_NO_DEVICE
        return UsbClosedError(device, f"{action} failed: the device is gone ({exc})")
    return UsbLinkError(device, f"{action} failed: {exc}")


def _millis(seconds: float) -> int:
    """A pyusb timeout: at least 1 ms (0 means "wait forever" to libusb)."""
    return max(1, round(seconds * 1000))


class UsbLink:
    """An open link over ``device``; ``path`` names it in errors and logs.

    ``release`` (optional) gives the interface and the device handle back; ``close`` calls
    it once. A read cancelled while its worker thread runs loses what that read returns.
    """

    def __init__(
        self,
        device: UsbDevice,
        path: str,
        *,
        release: Callable[[], None] | None = None,
        write_timeout: float = 1.0,
    ) -> None:
        self.path = path
        self._device = device
        self._release = release
        self._write_timeout = write_timeout
        self._write_lock = anyio.Lock()
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise UsbClosedError(self.path, "the link is closed")

    async def write(self, data: bytes) -> None:
        """One bulk OUT transfer of ``data`` (libusb splits it into packets)."""
        self._check_open()
        payload = bytes(data)
        call = functools.partial(self._device.write, EP_OUT, payload, _millis(self._write_timeout))
        async with self._write_lock:
            try:
                written = await anyio.to_thread.run_sync(call)
            except OSError as exc:
                raise _failure(self.path, "write", exc) from exc
        if written != len(payload):
            raise UsbLinkError(self.path, f"short write: {written} of {len(payload)} bytes")

    async def read(self, timeout: float, size: int = MAX_PACKET) -> bytes:
        """Whatever the next packet brings (1..``size`` bytes), or ``UsbTimeoutError``."""
        self._check_open()
        deadline = anyio.current_time() + timeout
        while True:
            left = deadline - anyio.current_time()
            call = functools.partial(self._device.read, EP_IN, size, _millis(max(left, 0.0)))
            try:
                data = bytes(await anyio.to_thread.run_sync(call))
            except OSError as exc:
                raise _failure(self.path, "read", exc) from exc
            if data:
                return data
            if anyio.current_time() >= deadline:  # zero-length packets only
                raise UsbTimeoutError(self.path, f"nothing within {timeout:g} s")

    async def reset(self) -> None:
        """A USB port reset of the device (it re-enumerates; reopen afterwards)."""
        self._check_open()
        try:
            await anyio.to_thread.run_sync(self._device.reset)
        except OSError as exc:
            raise _failure(self.path, "reset", exc) from exc

    async def close(self) -> None:
        """Close; idempotent, never raises."""
        if self._closed:
            return
        self._closed = True
        if self._release is not None:
            await anyio.to_thread.run_sync(self._release)

    async def __aenter__(self) -> UsbLink:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def parse_selector(selector: str) -> tuple[int, int, int | None, int | None]:
    """``"VVVV:PPPP"`` or ``"VVVV:PPPP@BUS.ADDRESS"`` (hex IDs, decimal bus and address)."""
    found = _SELECTOR.fullmatch(selector) if isinstance(selector, str) else None
    if found is None:
        raise UsbLinkError(str(selector), "expected VVVV:PPPP or VVVV:PPPP@BUS.ADDRESS")
    vid, pid, bus, address = found.groups()
    return (
        int(vid, 16),
        int(pid, 16),
        None if bus is None else int(bus),
        None if address is None else int(address),
    )


def _release(device: Any) -> None:
    import usb.util

    # the device may be gone already; disposing still frees the handle
    with contextlib.suppress(OSError, ValueError):
        usb.util.release_interface(device, INTERFACE)
    with contextlib.suppress(OSError, ValueError):
        usb.util.dispose_resources(device)


def _claim(device: Any, name: str) -> None:
    import usb.util

    try:
        if device.is_kernel_driver_active(INTERFACE):
            device.detach_kernel_driver(INTERFACE)
    except (NotImplementedError, OSError):
        pass  # not on this platform, or nothing attached: claiming says the rest
    try:
        device.set_configuration(CONFIGURATION)
        usb.util.claim_interface(device, INTERFACE)
    except OSError as exc:
        _release(device)
        hint = " (permissions: add a udev rule for it)" if exc.errno == errno.EACCES else ""
        raise UsbLinkError(name, f"cannot claim interface {INTERFACE}: {exc}{hint}") from exc


def _open_blocking(selector: str, find: Callable[..., Any] | None) -> UsbLink:
    vid, pid, bus, address = parse_selector(selector)
    core = _usb_core()
    finder = core.find if find is None else find
    try:
        devices = list(finder(find_all=True, idVendor=vid, idProduct=pid) or ())
    except core.NoBackendError as exc:
        raise UsbNotFoundError(
            selector, f"no libusb backend to look for {vid:04x}:{pid:04x} (install libusb-1.0)"
        ) from exc
    except OSError as exc:
        raise UsbLinkError(selector, f"USB enumeration failed: {exc}") from exc
    devices = [d for d in devices if bus is None or (d.bus, d.address) == (bus, address)]
    if not devices:
        where = "" if bus is None else f" at bus {bus} address {address}"
        raise UsbNotFoundError(selector, f"no USB device {vid:04x}:{pid:04x}{where} is attached")
    device = devices[0]
    name = f"{vid:04x}:{pid:04x}@{device.bus}.{device.address}"
    _claim(device, name)
    return UsbLink(device, name, release=functools.partial(_release, device))


async def open_usb(
    selector: str = DEFAULT_SELECTOR, *, find: Callable[..., Any] | None = None
) -> UsbLink:
    """Find, configure and claim the first device matching ``selector``.

    ``find`` replaces ``usb.core.find`` (same keywords; tests use it). Raises
    ``UsbNotFoundError`` when nothing matches or no backend exists, ``UsbLinkError`` else.
    """
    return await anyio.to_thread.run_sync(_open_blocking, selector, find)
