"""``hasherd flash`` (no daemon) and ``hasherctl flash`` (through a real control server
with the ``flash.*`` handlers) end to end, on a bpffs in a temporary directory."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from anyio.from_thread import start_blocking_portal

from hasherd.cli import cmd_flash, ctl, ctl_flash
from hasherd.cli import main as hasherd_main
from hasherd.config import Config, DeploymentConfig
from hasherd.control.client import ControlClient
from hasherd.control.server import ControlServer
from hasherd.deploy import handlers
from hasherd.deploy.engine import Settings
from hasherd.storage import Store


def hasherd(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str
) -> tuple[int, str, str]:
    if cmd_flash not in hasherd_main.COMMANDS:  # until main.py lists it
        monkeypatch.setattr(hasherd_main, "COMMANDS", (*hasherd_main.COMMANDS, cmd_flash))
    status = hasherd_main.main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def pairs_of(out: str) -> dict[str, str]:
    return dict(line.split(None, 1) for line in out.splitlines() if "  " in line)


def test_hasherd_flash_status_and_rollback(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    db: Path,
    settings: Settings,
    h: Any,
) -> None:
    common = ["--map-path", settings.map_path, "--backup-path", str(settings.backup_path)]
    deploy = ["flash", "--db", str(db), *common, "--validation-mode", "lenient"]
    layer0, layer1 = h.expected_layer(db, 0), h.expected_layer(db, 1)

    status, out, err = hasherd(capsys, monkeypatch, *deploy, "--layer", "0", "--dry-run")
    assert status == 0, err
    assert out.splitlines()[0] == (
        f"dry run: layer 0 would go live at {settings.map_path} (nothing changed)"
    )
    assert pairs_of(out)["added"] == str(len(layer0))
    assert not Path(settings.map_path).exists()

    assert hasherd(capsys, monkeypatch, *deploy, "--layer", "0")[0] == 0
    status, out, err = hasherd(capsys, monkeypatch, *deploy, "--layer", "1", "--json")
    assert status == 0, err
    report = json.loads(out)
    assert (report["layer"], report["count"], report["previous"]["layer"]) == (1, len(layer1), 0)

    status, out, _ = hasherd(capsys, monkeypatch, "flash", "status", *common)
    shown = pairs_of(out)
    assert status == 0
    assert shown["live"].startswith(f"layer 1, {len(layer1)} weights, since ")
    assert shown["checksum"] == report["checksum"]
    assert shown["previous"].startswith(f"layer 0, {len(layer0)} weights")

    status, out, _ = hasherd(capsys, monkeypatch, "flash", "rollback", *common, "--db", str(db))
    assert status == 0
    assert out.splitlines()[0] == (
        f"rolled back {settings.map_path}: layer 0 is live again (from prev)"
    )

    status, _, err = hasherd(capsys, monkeypatch, *deploy, "--layer", "9")
    assert status == 1
    assert err.strip() == (
        "hasherd flash: error: layer 9: no weights pass the gates "
        "(0 stored; rejected: none stored); nothing deployed"
    )
    status, _, err = hasherd(capsys, monkeypatch, "flash", *common)
    assert status == 2 and "give --layer N to deploy, or `status`, or `rollback`" in err
    # Without --db the database is <storage.base_path>/hasherd.db of the config (as for
    # train): the default one does not exist here, and the error names it.
    status, _, err = hasherd(capsys, monkeypatch, "flash", "--layer", "0", *common)
    assert status == 2 and "hasherd.db: no such database file" in err


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    base = tempfile.gettempdir()
    path = Path(tempfile.mkdtemp(prefix="hfl-", dir=base if len(base) < 40 else "/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def ctl_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hasherctl")
    sub = parser.add_subparsers(dest="command", required=True)
    ctl_flash.register(sub, ctl._reader, ctl.call_and_show)
    return parser


def test_hasherctl_flash_through_the_daemon_handlers(
    capsys: pytest.CaptureFixture[str],
    sock_dir: Path,
    db: Path,
    settings: Settings,
    h: Any,
    bpftool: str,
) -> None:
    cfg = Config(
        deployment=DeploymentConfig(
            bpf_map_path=settings.map_path,
            backup_path=str(settings.backup_path),
            validation_mode="lenient",
            retry_delay=0.01,
        )
    )
    server = ControlServer(sock_dir / "control.sock")
    with start_blocking_portal() as portal:
        store = portal.call(Store.open, db)
        metrics = handlers.register(server, store, lambda: cfg)
        portal.start_task(server.serve)
        try:
            with ControlClient(server.path, timeout=30) as client:

                def run(*argv: str) -> tuple[int, str, str]:
                    args = ctl_parser().parse_args(list(argv))
                    status: int = args.run(client, args)
                    out, err = capsys.readouterr()
                    return status, out, err

                status, out, _ = run("flash", "--layer", "1", "--dry-run", "--json")
                assert status == 0 and json.loads(out)["dry_run"] is True
                status, out, _ = run("flash", "--layer", "1")
                assert status == 0 and out.splitlines()[0].startswith("layer 1 is live at ")
                assert h.dump_live(bpftool, Path(settings.map_path)) == h.expected_layer(db, 1)
                status, out, _ = run("flash", "--layer", "0", "--target-fitness", "0", "--json")
                assert json.loads(out)["count"] == len(h.expected_layer(db, 0))
                status, out, _ = run("flash", "status", "--json")
                assert json.loads(out)["live"]["layer"] == 0
                status, out, _ = run("flash", "rollback")
                assert status == 0 and "layer 1 is live again (from prev)" in out
                status, _, err = run("flash", "status", "--layer", "2")
                assert status == 2 and "--layer and the deploy options do not apply" in err
                with pytest.raises(Exception, match=r"layer: expected an integer >= 0"):
                    client.call("flash.deploy", layer=-1)
        finally:
            portal.call(server.stop)
            portal.call(store.close)
    snap = metrics.snapshot()
    assert (snap["deployments"], snap["rollbacks"], snap["live_layer"]) == (2, 1, 1.0)


CLI = (
    "import sys\n"
    "from hasherd.cli import cmd_flash, main\n"
    "if cmd_flash not in main.COMMANDS:\n"
    "    main.COMMANDS = (*main.COMMANDS, cmd_flash)\n"
    "raise SystemExit(main.main(sys.argv[1:]))\n"
)


def test_the_daemons_capabilities_suffice(db: Path, settings: Settings, h: Any) -> None:
    """As the systemd unit runs it: CAP_BPF, no CAP_SYS_ADMIN (no opening maps by id)."""
    common = ["--map-path", settings.map_path, "--backup-path", str(settings.backup_path)]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = ["setpriv", "--bounding-set=-sys_admin", sys.executable, "-c", CLI, *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)

    deploy = ["flash", "--db", str(db), "--validation-mode", "lenient", *common]
    for layer in ("0", "1"):
        assert run(*deploy, "--layer", layer).returncode == 0
    assert run("flash", "rollback", *common, "--db", str(db)).returncode == 0
    done = run("flash", "status", *common, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["live"]["layer"] == 0
    os.unlink(settings.map_path + "_live")  # as if a swap had been interrupted
    done = run("flash", "status", *common)
    assert done.returncode == 1
    assert "which is not the map pinned at" in done.stderr
    assert "opening it by id needs CAP_SYS_ADMIN" in done.stderr
    as_root = subprocess.run(
        [sys.executable, "-c", CLI, *deploy, "--layer", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert as_root.returncode == 0, as_root.stderr
    done = run("flash", "status", *common, "--json")  # a flash as root repaired the pins
    assert done.returncode == 0 and json.loads(done.stdout)["live"]["layer"] == 1
