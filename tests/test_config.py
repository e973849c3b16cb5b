"""The config file: the prototype's JSON format (and TOML), checked key by key."""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hasherd import config
from hasherd.cli.common import evaluator_for, setup_logging
from hasherd.errors import ConfigError
from tests.helpers import HASHERD

PROTOTYPE = {
    "simulator": {
        "device_type": "vhasher",
        "max_concurrency": 1,
        "target_hash_rate": 500000000,
        "cache_size": 10000,
        "gpu_device": 0,
        "timeout": 30,
    },
    "storage": {"base_path": "data/weights", "layer_size": 1000},
    "training": {
        "population_size": 128,
        "max_generations": 500,
        "elite_ratio": 0.25,
        "mutation_rate": 0.05,
        "target_fitness": 0.95,
        "validation_split": 0.1,
    },
    "deployment": {
        "bpf_map_path": "/sys/fs/bpf/hasher_weights",
        "deployment_timeout": "300s",
        "max_retries": 3,
        "retry_delay": "5s",
        "validation_mode": "strict",
        "backup_enabled": True,
        "backup_path": "data/backups",
        "rollback_enabled": True,
    },
    "validation": {
        "timeout": "30s",
        "max_concurrency": 10,
        "retry_attempts": 3,
        "tolerance_threshold": 0.01,
        "enable_asic": False,
    },
    "logging": {
        "level": "info",
        "format": "text",
        "output": "stdout",
        "max_size": 100,
        "max_backups": 10,
        "max_age": 30,
    },
}


def test_the_prototype_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(PROTOTYPE))
    cfg = config.load(path)
    assert cfg.training.max_generations == 500 and cfg.deployment.deployment_timeout == 300.0
    assert cfg.deployment.retry_delay == 5.0 and cfg.validation.timeout == 30.0
    assert cfg.to_dict()["simulator"]["device_type"] == "vhasher"
    assert evaluator_for(cfg).name == "numba" and evaluator_for(cfg).threads == 1


def test_toml_and_defaults(tmp_path: Path) -> None:
    path = tmp_path / "hasherd.toml"
    path.write_text('[training]\npopulation_size = 64\n[simulator]\ntimeout = "2m"\n')
    cfg = config.load(path)
    assert cfg.training.population_size == 64 and cfg.simulator.timeout == 120.0
    assert cfg.training.elite_ratio == 0.25 and config.load(None) == config.Config()


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"training": {"elite_ratio": 1.5}}, "training.elite_ratio"),
        ({"training": {"population_size": 0}}, "training.population_size"),
        ({"training": {"population_size": "128"}}, "training.population_size"),
        ({"training": {"populaton_size": 128}}, "training.populaton_size"),
        ({"simulator": {"device_type": "fpga"}}, "simulator.device_type"),
        ({"simulator": {"timeout": "soon"}}, "simulator.timeout"),
        ({"deployment": {"backup_enabled": "yes"}}, "deployment.backup_enabled"),
        ({"logging": {"format": "xml"}}, "logging.format"),
        ({"daemon": {"max_jobs": 0}}, "daemon.max_jobs"),
        ({"daemon": {"max_jobs": 65}}, "daemon.max_jobs"),
        ({"simulation": {}}, "simulation"),
        ({"training": []}, "training"),
    ],
)
def test_bad_keys_are_named(tmp_path: Path, raw: dict[str, object], key: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(ConfigError) as err:
        config.load(path)
    assert err.value.key == key and str(path) in str(err.value)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        config.load(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        config.load(tmp_path / "broken.json")


def test_command_line_overrides_are_checked() -> None:
    cfg = config.Config().with_training(epochs=5, population_size=32)
    assert cfg.training.epochs == 5 and cfg.training.population_size == 32
    with pytest.raises(ConfigError, match=r"training\.epochs"):
        config.Config().with_training(epochs=0)


def test_logging_to_a_rotated_json_file(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "hasherd.log"
    raw = {"logging": {"output": str(log), "format": "json", "level": "debug", "max_size": 1}}
    path = tmp_path / "c.json"
    path.write_text(json.dumps(raw))
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        setup_logging(config.load(path))
        logging.getLogger("hasherd.test").debug("hello %s", "world")
        for h in root.handlers:
            h.flush()
        entry = json.loads(log.read_text().splitlines()[-1])
        assert entry["message"] == "hello world" and entry["level"] == "debug"
    finally:
        for h in root.handlers:
            h.close()
        root.handlers[:], root.level = saved


values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)
sections = st.dictionaries(
    st.sampled_from([*config.Config().to_dict(), "extra"]),
    st.dictionaries(st.sampled_from(["timeout", "population_size", "level", "x"]), values),
)


@settings(max_examples=200, deadline=None)
@given(st.one_of(sections, values))
def test_fuzzed_configs_load_or_name_the_key(raw: object) -> None:
    try:
        config.from_mapping(raw, "fuzz.json")
    except ConfigError as err:
        assert isinstance(err.key, str) and str(err).startswith("fuzz.json: ")


@pytest.mark.parametrize(
    ("toml", "key", "problem"),
    [
        ("[simulator]\ntimeout = inf", "simulator.timeout", "inf is not a finite duration"),
        ("[simulator]\ntimeout = nan", "simulator.timeout", "nan is not a finite duration"),
        ("[validation]\ntimeout = 0", "validation.timeout", "must be > 0"),
        ('[validation]\ntimeout = "0s"', "validation.timeout", "must be > 0"),
        ("[deployment]\ndeployment_timeout = 0", "deployment.deployment_timeout", "must be > 0"),
        ('[daemon]\nshutdown_timeout = "8d"', "daemon.shutdown_timeout", "'8d' is not a dur"),
        ('[daemon]\nshutdown_timeout = "169h"', "daemon.shutdown_timeout", "must be at most"),
        ("[training]\ntarget_fitness = inf", "training.target_fitness", "expected a finite"),
        ("[simulator]\ntarget_hash_rate = 1e400", "simulator.target_hash_rate", "expected a fin"),
        ("[training]\nepochs = 9223372036854775807", "training.epochs", "must be in 1..1000"),
        ("[simulator]\ncache_size = 1000000000000", "simulator.cache_size", "must be in 1..1"),
        ("[logging]\nmax_age = 99999999", "logging.max_age", "must be in 0..36500 (days)"),
        ("[control]\nmax_connections = 100000", "control.max_connections", "must be in 1..65536"),
        (
            '[deployment]\nbpf_map_path = "/sys/fs/bpf/hasher.weights"',
            "deployment.bpf_map_path",
            "'/sys/fs/bpf/hasher.weights': bpffs does not allow '.' in names",
        ),
        (
            '[deployment]\nbpf_map_path = "/sys/fs/bpf/../../etc/w"',
            "deployment.bpf_map_path",
            "must not contain '.', '..' or empty components",
        ),
        (
            '[deployment]\nbpf_map_path = "/sys/fs/bpf/./w"',
            "deployment.bpf_map_path",
            "must not contain '.', '..' or empty components",
        ),
        (
            '[deployment]\nbpf_map_path = "hasher_weights"',
            "deployment.bpf_map_path",
            "expected an absolute path to a pin",
        ),
        (
            '[control]\ngroup = "no-such-group-hasherd"',
            "control.group",
            "'no-such-group-hasherd' is not a group on this system",
        ),
        ('[jitter]\ngroup = "no-such-group-hasherd"', "jitter.group", "is not a group on this"),
    ],
)
def test_values_out_of_bounds_are_named(tmp_path: Path, toml: str, key: str, problem: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(toml + "\n")
    with pytest.raises(ConfigError) as err:
        config.load(path)
    assert err.value.key == key and problem in err.value.problem


def test_an_existing_group_and_a_json_infinity(tmp_path: Path) -> None:
    path = tmp_path / "ok.toml"
    path.write_text('[control]\ngroup = "root"\n[jitter]\ngroup = "root"\n')
    assert config.load(path).control.group == "root"
    bad = tmp_path / "bad.json"
    bad.write_text('{"simulator": {"timeout": Infinity}}')  # Python's json reads it
    with pytest.raises(ConfigError, match=r"simulator\.timeout: inf is not a finite duration"):
        config.load(bad)


def test_check_config_refuses_an_unknown_group_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "hasherd.toml"
    path.write_text('[control]\ngroup = "no-such-group-hasherd"\n')
    got = subprocess.run(
        [*HASHERD, "check-config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert got.returncode == 2 and "Traceback" not in got.stderr
    assert (
        f"{path}: control.group: 'no-such-group-hasherd' is not a group on this system"
        in got.stderr
    )
