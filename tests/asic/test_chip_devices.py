"""Chip chains as daemon devices: the ``[[devices.chips]]`` config, zero-bit routing and
pinned batches in the pool, counters that survive reconnects, resends after lost frames,
and the chip metrics. Every chain here is the BM1370 emulator on a real pty."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest
from prometheus_client.core import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from hasherd import config as config_mod
from hasherd.actors.base import EvalJob, NoActorError
from hasherd.actors.build import build_actors
from hasherd.actors.evaluator import EvaluatorActor
from hasherd.actors.pool import ActorPool
from hasherd.backends import create
from hasherd.backends.asic import AsicEvaluator, chip_evaluator
from hasherd.cli.cmd_daemon import to_toml
from hasherd.devices.chain import SweepBound
from hasherd.emulate import ChainEmulator
from hasherd.errors import ConfigError
from hasherd.kernel.evaluators.base import EvalRequest, make_request
from hasherd.kernel.evaluators.reference import ReferenceEvaluator
from hasherd.kernel.memory import JitterMemory
from hasherd.metrics.collector import HasherCollector

K = 4
SWEEP = 1024
BOUND = SweepBound(SWEEP, seconds=0.1, quiet=0.05)


def _chip_cfg(path: str, **extra: object) -> config_mod.ChipDeviceConfig:
    raw = {
        "devices": {
            "cpu_actors": 0,
            "chips": [
                {
                    "name": "chain0",
                    "path": path,
                    "zero_bits": K,
                    "nonces_per_chip": SWEEP,
                    "sweep_time": "100ms",
                    "quiet": "50ms",
                    **extra,
                }
            ],
        }
    }
    return config_mod.from_mapping(raw).devices.chips[0]


def _requests(n: int, zero_bits: int, count: int = 2) -> list[EvalRequest]:
    rng = np.random.default_rng(5)
    frames = rng.integers(0, 2**32, size=(8, 12), dtype=np.uint64).astype(np.uint32)
    mem = JitterMemory(frames)
    seeds = rng.integers(0, 256, size=(count, 32), dtype=np.uint8)
    return [make_request(frames[i], seeds, mem, 2, zero_bits) for i in range(n)]


# -- config ---------------------------------------------------------------------------------


def test_chip_tables_parse_default_and_round_trip(tmp_path: Path) -> None:
    cfg = config_mod.from_mapping(
        {
            "devices": {
                "chips": [
                    {"path": "/dev/ttyUSB0"},
                    {
                        "path": "socket://rig:4000",
                        "name": "b",
                        "baud": 3_125_000,
                        "sweep_time": "250ms",
                    },
                ]
            }
        }
    )
    a, b = cfg.devices.chips
    assert (a.name, a.zero_bits, a.nonces_per_chip, a.sweep_time) == ("chip0", 32, 0, 0.5)
    assert (b.name, b.baud, b.sweep_time) == ("b", 3_125_000, 0.25)
    text = to_toml(cfg.to_dict())  # `hasherd check-config` prints this
    assert text.count("[[devices.chips]]") == 2
    path = tmp_path / "c.toml"
    path.write_text(text)
    assert config_mod.load(path).to_dict() == cfg.to_dict()


@pytest.mark.parametrize(
    ("chips", "key", "problem"),
    [
        ({"path": "/dev/x"}, "devices.chips", "list of tables"),
        ([{"name": "a"}], "devices.chips[0].path", "serial device"),
        (
            [{"path": "/x", "name": "a"}, {"path": "/y", "name": "a"}],
            "devices.chips[1].name",
            "used twice",
        ),
        ([{"path": "/x", "baud": 1_000_000}], "devices.chips[0].baud", "not reachable"),
        ([{"path": "/x", "driver": "s9"}], "devices.chips[0].driver", "bm1370"),
        ([{"path": "/x", "zero_bits": 0}], "devices.chips[0].zero_bits", "1..32"),
        ([{"path": "/x", "quiet": "soon"}], "devices.chips[0].quiet", "duration"),
        ([{"path": "/x", "speed": 1}], "devices.chips[0].speed", "unknown key"),
        ([{"path": "/x", "name": "a b"}], "devices.chips[0].name", "letters"),
    ],
)
def test_bad_chip_tables_name_the_key(chips: object, key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        config_mod.from_mapping({"devices": {"chips": chips}}, "rig.toml")
    assert err.value.key == key and problem in str(err.value) and "rig.toml" in str(err.value)


def test_actor_names_must_not_clash() -> None:
    cfg = config_mod.from_mapping({"devices": {"chips": [{"path": "/x", "name": "numba0"}]}})
    with pytest.raises(ConfigError, match="numba0"):
        build_actors(cfg)
    only_chips = config_mod.from_mapping(
        {"devices": {"cpu_actors": 0, "chips": [{"path": "/x", "zero_bits": 9}]}}
    )
    (actor,) = build_actors(only_chips)
    assert (actor.name, actor.kind, actor.zero_bits, actor.capacity) == ("chip0", "bm1370", 9, 1)


# -- the pool -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_pool_routes_by_zero_bits_and_pins_batches() -> None:
    with ChainEmulator(2, K, sweep_limit=SWEEP) as emu:
        chip = EvaluatorActor(
            "chain0",
            "bm1370",
            lambda: chip_evaluator(_chip_cfg(emu.slave_path)),
            timeout=60,
            mailbox=1,
            zero_bits=K,
        )
        cpu = EvaluatorActor("numba0", "numba", lambda: create("numba:1"))
        pool = ActorPool([cpu, chip])
        ref = ReferenceEvaluator()
        assert pool.capacity_for(K) == 3 and pool.capacity_for(0) == 2
        async with anyio.create_task_group() as tg:
            await tg.start(pool.run)
            with anyio.fail_after(60):
                while chip.state != "ready":
                    await anyio.sleep(0.05)
                plain = _requests(3, 0)
                for _ in range(4):  # zero_bits 0: never the chip's
                    got = await pool.evaluate(plain)
                    assert np.array_equal(got[0].output, ref.evaluate_request(plain[0]).output)
                assert chip.stats.jobs == 0
                pinned = _requests(2, K)
                got = await pool.evaluate_on("chain0", pinned)  # only the chip
                for g, r in zip(got, pinned, strict=True):
                    want = ref.evaluate_request(r)
                    assert np.array_equal(g.output, want.output)
                    assert np.array_equal(g.golden_nonce, want.golden_nonce)
                assert chip.stats.jobs == 1 and cpu.stats.jobs == 4
                with pytest.raises(NoActorError, match="serves zero_bits \\[7\\]"):
                    await pool.evaluate_on("chain0", _requests(1, 7))  # refused, not waiting
            tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_device_counters_add_up_over_a_reconnect() -> None:
    with ChainEmulator(2, K, sweep_limit=SWEEP) as emu:
        actor = EvaluatorActor(
            "chain0",
            "bm1370",
            lambda: chip_evaluator(_chip_cfg(emu.slave_path, chips=2)),
            timeout=60,
            mailbox=1,
            zero_bits=K,
        )
        pool = ActorPool([actor])
        async with anyio.create_task_group() as tg:
            await tg.start(pool.run)
            with anyio.fail_after(60):
                while actor.state != "ready":
                    await anyio.sleep(0.05)
                await pool.evaluate(_requests(1, K, 1))
                first = actor.snapshot()["device"]
                await pool.restart("chain0")  # reopens the port, runs init again
                await pool.evaluate(_requests(1, K, 1))
                second = actor.snapshot()["device"]
            tg.cancel_scope.cancel()
    jobs = 3  # 2 passes + the final one
    assert first["device"]["jobs"] == jobs and second["device"]["jobs"] == 2 * jobs
    assert second["device"]["chips"] == 2 and second["device"]["path"] == emu.slave_path
    for before, after in zip(first["chips"], second["chips"], strict=True):
        assert before["hashes"] == jobs * SWEEP and after["hashes"] == 2 * jobs * SWEEP
    assert sum(c["nonces"] for c in second["chips"]) >= 2 * jobs
    assert actor.snapshot()["restarts"] == 1


# -- lost frames ----------------------------------------------------------------------------


def test_a_job_whose_frames_were_lost_is_sent_again() -> None:
    # about 128 nonce frames per job (2 chips x 1024 at 4 zero bits); every 300th is
    # corrupted, so some jobs lose one and their resend does not
    rng = random.Random(3)
    memory = [[rng.getrandbits(32) for _ in range(12)] for _ in range(4)]
    slots = [rng.getrandbits(32) for _ in range(12)]
    seeds = [rng.randbytes(32) for _ in range(2)]
    with (
        ChainEmulator(2, K, {"bad_crc"}, sweep_limit=SWEEP, fault_every=300) as emu,
        AsicEvaluator(emu.slave_path, K, bound=BOUND, enumerate_quiet=0.1) as ev,
    ):
        got = ev.evaluate(slots, seeds, memory, 3, K)
        stats = ev.device_stats()
    want = ReferenceEvaluator().evaluate(slots, seeds, memory, 3, K)
    assert np.array_equal(got.output, want.output)
    assert np.array_equal(got.golden_nonce, want.golden_nonce)
    assert stats is not None
    assert stats["device"]["crc_errors"] > 0 and stats["device"]["resends"] > 0


# -- metrics --------------------------------------------------------------------------------


class _Source:
    def __init__(self, actors: list[dict[str, object]]) -> None:
        self.actors = actors

    def actor_snapshots(self) -> list[dict[str, object]]:
        return self.actors

    def job_snapshots(self) -> list[dict[str, object]]:
        return []

    def store_stats(self) -> dict[str, float | int]:
        return {
            "write_transactions": 0,
            "write_failures": 0,
            "last_write_seconds": 0.0,
            "total_write_seconds": 0.0,
            "max_write_seconds": 0.0,
        }

    def error_counts(self) -> dict[str, int]:
        return {}

    def deploy_stats(self) -> dict[str, float | int]:
        return {
            "deployments": 0,
            "rollbacks": 0,
            "failures": 0,
            "last_deploy_unix": np.nan,
            "live_layer": np.nan,
            "live_count": np.nan,
        }

    def validation_stats(self) -> dict[str, object]:
        return {
            "runs": 2,
            "weights": {"validated": 5, "non_deterministic": 1},
            "last_rate": 0.25,
            "last_finished_unix": 1.7e9,
            "running": 0,
        }


def test_chip_and_validation_metrics_come_from_the_snapshots() -> None:
    with ChainEmulator(2, K, sweep_limit=SWEEP) as emu:
        actor = EvaluatorActor(
            "chain0", "bm1370", lambda: chip_evaluator(_chip_cfg(emu.slave_path)), zero_bits=K
        )

        async def main() -> dict[str, Any]:
            await actor.start()
            job = EvalJob(_requests(1, K, 1), asyncio.get_running_loop().create_future())
            await actor.run_job(job)
            snap = actor.snapshot()
            await actor.stop()
            return snap

        snap = anyio.run(main)
    registry = CollectorRegistry()
    registry.register(HasherCollector(_Source([snap]), "test"))
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(generate_latest(registry).decode())
        for s in f.samples
    }
    dev = (("device", "chain0"),)
    device = snap["device"]
    assert samples[("hasherd_device_chips", dev)] == 2
    assert samples[("hasherd_device_jobs_total", dev)] == device["device"]["jobs"] == 3
    assert samples[("hasherd_device_reconnects_total", dev)] == 0
    for chip in device["chips"]:
        labels = (("chip", str(chip["chip"])), ("device", "chain0"))
        assert samples[("hasherd_chip_hashes_total", labels)] == chip["hashes"] == 3 * SWEEP
        assert samples[("hasherd_chip_nonces_total", labels)] == chip["nonces"]
        assert samples[("hasherd_chip_invalid_nonces_total", labels)] == 0
    assert samples[("hasherd_validation_runs_total", ())] == 2
    assert samples[("hasherd_validation_weights_total", (("outcome", "validated"),))] == 5
    assert samples[("hasherd_validation_weights_total", (("outcome", "failed"),))] == 0
    assert samples[("hasherd_validation_last_mismatch_ratio", ())] == 0.25


def test_jobs_take_zero_bits_and_passes_as_options() -> None:
    from hasherd.errors import InputError
    from hasherd.scheduler.jobs import check_options, job_config

    cfg = config_mod.Config()
    options = check_options({"zero_bits": K, "passes": 3, "population": 4}, cfg)
    training = job_config(cfg, options).training
    assert (training.zero_bits, training.passes, training.population_size) == (K, 3, 4)
    for bad, key in (
        ({"zero_bits": 33}, "zero_bits"),
        ({"passes": 0}, "passes"),
        ({"zero_bits": "4"}, "zero_bits"),
    ):
        with pytest.raises(InputError) as err:
            check_options(bad, cfg)
        assert err.value.field == key


class _Held(ReferenceEvaluator):
    """The reference evaluator, except that each batch waits for ``go`` (fault injection:
    a chain busy with a long job)."""

    def __init__(self) -> None:
        import threading

        self.go = threading.Event()
        self.batches = 0

    def evaluate_many(self, reqs: list[EvalRequest]) -> list:  # type: ignore[override]
        self.go.wait(30)
        self.batches += 1
        return super().evaluate_many(reqs)


@pytest.mark.anyio
async def test_simulators_stop_at_their_zero_bits_and_pinned_work_can_be_taken_back() -> None:
    cfg = config_mod.from_mapping({"devices": {"simulator_max_zero_bits": 6}})
    (cpu,) = build_actors(cfg)
    assert cpu.max_zero_bits == 6 and cpu.serves_bits(6) and not cpu.serves_bits(7)
    held = _Held()
    chip = EvaluatorActor("chain0", "bm1370", lambda: held, mailbox=2, zero_bits=K)
    pool = ActorPool([cpu, chip])
    assert pool.capacity_for(7) == 1  # nobody serves 7: still one lane, whose batch fails
    async with anyio.create_task_group() as tg:
        await tg.start(pool.run)
        with pytest.raises(NoActorError, match="serves zero_bits \\[7\\]"):
            await pool.evaluate(_requests(1, 7))
        with anyio.fail_after(60):
            while chip.state != "ready":
                await anyio.sleep(0.05)
            first = _requests(1, K, 1)
            tg.start_soon(pool.evaluate_on, "chain0", first)
            while chip.current is None:
                await anyio.sleep(0.01)
            with anyio.move_on_after(0.3):  # the caller gives up while it waits its turn
                await pool.evaluate_on("chain0", _requests(2, K, 1))
            assert chip.queued == [] and chip.load == 1  # taken back, never run
            held.go.set()
            while chip.current is not None:
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    assert held.batches == 1
