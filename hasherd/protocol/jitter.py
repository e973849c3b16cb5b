"""Jitter RPC wire formats (docs/jitter-rpc.md): the upstream 56-byte frame and batch mode.

* Legacy (upstream ``pipeline/3_DATA_TRAINER``): a request is 14 little-endian u32 (slots
  0..11, key, pass), the reply one little-endian u32 jitter. Requests may be pipelined.
* Batch mode: a connection whose first 16 bytes are a ``Hello`` (``MAGIC``, version,
  flags, ``HELLO_TAIL``) speaks length-prefixed frames from then on: lookups of up to
  ``MAX_RECORDS`` records against a memory chosen by ``memory_id``, memory uploads, an
  info query, and error frames carrying an ``ErrorCode``.

The frames themselves live in ``jitter_frames`` and are re-exported here. Pure: no
sockets, no event loop. Every malformed input is a ``JitterProtocolError``; the
stream decoder (``ConnectionDecoder``, configured for either side by ``ServerDecoder``
and ``ClientDecoder``) never raises: it stops at the first error and keeps it in
``error``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from hasherd.errors import InputError
from hasherd.kernel import spec
from hasherd.protocol.jitter_frames import (
    DEFAULT_MAX_UPLOAD_FRAMES,
    FRAME_BYTES,
    HEADER_BYTES,
    LEGACY_REPLY_BYTES,
    LEGACY_REQUEST_BYTES,
    MAX_MESSAGE_BYTES,
    MAX_RECORDS,
    MAX_UPLOAD_FRAMES,
    MEMORY_ID_BYTES,
    RECORD,
    RECORD_WORDS,
    REPLY_TYPES,
    REQUEST_TYPES,
    U32,
    ErrorCode,
    ErrorReply,
    Frame,
    FrameType,
    InfoReply,
    InfoRequest,
    JitterProtocolError,
    Limits,
    LookupReply,
    LookupRequest,
    UploadReply,
    UploadRequest,
    bad_frame,
    check_header,
    decode_frame,
    error_name,
    memory_id_from_wire,
    memory_id_to_wire,
    parse_body,
)

__all__ = [
    "DEFAULT_MAX_UPLOAD_FRAMES",
    "FRAME_BYTES",
    "HEADER_BYTES",
    "HELLO_BYTES",
    "HELLO_TAIL",
    "LEGACY_REPLY_BYTES",
    "LEGACY_REQUEST_BYTES",
    "MAGIC",
    "MAX_MESSAGE_BYTES",
    "MAX_RECORDS",
    "MAX_UPLOAD_FRAMES",
    "MEMORY_ID_BYTES",
    "PROTOCOL_VERSION",
    "RECORD_WORDS",
    "REPLY_TYPES",
    "REQUEST_TYPES",
    "SUPPORTED_VERSIONS",
    "ClientDecoder",
    "ConnectionDecoder",
    "ErrorCode",
    "ErrorReply",
    "Event",
    "Frame",
    "FrameDecoder",
    "FrameType",
    "Hello",
    "InfoReply",
    "InfoRequest",
    "JitterProtocolError",
    "LegacyBlock",
    "LegacyReply",
    "LegacyRequest",
    "Limits",
    "LookupReply",
    "LookupRequest",
    "Mode",
    "ServerDecoder",
    "UploadReply",
    "UploadRequest",
    "check_header",
    "decode_frame",
    "error_name",
    "is_hello",
    "memory_id_from_wire",
    "memory_id_to_wire",
]

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = frozenset({PROTOCOL_VERSION})
MAGIC = b"\x89HJR\r\n\x1a\n"  # PNG-style: high bit, CR LF, ^Z, LF catch text-mode mangling
HELLO_TAIL = b"hjit"
HELLO_BYTES = 16
_HELLO = struct.Struct("<8sHH4s")


# -- legacy frames ----------------------------------------------------------------------


def _sized(data: bytes, size: int, what: str) -> bytes:
    """``data`` if it is ``size`` bytes long, else the BAD_FRAME error naming ``what``."""
    if len(data) != size:
        raise bad_frame(f"{what} is {size} bytes, got {len(data)}", raw=data)
    return data


@dataclass(frozen=True, slots=True)
class LegacyRequest:
    """The upstream request: 14 little-endian u32 (slots 0..11, key, pass)."""

    slots: tuple[int, ...]
    key: int
    pass_no: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "slots", spec.check_slots(self.slots))
        spec.check_u32(self.key, "key")
        spec.check_u32(self.pass_no, "pass")

    @classmethod
    def from_bytes(cls, data: bytes) -> LegacyRequest:
        words = RECORD.unpack(_sized(data, LEGACY_REQUEST_BYTES, "a legacy request"))
        return cls(words[:12], words[12], words[13])

    def to_bytes(self) -> bytes:
        return RECORD.pack(*self.slots, self.key, self.pass_no)


@dataclass(frozen=True, slots=True)
class LegacyReply:
    """The upstream reply: the jitter as one little-endian u32 (``found`` is not sent)."""

    jitter: int

    def __post_init__(self) -> None:
        spec.check_u32(self.jitter, "jitter")

    @classmethod
    def from_bytes(cls, data: bytes) -> LegacyReply:
        return cls(U32.unpack(_sized(data, LEGACY_REPLY_BYTES, "a legacy reply"))[0])

    def to_bytes(self) -> bytes:
        return U32.pack(self.jitter)


@dataclass(frozen=True, slots=True)
class LegacyBlock:
    """Consecutive whole legacy requests as received (``count`` x 56 bytes)."""

    data: bytes

    @property
    def count(self) -> int:
        return len(self.data) // LEGACY_REQUEST_BYTES

    def array(self) -> np.ndarray:
        """(count, 14) little-endian u32, read-only."""
        return np.frombuffer(self.data, dtype="<u4").reshape(-1, RECORD_WORDS)

    def requests(self) -> list[LegacyRequest]:
        step = LEGACY_REQUEST_BYTES
        return [
            LegacyRequest.from_bytes(self.data[i : i + step])
            for i in range(0, len(self.data), step)
        ]


# -- batch mode: hello ------------------------------------------------------------------


def is_hello(first: bytes) -> bool:
    """Whether a connection's first 16 bytes switch it to batch mode."""
    return len(first) >= HELLO_BYTES and first[:8] == MAGIC and first[12:16] == HELLO_TAIL


@dataclass(frozen=True, slots=True)
class Hello:
    """Sent first by a batch client; the server answers with its own (same layout)."""

    version: int = PROTOCOL_VERSION
    flags: int = 0  # reserved, 0 in version 1

    def __post_init__(self) -> None:
        for name in ("version", "flags"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFF:
                raise InputError(name, f"{value!r} is not a u16")

    @classmethod
    def from_bytes(cls, data: bytes) -> Hello:
        if len(data) != HELLO_BYTES or not is_hello(data):
            raise bad_frame("not a jitter RPC hello", raw=data)
        _, version, flags, _ = _HELLO.unpack(data)
        return cls(version, flags)

    def to_bytes(self) -> bytes:
        return _HELLO.pack(MAGIC, self.version, self.flags, HELLO_TAIL)


# -- stream decoders -------------------------------------------------------------------------


class FrameDecoder:
    """Batch-mode frames from a byte stream in any chunking.

    Between calls it holds at most one partial frame, whose declared length the limits
    have already bounded, so a peer cannot make it hold more. At the first invalid byte
    it stops: ``error`` holds why, and later input is ignored (the connection cannot be
    resynchronised).
    """

    def __init__(self, allowed: frozenset[FrameType] = REQUEST_TYPES, limits: Limits | None = None):
        self.allowed = allowed
        self.limits = limits or Limits()
        self.error: JitterProtocolError | None = None
        self._buf = bytearray()

    @property
    def pending(self) -> int:
        """Bytes of a partial frame held."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        if self.error is not None:
            return []
        self._buf += data
        out: list[Frame] = []
        buf, off = self._buf, 0
        try:
            while len(buf) - off >= HEADER_BYTES:
                head = bytes(buf[off : off + HEADER_BYTES])
                length, ftype, code, rid = check_header(head, self.allowed, self.limits)
                if len(buf) - off < length:
                    break
                out.append(
                    parse_body(ftype, rid, code, bytes(buf[off + HEADER_BYTES : off + length]))
                )
                off += length
        except JitterProtocolError as exc:
            self.error = exc
            self._buf = bytearray()
            return out
        del buf[:off]
        return out


class Mode(StrEnum):
    UNDECIDED = "undecided"
    LEGACY = "legacy"
    BATCH = "batch"


Event = LegacyBlock | Hello | Frame


class ConnectionDecoder:
    """One side's view of a connection: the peer's hello, then batch-mode frames of the
    ``allowed`` types; with ``legacy``, a first 16 bytes that are not a hello mean legacy
    requests instead (``is_hello``), else they are an error. Until they have arrived
    nothing is decoded. ``versions``: the hellos this side accepts (a version among them,
    no reserved flags; else BAD_VERSION or BAD_FRAME); None accepts any, as a client
    does (the server answers the version the client asked for). ``feed`` never raises:
    see ``FrameDecoder``.
    """

    def __init__(
        self,
        allowed: frozenset[FrameType],
        limits: Limits | None = None,
        *,
        legacy: bool,
        versions: frozenset[int] | None,
    ) -> None:
        self.mode = Mode.UNDECIDED
        self.legacy = legacy
        self.versions = versions
        self.hello: Hello | None = None
        self.frames = FrameDecoder(allowed, limits)
        self._buf = bytearray()
        self._error: JitterProtocolError | None = None

    @property
    def error(self) -> JitterProtocolError | None:
        return self._error or self.frames.error

    @property
    def pending(self) -> int:
        """Bytes of a partial hello, legacy request or frame held."""
        return len(self._buf) + self.frames.pending

    def feed(self, data: bytes) -> list[Event]:
        if self.error is not None:
            return []
        if self.mode == Mode.BATCH:
            return list(self.frames.feed(data))
        self._buf += data
        if self.mode == Mode.UNDECIDED:
            if len(self._buf) < HELLO_BYTES:
                return []
            first = bytes(self._buf[:HELLO_BYTES])
            if is_hello(first):
                return self._start_batch(first)
            if not self._start_legacy(first):
                return []
        whole = len(self._buf) - len(self._buf) % LEGACY_REQUEST_BYTES
        if not whole:
            return []
        block = LegacyBlock(bytes(self._buf[:whole]))
        del self._buf[:whole]
        return [block]

    def _start_legacy(self, first: bytes) -> bool:
        """Legacy mode, if this side takes it; else the error of a missing hello."""
        if self.legacy:
            self.mode = Mode.LEGACY
            return True
        self._buf = bytearray()
        self._error = bad_frame("the server did not answer with a hello", raw=first)
        return False

    def _start_batch(self, first: bytes) -> list[Event]:
        hello = Hello.from_bytes(first)
        rest = bytes(self._buf[HELLO_BYTES:])
        self._buf = bytearray()
        self._error = self._refused(hello)
        if self._error is not None:
            return []
        self.mode = Mode.BATCH
        self.hello = hello
        return [hello, *self.frames.feed(rest)]

    def _refused(self, hello: Hello) -> JitterProtocolError | None:
        if self.versions is None:
            return None
        if hello.version not in self.versions:
            known = ", ".join(map(str, sorted(self.versions)))
            message = f"version {hello.version} is not supported (this server speaks {known})"
            return JitterProtocolError(ErrorCode.BAD_VERSION, message)
        if hello.flags:
            return bad_frame(f"hello flags 0x{hello.flags:04x} are reserved")
        return None


class ServerDecoder(ConnectionDecoder):
    """A server's view: legacy requests or, after a hello of a version it speaks, request
    frames."""

    def __init__(
        self, limits: Limits | None = None, versions: frozenset[int] = SUPPORTED_VERSIONS
    ) -> None:
        super().__init__(REQUEST_TYPES, limits, legacy=True, versions=versions)


class ClientDecoder(ConnectionDecoder):
    """A batch client's view: the server's hello (any version: the client asked for one
    it speaks), then reply frames; anything but a hello first is an error."""

    def __init__(self, limits: Limits | None = None) -> None:
        super().__init__(REPLY_TYPES, limits, legacy=False, versions=None)
