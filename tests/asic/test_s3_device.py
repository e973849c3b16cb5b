"""The Antminer S3 as a kernel evaluator and a daemon device (``driver = "s3"``), against
the S3 emulator on a real pty.

An S3 work carries no starting nonce: chip i sweeps its window from ``i * 2^32 / N``, so
the first nonce from the header's own nonce ``n0`` is only proven when ``n0`` lies at the
start of a window. Seeds whose last four bytes are zero give ``n0 = 0`` in every pass of
the loop (the loop changes the header's mix, not its nonce), and those the S3 evaluates
exactly; any other seed is refused, never guessed."""

from __future__ import annotations

import anyio
import numpy as np
import pytest

from hasherd import config as config_mod
from hasherd.actors.evaluator import EvaluatorActor
from hasherd.actors.pool import ActorPool
from hasherd.backends.asic import AsicEvaluator, chip_evaluator
from hasherd.devices.chain import SweepBound
from hasherd.emulate.s3 import S3Emulator
from hasherd.errors import ConfigError, EvaluatorError
from hasherd.kernel.evaluators.base import make_request
from hasherd.kernel.evaluators.reference import ReferenceEvaluator
from hasherd.kernel.memory import JitterMemory

K = 6
SWEEP = 4096  # at 6 zero bits a window of 4096 misses with probability e^-64
BOUND = SweepBound(SWEEP, seconds=0.15, quiet=0.08)


def _inputs(n0_zero: bool) -> tuple[np.ndarray, np.ndarray, JitterMemory]:
    rng = np.random.default_rng(17)
    frames = rng.integers(0, 2**32, size=(6, 12), dtype=np.uint64).astype(np.uint32)
    seeds = rng.integers(0, 256, size=(2, 32), dtype=np.uint8)
    if n0_zero:
        seeds[:, 28:32] = 0  # the header's nonce field: n0 = 0
    return frames[0], seeds, JitterMemory(frames)


def test_s3_evaluates_like_the_reference_where_its_window_proves_first() -> None:
    slots, seeds, memory = _inputs(n0_zero=True)
    with (
        S3Emulator(2, K, sweep_limit=SWEEP) as emu,
        AsicEvaluator(emu.slave_path, K, bound=BOUND, driver="s3", expected_chips=2) as ev,
    ):
        got = ev.evaluate(slots, seeds, memory, 3, K, trace=True)
        stats = ev.device_stats()
        other_slots, other_seeds, _ = _inputs(n0_zero=False)
        with pytest.raises(EvaluatorError, match="cannot say which comes first"):
            ev.evaluate(other_slots, other_seeds, memory, 1, K)
    want = ReferenceEvaluator().evaluate(slots, seeds, memory, 3, K, trace=True)
    for name in ("output", "golden_nonce", "final_digest", "last_key"):
        assert np.array_equal(getattr(got, name), getattr(want, name)), name
    assert np.array_equal(got.trace.pass_nonces, want.trace.pass_nonces)
    assert stats is not None and stats["device"]["driver"] == "s3"
    assert stats["device"]["chips"] == 2 and stats["device"]["jobs"] == 2 * 4
    assert [c["hashes"] for c in stats["chips"]] == [8 * SWEEP, 8 * SWEEP]


def test_s3_config_and_daemon_actor() -> None:
    with pytest.raises(ConfigError, match="no baud switch"):
        config_mod.from_mapping(
            {"devices": {"chips": [{"path": "usb", "driver": "s3", "baud": 3_125_000}]}}
        )
    slots, seeds, memory = _inputs(n0_zero=True)
    req = make_request(slots, seeds, memory, 2, K)
    want = ReferenceEvaluator().evaluate_request(req)
    with S3Emulator(2, K, sweep_limit=SWEEP) as emu:
        table = {
            "name": "s3a",
            "driver": "s3",
            "path": emu.slave_path,
            "zero_bits": K,
            "chips": 2,
            "nonces_per_chip": SWEEP,
            "sweep_time": "150ms",
        }
        cfg = config_mod.from_mapping({"devices": {"cpu_actors": 0, "chips": [table]}})
        chip = cfg.devices.chips[0]
        actor = EvaluatorActor(
            chip.name, chip.driver, lambda: chip_evaluator(chip), timeout=60, mailbox=1, zero_bits=K
        )

        async def main() -> None:
            pool = ActorPool([actor])
            async with anyio.create_task_group() as tg:
                await tg.start(pool.run)
                with anyio.fail_after(60):
                    (got,) = await pool.evaluate([req])
                assert np.array_equal(got.output, want.output)
                assert np.array_equal(got.golden_nonce, want.golden_nonce)
                tg.cancel_scope.cancel()

        anyio.run(main)
        snap = actor.snapshot()
    assert snap["kind"] == "s3" and snap["jobs"] == 1
    assert snap["device"]["device"]["chips"] == 2 and snap["device"]["device"]["jobs"] == 2 * 3
