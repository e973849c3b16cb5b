"""The jitter clients and the ``rpc`` evaluator against a real service: lookups, uploads,
reconnection, timeouts, equality with the reference evaluator, and ``hasherd vectors
check --evaluator rpc:SOCKET`` end to end."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hasherd import backends
from hasherd.backends.rpc import (
    JitterRpcError,
    RpcEvaluator,
    SyncJitterClient,
    factory,
)
from hasherd.cli.main import main
from hasherd.errors import EvaluatorError
from hasherd.jitter.service import JitterService, serving_in_thread
from hasherd.kernel.evaluators.reference import ReferenceEvaluator
from hasherd.kernel.jitter_batch import lookup_many
from hasherd.kernel.memory import JitterMemory
from hasherd.transport.jitter_async import JitterClient

VECTORS = Path(__file__).parents[1] / "data" / "kernel-v1.json"
RNG = np.random.default_rng(11)
MEMORY = JitterMemory(RNG.integers(0, 2**32, (30, 12), dtype=np.uint64).astype(np.uint32))
OTHER = JitterMemory(MEMORY.frames[::-1].copy())


def records(n: int, memory: JitterMemory = MEMORY) -> np.ndarray:
    rec = np.zeros((n, 14), dtype=np.uint32)
    rec[:, :12] = memory.frames[np.arange(n) % len(memory)]
    rec[:, 12] = RNG.integers(0, 2**32, n, dtype=np.uint64)
    rec[:, 13] = np.arange(n) % 21
    return rec


def same(got: tuple[np.ndarray, np.ndarray], memory: JitterMemory, rec: np.ndarray) -> bool:
    jit, found = lookup_many(memory, rec)
    return got[0].tolist() == jit.tolist() and got[1].tolist() == found.tolist()


def test_sync_client_lookups_uploads_and_info(sock_path: Path) -> None:
    service = JitterService(sock_path, MEMORY, max_records=64)
    rec = records(150)  # more than max_records: sent as three frames
    with serving_in_thread(service), SyncJitterClient(sock_path, timeout=20) as client:
        assert same(client.lookup(rec), MEMORY, rec)
        assert same(client.lookup(rec, OTHER), OTHER, rec)  # uploaded on first use
        assert same(client.lookup(rec, OTHER.memory_id), OTHER, rec)
        info = client.info()
        with pytest.raises(JitterRpcError, match="upload it") as err:
            client.lookup(rec, "00" * 31 + "02")
    assert err.value.code == "unknown_memory"
    assert (info.default_memory_id, info.memories, info.max_records) == (MEMORY.memory_id, 2, 64)
    stats = service.stats()
    assert (stats["batches"], stats["uploads"], stats["lookups"]) == (9, 1, 450)
    assert stats["errors"] == {"unknown_memory": 2}


@pytest.mark.anyio
async def test_async_client_reconnects_to_a_restarted_service(h: Any, sock_path: Path) -> None:
    rec = records(40)
    async with JitterClient(sock_path, timeout=20, backoff=0.01) as client:
        async with h.serving(JitterService(sock_path, MEMORY)):
            assert same(await client.lookup(rec, OTHER), OTHER, rec)
            assert await client.lookup_one(tuple(rec[3, :12].tolist()), int(rec[3, 12]), 3) == (
                int(lookup_many(MEMORY, rec[3:4])[0][0]),
                bool(lookup_many(MEMORY, rec[3:4])[1][0]),
            )
        assert client.session.reconnects == 0
        async with h.serving(JitterService(sock_path, MEMORY)) as second:
            assert same(await client.lookup(rec, OTHER), OTHER, rec)  # re-uploaded
        assert client.session.reconnects >= 1
        assert second.stats()["uploads"] == 1


@pytest.mark.anyio
async def test_async_client_timeout_and_unavailable(sock_path: Path) -> None:
    mute = socket.socket(socket.AF_UNIX)  # listens, never accepts: connects, never answers
    mute.bind(str(sock_path))
    mute.listen(4)
    try:
        async with JitterClient(sock_path, timeout=0.2) as client:
            with pytest.raises(JitterRpcError) as err:
                await client.info()
        assert err.value.code == "timeout"
    finally:
        mute.close()
    sock_path.unlink()
    async with JitterClient(sock_path, timeout=5, retries=2, backoff=0.001) as client:
        with pytest.raises(JitterRpcError) as err:
            await client.info()
    assert err.value.code == "unavailable" and client.session.reconnects == 2


def test_sync_client_timeout_and_unavailable(sock_path: Path) -> None:
    with (
        pytest.raises(JitterRpcError) as err,
        SyncJitterClient(sock_path, retries=1, backoff=0) as c,
    ):
        c.info()
    assert err.value.code == "unavailable"
    with socket.socket(socket.AF_UNIX) as mute:
        mute.bind(str(sock_path))
        mute.listen(4)
        with pytest.raises(JitterRpcError) as err, SyncJitterClient(sock_path, timeout=0.2) as c:
            c.info()
    assert err.value.code == "timeout"


@pytest.mark.parametrize(
    ("passes", "zero_bits", "trace"), [(21, 0, False), (9, 0, True), (4, 3, True)]
)
def test_rpc_evaluator_equals_the_reference(
    sock_path: Path, passes: int, zero_bits: int, trace: bool
) -> None:
    rng = np.random.default_rng(passes + zero_bits)
    slots = MEMORY.frames[7].copy()  # its slot 0 is in the memory: zone 1 hits
    seeds = rng.integers(0, 256, (5, 32), dtype=np.uint8)
    service = JitterService(sock_path)
    with serving_in_thread(service):
        rpc = RpcEvaluator(sock_path)
        assert rpc.warm_up() >= 0
        got = rpc.evaluate(slots, seeds, MEMORY, passes, zero_bits, trace=trace)
        rpc.close()
    want = ReferenceEvaluator().evaluate(slots, seeds, MEMORY, passes, zero_bits, trace=trace)
    for field in ("output", "golden_nonce", "ntime_roll", "final_digest", "last_key"):
        assert getattr(got, field).tolist() == getattr(want, field).tolist(), field
    assert (got.dsha, got.compressions) == (want.dsha, want.compressions)
    if trace:
        assert got.trace is not None and want.trace is not None
        for field in ("pass_keys", "pass_nonces", "jitters", "jitter_found", "final_header"):
            assert getattr(got.trace, field).tolist() == getattr(want.trace, field).tolist()
        assert want.trace.jitter_found.any()  # the memory is really used
    stats = service.stats()  # one batch of all candidates per pass
    assert (stats["batches"], stats["lookups"], stats["uploads"]) == (passes, 5 * passes, 1)


def test_factory_and_an_absent_service(sock_path: Path) -> None:
    for arg in (None, ""):
        with pytest.raises(EvaluatorError, match="socket path"):
            factory(arg)
    rpc = factory(str(sock_path))
    assert isinstance(rpc, RpcEvaluator) and rpc.name == "rpc"
    rpc.client.session.retries = 0
    with pytest.raises(EvaluatorError, match="unavailable"):
        rpc.warm_up()


def test_vectors_check_cli_over_rpc(
    sock_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(backends.registry._FACTORIES, "rpc", factory)
    monkeypatch.setattr(
        backends.registry, "_NEEDS_ARGUMENT", {*backends.registry._NEEDS_ARGUMENT, "rpc"}
    )
    assert "rpc" not in backends.available()
    data = json.loads(VECTORS.read_text())
    distinct = {case["memory_id"] for case in data["loop"]}
    service = JitterService(sock_path, max_uploads=64)  # no memory of its own: all uploaded
    name = f"rpc:{sock_path}"
    with serving_in_thread(service):
        status = main(["vectors", "check", str(VECTORS), "--evaluator", name, "--json"])
    out = json.loads(capsys.readouterr().out)
    assert status == 0
    assert out["evaluators"][name] == {"loop": {"passed": len(data["loop"]), "failed": 0}}
    stats = service.stats()
    assert stats["uploads"] == len(distinct) and stats["errors"] == {
        "unknown_memory": len(distinct)
    }
    assert stats["batches"] == 2 * sum(case["passes"] for case in data["loop"])
