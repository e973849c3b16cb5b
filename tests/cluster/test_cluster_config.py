"""The ``[cluster]`` section and what it builds, without a cluster: the keys and their
errors, a chip table's ``node``, the remote actors' names and nodes (nothing connects
before an actor starts), and the rows of ``hasherctl nodes``."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

from hasherd import config as config_mod
from hasherd.actors.base import ActorState
from hasherd.actors.build import build_actors
from hasherd.backends.cluster import node_resource, node_rows
from hasherd.errors import ConfigError


def _cfg(cluster: dict[str, Any], chips: list[dict[str, Any]] | None = None) -> config_mod.Config:
    return config_mod.from_mapping(
        {"devices": {"cpu_actors": 1, "chips": chips or []}, "cluster": cluster}
    )


def test_defaults_mean_no_cluster() -> None:
    cfg = config_mod.Config()
    assert cfg.cluster.address == "" and cfg.cluster.nodes == ()
    assert [a.node for a in build_actors(cfg)] == [""]
    assert cfg.to_dict()["cluster"]["nodes"] == []


def test_cuda_actors_go_to_the_gpu_nodes_only() -> None:
    cfg = _cfg(
        {
            "address": "h:1",
            "nodes": ["rig-01", "rig-02", "rig-03"],
            "cpu_actors_per_node": 0,
            "gpu_actors_per_node": 2,
            "gpu_nodes": ["rig-02"],
        }
    )
    assert cfg.cluster.gpu_nodes == ("rig-02",)
    remote = [(a.name, a.node) for a in build_actors(cfg) if a.node]
    assert remote == [("rig-02-cuda0", "rig-02"), ("rig-02-cuda1", "rig-02")]


def test_the_keys_parse_and_build_remote_actors_per_node() -> None:
    cfg = _cfg(
        {
            "address": "10.0.0.1:6379",
            "nodes": ["rig-01", "rig-02"],
            "cpu_actors_per_node": 2,
            "gpu_actors_per_node": 1,
            "start_timeout": "90s",
        },
        [{"path": "/dev/ttyUSB0", "name": "chain7", "node": "rig-02"}],
    )
    assert cfg.cluster.start_timeout == 90.0 and cfg.devices.chips[0].node == "rig-02"
    actors = build_actors(cfg)
    placed = {a.name: (a.kind, a.node) for a in actors}
    assert placed == {
        "numba0": ("numba", ""),
        "rig-01-numba0": ("numba", "rig-01"),
        "rig-01-numba1": ("numba", "rig-01"),
        "rig-01-cuda0": ("cuda", "rig-01"),
        "rig-02-numba0": ("numba", "rig-02"),
        "rig-02-numba1": ("numba", "rig-02"),
        "rig-02-cuda0": ("cuda", "rig-02"),
        "chain7": ("bm1370", "rig-02"),
    }
    assert all(a.state == ActorState.STOPPED for a in actors)  # nothing placed yet
    snap = {a.name: a.snapshot()["node"] for a in actors}
    assert snap["numba0"] == "local" and snap["chain7"] == "rig-02"
    assert node_resource("rig-02") == "hasherd_node:rig-02"


@pytest.mark.parametrize(
    ("cluster", "chips", "key", "problem"),
    [
        ({"nodes": ["rig-01"]}, None, "cluster.nodes", "needs cluster.address"),
        ({"address": "h:1", "nodes": ["rig 01"]}, None, "cluster.nodes", "'rig 01': must be"),
        ({"address": "h:1", "nodes": ["a", "a"]}, None, "cluster.nodes", "'a' is named twice"),
        ({"address": "h:1", "nodes": "rig-01"}, None, "cluster.nodes", "expected a list"),
        ({"address": "h:1", "cpu_actors_per_node": 65}, None, "cluster.cpu_actors_per_node", ""),
        ({"address": "h:1", "gpu_actors_per_node": -1}, None, "cluster.gpu_actors_per_node", ""),
        ({"address": "h:1", "start_timeout": 0}, None, "cluster.start_timeout", "must be > 0"),
        (
            {"address": "h:1", "nodes": ["rig-01"], "gpu_nodes": ["rig-02"]},
            None,
            "cluster.gpu_nodes",
            "'rig-02' is not one of cluster.nodes (rig-01)",
        ),
        ({"port": 1}, None, "cluster.port", "unknown key"),
        (
            {"address": "h:1", "nodes": ["rig-01"]},
            [{"path": "/dev/ttyUSB0", "node": "rig-09"}],
            "devices.chips[0].node",
            "'rig-09' is not one of cluster.nodes (rig-01)",
        ),
        ({}, [{"path": "/dev/ttyUSB0", "node": "rig 9"}], "devices.chips[0].node", "must be"),
    ],
)
def test_bad_values_name_the_key(
    cluster: dict[str, Any], chips: list[dict[str, Any]] | None, key: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as err:
        _cfg(cluster, chips)
    assert err.value.key == key and problem in err.value.problem


def test_a_cluster_without_ray_installed_is_refused_at_build(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a)
    )
    with pytest.raises(ConfigError) as err:
        build_actors(_cfg({"address": "h:1", "nodes": ["rig"]}))
    assert err.value.key == "cluster.address" and "hasherd[ray]" in err.value.problem
    build_actors(config_mod.Config())  # no cluster: ray is not needed


def test_an_actor_name_taken_twice_is_refused() -> None:
    cfg = _cfg(
        {"address": "h:1", "nodes": ["rig"]},
        [{"path": "/dev/ttyUSB0", "name": "rig-numba0"}],
    )
    with pytest.raises(ConfigError, match="'rig-numba0' is taken"):
        build_actors(cfg)


def test_node_rows_merge_the_actors_the_config_and_the_cluster() -> None:
    actors = [
        {"name": "numba0", "node": "local", "state": "busy"},
        {"name": "rig-01-numba0", "node": "rig-01", "state": "ready"},
        {"name": "rig-02-numba0", "node": "rig-02", "state": "failed"},
    ]
    seen = [
        {"name": "head", "alive": True, "address": "10.0.0.1", "cpus": 4.0, "gpus": 0.0},
        {"name": "rig-02", "alive": False, "address": "10.0.0.3", "cpus": 8.0, "gpus": 1.0},
        {"name": "rig-01", "alive": True, "address": "10.0.0.2", "cpus": 8.0, "gpus": 0.0},
        # a dead earlier incarnation of rig-01, listed after the live one
        {"name": "rig-01", "alive": False, "address": "10.0.0.2", "cpus": 8.0, "gpus": 0.0},
    ]
    rows = node_rows(actors, seen, ("rig-01", "rig-02", "rig-03"))
    brief = [(r["name"], r["alive"], r["actors"], r["working"]) for r in rows]
    assert brief == [
        ("local", None, ["numba0"], 1),
        ("head", True, [], 0),
        ("rig-01", True, ["rig-01-numba0"], 1),
        ("rig-02", False, ["rig-02-numba0"], 0),
        ("rig-03", None, [], 0),  # configured, never seen by the cluster
    ]
    assert rows[2]["address"] == "10.0.0.2" and rows[3]["gpus"] == 1.0
