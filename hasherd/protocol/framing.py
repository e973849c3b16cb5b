"""The scan every chip-link stream decoder shares: frames from a hostile byte stream.

A decoder hunts for the start of a frame (a preamble such as BM13xx ``AA 55``, or an S3
token's type byte), asks its format how long the candidate there is, and decodes it once
whole. What does not fit is dropped and counted, never raised: bytes before a start in
``garbage_bytes``, a candidate whose CRC fails in ``crc_errors``, an intact candidate
the format cannot read in ``unknown_frames``; after a failed candidate the scan resumes
where its format says (just after the preamble, or one byte on), so a real frame that
starts inside a false one is still found. The buffer never holds more than
``max_buffer`` bytes, however large the chunks fed.

Subclasses: ``protocol.bm13xx.ResponseDecoder`` (chip to host),
``emulate.stream.CommandDecoder`` (host to chip), ``protocol.s3_framing.TokenDecoder``
(S2/S3 tokens, either direction). Pure: no file descriptors, no event loop.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import ClassVar, Generic, TypeVar

from hasherd.protocol.crc import Buffer

__all__ = ["DEFAULT_BUFFER", "PreambleDecoder", "Skip", "Why", "preamble"]

T = TypeVar("T")
DEFAULT_BUFFER = 4096  # bytes scanned at a time: a serial read's worth, many small frames


def preamble(marker: bytes) -> re.Pattern[bytes]:
    """Where a frame that opens with ``marker`` may start: the whole marker, or the part
    of it that ends the buffer (kept until the next bytes tell)."""
    parts = [re.escape(marker[:k]) + rb"\Z" for k in range(len(marker) - 1, 0, -1)]
    return re.compile(b"|".join([re.escape(marker), *parts]))


class Why(Enum):
    """Why a decoder drops bytes: the counter they go to."""

    GARBAGE = "garbage_bytes"  # counts the bytes
    CRC = "crc_errors"  # counts the candidate
    UNKNOWN = "unknown_frames"  # counts the candidate: intact, but not a frame it knows


class Skip(Exception):
    """Raised by a format's hook: drop ``count`` bytes from the front and count ``why``."""

    def __init__(self, why: Why, count: int) -> None:
        super().__init__(why, count)
        self.why = why
        self.count = count


class PreambleDecoder(Generic[T]):
    """Frames of type ``T`` from a byte stream in any chunking (see the module docstring).

    A subclass sets ``_START`` (a pattern that matches where a frame may start, including
    a partial preamble at the end of the buffer, which is kept) and implements
    ``_length`` and ``_decode``, raising ``Skip`` for what they reject. It must never
    call a candidate longer than ``max_buffer`` plausible.
    """

    _START: ClassVar[re.Pattern[bytes]]

    def __init__(self, max_buffer: int = DEFAULT_BUFFER) -> None:
        self.max_buffer = max_buffer
        self._buf = bytearray()
        self.frames = 0
        self.crc_errors = 0
        self.garbage_bytes = 0
        self.unknown_frames = 0

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: Buffer) -> list[T]:
        """The frames ``data`` completes, in order. Never raises on wire input."""
        out: list[T] = []
        view = memoryview(data).cast("B")
        pos = 0
        while pos < len(view):
            room = self.max_buffer - len(self._buf)
            self._buf += view[pos : pos + room]
            pos += room
            self._drain(out)
        return out

    def _length(self, buf: bytearray) -> int | None:
        """The length of the candidate at the start of ``buf`` (None: more bytes are
        needed to tell); ``Skip`` when its first bytes already rule it out."""
        raise NotImplementedError

    def _decode(self, frame: bytes) -> T:
        """One whole candidate; ``Skip`` when its CRC or its layout is wrong."""
        raise NotImplementedError

    def _drain(self, out: list[T]) -> None:
        buf = self._buf
        while buf:
            found = self._START.search(buf)
            if found is None:
                self.garbage_bytes += len(buf)
                del buf[:]
                return
            if found.start():
                self.garbage_bytes += found.start()
                del buf[: found.start()]
            try:
                length = self._length(buf)
                if length is None or len(buf) < length:
                    return
                frame = self._decode(bytes(buf[:length]))
            except Skip as skip:
                self._count(skip)
                del buf[: skip.count]
                continue
            del buf[:length]
            self.frames += 1
            out.append(frame)

    def _count(self, skip: Skip) -> None:
        if skip.why is Why.GARBAGE:
            self.garbage_bytes += skip.count
        elif skip.why is Why.CRC:
            self.crc_errors += 1
        else:
            self.unknown_frames += 1
