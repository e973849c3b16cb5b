"""The chip-driver seam: the registry names drivers without importing them, each driver's
checks and window, and a new driver (``fake_chip``, one module plus one registry line)
picked up by the config, the daemon's actors, the ``asic:`` backend and ``hasherd
emulate`` with no other edit."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest

from hasherd import config as config_mod
from hasherd.actors.build import build_actors
from hasherd.backends.asic import AsicEvaluator
from hasherd.cli import cmd_emulate
from hasherd.devices import registry
from hasherd.devices.chain import ChainSettings, Driver, SweepBound
from hasherd.errors import ConfigError, EvaluatorError, InputError
from hasherd.kernel.evaluators.reference import ReferenceEvaluator
from hasherd.kernel.memory import JitterMemory
from tests.devices import fake_chip

BOUND = SweepBound(1024, seconds=0.1)


@pytest.fixture
def fake_registered(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setitem(registry._MODULES, "fake", "tests.devices.fake_chip")
    yield


def test_names_and_lookup() -> None:
    assert registry.names() == ("bm1370", "s3")
    for name in registry.names():
        found = registry.driver(name)
        assert isinstance(found, Driver) and found.name == name and found.emulator is not None
    with pytest.raises(InputError, match="'s9' is not one of bm1370, s3"):
        registry.driver("s9")


def test_naming_drivers_imports_no_driver_nor_serial_or_usb_code() -> None:
    script = (
        "import sys\n"
        "import hasherd.config\n"
        "from hasherd.devices import registry\n"
        "assert registry.names()\n"
        "heavy = ('hasherd.devices.bm1370', 'hasherd.devices.s3', 'hasherd.transport',\n"
        "         'serial', 'serial_asyncio', 'usb')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m in heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_each_driver_checks_its_own_settings() -> None:
    bm1370, s3 = registry.driver("bm1370"), registry.driver("s3")
    assert bm1370.check(ChainSettings(BOUND)) == []
    assert bm1370.check(ChainSettings(BOUND, baud=3_125_000)) == []
    ((key, problem),) = bm1370.check(ChainSettings(BOUND, baud=1_000_000))
    assert key == "baud" and "not reachable" in problem and "3125000 / (d + 1)" in problem
    assert s3.check(ChainSettings(BOUND)) == []
    assert s3.check(ChainSettings(BOUND, baud=3_125_000)) == [
        ("baud", "the S3 controller has no baud switch")
    ]


def test_the_asic_backend_refuses_what_the_driver_refuses() -> None:
    with pytest.raises(InputError, match="no baud switch"):
        AsicEvaluator("usb", 8, driver="s3", baud=3_125_000)
    with pytest.raises(InputError, match="not reachable"):
        AsicEvaluator("/dev/null", 8, baud=1_000_000)
    with pytest.raises(InputError, match="'s9' is not one of bm1370, s3"):
        AsicEvaluator("/dev/null", 8, driver="s9")


@pytest.mark.usefixtures("fake_registered")
def test_a_new_driver_reaches_the_config_and_the_daemon() -> None:
    with pytest.raises(ConfigError, match=r"devices\.chips\[0\]\.baud.*fake chip"):
        config_mod.from_mapping(
            {"devices": {"chips": [{"path": "fake0", "driver": "fake", "baud": 115200}]}}
        )
    with pytest.raises(ConfigError, match="must be one of bm1370, fake, s3"):
        config_mod.from_mapping({"devices": {"chips": [{"path": "x", "driver": "s9"}]}})
    table = {"name": "f0", "path": "fake0", "driver": "fake", "zero_bits": 4}
    cfg = config_mod.from_mapping({"devices": {"cpu_actors": 0, "chips": [table]}})
    assert [(a.name, a.kind) for a in build_actors(cfg)] == [("f0", "fake")]


@pytest.mark.usefixtures("fake_registered")
def test_a_new_driver_serves_the_asic_backend_like_the_reference() -> None:
    rng = np.random.default_rng(5)
    frames = rng.integers(0, 2**32, size=(6, 12), dtype=np.uint64).astype(np.uint32)
    seeds = rng.integers(0, 256, size=(2, 32), dtype=np.uint8)
    memory = JitterMemory(frames)
    with AsicEvaluator("fake0", 4, driver="fake") as ev:
        got = ev.evaluate(frames[0], seeds, memory, 3, 4, trace=True)
        assert ev.window_at(12345) == fake_chip.WINDOW
        stats = ev.device_stats()
    want = ReferenceEvaluator().evaluate(frames[0], seeds, memory, 3, 4, trace=True)
    for name in ("output", "golden_nonce", "final_digest", "last_key"):
        assert np.array_equal(getattr(got, name), getattr(want, name)), name
    assert stats is not None and stats["device"]["driver"] == "fake"
    assert stats["device"]["jobs"] == 2 * 4
    with AsicEvaluator("nowhere", 4, driver="fake") as ev, pytest.raises(EvaluatorError):
        ev.warm_up()


@pytest.mark.usefixtures("fake_registered")
def test_a_new_driver_gets_its_emulate_command(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    cmd_emulate.register(parser.add_subparsers())
    args = parser.parse_args(["emulate", "fake", "--chips", "3"])
    assert args.handler(args) == 0
    assert capsys.readouterr().out == "fake chain of 3\n"
    for name in ("bm1370", "s3"):
        assert parser.parse_args(["emulate", name]).model == name
