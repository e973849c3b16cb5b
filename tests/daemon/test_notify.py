"""sd_notify, spoken to real datagram sockets: a path socket and an abstract one."""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from hasherd.daemon.notify import Notifier, watchdog_interval, watchdog_loop


@pytest.fixture
def short_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory whose socket paths fit AF_UNIX's 108 bytes."""
    if len(str(tmp_path)) < 80:
        yield tmp_path
        return
    path = Path(tempfile.mkdtemp(prefix="hd-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def receiver(short_dir: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket, and its path as NOTIFY_SOCKET would name it."""
    path = str(short_dir / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(10)
        yield sock, path


@pytest.fixture
def abstract_receiver() -> Iterator[tuple[socket.socket, str]]:
    name = f"hasherd-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(10)
        yield sock, "@" + name


def test_without_notify_socket_every_call_is_a_no_op(caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier.from_env({})
    assert not notifier.enabled
    assert notifier.ready("up") is False
    assert notifier.watchdog() is False
    assert notifier.stopping() is False
    assert caplog.records == []


def test_datagrams_are_exact(receiver: tuple[socket.socket, str]) -> None:
    sock, path = receiver
    notifier = Notifier.from_env({"NOTIFY_SOCKET": path})
    assert notifier.enabled and notifier.address == path
    assert notifier.ready()
    assert sock.recv(4096) == b"READY=1"
    assert notifier.ready("serving 3 devices")
    assert sock.recv(4096) == b"READY=1\nSTATUS=serving 3 devices"
    assert notifier.status("line one\nline two")
    assert sock.recv(4096) == b"STATUS=line one line two"
    assert notifier.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert notifier.stopping("bye")
    assert sock.recv(4096) == b"STOPPING=1\nSTATUS=bye"


def test_reloading_carries_the_monotonic_clock(receiver: tuple[socket.socket, str]) -> None:
    sock, path = receiver
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert Notifier(path).reloading("reloading config")
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    match = re.fullmatch(
        rb"RELOADING=1\nMONOTONIC_USEC=(\d+)\nSTATUS=reloading config", sock.recv(4096)
    )
    assert match is not None
    assert before <= int(match.group(1)) <= after


def test_abstract_socket(abstract_receiver: tuple[socket.socket, str]) -> None:
    sock, address = abstract_receiver
    notifier = Notifier.from_env({"NOTIFY_SOCKET": address})
    assert notifier.ready("abstract")
    assert sock.recv(4096) == b"READY=1\nSTATUS=abstract"
    assert notifier.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"


def test_from_env_can_hide_the_socket_from_children(
    receiver: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, path = receiver
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    notifier = Notifier.from_env(unset=True)
    assert "NOTIFY_SOCKET" not in os.environ
    assert notifier.ready()
    assert sock.recv(4096) == b"READY=1"


def test_send_failures_are_logged_not_raised(
    short_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier(str(short_dir / "nobody-listens.sock"))
    with caplog.at_level(logging.WARNING, logger="hasherd.daemon.notify"):
        assert notifier.ready() is False
    assert "cannot notify systemd" in caplog.text


def test_unsupported_addresses_disable_notification(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="hasherd.daemon.notify"):
        notifier = Notifier("vsock:2:1234")
    assert not notifier.enabled and notifier.ready() is False
    assert "not supported" in caplog.text


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "<self>"}, 15.0),
        ({"WATCHDOG_USEC": "1000", "WATCHDOG_PID": "<self>"}, 0.0005),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "<other>"}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "abc"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "30s"}, None),
        ({"WATCHDOG_PID": "<self>"}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    pids = {"<self>": str(os.getpid()), "<other>": str(os.getpid() + 1)}
    environ = {key: pids.get(value, value) for key, value in env.items()}
    assert watchdog_interval(environ) == expected


def test_watchdog_interval_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval() == 2.0


@pytest.mark.anyio
async def test_watchdog_loop_pings_from_the_event_loop(
    receiver: tuple[socket.socket, str],
) -> None:
    sock, path = receiver
    with anyio.fail_after(30):  # a hang guard, not a timing assertion
        async with anyio.create_task_group() as tg:
            tg.start_soon(watchdog_loop, Notifier(path), 0.01)
            pings = [await anyio.to_thread.run_sync(sock.recv, 64) for _ in range(2)]
            tg.cancel_scope.cancel()
    assert pings == [b"WATCHDOG=1", b"WATCHDOG=1"]


@pytest.mark.anyio
async def test_watchdog_loop_refuses_a_non_positive_interval() -> None:
    with pytest.raises(ValueError, match="positive"):
        await watchdog_loop(Notifier(None), 0)
