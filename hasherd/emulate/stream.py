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
from hasherd.protocol.framing import DEFAULT_BUFFER, PreambleDecoder, Skip, Why, preamble

__all__ = ["CommandDecoder", "HostFrame"]

HostFrame: TypeAlias = Command | FullHeaderJob

_JOB_HDR = 0x21
# header byte -> frame size (section 1.2 table)
_COMMAND_SIZES = {0x40: 7, 0x41: 11, 0x51: 11, 0x42: 7, 0x52: 7, 0x53: 7}


class CommandDecoder(PreambleDecoder[HostFrame]):
    """Commands and full-header jobs from a host byte stream in any chunking.

    The scan is ``protocol.framing``'s: bytes before a ``55 AA`` count in
    ``garbage_bytes``; a candidate frame that fails its CRC (or its LEN, for a command)
    counts in ``crc_errors`` and the scan resumes just after its preamble; an unknown
    header byte counts in ``unknown_frames``. ``feed`` never raises on wire input, and
    the buffer never holds more than one frame between calls.
    """

    _START = preamble(COMMAND_PREAMBLE)

    def __init__(self, job_size: int = FULL_JOB_BYTES) -> None:
        super().__init__(max(DEFAULT_BUFFER, job_size))
        self.job_size = job_size

    def _length(self, buf: bytearray) -> int | None:
        if len(buf) < 3:
            return None
        size = self.job_size if buf[2] == _JOB_HDR else _COMMAND_SIZES.get(buf[2])
        if size is None:
            raise Skip(Why.UNKNOWN, 2)
        return size

    def _decode(self, frame: bytes) -> HostFrame:
        try:
            if frame[2] == _JOB_HDR:
                return FullHeaderJob.from_bytes(frame)
            return decode_command(frame)
        except Bm13xxError:
            raise Skip(Why.CRC, 2) from None
