"""Deploying real trained weights into real BPF maps (as root, on a bpffs mounted in a
temporary directory), checked with bpftool and with the database read by plain SQL:
deploy, failures mid-fill, retries, timeouts, rollback (pinned and after a "reboot"),
dry runs, gates, and a kernel-side lookup through the outer map during a swap."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import os
import sqlite3
import struct
from pathlib import Path
from typing import Any

import pytest

from hasherd.deploy import (
    DeployError,
    DeployMetrics,
    Gates,
    Settings,
    bpf,
    deploy,
    probe,
    rollback,
    status,
)
from hasherd.deploy.abi import pack_key
from hasherd.deploy.errors import BpfError
from hasherd.storage import Store

pytestmark = pytest.mark.anyio
LENIENT = Gates("lenient")


def events(db: Path) -> list[tuple[str, str]]:
    con = sqlite3.connect(db)
    try:
        rows = con.execute(
            "SELECT kind, payload_json FROM events WHERE kind LIKE '%deploy%'"
            " OR kind LIKE 'roll%' ORDER BY id"
        ).fetchall()
        return [(str(k), str(p)) for k, p in rows]
    finally:
        con.close()


def meta_of(h: Any, tool: str, s: Settings, suffix: str = "_meta") -> tuple[Any, ...]:
    (entry,) = h.bpftool_json(tool, "map", "dump", "pinned", s.map_path + suffix)
    return struct.unpack_from("<IIQ32s", h.hex_bytes(entry["value"]))


def checksum_of(layer: dict[tuple[int, int], tuple[Any, ...]]) -> bytes:
    digest = hashlib.sha256()
    for key in sorted(layer):
        digest.update(struct.pack("<II", *key) + struct.pack("<32sIIIIfI", *layer[key]))
    return digest.digest()


def snapshot(h: Any, tool: str, s: Settings) -> dict[str, Any]:
    """Everything a deployment could change: pins, the slot, every map's bytes, backups."""
    directory = Path(s.map_path).parent
    shot: dict[str, Any] = {"pins": sorted(os.listdir(directory))}
    for name in shot["pins"]:
        if name.startswith(Path(s.map_path).name):
            shot[name] = h.bpftool_json(tool, "map", "dump", "pinned", str(directory / name))
    if Path(s.map_path).exists():
        shot["live"] = h.dump_live(tool, Path(s.map_path))
    backups = Path(s.backup_path or "/nonexistent")
    shot["backups"] = sorted(os.listdir(backups)) if backups.is_dir() else []
    return shot


async def test_deploy_then_replace_matches_the_database(
    db: Path, settings: Settings, bpftool: str, h: Any
) -> None:
    metrics = DeployMetrics()
    layer0, layer1 = h.expected_layer(db, 0), h.expected_layer(db, 1)
    assert layer0 and layer1
    async with Store.connect(db, create=False) as store:
        first = await deploy(store, settings, 0, LENIENT, metrics=metrics)
        assert h.dump_live(bpftool, Path(settings.map_path)) == layer0
        layer, count, since, digest = meta_of(h, bpftool, settings)
        assert (layer, count, digest) == (0, len(layer0), checksum_of(layer0))
        assert (first["count"], first["added"], first["removed"], first["previous"]) == (
            len(layer0),
            len(layer0),
            0,
            None,
        )
        assert first["checksum"] == digest.hex() and first["deployed_at"] == since
        second = await deploy(store, settings, 1, LENIENT, metrics=metrics)
    assert h.dump_live(bpftool, Path(settings.map_path)) == layer1
    prev = h.bpftool_json(bpftool, "map", "show", "pinned", settings.map_path + "_prev")
    assert h.dump_id(bpftool, prev["id"]) == layer0  # kept for rollback
    assert meta_of(h, bpftool, settings, "_prev_meta")[:3] == (0, len(layer0), since)
    assert second["previous"] == {
        "layer": 0,
        "count": len(layer0),
        "checksum": digest.hex(),
        "deployed_at": since,
    }
    assert (second["added"], second["removed"]) == (len(layer1), len(layer0))
    backup = Path(second["backup"])
    assert backup.parent == Path(settings.backup_path or "") and backup.name.endswith(".layer0.bak")
    kinds = [k for k, _ in events(db)]
    assert kinds == ["deployed", "deployed"]
    snap = metrics.snapshot()
    assert (snap["deployments"], snap["failures"], snap["live_layer"], snap["live_count"]) == (
        2,
        0,
        1.0,
        float(len(layer1)),
    )


async def test_strict_mode_and_the_fitness_gate(
    db: Path, settings: Settings, bpftool: str, h: Any
) -> None:
    layer = max((0, 1), key=lambda n: len(h.expected_layer(db, n, strict=True)))
    strict = h.expected_layer(db, layer, strict=True)
    everything = h.expected_layer(db, layer)
    assert 0 < len(strict) < len(everything)  # the run validated some weights, not all
    async with Store.connect(db, create=False) as store:
        report = await deploy(store, settings, layer, Gates("strict"))
        assert h.dump_live(bpftool, Path(settings.map_path)) == strict
        assert all(value[6] == 1 for value in strict.values())  # flags: validated
        assert report["selection"]["rejected"] == {"unvalidated": len(everything) - len(strict)}
        floor = sorted(v[5] for v in everything.values())[len(everything) // 2]
        await deploy(store, settings, layer, Gates("lenient", min_fitness=floor))
    assert h.dump_live(bpftool, Path(settings.map_path)) == h.expected_layer(
        db, layer, min_fitness=floor
    )


async def test_a_failure_mid_fill_leaves_the_live_layer_untouched(
    db: Path, settings: Settings, bpftool: str, h: Any
) -> None:
    metrics = DeployMetrics()
    small = dataclasses.replace(settings, batch=2)
    seen: list[int] = []

    def fail_after_two_batches(done: int, total: int) -> None:
        seen.append(done)
        if len(seen) == 2:
            raise RuntimeError("injected: power cut mid-fill")

    async with Store.connect(db, create=False) as store:
        await deploy(store, small, 0, LENIENT)
        before = snapshot(h, bpftool, small)
        with pytest.raises(RuntimeError, match="injected"):
            await deploy(store, small, 1, LENIENT, fault=fail_after_two_batches, metrics=metrics)
    assert seen == [2, 4]
    assert snapshot(h, bpftool, small) == before
    assert before["live"] == h.expected_layer(db, 0)
    kinds = [k for k, _ in events(db)]
    assert kinds == ["deployed", "deploy_failed"]
    assert "injected: power cut mid-fill" in events(db)[-1][1]
    assert metrics.snapshot()["failures"] == 1 and metrics.snapshot()["deployments"] == 0


async def test_a_transient_failure_is_retried(
    db: Path, settings: Settings, bpftool: str, h: Any
) -> None:
    calls: list[int] = []

    def busy_once(done: int, total: int) -> None:
        calls.append(done)
        if len(calls) == 1:
            raise BpfError(errno.EBUSY, "BPF_MAP_UPDATE_BATCH", "(injected)")

    async with Store.connect(db, create=False) as store:
        report = await deploy(store, settings, 1, LENIENT, fault=busy_once)
    assert report["attempts"] == 2
    assert h.dump_live(bpftool, Path(settings.map_path)) == h.expected_layer(db, 1)


async def test_the_deployment_timeout_stops_before_the_swap(
    db: Path, settings: Settings, bpftool: str, h: Any
) -> None:
    async with Store.connect(db, create=False) as store:
        await deploy(store, settings, 0, LENIENT)
        before = snapshot(h, bpftool, settings)
        with pytest.raises(DeployError, match="deployment_timeout passed while filling layer 1"):
            await deploy(store, dataclasses.replace(settings, timeout=0.0), 1, LENIENT)
    assert snapshot(h, bpftool, settings) == before


async def test_rollback_restores_the_previous_layer_and_back(
    db: Path, settings: Settings, bpftool: str, h: Any
) -> None:
    metrics = DeployMetrics()
    async with Store.connect(db, create=False) as store:
        with pytest.raises(DeployError, match="nothing to roll back to"):
            await rollback(settings, store)
        await deploy(store, settings, 0, LENIENT)
        await deploy(store, settings, 1, LENIENT)
        back = await rollback(settings, store, metrics)
        assert h.dump_live(bpftool, Path(settings.map_path)) == h.expected_layer(db, 0)
        assert (back["source"], back["live"]["layer"], back["previous"]["layer"]) == ("prev", 0, 1)
        shown = await status(settings)
        assert shown["live"]["layer"] == 0 and shown["live"]["intact"]
        assert shown["previous"]["layer"] == 1
        again = await rollback(settings, store, metrics)
    assert again["live"]["layer"] == 1
    assert h.dump_live(bpftool, Path(settings.map_path)) == h.expected_layer(db, 1)
    assert [k for k, _ in events(db)] == [
        "rollback_failed",
        "deployed",
        "deployed",
        "rolled_back",
        "rolled_back",
    ]
    assert metrics.snapshot()["rollbacks"] == 2


async def test_rollback_after_a_reboot_uses_the_backup_file(
    db: Path, settings: Settings, bpftool: str, h: Any
) -> None:
    async with Store.connect(db, create=False) as store:
        await deploy(store, settings, 0, LENIENT)
        await deploy(store, settings, 1, LENIENT)
        directory = Path(settings.map_path).parent
        h.umount(directory)  # a reboot: bpffs comes back empty
        h.mount_bpffs(directory)
        assert (await status(settings))["live"] is None
        back = await rollback(settings, store)
    assert back["source"] == "backup" and back["live"]["layer"] == 0
    assert h.dump_live(bpftool, Path(settings.map_path)) == h.expected_layer(db, 0)


async def test_a_dry_run_changes_nothing(
    db: Path, settings: Settings, bpftool: str, h: Any
) -> None:
    layer0, layer1 = h.expected_layer(db, 0), h.expected_layer(db, 1)
    pins = sorted(os.listdir(Path(settings.map_path).parent))
    async with Store.connect(db, create=False) as store:
        plan = await deploy(store, settings, 0, LENIENT, dry_run=True)
        assert sorted(os.listdir(Path(settings.map_path).parent)) == pins  # nothing created
        assert (plan["added"], plan["removed"], plan["dry_run"]) == (len(layer0), 0, True)
        await deploy(store, settings, 0, LENIENT)
        before = snapshot(h, bpftool, settings)
        plan = await deploy(store, settings, 1, LENIENT, dry_run=True)
        same = await deploy(store, settings, 0, LENIENT, dry_run=True)
    assert snapshot(h, bpftool, settings) == before
    assert [k for k, _ in events(db)] == ["deployed"]
    assert (plan["added"], plan["changed"], plan["removed"]) == (len(layer1), 0, len(layer0))
    assert plan["previous"]["layer"] == 0 and plan["checksum"] == checksum_of(layer1).hex()
    assert (same["added"], same["changed"], same["removed"], same["unchanged"]) == (
        0,
        0,
        0,
        len(layer0),
    )


async def test_the_kernel_sees_one_whole_layer_at_a_time(
    db: Path, settings: Settings, h: Any
) -> None:
    layer0, layer1 = h.expected_layer(db, 0), h.expected_layer(db, 1)
    async with Store.connect(db, create=False) as store:
        await deploy(store, settings, 0, LENIENT)
        with bpf.Map.pinned(settings.map_path) as outer:
            try:
                kernel = probe.KernelProbe(outer)
            except BpfError as exc:
                release = tuple(int(p) for p in os.uname().release.split(".")[:2])
                if release >= (5, 14):
                    raise
                pytest.skip(f"no BPF_PROG_TYPE_SYSCALL before Linux 5.14: {exc}")
        with kernel:

            def lookups() -> dict[tuple[int, int], Any]:
                out = {}
                for key in layer0.keys() | layer1.keys():
                    found, raw = kernel.lookup(pack_key(*key))
                    out[key] = h.decode_value(raw) if found == probe.FOUND else found
                return out

            def whole(layer: dict[Any, Any], other: dict[Any, Any]) -> dict[Any, Any]:
                return {**{k: probe.NO_KEY for k in other}, **layer}

            mid_fill: list[dict[Any, Any]] = []
            assert lookups() == whole(layer0, layer1)
            small = dataclasses.replace(settings, batch=1)
            await deploy(store, small, 1, LENIENT, fault=lambda d, t: mid_fill.append(lookups()))
            assert len(mid_fill) == len(layer1)
            assert all(seen == whole(layer0, layer1) for seen in mid_fill)  # never a mix
            assert lookups() == whole(layer1, layer0)
            await rollback(settings, store)
            assert lookups() == whole(layer0, layer1)


async def test_bad_map_paths_are_clear_errors(db: Path, settings: Settings, bpffs: Path) -> None:
    foreign = bpffs / "foreign"
    with bpf.Map.create(bpf.MAP_HASH, 4, 4, 8, "foreign") as m:
        m.pin(str(foreign))
    cases = {
        "relative/path": "expected an absolute path",
        str(bpffs / "with.dot"): "bpffs does not allow '.' in names",
        str(bpffs): "is a directory, not a pinned map",
        str(foreign): f"{foreign}: a hash map (key 4 B, value 4 B, 8 entries) is pinned there, "
        "not the outer map hasherd expects (array_of_maps, key 4 B, value 4 B, 1 entries)",
        "/nonexistent-dir/sub/w": "/nonexistent-dir/sub does not exist and is not inside a bpffs",
    }
    async with Store.connect(db, create=False) as store:
        for path, message in cases.items():
            s = dataclasses.replace(settings, map_path=path)
            with pytest.raises(DeployError, match=message.replace("(", r"\(").replace(")", r"\)")):
                await deploy(store, s, 0, LENIENT)
        with pytest.raises(DeployError, match=r"layer 7: no weights pass the gates \(0 stored"):
            await deploy(store, settings, 7, LENIENT)
    assert sorted(p.name for p in bpffs.iterdir() if "debug" not in p.name) == ["foreign"]


async def test_bpffs_not_mounted(db: Path, settings: Settings, tmp_path: Path, h: Any) -> None:
    h.need_root()
    plain = tmp_path / "plain"
    plain.mkdir()
    s = dataclasses.replace(settings, map_path=str(plain / "w"), allow_mount=False)
    async with Store.connect(db, create=False) as store:
        with pytest.raises(
            DeployError,
            match=f"{plain} is not a bpffs and mounting is not "
            "allowed here; mount one first: mount -t bpf bpf",
        ):
            await deploy(store, s, 0, LENIENT)
        (plain / "file").write_text("x")
        with pytest.raises(DeployError, match="is not a bpffs and is not empty; refusing"):
            await deploy(store, dataclasses.replace(s, allow_mount=True), 0, LENIENT)
        (plain / "file").unlink()
        assert (await status(s))["live"] is None  # status and dry runs never mount
        assert not bpf.is_bpffs(str(plain))
        try:
            await deploy(store, dataclasses.replace(s, allow_mount=True), 0, LENIENT)
            assert bpf.is_bpffs(str(plain))  # mounted, as allowed
            assert (await status(s))["live"]["count"] == len(h.expected_layer(db, 0))
        finally:
            if bpf.is_bpffs(str(plain)):
                h.umount(plain)
