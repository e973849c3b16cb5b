"""Which actors the daemon builds from the config."""

from __future__ import annotations

import pytest

from hasherd.actors.build import build_actors, cpu_threads
from hasherd.config import Config, from_mapping
from hasherd.errors import ConfigError


def test_cpu_and_gpu_actors_come_from_the_devices_section() -> None:
    cfg = from_mapping(
        {
            "devices": {"cpu_actors": 2, "gpu_actors": 2, "mailbox": 3},
            "simulator": {"gpu_device": 1, "max_concurrency": 4},
        }
    )
    actors = build_actors(cfg)
    assert [(a.name, a.kind, a.capacity) for a in actors] == [
        ("numba0", "numba", 3),
        ("numba1", "numba", 3),
        ("cuda1", "cuda", 3),
        ("cuda2", "cuda", 3),
    ]
    assert cpu_threads(cfg) == 2  # four threads shared by two CPU actors


def test_reference_cpu_actors_and_no_actor_at_all() -> None:
    cfg = from_mapping({"simulator": {"device_type": "reference"}})
    assert [(a.name, a.kind) for a in build_actors(cfg)] == [("reference0", "reference")]
    with pytest.raises(ConfigError, match=r"devices\.cpu_actors"):
        build_actors(from_mapping({"devices": {"cpu_actors": 0}}))
    assert build_actors(Config())[0].kind == "numba"
