"""Framing S2/S3 tokens from a hostile byte stream, either direction (asic-protocols.md,
sections 3.1-3.3).

``TokenDecoder`` is the format both decoders share: ``protocol.s3.RxDecoder`` (device to
host) and ``emulate.s3_stream.TxDecoder`` (host to device); the scan is
``protocol.framing.PreambleDecoder``'s. A candidate starts at a byte ``_START`` matches,
followed by version 0 and a length the subclass calls plausible for that type (else the
byte is dropped and counted in ``garbage_bytes``); a whole candidate whose CRC-16/MODBUS
fails counts in ``crc_errors``, one whose CRC passes but whose layout does not
(``_parse`` raises a ``HasherError``) counts in ``malformed``, and in both cases the scan
resumes one byte later, so tokens inside a false candidate are still found. The buffer
never exceeds ``max_token`` bytes. ``feed`` never raises on wire input.

Pure: no file descriptors, no event loop.
"""

from __future__ import annotations

import struct
from typing import TypeVar

from hasherd.errors import HasherError
from hasherd.protocol.crc import crc16_modbus
from hasherd.protocol.framing import PreambleDecoder, Skip, Why

__all__ = ["TokenDecoder"]

T = TypeVar("T")

_HEAD = struct.Struct("<BBH")


class TokenDecoder(PreambleDecoder[T]):
    """Tokens of type ``T`` from a byte stream in any chunking (see the module docstring).

    A subclass sets ``_START`` (the type bytes a token may start with) and says which
    sizes a type can have (``_plausible``, never more than ``max_token``) and how a whole
    token parses (``_parse``).
    """

    @property
    def max_token(self) -> int:
        return self.max_buffer

    @property
    def tokens(self) -> int:
        return self.frames

    @property
    def malformed(self) -> int:
        """Tokens whose CRC passed but whose layout did not."""
        return self.unknown_frames

    def _plausible(self, kind: int, size: int) -> bool:
        """Whether a token of type ``kind`` can be ``size`` bytes long."""
        raise NotImplementedError

    def _parse(self, token: bytes) -> T:
        """One whole token whose CRC passed; a ``HasherError`` if its layout is wrong."""
        raise NotImplementedError

    def _length(self, buf: bytearray) -> int | None:
        if len(buf) < 4:
            if len(buf) >= 2 and buf[1] != 0:
                raise Skip(Why.GARBAGE, 1)
            return None
        kind, version, length = _HEAD.unpack_from(buf)
        size: int = length + 4
        if version != 0 or not self._plausible(kind, size):
            raise Skip(Why.GARBAGE, 1)
        return size

    def _decode(self, token: bytes) -> T:
        if int.from_bytes(token[-2:], "little") != crc16_modbus(token[:-2]):
            raise Skip(Why.CRC, 1)
        try:
            return self._parse(token)
        except HasherError:
            raise Skip(Why.UNKNOWN, 1) from None
