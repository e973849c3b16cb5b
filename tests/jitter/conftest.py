"""Shared helpers of the jitter RPC tests: short socket paths, a service in the test's
event loop, and raw-socket readers."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest

from hasherd.jitter.service import JitterService
from hasherd.kernel.memory import JitterMemory
from hasherd.protocol.jitter import ClientDecoder, Frame, Hello

VECTORS = Path(__file__).parents[1] / "data" / "kernel-v1.json"
DATA: dict[str, Any] = json.loads(VECTORS.read_text())


def memory_of(case: dict[str, Any]) -> JitterMemory:
    return JitterMemory.from_frames(case["memory"])


@pytest.fixture
def sock_path(sock_dir: Path) -> Path:
    return sock_dir / "jitter.sock"


@asynccontextmanager
async def serving(service: JitterService) -> AsyncIterator[JitterService]:
    with anyio.fail_after(60):  # a hang guard, not a timing assertion
        async with anyio.create_task_group() as tg:
            assert await tg.start(service.serve) == service.path
            try:
                yield service
            finally:
                service.stop()


async def settle(service: JitterService, open_connections: int = 0, accepted: int = 0) -> None:
    """Wait until ``accepted`` connections were accepted and only ``open_connections``
    remain (the closed ones fully counted)."""
    while (stats := service.stats())["connections"] > open_connections or (
        stats["connections_total"] < accepted
    ):
        await anyio.sleep(0.01)


async def read_exact(stream: anyio.abc.ByteReceiveStream, n: int) -> bytes:
    data = b""
    while len(data) < n:
        data += await stream.receive(n - len(data))
    return data


async def read_to_eof(stream: anyio.abc.ByteReceiveStream) -> bytes:
    data = b""
    while True:
        try:
            data += await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return data


def decode_replies(data: bytes) -> list[Hello | Frame]:
    """A server's whole batch-mode output: its hello, then frames (strictly valid)."""
    decoder = ClientDecoder()
    events = decoder.feed(data)
    assert decoder.error is None and decoder.frames.pending == 0
    return events


class Batch:
    """A batch-mode connection: ``send`` frames, ``read`` the next replies in order."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self.decoder = ClientDecoder()
        self.events: list[Hello | Frame] = []

    async def send(self, *frames: Frame) -> None:
        await self.stream.send(b"".join(f.to_bytes() for f in frames))

    async def read(self, count: int) -> list[Any]:
        while len(self.events) < count:
            self.events += self.decoder.feed(await self.stream.receive())
            assert self.decoder.error is None
        out, self.events = self.events[:count], self.events[count:]
        return out


@asynccontextmanager
async def batch(path: Path) -> AsyncIterator[Batch]:
    """A connection past the hello exchange."""
    async with await anyio.connect_unix(path) as stream:
        conn = Batch(stream)
        await stream.send(Hello().to_bytes())
        assert await conn.read(1) == [Hello()]
        yield conn


@pytest.fixture
def h() -> Any:
    """This module's helpers, for the tests (conftest is not importable by name)."""
    return sys.modules[__name__]
