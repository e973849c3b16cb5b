"""Control-socket messages: versioned JSON lines, parsed into frozen dataclasses.

One request or response per line (UTF-8 JSON object, ``\\n``-terminated)::

    {"v": 1, "id": 7, "method": "status", "params": {}}
    {"v": 1, "id": 7, "ok": true, "result": {...}}
    {"v": 1, "id": 7, "ok": false, "error": {"code": "unknown_method", "message": "..."}}

Pure: no sockets, no event loop. Every way a line can be wrong is a ``ProtocolError``
carrying the error code to answer with and, where it could be read, the request id.
docs/control-protocol.md is the reference.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from hasherd.errors import HasherError, InputError

PROTOCOL_VERSION = 1
MAX_LINE_BYTES = 64 * 1024  # a request line, newline excluded
MAX_ID_CHARS = 128
_RAW_KEPT = 200  # bytes of an offending line kept on the error, for logs

RequestId = str | int


class ErrorCode(StrEnum):
    """The ``error.code`` values this server sends; clients must accept others too."""

    BAD_REQUEST = "bad_request"  # not JSON, not an object, a field missing or mistyped
    UNSUPPORTED_VERSION = "unsupported_version"
    UNKNOWN_METHOD = "unknown_method"
    INVALID_PARAMS = "invalid_params"
    TOO_LARGE = "too_large"  # the line exceeds the limit; the connection is closed
    FORBIDDEN = "forbidden"  # the peer is not allowed; the connection is closed
    BUSY = "busy"  # too many connections; the connection is closed
    TIMEOUT = "timeout"  # a partial line waited too long; the connection is closed
    INTERNAL = "internal"  # a handler failed unexpectedly (the daemon logs the traceback)


class ProtocolError(HasherError):
    """A control message is malformed, or a request cannot be served as asked.

    ``code`` is the ``error.code`` to answer with; ``request_id`` the id of the request
    when it could be read (else ``None``); ``raw`` the start of the offending line.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        request_id: RequestId | None = None,
        raw: bytes = b"",
    ) -> None:
        self.code = str(code)
        self.message = message
        self.request_id = request_id
        self.raw = bytes(raw[:_RAW_KEPT])
        super().__init__(f"{self.code}: {message}")


@dataclass(frozen=True)
class ErrorInfo:
    code: str
    message: str


@dataclass(frozen=True)
class Request:
    id: RequestId
    method: str
    params: dict[str, Any] = field(default_factory=dict)
    v: int = PROTOCOL_VERSION

    @classmethod
    def from_line(cls, line: bytes | str, max_bytes: int = MAX_LINE_BYTES) -> Request:
        """Parse one line (trailing newline optional). Raises only ``ProtocolError``."""
        raw = _raw_bytes(line, max_bytes)
        obj = _json_object(raw)
        request_id = _request_id(obj, raw)
        _check_version(obj, request_id, raw)
        method = obj.get("method")
        if not isinstance(method, str) or not method:
            problem = "missing field 'method'" if method is None else "'method' must be a name"
            raise ProtocolError(ErrorCode.BAD_REQUEST, problem, request_id=request_id, raw=raw)
        params = obj.get("params")
        params = {} if params is None else params
        if not isinstance(params, dict):
            raise ProtocolError(
                ErrorCode.INVALID_PARAMS,
                f"'params' must be an object, not {_json_type(params)}",
                request_id=request_id,
                raw=raw,
            )
        return cls(id=request_id, method=method, params=params, v=PROTOCOL_VERSION)

    def to_line(self) -> bytes:
        message = {"v": self.v, "id": self.id, "method": self.method, "params": self.params}
        try:
            return _dump(message)
        except ProtocolError as exc:
            raise ProtocolError(ErrorCode.INVALID_PARAMS, exc.message, request_id=self.id) from exc


@dataclass(frozen=True)
class Response:
    id: RequestId | None
    ok: bool
    result: Any = None
    error: ErrorInfo | None = None
    v: int = PROTOCOL_VERSION

    @classmethod
    def success(cls, request_id: RequestId | None, result: Any) -> Response:
        return cls(id=request_id, ok=True, result=result)

    @classmethod
    def failure(cls, request_id: RequestId | None, code: str, message: str) -> Response:
        return cls(id=request_id, ok=False, error=ErrorInfo(str(code), message))

    @classmethod
    def for_error(cls, exc: BaseException, request_id: RequestId | None = None) -> Response:
        """The failure response for ``exc`` (``request_id`` used when ``exc`` has none)."""
        if isinstance(exc, ProtocolError) and exc.request_id is not None:
            request_id = exc.request_id
        message = exc.message if isinstance(exc, ProtocolError) else str(exc)
        return cls.failure(request_id, error_code(exc), message or type(exc).__name__)

    @classmethod
    def from_line(cls, line: bytes | str, max_bytes: int = 16 * 1024 * 1024) -> Response:
        """Parse a server's line (for clients). Raises only ``ProtocolError``."""
        raw = _raw_bytes(line, max_bytes)
        obj = _json_object(raw)
        request_id = obj.get("id")
        if request_id is not None and not _valid_id(request_id):
            raise ProtocolError(ErrorCode.BAD_REQUEST, "response 'id' is malformed", raw=raw)
        _check_version(obj, request_id, raw)
        ok = obj.get("ok")
        if not isinstance(ok, bool):
            raise ProtocolError(ErrorCode.BAD_REQUEST, "response lacks a boolean 'ok'", raw=raw)
        if ok:
            return cls.success(request_id, obj.get("result"))
        error = obj.get("error")
        if not isinstance(error, dict):
            raise ProtocolError(ErrorCode.BAD_REQUEST, "failed response lacks 'error'", raw=raw)
        code, message = error.get("code"), error.get("message")
        if not isinstance(code, str) or not isinstance(message, str):
            raise ProtocolError(ErrorCode.BAD_REQUEST, "malformed 'error' object", raw=raw)
        return cls.failure(request_id, code, message)

    def to_line(self) -> bytes:
        """The line to send. A result that is not JSON raises ProtocolError(internal)."""
        message: dict[str, Any] = {"v": self.v, "id": self.id, "ok": self.ok}
        if self.ok:
            message["result"] = self.result
        else:
            info = self.error or ErrorInfo(ErrorCode.INTERNAL, "unspecified error")
            message["error"] = {"code": info.code, "message": info.message}
        return _dump(message)


def error_code(exc: BaseException) -> str:
    """The ``error.code`` for an exception a handler raised.

    ``ProtocolError`` carries its code; a ``HasherError`` subclass may name one in a
    ``control_code`` class attribute; ``InputError`` is ``invalid_params``; any other
    ``HasherError`` is its class name in snake case without ``Error`` (``DeviceError`` ->
    ``device``); anything else is ``internal``.
    """
    if isinstance(exc, ProtocolError):
        return exc.code
    if not isinstance(exc, HasherError):
        return ErrorCode.INTERNAL
    override = getattr(type(exc), "control_code", None)
    if isinstance(override, str) and override:
        return override
    if isinstance(exc, InputError):
        return ErrorCode.INVALID_PARAMS
    if type(exc) is HasherError:
        return "error"
    name = type(exc).__name__.removesuffix("Error") or type(exc).__name__
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _raw_bytes(line: bytes | str, max_bytes: int) -> bytes:
    raw = line.encode("utf-8", "surrogatepass") if isinstance(line, str) else bytes(line)
    raw = raw.removesuffix(b"\n").removesuffix(b"\r")
    if len(raw) > max_bytes:
        raise ProtocolError(
            ErrorCode.TOO_LARGE, f"line of {len(raw)} bytes exceeds {max_bytes}", raw=raw
        )
    return raw


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"not UTF-8: {exc.reason}", raw=raw) from None
    except (ValueError, RecursionError) as exc:
        detail = exc.args[0] if exc.args and isinstance(exc.args[0], str) else "too deep"
        raise ProtocolError(ErrorCode.BAD_REQUEST, f"malformed JSON: {detail}", raw=raw) from None
    if not isinstance(obj, dict):
        problem = f"a message is a JSON object, not {_json_type(obj)}"
        raise ProtocolError(ErrorCode.BAD_REQUEST, problem, raw=raw)
    return obj


def _valid_id(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return abs(value) < 2**63
    return isinstance(value, str) and len(value) <= MAX_ID_CHARS


def _request_id(obj: dict[str, Any], raw: bytes) -> RequestId:
    if "id" not in obj:
        raise ProtocolError(ErrorCode.BAD_REQUEST, "missing field 'id'", raw=raw)
    value = obj["id"]
    if not _valid_id(value):
        problem = f"'id' must be a string (up to {MAX_ID_CHARS} characters) or an integer"
        raise ProtocolError(ErrorCode.BAD_REQUEST, problem, raw=raw)
    request_id: RequestId = value
    return request_id


def _check_version(obj: dict[str, Any], request_id: RequestId | None, raw: bytes) -> None:
    if "v" not in obj:
        raise ProtocolError(
            ErrorCode.BAD_REQUEST, "missing field 'v'", request_id=request_id, raw=raw
        )
    version = obj["v"]
    if isinstance(version, bool) or not isinstance(version, int):
        raise ProtocolError(
            ErrorCode.BAD_REQUEST, "'v' must be an integer", request_id=request_id, raw=raw
        )
    if version != PROTOCOL_VERSION:
        problem = (
            f"protocol version {version} is not supported (this end speaks {PROTOCOL_VERSION})"
        )
        raise ProtocolError(ErrorCode.UNSUPPORTED_VERSION, problem, request_id=request_id, raw=raw)


def _dump(message: dict[str, Any]) -> bytes:
    try:
        text = json.dumps(message, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ProtocolError(ErrorCode.INTERNAL, f"not JSON-serializable: {exc}") from None
    return text.encode("ascii") + b"\n"  # ensure_ascii: lone surrogates travel as escapes


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return "a number"
    return names.get(type(value), type(value).__name__)
