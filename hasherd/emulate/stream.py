"""The host-to-chip byte stream, framed as a chip sees it (asic-protocols.md, sections 1.2
and 5, "Framing").

Commands are framed by their header byte (7 or 11 bytes, CRC5); jobs by ``HDR == 0x21`` and
the model's fixed size, never by LEN (factory firmware and GEKKO send LEN bytes that do not
match), and checked with the CRC16. Bad frames are dropped silently, as a chip drops them,
and counted. Pure: no file descriptors here.
"""

from __future__ import annotations

from typing import TypeAlias

from hasherd.protocol.bm13xx import (
    COMMAND_PREAMBLE,
    FULL_JOB_BYTES,
    Bm13xxError,
    Command,
    FullHeaderJob,
    decode_command,
)
from hasherd.protocol.crc import Buffer

__all__ = ["CommandDecoder", "HostFrame"]

HostFrame: TypeAlias = Command | FullHeaderJob

_JOB_HDR = 0x21
# header byte -> frame size (section 1.2 table)
_COMMAND_SIZES = {0x40: 7, 0x41: 11, 0x51: 11, 0x42: 7, 0x52: 7, 0x53: 7}


class CommandDecoder:
    """Commands and full-header jobs from a host byte stream in any chunking.

    Bytes before a ``55 AA`` count in ``garbage_bytes``; a candidate frame that fails its
    CRC (or its LEN, for a command) counts in ``crc_errors`` and the scan resumes just
    after its preamble; an unknown header byte counts in ``unknown_frames``. ``feed``
    never raises on wire input, and the buffer never holds more than one frame.
    """

    def __init__(self, job_size: int = FULL_JOB_BYTES) -> None:
        self.job_size = job_size
        self._buf = bytearray()
        self.frames = 0
        self.crc_errors = 0
        self.garbage_bytes = 0
        self.unknown_frames = 0

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: Buffer) -> list[HostFrame]:
        out: list[HostFrame] = []
        self._buf += memoryview(data).cast("B")
        while self._step(out):
            pass
        return out

    def _step(self, out: list[HostFrame]) -> bool:
        """Consume one frame or one piece of junk; False when more bytes are needed."""
        buf = self._buf
        at = buf.find(COMMAND_PREAMBLE)
        if at < 0:
            keep = 1 if buf[-1:] == COMMAND_PREAMBLE[:1] else 0
            self.garbage_bytes += len(buf) - keep
            del buf[: len(buf) - keep]
            return False
        if at:
            self.garbage_bytes += at
            del buf[:at]
        if len(buf) < 3:
            return False
        size = self.job_size if buf[2] == _JOB_HDR else _COMMAND_SIZES.get(buf[2])
        if size is None:
            self.unknown_frames += 1
            del buf[:2]
            return True
        if len(buf) < size:
            return False
        frame = bytes(buf[:size])
        try:
            decoded = (
                FullHeaderJob.from_bytes(frame) if buf[2] == _JOB_HDR else decode_command(frame)
            )
        except Bm13xxError:
            self.crc_errors += 1
            del buf[:2]
            return True
        del buf[:size]
        self.frames += 1
        out.append(decoded)
        return True
