"""The host-to-controller S2/S3 token stream, framed as the controller sees it
(asic-protocols.md, sections 3.1-3.2).

``protocol.s3.RxDecoder`` frames the device-to-host direction; this is its mirror for
``TxConfig`` (0x51), ``TxTask`` (0x52) and ``RxStatusRequest`` (0x53). A candidate starts at
one of those type bytes with version 0 and a length that type can have; a whole candidate
whose CRC-16/MODBUS fails counts in ``crc_errors`` and one whose CRC passes but whose
layout does not counts in ``malformed``; in both cases the scan resumes one byte later.
Other bytes count in ``garbage_bytes``. ``feed`` never raises on wire input, and the
buffer never holds more than the largest token. Pure: no file descriptors here.
"""

from __future__ import annotations

import re
import struct
from typing import TypeAlias

from hasherd.errors import InputError
from hasherd.protocol.crc import Buffer, crc16_modbus
from hasherd.protocol.s3 import (
    MAX_WORKS,
    RX_STATUS_REQUEST,
    TX_CONFIG,
    TX_TASK,
    RxStatusRequest,
    S3Error,
    TxConfig,
    TxTask,
)

__all__ = ["MAX_TX_TOKEN", "TxDecoder", "TxToken"]

TxToken: TypeAlias = TxConfig | TxTask | RxStatusRequest

MAX_TX_TOKEN = 10 + 48 * MAX_WORKS  # the largest host token: a TxTask of 8 works
_HEAD = struct.Struct("<BBH")
_TX_START = re.compile(b"[\\x51\\x52\\x53]")


def _plausible(kind: int, size: int) -> bool:
    """Whether a token of ``kind`` can be ``size`` bytes long (section 3.2)."""
    if kind == TX_CONFIG:
        return size == TxConfig.SIZE
    if kind == RX_STATUS_REQUEST:
        return size == RxStatusRequest.SIZE
    return 58 <= size <= MAX_TX_TOKEN and (size - 10) % 48 == 0


def _parse(token: bytes) -> TxToken:
    if token[0] == TX_CONFIG:
        return TxConfig.from_bytes(token)
    if token[0] == TX_TASK:
        return TxTask.from_bytes(token)
    return RxStatusRequest.from_bytes(token)


class TxDecoder:
    """Host tokens from a byte stream in any chunking (see the module docstring)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.tokens = 0
        self.crc_errors = 0
        self.garbage_bytes = 0
        self.malformed = 0

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: Buffer) -> list[TxToken]:
        out: list[TxToken] = []
        view = memoryview(data).cast("B")
        pos = 0
        while pos < len(view):
            room = MAX_TX_TOKEN - len(self._buf)
            self._buf += view[pos : pos + room]
            pos += room
            self._drain(out)
        return out

    def _skip(self, count: int, garbage: bool = True) -> None:
        del self._buf[:count]
        if garbage:
            self.garbage_bytes += count

    def _drain(self, out: list[TxToken]) -> None:
        buf = self._buf
        while buf:
            found = _TX_START.search(buf)
            if found is None:
                self._skip(len(buf))
                return
            if found.start():
                self._skip(found.start())
            if len(buf) < 4:
                if len(buf) >= 2 and buf[1] != 0:
                    self._skip(1)
                    continue
                return
            kind, version, length = _HEAD.unpack_from(buf)
            if version != 0 or not _plausible(kind, length + 4):
                self._skip(1)
                continue
            size = length + 4
            if len(buf) < size:
                return
            token = bytes(buf[:size])
            if int.from_bytes(token[-2:], "little") != crc16_modbus(token[:-2]):
                self.crc_errors += 1
                self._skip(1, garbage=False)
                continue
            try:
                parsed = _parse(token)
            except (S3Error, InputError):
                self.malformed += 1
                self._skip(1, garbage=False)
                continue
            self._skip(size, garbage=False)
            self.tokens += 1
            out.append(parsed)
