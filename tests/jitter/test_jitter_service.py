"""The jitter service over real Unix sockets: parity with the in-process lookup on every
jitter vector (legacy and batch), pipelining, hostile and broken clients, 64 concurrent
clients, memories, socket files and peer credentials."""

from __future__ import annotations

import functools
import json
import os
import socket
import stat
import sys
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest

from hasherd.jitter.service import (
    JitterAlreadyRunning,
    JitterService,
    JitterSocketError,
    default_jitter_socket_path,
    run_jitter_service,
)
from hasherd.kernel.jitter_batch import lookup_many
from hasherd.kernel.memory import JitterMemory
from hasherd.protocol.jitter import (
    ErrorCode,
    ErrorReply,
    Hello,
    InfoReply,
    InfoRequest,
    LegacyReply,
    LegacyRequest,
    LookupReply,
    LookupRequest,
    UploadReply,
    UploadRequest,
)
from hasherd.transport.unix import AlreadyRunning
from hasherd.transport.unix_server import ServerState

pytestmark = pytest.mark.anyio
RNG_FRAMES = np.random.default_rng(5).integers(0, 2**32, (40, 12), dtype=np.uint64)
MEMORY = JitterMemory(RNG_FRAMES.astype(np.uint32))


def records(n: int, seed: int = 0) -> np.ndarray:
    """Records that hit every zone: slots taken from MEMORY's frames, passes 0..20."""
    rng = np.random.default_rng(seed)
    rec = np.zeros((n, 14), dtype=np.uint32)
    rec[:, :12] = MEMORY.frames[rng.integers(0, len(MEMORY), n)]
    rec[:, 12] = rng.integers(0, 2**32, n, dtype=np.uint64)
    rec[:, 13] = np.arange(n) % 21
    return rec


def legacy_bytes(rec: np.ndarray) -> bytes:
    return rec.astype("<u4").tobytes()


async def test_every_jitter_vector_over_legacy_and_batch(h: Any, sock_path: Path) -> None:
    cases = h.DATA["jitter"]
    service = JitterService(sock_path)
    async with h.serving(service), h.batch(sock_path) as batch:
        for i, case in enumerate(cases):
            memory = h.memory_of(case)
            service.add_memory(memory, default=True)
            async with await anyio.connect_unix(sock_path) as legacy:
                await legacy.send(
                    LegacyRequest(case["slots"], case["key"], case["pass"]).to_bytes()
                )
                got = LegacyReply.from_bytes(await h.read_exact(legacy, 4))
            assert got.jitter == case["jitter"], i
            rec = np.array([[*case["slots"], case["key"], case["pass"]]])
            await batch.send(LookupRequest.of(i, case["memory_id"], rec))
            [reply] = await batch.read(1)
            assert isinstance(reply, LookupReply) and reply.request_id == i
            assert (reply.jitter_array().tolist(), reply.found_array().tolist()) == (
                [case["jitter"]],
                [case["found"]],
            ), i
    stats = service.stats()
    assert stats["legacy_requests"] == stats["batches"] == len(cases)
    assert stats["errors_total"] == 0 and stats["state"] == "stopped"


async def test_pipelined_legacy_requests_in_odd_chunks(h: Any, sock_path: Path) -> None:
    rec = records(1000)
    want = lookup_many(MEMORY, rec)[0].astype("<u4").tobytes()
    async with (
        h.serving(JitterService(sock_path, MEMORY)) as service,
        await anyio.connect_unix(sock_path) as stream,
    ):
        data = legacy_bytes(rec)
        for i in range(0, len(data), 997):  # frames split across writes
            await stream.send(data[i : i + 997])
        assert await h.read_exact(stream, 4000) == want
        await stream.send(data[:56])  # one at a time still works, byte by byte
        for byte in data[56:112]:
            await stream.send(bytes([byte]))
        assert await h.read_exact(stream, 8) == want[:8]
    assert service.stats()["legacy_requests"] == 1002


async def test_batch_uploads_memory_ids_and_errors(h: Any, sock_path: Path) -> None:
    other = JitterMemory(MEMORY.frames[::-1].copy())
    rec = records(300, seed=1)
    async with (
        h.serving(JitterService(sock_path, MEMORY, max_uploads=1)) as service,
        h.batch(sock_path) as s,
    ):
        await s.send(InfoRequest(1))
        assert await s.read(1) == [InfoReply(1, MEMORY.memory_id, 40, 1, 65536, 1 << 20)]
        await s.send(LookupRequest.of(2, other.memory_id, rec))
        [err] = await s.read(1)
        assert isinstance(err, ErrorReply) and err.error_code == ErrorCode.UNKNOWN_MEMORY
        await s.send(
            UploadRequest.of(3, other.frames),
            LookupRequest.of(4, other.memory_id, rec),
            LookupRequest.of(5, None, rec),
        )
        up, on_other, on_default = await s.read(3)
        assert up == UploadReply(3, other.memory_id, 40)
        for reply, memory in ((on_other, other), (on_default, MEMORY)):
            jit, found = lookup_many(memory, rec)
            assert reply.jitter_array().tolist() == jit.tolist()
            assert reply.found_array().tolist() == found.tolist()
        assert not service.memories.resolve(other.memory_id).scalar  # numpy even for two
        await s.send(LookupRequest.of(7, other.memory_id, rec[:2]))
        [few] = await s.read(1)
        assert few.jitter_array().tolist() == lookup_many(other, rec[:2])[0].tolist()
        third = JitterMemory(MEMORY.frames[:5].copy())  # evicts `other` (max_uploads=1)
        await s.send(UploadRequest.of(6, third.frames))
        assert await s.read(1) == [UploadReply(6, third.memory_id, 5)]
    assert set(service.memory_ids) == {MEMORY.memory_id, third.memory_id}
    assert service.stats()["errors"] == {"unknown_memory": 1}


@pytest.mark.parametrize(
    ("kwargs", "frame", "code", "closes"),
    [
        ({"max_records": 4}, LookupRequest.of(1, None, records(5)), ErrorCode.TOO_LARGE, True),
        # without uploads the decoder's limit is 0 frames: a real upload is too large ...
        ({"allow_upload": False}, UploadRequest.of(1, MEMORY.frames), ErrorCode.TOO_LARGE, True),
        # ... and an empty one is refused, the connection lives on
        ({"allow_upload": False}, UploadRequest(1, b""), ErrorCode.UPLOAD_REFUSED, False),
        ({}, LookupRequest.of(1, "00" * 31 + "01", records(1)), ErrorCode.UNKNOWN_MEMORY, False),
    ],
)
async def test_refusals(
    h: Any, sock_path: Path, kwargs: dict[str, Any], frame: Any, code: ErrorCode, closes: bool
) -> None:
    async with (
        h.serving(JitterService(sock_path, MEMORY, **kwargs)) as service,
        await anyio.connect_unix(sock_path) as s,
    ):
        await s.send(Hello().to_bytes() + frame.to_bytes() + InfoRequest(2).to_bytes())
        if closes:
            events = h.decode_replies(await h.read_to_eof(s))
        else:
            events = await h.Batch(s).read(3)
    assert isinstance(events[1], ErrorReply) and events[1].error_code == code
    assert events[1].request_id == 1
    assert len(events) == (2 if closes else 3)
    assert service.stats()["errors"] == {code.name.lower(): 1}


async def test_hostile_clients_never_disturb_the_others(h: Any, sock_path: Path) -> None:
    rec = records(50, seed=2)
    want = lookup_many(MEMORY, rec)[0].astype("<u4").tobytes()
    async with (
        h.serving(JitterService(sock_path, MEMORY, read_timeout=0.5)) as service,
        await anyio.connect_unix(sock_path) as good,
    ):
        await good.send(legacy_bytes(rec[:25]))
        async with await anyio.connect_unix(sock_path) as bad:  # garbage after a hello
            await bad.send(Hello().to_bytes() + b"\xff" * 40)
            events = h.decode_replies(await h.read_to_eof(bad))
        assert events[0] == Hello() and events[1].error_code == ErrorCode.BAD_FRAME
        async with await anyio.connect_unix(sock_path) as bad:  # bad version
            await bad.send(Hello(7).to_bytes())
            [err] = h.decode_replies(b"".join([Hello().to_bytes(), await h.read_to_eof(bad)]))[1:]
        assert err.error_code == ErrorCode.BAD_VERSION
        async with await anyio.connect_unix(sock_path) as short:  # short frame, then EOF
            await short.send(legacy_bytes(rec[:1])[:30])
        async with await anyio.connect_unix(sock_path) as half:  # abandoned mid-frame
            await half.send(Hello().to_bytes() + InfoRequest(1).to_bytes()[:5])
            events = h.decode_replies(await h.read_to_eof(half))
        assert events[1].error_code == ErrorCode.TIMEOUT
        await good.send(legacy_bytes(rec[25:]))
        assert await h.read_exact(good, 200) == want
        await h.settle(service, 1, accepted=5)
    errors = service.stats()["errors"]
    assert errors == {"bad_frame": 1, "bad_version": 1, "short_frame": 1, "timeout": 1}


async def test_disconnects_mid_frame_end_only_that_connection(h: Any, sock_path: Path) -> None:
    async with h.serving(JitterService(sock_path, MEMORY)) as service:
        for _ in range(3):
            with socket.socket(socket.AF_UNIX) as raw:
                raw.connect(str(sock_path))
                raw.sendall(legacy_bytes(records(2))[:70])  # a frame and a piece of one
        with socket.socket(socket.AF_UNIX) as raw:  # a batch frame cut short
            raw.connect(str(sock_path))
            raw.sendall(Hello().to_bytes() + LookupRequest.of(1, None, records(3)).to_bytes()[:99])
        await h.settle(service, accepted=4)
        async with await anyio.connect_unix(sock_path) as s:
            await s.send(legacy_bytes(records(3)))
            assert await h.read_exact(s, 12) == lookup_many(MEMORY, records(3))[0].tobytes()
    stats = service.stats()
    assert stats["legacy_requests"] == 3 + 3  # the whole frame of each cut connection
    assert stats["batches"] == 0 and stats["connections_total"] == 5
    assert stats["state"] == "stopped" and stats["connections"] == 0


async def test_64_concurrent_clients(h: Any, sock_path: Path) -> None:
    results: dict[int, bool] = {}

    async def client(i: int) -> None:
        rec = records(64, seed=100 + i)
        jit, found = lookup_many(MEMORY, rec)
        async with await anyio.connect_unix(sock_path) as s:
            if i % 2:
                for half in (rec[:32], rec[32:]):  # pipelined legacy
                    await s.send(legacy_bytes(half))
                results[i] = await h.read_exact(s, 256) == jit.astype("<u4").tobytes()
            else:
                await s.send(Hello().to_bytes() + LookupRequest.of(i, None, rec).to_bytes())
                _, reply = await h.Batch(s).read(2)
                results[i] = reply.jitter_array().tolist() == jit.tolist() and (
                    reply.found_array().tolist() == found.tolist()
                )

    async with (
        h.serving(JitterService(sock_path, MEMORY)) as service,
        anyio.create_task_group() as tg,
    ):
        for i in range(64):
            tg.start_soon(client, i)
    assert results == dict.fromkeys(range(64), True)
    stats = service.stats()
    assert (stats["connections_total"], stats["batches"], stats["legacy_requests"]) == (
        64,
        32,
        32 * 64,
    )
    assert stats["lookups"] == 64 * 64 and stats["latency"]["count"] == 32 + 32 * 64


async def test_no_default_memory_closes_legacy_connections(h: Any, sock_path: Path) -> None:
    async with (
        h.serving(JitterService(sock_path)) as service,
        await anyio.connect_unix(sock_path) as s,
    ):
        await s.send(legacy_bytes(records(1)))
        assert await h.read_to_eof(s) == b""
    assert service.stats()["errors"] == {"no_default_memory": 1}


async def test_stale_socket_is_replaced_and_a_live_one_refused(h: Any, sock_path: Path) -> None:
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(sock_path))
    stale.close()  # the file stays, nobody listens: stale
    async with h.serving(JitterService(sock_path, MEMORY, mode=0o600)) as first:
        assert stat.S_IMODE(sock_path.stat().st_mode) == 0o600
        second = JitterService(sock_path, MEMORY)
        with pytest.raises(JitterAlreadyRunning, match=r"jitter socket .* already running"):
            await second.serve()
        assert second.state == ServerState.FAILED and isinstance(
            JitterAlreadyRunning(""), AlreadyRunning
        )
        assert first.state == ServerState.READY
    assert not sock_path.exists() and first.state == ServerState.STOPPED


async def test_a_non_socket_file_is_never_replaced(sock_path: Path) -> None:
    sock_path.write_text("keep me")
    with pytest.raises(JitterSocketError, match="not a socket"):
        await JitterService(sock_path, MEMORY).serve()
    assert sock_path.read_text() == "keep me"


async def test_run_jitter_service_loads_its_memory(h: Any, sock_dir: Path) -> None:
    path = sock_dir / "sub" / "j.sock"
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            start = functools.partial(run_jitter_service, lambda: MEMORY.frames, path, mode=0o600)
            service = await tg.start(start)
            assert service.default_memory.memory_id == MEMORY.memory_id
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            async with await anyio.connect_unix(path) as s:
                await s.send(legacy_bytes(records(2)))
                assert await h.read_exact(s, 8) == lookup_many(MEMORY, records(2))[0].tobytes()
                other = JitterMemory(MEMORY.frames[:3].copy())
                await service.set_default(other)  # a job with another data set starts
                await s.send(legacy_bytes(records(2)))
                assert await h.read_exact(s, 8) == lookup_many(other, records(2))[0].tobytes()
            assert service.memories.default.memory is other
            assert not service.memories.resolve(MEMORY.memory_id).pinned  # droppable now
            tg.cancel_scope.cancel()
    assert not path.exists()


@pytest.mark.parametrize(
    ("env", "uid", "expected"),
    [
        ({"HASHERD_JITTER_SOCKET": "/x/j.sock"}, 0, "/x/j.sock"),
        ({"RUNTIME_DIRECTORY": "/run/hasherd"}, 1000, "/run/hasherd/jitter.sock"),
        ({}, 0, "/run/hasherd/jitter.sock"),
        ({"XDG_RUNTIME_DIR": "/run/user/1000"}, 1000, "/run/user/1000/hasherd/jitter.sock"),
        ({}, 1000, "/tmp/hasherd-1000/jitter.sock"),
    ],
)
def test_default_socket_path(env: dict[str, str], uid: int, expected: str) -> None:
    assert default_jitter_socket_path(env, uid) == Path(expected)


CHILD = """
import os, socket, sys
os.setgroups([]); os.setgid(65534); os.setuid(65534)
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.settimeout(20)
try:
    s.sendall(bytes(56)); data = s.recv(100)
except OSError:  # the service may close before the request is even sent
    data = b""
print(len(data))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another uid needs root")
async def test_another_uid_is_refused_by_peer_credentials(h: Any, sock_path: Path) -> None:
    async with h.serving(JitterService(sock_path, MEMORY, mode=0o666)) as service:
        done = await anyio.run_process([sys.executable, "-c", CHILD, str(sock_path)], check=False)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().strip() == "0"  # closed without an answer
    assert service.stats()["errors"] == {"forbidden": 1}
    assert json.dumps(service.stats())  # the snapshot is plain JSON


async def test_a_failing_lookup_is_an_internal_error(
    h: Any, sock_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any) -> Any:
        raise RuntimeError("simulated fault")

    monkeypatch.setattr("hasherd.jitter.service.lookup_many", broken)
    async with (
        h.serving(JitterService(sock_path, MEMORY)) as service,
        h.batch(sock_path) as s,
    ):
        await s.send(LookupRequest.of(9, None, records(10)), InfoRequest(10))
        err, info = await s.read(2)  # the connection lives on
        assert (err.request_id, err.error_code, info.request_id) == (9, ErrorCode.INTERNAL, 10)
        async with await anyio.connect_unix(sock_path) as legacy:
            await legacy.send(legacy_bytes(records(10)))  # 10 at once: the numpy path
            assert await h.read_to_eof(legacy) == b""
    assert service.stats()["errors"] == {"internal": 2}


async def test_connections_past_the_cap_are_closed(h: Any, sock_path: Path) -> None:
    async with (
        h.serving(JitterService(sock_path, MEMORY, max_connections=1)) as service,
        await anyio.connect_unix(sock_path) as first,
    ):
        await first.send(legacy_bytes(records(1)))
        assert len(await h.read_exact(first, 4)) == 4  # admitted and counted
        async with await anyio.connect_unix(sock_path) as second:
            assert await h.read_to_eof(second) == b""
        await first.send(legacy_bytes(records(1)))
        assert len(await h.read_exact(first, 4)) == 4
    assert service.stats()["errors"] == {"busy": 1}
