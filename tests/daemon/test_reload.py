"""``reload`` reports exactly what it applied: every key it lists as reloaded is in the
running config, and every key it lists as needing a restart keeps its running value."""

from __future__ import annotations

from pathlib import Path

from hasherd import config as config_mod
from hasherd.daemon.root import Daemon

BEFORE = """
[deployment]
bpf_map_path = "/sys/fs/bpf/hasherd/old"
validation_mode = "strict"
[simulator]
cache_size = 100
timeout = 30
[training]
epochs = 2
[metrics]
address = ""
"""


def _reload(tmp_path: Path, after: str) -> tuple[Daemon, dict[str, list[str]]]:
    path = tmp_path / "hasherd.toml"
    path.write_text(BEFORE)
    daemon = Daemon(config_mod.load(path), str(path))
    path.write_text(after)
    return daemon, daemon.reload()


def test_deployment_keys_apply_to_the_next_deployment_and_are_reported(tmp_path: Path) -> None:
    after = BEFORE.replace("/old", "/new").replace('"strict"', '"lenient"')
    daemon, got = _reload(tmp_path, after)
    assert got == {
        "reloaded": ["deployment.bpf_map_path", "deployment.validation_mode"],
        "restart_needed": [],
    }
    deployment = daemon._config().deployment  # what the flash handlers read
    assert deployment.bpf_map_path == "/sys/fs/bpf/hasherd/new"
    assert deployment.validation_mode == "lenient"


def test_keys_that_need_a_restart_keep_their_running_value(tmp_path: Path) -> None:
    after = (
        BEFORE.replace("cache_size = 100", "cache_size = 7")
        .replace("timeout = 30", "timeout = 9")
        .replace("epochs = 2", "epochs = 5")
        .replace('address = ""', 'address = "127.0.0.1:9999"')
    )
    daemon, got = _reload(tmp_path, after)
    assert got == {
        "reloaded": ["simulator.timeout", "training.epochs"],
        "restart_needed": ["metrics.address", "simulator.cache_size"],
    }
    cfg = daemon._config()
    assert (cfg.simulator.timeout, cfg.training.epochs) == (9, 5)
    assert (cfg.simulator.cache_size, cfg.metrics.address) == (100, "")
    # The report holds on the next reload too: nothing changed since, nothing applied.
    assert daemon.reload() == {
        "reloaded": [],
        "restart_needed": ["metrics.address", "simulator.cache_size"],
    }
