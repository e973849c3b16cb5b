"""The control server and client over real Unix sockets: round trips, concurrency, hostile
clients, stale and live socket files, and peer credentials (another uid in a subprocess)."""

from __future__ import annotations

import json
import logging
import os
import socket
import stat
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest

from hasherd import __version__
from hasherd.control import client as client_module
from hasherd.control.client import (
    SYSTEM_SOCKET,
    ControlClient,
    ControlError,
    DaemonUnavailable,
    default_socket_path,
)
from hasherd.control.protocol import ProtocolError
from hasherd.control.server import ControlServer, ControlServerError
from hasherd.errors import HasherError, InputError
from hasherd.transport.unix import AlreadyRunning

NOBODY = 65534
OTHER_GID = 4242
pytestmark = pytest.mark.anyio


@pytest.fixture
def sock_path(sock_dir: Path) -> Path:
    return sock_dir / "control.sock"


@asynccontextmanager
async def serving(server: ControlServer) -> AsyncIterator[ControlServer]:
    with anyio.fail_after(60):  # a hang guard, not a timing assertion
        async with anyio.create_task_group() as tg:
            assert await tg.start(server.serve) == server.path
            try:
                yield server
            finally:
                server.stop()


def call(path: Path, method: str, **params: Any) -> Any:
    with ControlClient(path, timeout=20) as client:
        return client.call(method, **params)


async def acall(path: Path, method: str, **params: Any) -> Any:
    return await anyio.to_thread.run_sync(lambda: call(path, method, **params))


async def read_to_eof(stream: anyio.abc.ByteReceiveStream) -> list[dict[str, Any]]:
    """Every line the server sends until it closes the connection."""
    data = b""
    while True:
        try:
            data += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return [json.loads(line) for line in data.splitlines()]


async def read_lines(stream: anyio.abc.ByteReceiveStream, count: int) -> list[dict[str, Any]]:
    data = b""
    while data.count(b"\n") < count:
        data += await stream.receive()
    return [json.loads(line) for line in data.splitlines()]


async def test_ping_round_trip_mode_and_cleanup(sock_path: Path) -> None:
    async with serving(ControlServer(sock_path)) as server:
        assert stat.S_ISSOCK(sock_path.stat().st_mode)
        assert stat.S_IMODE(sock_path.stat().st_mode) == 0o660
        assert await acall(sock_path, "ping") == {
            "pong": True,
            "version": __version__,
            "protocol": 1,
        }
        assert "ping" in server.methods
    assert not sock_path.exists()
    assert server.stats()["forbidden"] == 0 and server.stats()["requests"] == 1


async def test_requests_on_one_connection_are_answered_in_order(sock_path: Path) -> None:
    server = ControlServer(sock_path)

    async def slow_echo(params: dict[str, Any]) -> Any:
        await anyio.sleep(params["delay"])
        return params["n"]

    server.register("echo", slow_echo)
    lines = b"".join(
        b'{"v":1,"id":%d,"method":"echo","params":{"n":%d,"delay":%s}}\n' % (i, i * 10, d)
        for i, d in enumerate([b"0.05", b"0", b"0.01"], start=1)
    )
    async with serving(server), await anyio.connect_unix(sock_path) as stream:
        await stream.send(lines[:30])  # a request split across writes is reassembled
        await stream.send(lines[30:])
        answers = await read_lines(stream, 3)
    assert [(a["id"], a["result"]) for a in answers] == [(1, 10), (2, 20), (3, 30)]


async def test_handler_errors_map_to_codes_and_the_connection_lives_on(
    sock_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = ControlServer(sock_path)

    class DeviceBusyError(HasherError):
        pass

    async def fail(params: dict[str, Any]) -> Any:
        kind = params["kind"]
        if kind == "busy":
            raise DeviceBusyError("asic0 is flashing")
        if kind == "input":
            raise InputError("seed", "not hex")
        if kind == "not_json":
            return {"x": {1, 2}}
        raise RuntimeError("boom")

    server.register("fail", fail)
    with caplog.at_level(logging.ERROR, logger="hasherd.control.server"):
        async with serving(server):
            with ControlClient(sock_path, timeout=20) as client:
                codes: dict[str, tuple[str, str]] = {}
                for kind in ("busy", "input", "not_json", "crash"):
                    with pytest.raises(ControlError) as caught:
                        await anyio.to_thread.run_sync(partial(client.call, "fail", kind=kind))
                    codes[kind] = (caught.value.code, caught.value.message)
                pong = await anyio.to_thread.run_sync(client.call, "ping")
    assert codes["busy"] == ("device_busy", "asic0 is flashing")
    assert codes["input"] == ("invalid_params", "seed: not hex")
    assert codes["not_json"][0] == "internal"
    assert codes["crash"] == ("internal", "fail failed: RuntimeError (see the daemon log)")
    assert pong["pong"] is True
    crash = [r for r in caplog.records if "control method 'fail' failed" in r.getMessage()]
    assert crash and crash[0].exc_info is not None and "boom" in caplog.text


async def test_a_hundred_concurrent_clients(sock_path: Path) -> None:
    server = ControlServer(sock_path)
    arrived = 0
    everyone = anyio.Event()

    async def gather(params: dict[str, Any]) -> Any:
        nonlocal arrived
        arrived += 1
        if arrived == 100:
            everyone.set()
        await everyone.wait()  # each answer waits for all 100 connections to be open
        return params["n"] * 2

    server.register("gather", gather)
    results: dict[int, Any] = {}
    limiter = anyio.CapacityLimiter(100)

    async def client(n: int) -> None:
        results[n] = await anyio.to_thread.run_sync(
            lambda: call(sock_path, "gather", n=n), limiter=limiter
        )

    async with serving(server), anyio.create_task_group() as tg:
        for n in range(100):
            tg.start_soon(client, n)
    assert results == {n: n * 2 for n in range(100)}


async def test_bad_requests_get_errors_and_others_are_still_served(sock_path: Path) -> None:
    lines = [
        b"this is not json",
        b'{"v":2,"id":1,"method":"ping"}',
        b'{"v":1,"id":2,"method":"reboot"}',
        b'{"v":1,"id":3}',
        b'{"v":1,"id":4,"method":"ping","params":[]}',
        b'{"v":1,"id":5,"method":"ping"}',
    ]
    async with serving(ControlServer(sock_path)), await anyio.connect_unix(sock_path) as bad:
        await bad.send(b"\n".join(lines) + b"\n")
        answers = await read_lines(bad, len(lines))
        assert await acall(sock_path, "ping")
    codes = [(a["id"], a["ok"], a.get("error", {}).get("code")) for a in answers]
    assert codes == [
        (None, False, "bad_request"),
        (1, False, "unsupported_version"),
        (2, False, "unknown_method"),
        (3, False, "bad_request"),
        (4, False, "invalid_params"),
        (5, True, None),
    ]
    assert "known: ping" in answers[2]["error"]["message"]


@pytest.mark.parametrize("newline", [b"", b"\n"])
async def test_oversized_line_gets_an_error_then_close(sock_path: Path, newline: bytes) -> None:
    server = ControlServer(sock_path, max_line_bytes=4096)
    async with serving(server), await anyio.connect_unix(sock_path) as stream:
        await stream.send(b"x" * 5000 + newline)
        answers = await read_to_eof(stream)
        assert await acall(sock_path, "ping")
    assert [(a["id"], a["error"]["code"]) for a in answers] == [(None, "too_large")]


async def test_last_line_without_newline_is_answered_at_eof(sock_path: Path) -> None:
    async with serving(ControlServer(sock_path)), await anyio.connect_unix(sock_path) as stream:
        await stream.send(b'{"v":1,"id":"last","method":"ping"}')
        await stream.send_eof()
        answers = await read_to_eof(stream)
    assert [(a["id"], a["ok"]) for a in answers] == [("last", True)]


async def test_abandoned_partial_line_is_closed_after_the_timeout(sock_path: Path) -> None:
    server = ControlServer(sock_path, read_timeout=0.2)
    async with serving(server), await anyio.connect_unix(sock_path) as stream:
        await stream.send(b'{"v":1,"id":1,"method":"pi')
        answers = await read_to_eof(stream)
        assert await acall(sock_path, "ping")
    assert [(a["id"], a["error"]["code"]) for a in answers] == [(None, "timeout")]
    assert server.stats()["timeouts"] == 1


async def test_idle_connections_close_only_with_an_idle_timeout(sock_path: Path) -> None:
    server = ControlServer(sock_path, read_timeout=5, idle_timeout=0.1)
    async with serving(server), await anyio.connect_unix(sock_path) as stream:
        assert await read_to_eof(stream) == []  # closed silently: nothing was pending
    assert server.stats()["timeouts"] == 1


async def test_connections_past_the_cap_are_refused(sock_path: Path) -> None:
    server = ControlServer(sock_path, max_connections=2)
    ping = b'{"v":1,"id":1,"method":"ping"}\n'
    async with serving(server):
        first = await anyio.connect_unix(sock_path)
        async with first, await anyio.connect_unix(sock_path) as second:
            for held in (first, second):
                await held.send(ping)
                assert (await read_lines(held, 1))[0]["ok"]
            async with await anyio.connect_unix(sock_path) as third:
                answers = await read_to_eof(third)
            await first.aclose()
            while True:  # a slot frees once the server has seen the close
                try:
                    pong = await acall(sock_path, "ping")
                    break
                except ControlError as exc:
                    assert exc.code == "busy"
                    await anyio.sleep(0.01)
    assert [(a["id"], a["error"]["code"]) for a in answers] == [(None, "busy")]
    assert "limit 2" in answers[0]["error"]["message"]
    assert pong["pong"] and server.stats()["busy"] >= 1


async def test_stale_socket_file_is_replaced(sock_path: Path) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(sock_path))  # bound, never listening: connecting is refused
    assert stat.S_ISSOCK(sock_path.stat().st_mode)
    async with serving(ControlServer(sock_path)):
        assert (await acall(sock_path, "ping"))["pong"]


async def test_a_second_server_on_a_live_path_is_refused(sock_path: Path) -> None:
    async with serving(ControlServer(sock_path)):
        with pytest.raises(AlreadyRunning, match="already running"):
            await ControlServer(sock_path).serve()
        assert (await acall(sock_path, "ping"))["pong"]  # the first is untouched


async def test_a_non_socket_file_is_never_replaced(sock_path: Path) -> None:
    sock_path.write_text("precious")
    with pytest.raises(ControlServerError, match="not a socket"):
        await ControlServer(sock_path).serve()
    assert sock_path.read_text() == "precious"


async def test_missing_parent_directory_is_created(sock_dir: Path) -> None:
    path = sock_dir / "run" / "hasherd" / "c.sock"
    async with serving(ControlServer(path)):
        assert (await acall(path, "ping"))["pong"]
    assert path.parent.is_dir() and not path.exists()


async def test_stop_leaves_a_socket_file_that_is_no_longer_its_own(sock_path: Path) -> None:
    async with serving(ControlServer(sock_path)):
        sock_path.unlink()
        sock_path.write_text("someone else's")
    assert sock_path.read_text() == "someone else's"


async def test_unknown_group_is_a_setup_error(sock_path: Path) -> None:
    with pytest.raises(ControlServerError, match="does not exist"):
        await ControlServer(sock_path, group="no-such-group-hasherd").serve()


def test_register_refuses_duplicates() -> None:
    server = ControlServer("/nonexistent/c.sock")

    async def handler(params: dict[str, Any]) -> Any:
        return None

    server.register("status", handler)
    for name in ("status", "ping", ""):
        with pytest.raises(ValueError, match="already registered"):
            server.register(name, handler)
    assert server.methods == ("ping", "status")


CHILD = """
import json, os, sys
from hasherd.control.client import ControlClient, ControlError
uid, gid, groups = int(sys.argv[2]), int(sys.argv[3]), [int(g) for g in sys.argv[4:]]
os.setgroups(groups); os.setgid(gid); os.setuid(uid)
try:
    with ControlClient(sys.argv[1], timeout=20) as client:
        print(json.dumps({"result": client.call("ping")}))
except ControlError as exc:
    print(json.dumps({"code": exc.code, "message": exc.message}))
"""


async def as_nobody(path: Path, gid: int = NOBODY, groups: tuple[int, ...] = ()) -> Any:
    """Call ping from a child process that drops to uid nobody before connecting."""
    command = [sys.executable, "-c", CHILD, str(path), str(NOBODY), str(gid), *map(str, groups)]
    done = await anyio.run_process(command, check=False)
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)


root_only = pytest.mark.skipif(os.geteuid() != 0, reason="switching to another uid needs root")


@root_only
async def test_another_uid_is_forbidden_by_peer_credentials(sock_path: Path) -> None:
    server = ControlServer(sock_path, mode=0o666)  # the file lets anyone connect
    async with serving(server):
        answer = await as_nobody(sock_path)
    assert answer["code"] == "forbidden" and "not allowed" in answer["message"]
    assert server.stats()["forbidden"] == 1


@root_only
async def test_another_uid_is_stopped_by_the_socket_mode(sock_path: Path) -> None:
    server = ControlServer(sock_path)  # 0660, owner and group root
    async with serving(server):
        answer = await as_nobody(sock_path)
    assert answer["code"] == "forbidden" and "permission denied" in answer["message"]
    assert server.stats()["accepted"] == 0


@root_only
@pytest.mark.parametrize(("gid", "groups"), [(NOBODY, (OTHER_GID,)), (OTHER_GID, ())])
async def test_members_of_the_control_group_are_admitted(
    sock_path: Path, gid: int, groups: tuple[int, ...]
) -> None:
    server = ControlServer(sock_path, group=OTHER_GID)
    async with serving(server):
        assert sock_path.stat().st_gid == OTHER_GID
        answer = await as_nobody(sock_path, gid, groups)
    assert answer == {"result": {"pong": True, "version": __version__, "protocol": 1}}


def test_client_without_a_daemon_is_unavailable(sock_path: Path) -> None:
    with pytest.raises(DaemonUnavailable) as missing:
        call(sock_path, "ping")
    assert str(sock_path) in missing.value.message
    assert "systemctl status hasherd" in missing.value.message
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(sock_path))
    with pytest.raises(DaemonUnavailable) as refused:
        call(sock_path, "ping")
    assert refused.value.code == "unavailable" and refused.value.path == str(sock_path)


def test_client_refuses_params_that_are_not_json(sock_path: Path) -> None:
    with pytest.raises(ControlError) as caught:
        call(sock_path, "status", since={1, 2})
    assert caught.value.code == "invalid_params"
    assert isinstance(caught.value, HasherError) and not isinstance(caught.value, ProtocolError)


@pytest.mark.parametrize(
    ("env", "uid", "expected"),
    [
        ({"HASHERD_CONTROL_SOCKET": "/srv/h.sock"}, 0, Path("/srv/h.sock")),
        ({"RUNTIME_DIRECTORY": "/run/hasherd"}, 998, Path("/run/hasherd/control.sock")),
        ({}, 0, SYSTEM_SOCKET),
        ({"XDG_RUNTIME_DIR": "/run/user/1000"}, 1000, Path("/run/user/1000/hasherd/control.sock")),
        ({}, 1000, Path("/tmp/hasherd-1000/control.sock")),
    ],
)
def test_default_socket_path(env: dict[str, str], uid: int, expected: Path) -> None:
    assert default_socket_path(env, uid) == expected


def test_clients_fall_back_to_the_system_socket(
    sock_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    system = sock_dir / "system.sock"
    monkeypatch.setattr(client_module, "SYSTEM_SOCKET", system)
    env = {"XDG_RUNTIME_DIR": str(sock_dir / "user")}
    own = sock_dir / "user" / "hasherd" / "control.sock"
    assert client_module.discover_socket_path(env, 1000) == own  # neither exists
    system.touch()
    assert client_module.discover_socket_path(env, 1000) == system
    own.parent.mkdir(parents=True)
    own.touch()
    assert client_module.discover_socket_path(env, 1000) == own
