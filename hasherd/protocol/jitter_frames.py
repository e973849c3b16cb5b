"""Jitter RPC batch-mode frames (docs/jitter-rpc.md, "Frames"): bytes <-> frozen dataclasses.

Every frame is a 12-byte little-endian header (``length`` of the whole frame, ``type``,
``flags`` = 0, ``code`` (error frames only), ``request_id``) and a body whose layout the
type fixes. ``check_header`` rejects a frame by its header alone (unknown type, reserved
bits, a length past the ``Limits``), so a decoder never buffers more than one bounded
frame. Pure: no sockets, no event loop; malformed bytes are a ``JitterProtocolError``.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar

import numpy as np

from hasherd.errors import HasherError, InputError
from hasherd.kernel import spec

LEGACY_REQUEST_BYTES = 56
LEGACY_REPLY_BYTES = 4
RECORD_WORDS = 14  # slots 0..11, key, pass: a legacy request is one record
RECORD = struct.Struct("<14I")
U32 = struct.Struct("<I")
FRAME_WORDS = spec.N_SLOTS
FRAME_BYTES = 4 * FRAME_WORDS  # one memory frame, as memory_id hashes it

HEADER = struct.Struct("<IBBHI")  # length (whole frame), type, flags, code, request id
HEADER_BYTES = HEADER.size
MEMORY_ID_BYTES = 32
NO_MEMORY = bytes(MEMORY_ID_BYTES)  # "the service's default memory"
MAX_RECORDS = 65536  # records in one lookup frame (a server may set fewer)
MAX_UPLOAD_FRAMES = 1 << 22  # memory frames in one upload (a server may set fewer)
DEFAULT_MAX_UPLOAD_FRAMES = 1 << 20
MAX_MESSAGE_BYTES = 1024
MAX_REQUEST_ID = spec.MASK32
_RAW_KEPT = 64
_MEMORY_ID = re.compile(r"[0-9a-f]{64}")


class FrameType(IntEnum):
    LOOKUP = 0x01
    UPLOAD = 0x02
    INFO = 0x03
    LOOKUP_REPLY = 0x81
    UPLOAD_REPLY = 0x82
    INFO_REPLY = 0x83
    ERROR = 0xFF


class ErrorCode(IntEnum):
    """Codes of error frames. Clients must accept codes they do not know."""

    BAD_VERSION = 1  # the hello asks for a version the server does not speak; closes
    BAD_FRAME = 2  # garbage, an unknown type, inconsistent lengths; closes
    TOO_LARGE = 3  # more records or frames than the limit; closes
    UNKNOWN_MEMORY = 4  # no memory with that memory_id (upload it); the connection lives on
    UPLOAD_REFUSED = 5  # this server takes no uploads; the connection lives on
    TIMEOUT = 6  # a partial frame waited too long; closes
    INTERNAL = 7  # the server failed (see its log); the connection lives on

    @property
    def closes(self) -> bool:
        return self in _CLOSING


_CLOSING = frozenset(
    {ErrorCode.BAD_VERSION, ErrorCode.BAD_FRAME, ErrorCode.TOO_LARGE, ErrorCode.TIMEOUT}
)


def error_name(code: int) -> str:
    """``unknown_memory`` for a known code, ``code_<n>`` for another."""
    try:
        return ErrorCode(code).name.lower()
    except ValueError:
        return f"code_{code}"


class JitterProtocolError(HasherError):
    """Bytes that are not a valid jitter RPC message: ``code`` is the ErrorCode to answer
    with, ``request_id`` the frame's id when known (else 0), ``raw`` the start of it."""

    def __init__(
        self, code: ErrorCode, message: str, *, request_id: int = 0, raw: bytes = b""
    ) -> None:
        self.code = code
        self.message = message
        self.request_id = request_id
        self.raw = bytes(raw[:_RAW_KEPT])
        super().__init__(f"{error_name(code)}: {message}")


def bad_frame(message: str, request_id: int = 0, raw: bytes = b"") -> JitterProtocolError:
    return JitterProtocolError(ErrorCode.BAD_FRAME, message, request_id=request_id, raw=raw)


# -- memory ids ---------------------------------------------------------------------------


def memory_id_to_wire(memory_id: str | None) -> bytes:
    """32 raw bytes; ``None`` (the default memory) is all zero."""
    if memory_id is None:
        return NO_MEMORY
    if not isinstance(memory_id, str) or not _MEMORY_ID.fullmatch(memory_id):
        raise InputError("memory_id", "expected 64 lowercase hex digits")
    raw = bytes.fromhex(memory_id)
    if raw == NO_MEMORY:
        raise InputError("memory_id", "all zero is reserved for the default memory (None)")
    return raw


def memory_id_from_wire(raw: bytes) -> str | None:
    return None if raw == NO_MEMORY else raw.hex()


def _check_id(request_id: int) -> None:
    if isinstance(request_id, bool) or not isinstance(request_id, int):
        raise InputError("request_id", "expected an integer")
    if not 0 <= request_id <= MAX_REQUEST_ID:
        raise InputError("request_id", f"{request_id} is outside 0..{MAX_REQUEST_ID}")


def _u32_array(values: np.ndarray, shape1: int, field: str) -> bytes:
    arr = np.asarray(values)
    if arr.ndim != 2 or arr.shape[1] != shape1 or arr.dtype.kind not in "ui":
        raise InputError(field, f"expected an (N, {shape1}) integer array, got {arr.shape}")
    if arr.dtype != np.uint32 and arr.size and (arr.min() < 0 or arr.max() > spec.MASK32):
        raise InputError(field, "values outside 0..4294967295")
    return arr.astype("<u4", copy=False).tobytes()


# -- frames -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """Caps a decoder enforces as soon as a frame header arrives."""

    max_records: int = MAX_RECORDS
    max_upload_frames: int = DEFAULT_MAX_UPLOAD_FRAMES

    def __post_init__(self) -> None:
        if not 1 <= self.max_records <= MAX_RECORDS:
            raise InputError("max_records", f"{self.max_records} is outside 1..{MAX_RECORDS}")
        if not 0 <= self.max_upload_frames <= MAX_UPLOAD_FRAMES:
            bad = f"{self.max_upload_frames} is outside 0..{MAX_UPLOAD_FRAMES}"
            raise InputError("max_upload_frames", bad)

    def max_length(self, ftype: FrameType) -> int:
        n = self.max_records
        body = {
            FrameType.LOOKUP: 36 + LEGACY_REQUEST_BYTES * n,
            FrameType.UPLOAD: 4 + FRAME_BYTES * self.max_upload_frames,
            FrameType.INFO: 0,
            FrameType.LOOKUP_REPLY: 4 + 4 * n + (n + 7) // 8,
            FrameType.UPLOAD_REPLY: 36,
            FrameType.INFO_REPLY: 48,
            FrameType.ERROR: MAX_MESSAGE_BYTES,
        }[ftype]
        return HEADER_BYTES + body


class Frame:
    """Base of batch-mode frames: ``to_bytes`` adds the 12-byte header to ``body()``."""

    type: ClassVar[FrameType]
    request_id: int

    def __post_init__(self) -> None:
        _check_id(self.request_id)

    def body(self) -> bytes:
        raise NotImplementedError

    def code(self) -> int:
        return 0

    def to_bytes(self) -> bytes:
        body = self.body()
        return (
            HEADER.pack(HEADER_BYTES + len(body), self.type, 0, self.code(), self.request_id) + body
        )

    @classmethod
    def parse(cls, request_id: int, code: int, body: bytes) -> Frame:
        raise NotImplementedError


def _count(body: bytes, offset: int, item: int, request_id: int) -> int:
    """The u32 count at ``offset`` after checking that exactly count items follow it."""
    if len(body) < offset + 4:
        raise bad_frame("frame too short for its count", request_id, body)
    n: int = U32.unpack_from(body, offset)[0]
    if len(body) != offset + 4 + n * item:
        raise bad_frame(f"count {n} disagrees with the frame length", request_id, body)
    return n


@dataclass(frozen=True)
class LookupRequest(Frame):
    """``records``: count x 56 bytes, each a legacy request (slots, key, pass)."""

    type: ClassVar[FrameType] = FrameType.LOOKUP
    request_id: int
    memory_id: str | None
    records: bytes

    def __post_init__(self) -> None:
        super().__post_init__()
        memory_id_to_wire(self.memory_id)
        if len(self.records) % LEGACY_REQUEST_BYTES:
            raise InputError("records", "not a whole number of 56-byte records")
        if self.count > MAX_RECORDS:
            raise InputError("records", f"{self.count} records exceed {MAX_RECORDS}")

    @classmethod
    def of(cls, request_id: int, memory_id: str | None, records: np.ndarray) -> LookupRequest:
        return cls(request_id, memory_id, _u32_array(records, RECORD_WORDS, "records"))

    @property
    def count(self) -> int:
        return len(self.records) // LEGACY_REQUEST_BYTES

    def array(self) -> np.ndarray:
        return np.frombuffer(self.records, dtype="<u4").reshape(-1, RECORD_WORDS)

    def body(self) -> bytes:
        return memory_id_to_wire(self.memory_id) + U32.pack(self.count) + self.records

    @classmethod
    def parse(cls, request_id: int, code: int, body: bytes) -> LookupRequest:
        _count(body, MEMORY_ID_BYTES, LEGACY_REQUEST_BYTES, request_id)
        return cls(request_id, memory_id_from_wire(body[:32]), body[36:])


@dataclass(frozen=True)
class LookupReply(Frame):
    """``jitters``: count x LE u32; ``found``: a bitmap, bit i (LSB first) for record i."""

    type: ClassVar[FrameType] = FrameType.LOOKUP_REPLY
    request_id: int
    jitters: bytes
    found: bytes

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.jitters) % 4 or len(self.found) != (self.count + 7) // 8:
            raise InputError("found", "jitters and the found bitmap disagree in length")
        if self.count % 8 and self.found[-1] >> (self.count % 8):
            raise InputError("found", "padding bits of the found bitmap must be zero")

    @classmethod
    def of(cls, request_id: int, jitters: np.ndarray, found: np.ndarray) -> LookupReply:
        j = np.asarray(jitters, dtype="<u4")
        bits = np.packbits(np.asarray(found, dtype=bool), bitorder="little")
        return cls(request_id, j.tobytes(), bits.tobytes())

    @property
    def count(self) -> int:
        return len(self.jitters) // 4

    def jitter_array(self) -> np.ndarray:
        return np.frombuffer(self.jitters, dtype="<u4").astype(np.uint32)

    def found_array(self) -> np.ndarray:
        bits = np.unpackbits(np.frombuffer(self.found, dtype=np.uint8), bitorder="little")
        return bits[: self.count].astype(bool)

    def body(self) -> bytes:
        return U32.pack(self.count) + self.jitters + self.found

    @classmethod
    def parse(cls, request_id: int, code: int, body: bytes) -> LookupReply:
        if len(body) < 4:
            raise bad_frame("lookup reply too short", request_id, body)
        n = U32.unpack_from(body)[0]
        if len(body) != 4 + 4 * n + (n + 7) // 8:
            raise bad_frame(f"count {n} disagrees with the frame length", request_id, body)
        try:
            return cls(request_id, body[4 : 4 + 4 * n], body[4 + 4 * n :])
        except InputError as exc:
            raise bad_frame(str(exc), request_id, body) from None


@dataclass(frozen=True)
class UploadRequest(Frame):
    """``frames``: count x 48 bytes (12 LE u32 each): exactly what ``memory_id`` hashes."""

    type: ClassVar[FrameType] = FrameType.UPLOAD
    request_id: int
    frames: bytes

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.frames) % FRAME_BYTES:
            raise InputError("frames", "not a whole number of 48-byte frames")

    @classmethod
    def of(cls, request_id: int, frames: np.ndarray) -> UploadRequest:
        return cls(request_id, _u32_array(frames, FRAME_WORDS, "frames"))

    @property
    def count(self) -> int:
        return len(self.frames) // FRAME_BYTES

    def memory_id(self) -> str:
        return hashlib.sha256(self.frames).hexdigest()

    def array(self) -> np.ndarray:
        return np.frombuffer(self.frames, dtype="<u4").reshape(-1, FRAME_WORDS)

    def body(self) -> bytes:
        return U32.pack(self.count) + self.frames

    @classmethod
    def parse(cls, request_id: int, code: int, body: bytes) -> UploadRequest:
        _count(body, 0, FRAME_BYTES, request_id)
        return cls(request_id, body[4:])


@dataclass(frozen=True)
class UploadReply(Frame):
    type: ClassVar[FrameType] = FrameType.UPLOAD_REPLY
    request_id: int
    memory_id: str
    frames: int

    def __post_init__(self) -> None:
        super().__post_init__()
        memory_id_to_wire(self.memory_id)
        spec.check_u32(self.frames, "frames")

    def body(self) -> bytes:
        return memory_id_to_wire(self.memory_id) + U32.pack(self.frames)

    @classmethod
    def parse(cls, request_id: int, code: int, body: bytes) -> UploadReply:
        if len(body) != 36 or body[:32] == NO_MEMORY:
            raise bad_frame("malformed upload reply", request_id, body)
        return cls(request_id, body[:32].hex(), U32.unpack_from(body, 32)[0])


@dataclass(frozen=True)
class InfoRequest(Frame):
    type: ClassVar[FrameType] = FrameType.INFO
    request_id: int

    def body(self) -> bytes:
        return b""

    @classmethod
    def parse(cls, request_id: int, code: int, body: bytes) -> InfoRequest:
        if body:
            raise bad_frame("an info request has no body", request_id, body)
        return cls(request_id)


_INFO = struct.Struct("<32s4I")


@dataclass(frozen=True)
class InfoReply(Frame):
    type: ClassVar[FrameType] = FrameType.INFO_REPLY
    request_id: int
    default_memory_id: str | None
    default_frames: int
    memories: int
    max_records: int
    max_upload_frames: int

    def __post_init__(self) -> None:
        super().__post_init__()
        memory_id_to_wire(self.default_memory_id)
        for name in ("default_frames", "memories", "max_records", "max_upload_frames"):
            spec.check_u32(getattr(self, name), name)

    def body(self) -> bytes:
        return _INFO.pack(
            memory_id_to_wire(self.default_memory_id),
            self.default_frames,
            self.memories,
            self.max_records,
            self.max_upload_frames,
        )

    @classmethod
    def parse(cls, request_id: int, code: int, body: bytes) -> InfoReply:
        if len(body) != _INFO.size:
            raise bad_frame("malformed info reply", request_id, body)
        raw, *counts = _INFO.unpack(body)
        return cls(request_id, memory_id_from_wire(raw), *counts)


@dataclass(frozen=True)
class ErrorReply(Frame):
    """``error_code``: an ErrorCode value (or one this side does not know)."""

    type: ClassVar[FrameType] = FrameType.ERROR
    request_id: int
    error_code: int
    message: str

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.error_code, bool) or not 0 <= self.error_code <= 0xFFFF:
            raise InputError("error_code", f"{self.error_code!r} is not a u16")

    def code(self) -> int:
        return self.error_code

    def body(self) -> bytes:
        raw = self.message.encode("utf-8", "replace")[:MAX_MESSAGE_BYTES]
        return raw.decode("utf-8", "ignore").encode("utf-8")  # never a cut character

    @classmethod
    def parse(cls, request_id: int, code: int, body: bytes) -> ErrorReply:
        return cls(request_id, code, body.decode("utf-8", "replace"))

    @classmethod
    def for_error(cls, exc: JitterProtocolError) -> ErrorReply:
        return cls(exc.request_id, int(exc.code), exc.message)

    @property
    def name(self) -> str:
        return error_name(self.error_code)


PARSERS: dict[FrameType, Callable[[int, int, bytes], Frame]] = {
    cls.type: cls.parse
    for cls in (
        LookupRequest,
        LookupReply,
        UploadRequest,
        UploadReply,
        InfoRequest,
        InfoReply,
        ErrorReply,
    )
}
REQUEST_TYPES = frozenset({FrameType.LOOKUP, FrameType.UPLOAD, FrameType.INFO})
REPLY_TYPES = frozenset(set(FrameType) - REQUEST_TYPES)


def check_header(
    header: bytes, allowed: frozenset[FrameType], limits: Limits
) -> tuple[int, FrameType, int, int]:
    """(length, type, code, request id) of a 12-byte header, or JitterProtocolError."""
    length, raw_type, flags, code, request_id = HEADER.unpack(header)
    if raw_type not in PARSERS or FrameType(raw_type) not in allowed:
        known = raw_type in PARSERS  # an unknown type means garbage: its "id" means nothing
        message = f"unexpected frame type 0x{raw_type:02x}"
        raise bad_frame(message, request_id if known else 0, header)
    ftype = FrameType(raw_type)
    if flags:
        raise bad_frame(f"reserved flags 0x{flags:02x} are not zero", request_id, header)
    if ftype != FrameType.ERROR and code:
        raise bad_frame(f"code {code} on a frame that is not an error", request_id, header)
    if length < HEADER_BYTES:
        raise bad_frame(f"frame length {length} is shorter than its header", request_id, header)
    if length > limits.max_length(ftype):
        message = f"{ftype.name.lower()} frame of {length} bytes exceeds the limits"
        raise JitterProtocolError(ErrorCode.TOO_LARGE, message, request_id=request_id, raw=header)
    return length, ftype, code, request_id


def decode_frame(
    data: bytes, allowed: frozenset[FrameType] = frozenset(FrameType), limits: Limits | None = None
) -> Frame:
    """One whole frame (header and body), or JitterProtocolError."""
    if len(data) < HEADER_BYTES:
        raise bad_frame("shorter than a frame header", raw=data)
    length, ftype, code, request_id = check_header(data[:HEADER_BYTES], allowed, limits or Limits())
    if length != len(data):
        raise bad_frame(f"frame says {length} bytes, got {len(data)}", request_id, data)
    return parse_body(ftype, request_id, code, bytes(data[HEADER_BYTES:]))


def parse_body(ftype: FrameType, request_id: int, code: int, body: bytes) -> Frame:
    """The frame of a checked header and its body; any bad value is a BAD_FRAME error."""
    try:
        return PARSERS[ftype](request_id, code, body)
    except InputError as exc:
        raise bad_frame(str(exc), request_id, body) from None
