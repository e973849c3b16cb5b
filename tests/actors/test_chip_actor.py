"""A chip chain behind the backend seam, both ways it is driven: the daemon's chip actor
(``actors.build.chip_actor``) awaits the chain on the test's own event loop, with no
thread of its own; ``AsicEvaluator`` runs the same backend in a blocking portal for
synchronous callers. Every chain here is the BM1370 emulator on a real pty, and every
result is checked against the reference evaluator.
"""

from __future__ import annotations

import threading

import anyio
import numpy as np
import pytest

from hasherd import config as config_mod
from hasherd.actors.base import ActorError, ActorState
from hasherd.actors.build import chip_actor
from hasherd.actors.pool import ActorPool
from hasherd.backends.asic import AsicEvaluator, ChipBackend
from hasherd.devices.chain import SweepBound
from hasherd.emulate import ChainEmulator
from hasherd.errors import EvaluatorError
from hasherd.kernel.evaluators.base import EvalRequest, EvalResult, make_request
from hasherd.kernel.evaluators.reference import ReferenceEvaluator
from hasherd.kernel.memory import JitterMemory

K = 4
SWEEP = 1024


def _chip(path: str, **extra: object) -> config_mod.ChipDeviceConfig:
    table = {
        "name": "chain0",
        "path": path,
        "zero_bits": K,
        "nonces_per_chip": SWEEP,
        "sweep_time": "100ms",
        "quiet": "50ms",
        **extra,
    }
    return config_mod.from_mapping({"devices": {"cpu_actors": 0, "chips": [table]}}).devices.chips[
        0
    ]


def _requests(n: int, count: int = 2) -> list[EvalRequest]:
    rng = np.random.default_rng(11)
    frames = rng.integers(0, 2**32, size=(8, 12), dtype=np.uint64).astype(np.uint32)
    mem = JitterMemory(frames)
    seeds = rng.integers(0, 256, size=(count, 32), dtype=np.uint8)
    return [make_request(frames[i], seeds, mem, 2, K, trace=True) for i in range(n)]


def _agree(got: list[EvalResult], reqs: list[EvalRequest]) -> None:
    ref = ReferenceEvaluator()
    for g, r in zip(got, reqs, strict=True):
        want = ref.evaluate_request(r)
        for name in ("output", "golden_nonce", "final_digest", "last_key"):
            assert np.array_equal(getattr(g, name), getattr(want, name)), name
        assert g.trace is not None and want.trace is not None
        assert np.array_equal(g.trace.pass_nonces, want.trace.pass_nonces)


def _own_threads() -> set[str]:
    """Threads an evaluator would start: a CallThread or a portal (named hasherd-...)."""
    return {t.name for t in threading.enumerate() if t.name.startswith("hasherd-")}


@pytest.mark.anyio
async def test_the_chip_actor_drives_its_chain_on_the_callers_loop() -> None:
    with ChainEmulator(2, K, sweep_limit=SWEEP) as emu:
        actor = chip_actor(_chip(emu.slave_path, chips=2))
        pool = ActorPool([actor])
        reqs = _requests(2)
        async with anyio.create_task_group() as tg:
            await tg.start(pool.run)
            with anyio.fail_after(60):
                got, where = await pool.evaluate_then(
                    reqs, lambda _: threading.current_thread() is threading.main_thread()
                )
                assert _own_threads() == set()  # no thread, no private loop
                first = actor.snapshot()
                await pool.restart("chain0")  # closes the port and opens it again
                await pool.evaluate(reqs[:1])
                second = actor.snapshot()
            tg.cancel_scope.cancel()
    _agree(got, reqs)
    assert where is False  # the post step ran off the event loop's thread
    assert (first["kind"], first["threads"], first["jobs"]) == ("bm1370", 1, 1)
    jobs = 2 * 3 * 2  # 2 requests x 2 seeds x (2 passes + the final one)
    assert first["device"]["device"]["jobs"] == jobs
    assert second["device"]["device"]["jobs"] == jobs + 2 * 3  # summed over the reopen
    assert second["restarts"] == 1 and actor.state == ActorState.STOPPED


@pytest.mark.anyio
async def test_a_chip_batch_past_its_timeout_fails_the_actor_and_the_port_reopens() -> None:
    with ChainEmulator(1, K, sweep_limit=SWEEP) as emu:
        slow = chip_actor(_chip(emu.slave_path, timeout="50ms"))  # a job's sweep is 100 ms
        pool = ActorPool([slow], backoff_first=0.01, max_attempts=1)
        async with anyio.create_task_group() as tg:
            await tg.start(pool.run)
            with anyio.fail_after(60):
                with pytest.raises(ActorError, match=r"longer than 0\.05 s"):
                    await pool.evaluate(_requests(1))
                while slow.state != ActorState.READY:  # restarted: the port opened again
                    await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
    assert slow.stats.failures == 1 and slow.stats.restarts >= 1


def test_the_blocking_portal_serves_synchronous_callers_and_stops_at_close() -> None:
    bound = SweepBound(SWEEP, seconds=0.1, quiet=0.05)
    reqs = _requests(1)
    with ChainEmulator(2, K, sweep_limit=SWEEP) as emu:
        ev = AsicEvaluator(emu.slave_path, K, bound=bound, expected_chips=2)
        try:
            assert _own_threads() == set()  # nothing starts before first use
            assert ev.warm_up() > 0 and ev.window == SWEEP  # chip 1 starts past the window
            assert _own_threads() == {f"hasherd-asic-{emu.slave_path}"}
            got = ev.evaluate_many(reqs)
            stats = ev.device_stats()
        finally:
            ev.close()
        ev.close()  # idempotent
        assert _own_threads() == set()
        with pytest.raises(EvaluatorError, match="closed"):
            ev.evaluate_many(reqs)
    _agree(got, reqs)
    assert stats is not None and stats["device"]["jobs"] == 2 * 3


@pytest.mark.anyio
async def test_a_chip_backend_that_cannot_open_names_the_path_and_holds_nothing() -> None:
    backend = ChipBackend("/dev/does-not-exist-hasherd", K)
    with pytest.raises(EvaluatorError, match="does-not-exist-hasherd"):
        await backend.start()
    assert backend.device_stats() is None and backend.supports(K) and not backend.supports(5)
    with pytest.raises(EvaluatorError, match="not open"):
        await backend.evaluate_many(_requests(1))
    await backend.close()  # never raises, also when nothing opened
