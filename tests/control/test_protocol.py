"""Control messages: exact wire bytes, round trips, every malformation named, and a fuzz
showing that ``Request.from_line`` raises nothing but ``ProtocolError``."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hasherd.control.protocol import (
    MAX_LINE_BYTES,
    ErrorCode,
    ErrorInfo,
    ProtocolError,
    Request,
    Response,
    error_code,
)
from hasherd.errors import ConfigError, EvaluatorError, HasherError, InputError

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_request_wire_format_is_one_compact_json_line() -> None:
    line = Request(id=1, method="ping").to_line()
    assert line == b'{"v":1,"id":1,"method":"ping","params":{}}\n'


@pytest.mark.parametrize("request_id", [7, "abc-7", 0, -3, "é✓"])
def test_request_round_trip(request_id: str | int) -> None:
    request = Request(id=request_id, method="status", params={"a": [1, "x", None], "b": 2.5})
    line = request.to_line()
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert line.isascii()
    assert Request.from_line(line) == request
    assert Request.from_line(line.decode()) == request


def test_response_wire_format_and_round_trip() -> None:
    ok = Response.success(3, {"pong": True})
    assert ok.to_line() == b'{"v":1,"id":3,"ok":true,"result":{"pong":true}}\n'
    assert Response.from_line(ok.to_line()) == ok
    failed = Response.failure("q", ErrorCode.UNKNOWN_METHOD, "unknown method 'x'")
    expected = b'{"v":1,"id":"q","ok":false,"error":{"code":"unknown_method","message":"unknown method \'x\'"}}\n'  # noqa: E501
    assert failed.to_line() == expected
    assert Response.from_line(failed.to_line()) == failed
    assert failed.error == ErrorInfo("unknown_method", "unknown method 'x'")


def test_null_params_and_unknown_fields_are_accepted() -> None:
    line = b'{"v":1,"id":1,"method":"ping","params":null,"trace":"x"}'
    assert Request.from_line(line) == Request(id=1, method="ping", params={})
    assert Request.from_line(b'{"v":1,"id":1,"method":"ping"}\r\n').params == {}


BAD_LINES: list[tuple[bytes, str, str, Any]] = [
    (b"not json", "bad_request", "malformed JSON", None),
    (b"", "bad_request", "malformed JSON", None),
    (b"[1, 2]", "bad_request", "not an array", None),
    (b'"ping"', "bad_request", "not a string", None),
    (b"\xff\xfe{}", "bad_request", "not UTF-8", None),
    (b'{"v":1,"method":"ping"}', "bad_request", "missing field 'id'", None),
    (b'{"v":1,"id":true,"method":"ping"}', "bad_request", "'id' must be", None),
    (b'{"v":1,"id":[1],"method":"ping"}', "bad_request", "'id' must be", None),
    (b'{"v":1,"id":' + b"9" * 30 + b',"method":"ping"}', "bad_request", "'id' must be", None),
    (b'{"id":3,"method":"ping"}', "bad_request", "missing field 'v'", 3),
    (b'{"v":"1","id":3,"method":"ping"}', "bad_request", "'v' must be an integer", 3),
    (b'{"v":2,"id":3,"method":"ping"}', "unsupported_version", "version 2", 3),
    (b'{"v":0,"id":"z","method":"ping"}', "unsupported_version", "speaks 1", "z"),
    (b'{"v":1,"id":3}', "bad_request", "missing field 'method'", 3),
    (b'{"v":1,"id":3,"method":""}', "bad_request", "'method' must be a name", 3),
    (b'{"v":1,"id":3,"method":5}', "bad_request", "'method' must be a name", 3),
    (b'{"v":1,"id":3,"method":"x","params":[1]}', "invalid_params", "not an array", 3),
    (b'{"v":1,"id":3,"method":"x","params":"a"}', "invalid_params", "not a string", 3),
    (b'{"v":1,"id":3,"method":"x","params":{"a":NaN}}', "bad_request", "NaN", None),
    (b"[" * 50_000, "bad_request", "malformed JSON", None),
]


@pytest.mark.parametrize(("line", "code", "words", "request_id"), BAD_LINES)
def test_malformed_requests_name_the_problem(
    line: bytes, code: str, words: str, request_id: Any
) -> None:
    with pytest.raises(ProtocolError) as caught:
        Request.from_line(line)
    assert caught.value.code == code
    assert words in caught.value.message
    assert caught.value.request_id == request_id
    assert caught.value.raw == line[:200].rstrip(b"\n")
    response = Response.for_error(caught.value)
    assert response.id == request_id and not response.ok
    assert response.error is not None and response.error.code == code


def test_line_limit_counts_bytes_without_the_newline() -> None:
    head = b'{"v":1,"id":1,"method":"ping"}'
    exact = head + b" " * (MAX_LINE_BYTES - len(head))
    assert Request.from_line(exact + b"\n").method == "ping"
    with pytest.raises(ProtocolError) as caught:
        Request.from_line(exact + b" ")
    assert caught.value.code == ErrorCode.TOO_LARGE
    with pytest.raises(ProtocolError) as small:
        Request.from_line(head, max_bytes=10)
    assert small.value.code == "too_large" and "exceeds 10" in small.value.message


def test_non_json_values_cannot_be_sent() -> None:
    with pytest.raises(ProtocolError) as caught:
        Response.success(1, {"x": object()}).to_line()
    assert caught.value.code == ErrorCode.INTERNAL
    with pytest.raises(ProtocolError) as nan:
        Response.success(1, float("nan")).to_line()
    assert nan.value.code == ErrorCode.INTERNAL
    with pytest.raises(ProtocolError) as params:
        Request(id=1, method="x", params={"when": {1, 2}}).to_line()
    assert params.value.code == ErrorCode.INVALID_PARAMS and params.value.request_id == 1


@pytest.mark.parametrize(
    "line",
    [
        b"{}",
        b'{"v":1,"id":1}',
        b'{"v":1,"id":1,"ok":"yes"}',
        b'{"v":1,"id":1,"ok":false}',
        b'{"v":1,"id":1,"ok":false,"error":{"code":1,"message":"m"}}',
        b'{"v":1,"id":{},"ok":true}',
        b'{"v":9,"id":1,"ok":true}',
    ],
)
def test_malformed_responses_raise_protocol_error(line: bytes) -> None:
    with pytest.raises(ProtocolError):
        Response.from_line(line)


class DeviceBusyError(HasherError):
    pass


class NamedError(HasherError):
    control_code = "custom_code"


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (ProtocolError("forbidden", "no"), "forbidden"),
        (InputError("seeds[3]", "out of range"), "invalid_params"),
        (ConfigError("control.group", "no such group"), "config"),
        (EvaluatorError("cuda", "no GPU"), "evaluator"),
        (DeviceBusyError("busy"), "device_busy"),
        (NamedError("x"), "custom_code"),
        (HasherError("plain"), "error"),
        (ValueError("boom"), "internal"),
    ],
)
def test_error_codes_follow_the_error_class(exc: BaseException, code: str) -> None:
    assert error_code(exc) == code
    response = Response.for_error(exc, request_id=9)
    assert response.error == ErrorInfo(
        code, exc.message if isinstance(exc, ProtocolError) else str(exc)
    )
    assert response.id == 9


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
request_like = st.fixed_dictionaries(
    {},
    optional={
        "v": st.one_of(st.just(1), json_values),
        "id": st.one_of(st.integers(), st.text(max_size=200), json_values),
        "method": st.one_of(st.text(max_size=10), json_values),
        "params": st.one_of(st.dictionaries(st.text(max_size=5), json_values), json_values),
    },
)


def _parse_or_protocol_error(line: bytes | str) -> Request | None:
    try:
        return Request.from_line(line)
    except ProtocolError as exc:
        assert exc.code in {c.value for c in ErrorCode}
        return None


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(line: bytes) -> None:
    _parse_or_protocol_error(line)


@FUZZ
@given(st.text(max_size=200))
def test_fuzz_random_text(line: str) -> None:
    _parse_or_protocol_error(line)


@FUZZ
@given(request_like)
def test_fuzz_request_shaped_json(obj: dict[str, Any]) -> None:
    request = _parse_or_protocol_error(json.dumps(obj))
    if request is not None:
        assert request.method == obj["method"] and request.id == obj["id"]
        assert Request.from_line(request.to_line()) == request
