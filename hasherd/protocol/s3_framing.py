"""Framing S2/S3 tokens from a hostile byte stream, either direction (asic-protocols.md,
sections 3.1-3.3).

``TokenDecoder`` is the scan both decoders share: ``protocol.s3.RxDecoder`` (device to
host) and ``emulate.s3_stream.TxDecoder`` (host to device). A candidate starts at a byte
``_START`` matches, followed by version 0 and a length the subclass calls plausible for
that type (else the byte is dropped and counted in ``garbage_bytes``); a whole candidate
whose CRC-16/MODBUS fails counts in ``crc_errors``, one whose CRC passes but whose layout
does not (``_parse`` raises a ``HasherError``) counts in ``malformed``, and in both cases
the scan resumes one byte later, so tokens inside a false candidate are still found. The
buffer never exceeds ``max_token`` bytes. ``feed`` never raises on wire input.

Pure: no file descriptors, no event loop.
"""

from __future__ import annotations

import re
import struct
from typing import ClassVar, Generic, TypeVar

from hasherd.errors import HasherError
from hasherd.protocol.crc import Buffer, crc16_modbus

__all__ = ["TokenDecoder"]

T = TypeVar("T")

_HEAD = struct.Struct("<BBH")


class TokenDecoder(Generic[T]):
    """Tokens of type ``T`` from a byte stream in any chunking (see the module docstring).

    A subclass sets ``_START`` (the type bytes a token may start with) and says which
    sizes a type can have (``_plausible``) and how a whole token parses (``_parse``).
    """

    _START: ClassVar[re.Pattern[bytes]]

    def __init__(self, max_token: int) -> None:
        self.max_token = max_token
        self._buf = bytearray()
        self.tokens = 0
        self.crc_errors = 0
        self.garbage_bytes = 0
        self.malformed = 0

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: Buffer) -> list[T]:
        out: list[T] = []
        view = memoryview(data).cast("B")
        pos = 0
        while pos < len(view):
            room = self.max_token - len(self._buf)
            self._buf += view[pos : pos + room]
            pos += room
            self._drain(out)
        return out

    def _plausible(self, kind: int, size: int) -> bool:
        """Whether a token of type ``kind`` can be ``size`` bytes long."""
        raise NotImplementedError

    def _parse(self, token: bytes) -> T:
        """One whole token whose CRC passed; a ``HasherError`` if its layout is wrong."""
        raise NotImplementedError

    def _skip(self, count: int, garbage: bool = True) -> None:
        del self._buf[:count]
        if garbage:
            self.garbage_bytes += count

    def _drain(self, out: list[T]) -> None:
        buf = self._buf
        while buf:
            found = self._START.search(buf)
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
            size = length + 4
            if version != 0 or not self._plausible(kind, size):
                self._skip(1)
                continue
            if len(buf) < size:
                return
            token = bytes(buf[:size])
            if int.from_bytes(token[-2:], "little") != crc16_modbus(token[:-2]):
                self.crc_errors += 1
                self._skip(1, garbage=False)
                continue
            try:
                parsed = self._parse(token)
            except HasherError:
                self.malformed += 1
                self._skip(1, garbage=False)
                continue
            self._skip(size, garbage=False)
            self.tokens += 1
            out.append(parsed)
