"""tools/install.sh into a scratch root (``--root``): the unit pointing into the prefix,
the systemd files, the user, the config only when absent, the links; and the uninstall
that keeps the config and the data unless ``--purge``.

The virtual environment step (pip downloading the dependencies) is left out here
(``--no-venv``, over a stand-in venv); tools/systemd-check.sh runs the whole install in
a booted Debian."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "tools" / "install.sh"
PREFIX = "/srv/hasherd-venv"
UNIT = "usr/local/lib/systemd/system/hasherd.service"
FILES = {
    UNIT: None,  # rendered: compared below
    "usr/local/lib/sysusers.d/hasherd.conf": "hasherd.sysusers",
    "usr/local/lib/tmpfiles.d/hasherd.conf": "hasherd.tmpfiles",
    "usr/local/lib/modules-load.d/hasherd.conf": "hasherd.modules-load",
}
CONFIG = "etc/hasherd/hasherd.toml"

pytestmark = [
    pytest.mark.skipif(
        shutil.which("systemd-sysusers") is None,
        reason="needs systemd-sysusers (make system-deps)",
    ),
    pytest.mark.skipif(os.geteuid() != 0, reason="files for the hasherd user need root"),
]


def install(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["bash", str(INSTALL), "--root", str(root), "--prefix", PREFIX, *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A scratch root holding a stand-in for the virtual environment."""
    root = tmp_path / "root"
    bindir = root / PREFIX.lstrip("/") / "bin"
    bindir.mkdir(parents=True)
    (bindir.parent / "pyvenv.cfg").write_text("home = /usr/bin\n")
    for name in ("hasherd", "hasherctl", "python"):
        (bindir / name).write_text("#!/bin/sh\n")
        (bindir / name).chmod(0o755)
    (root / "etc").mkdir()
    return root


def test_install_puts_every_file_in_place(root: Path) -> None:
    out = install(root, "--no-venv").stdout
    assert "systemctl daemon-reload was skipped" in out
    for path, source in FILES.items():
        installed = root / path
        assert stat.S_IMODE(installed.stat().st_mode) == 0o644, path
        if source is not None:
            assert installed.read_text() == (REPO / "systemd" / source).read_text()
    unit = (root / UNIT).read_text()
    shipped = (REPO / "systemd" / "hasherd.service").read_text()
    expected = [
        line.replace("/opt/hasherd/bin/", f"{PREFIX}/bin/") if line.startswith("Exec") else line
        for line in shipped.splitlines()
    ]
    assert unit.splitlines() == expected
    assert f"ExecStart={PREFIX}/bin/hasherd run --config /etc/hasherd/hasherd.toml" in unit
    assert f"exec {PREFIX}/bin/hasherd check-config" in unit
    for name in ("hasherd", "hasherctl"):
        assert os.readlink(root / "usr/local/bin" / name) == f"{PREFIX}/bin/{name}"


def test_install_creates_the_user(root: Path) -> None:
    install(root, "--no-venv")
    lines = (root / "etc/group").read_text().splitlines()
    groups = {line.split(":")[0]: line.split(":") for line in lines}
    assert "hasherd" in (root / "etc/passwd").read_text()
    assert "hasherd" in groups["dialout"][3]


def test_the_config_is_the_example_with_the_service_settings(root: Path) -> None:
    install(root, "--no-venv")
    config = root / CONFIG
    st = config.stat()
    gid = next(
        int(line.split(":")[2])
        for line in (root / "etc/group").read_text().splitlines()
        if line.startswith("hasherd:")
    )
    assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o640, gid)
    # every other key stays commented, at its default
    assert tomllib.loads(config.read_text()) == {
        **{section: {} for section in tomllib.loads(shipped_example())},
        "deployment": {"bpf_map_path": "/sys/fs/bpf/hasherd/hasher_weights"},
        "control": {"group": "hasherd"},
    }


def shipped_example() -> str:
    return (REPO / "etc" / "hasherd" / "hasherd.toml").read_text()


def test_an_existing_config_is_kept(root: Path) -> None:
    install(root, "--no-venv")
    config = root / CONFIG
    config.write_text("[training]\nepochs = 5\n")
    out = install(root, "--no-venv").stdout
    assert "kept the existing /etc/hasherd/hasherd.toml" in out
    assert config.read_text() == "[training]\nepochs = 5\n"


def test_uninstall_keeps_the_config_and_the_data(root: Path) -> None:
    install(root, "--no-venv")
    data = root / "var/lib/hasherd/data/hasherd.db"
    data.parent.mkdir(parents=True, exist_ok=True)
    data.write_bytes(b"")
    install(root, "--uninstall")
    for path in [*FILES, "usr/local/bin/hasherd", "usr/local/bin/hasherctl"]:
        assert not (root / path).is_symlink() and not (root / path).exists(), path
    assert not (root / PREFIX.lstrip("/")).exists()
    assert (root / CONFIG).exists() and data.exists()


def test_uninstall_purge_removes_the_config_and_the_data(root: Path) -> None:
    install(root, "--no-venv")
    (root / "var/lib/hasherd").mkdir(parents=True, exist_ok=True)
    install(root, "--uninstall", "--purge")
    assert not (root / "etc/hasherd").exists() and not (root / "var/lib/hasherd").exists()


def test_uninstall_leaves_links_and_directories_it_did_not_make(root: Path) -> None:
    """A hasherctl link to another installation, and a prefix that is no venv, stay."""
    bindir = root / "usr/local/bin"
    bindir.mkdir(parents=True)
    (bindir / "hasherctl").symlink_to("/elsewhere/bin/hasherctl")
    (root / PREFIX.lstrip("/") / "pyvenv.cfg").unlink()
    install(root, "--uninstall")
    assert (bindir / "hasherctl").is_symlink()
    assert (root / PREFIX.lstrip("/") / "bin" / "hasherd").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--prefix", "opt/hasherd"], "--prefix must be an absolute path"),
        (["--prefix", "/usr"], "give a directory of its own"),
        (["--purge"], "--purge goes with --uninstall"),
        (["--bogus"], "unknown argument: --bogus"),
    ],
)
def test_bad_arguments_are_refused(root: Path, args: list[str], message: str) -> None:
    done = install(root, *args, check=False)
    assert done.returncode != 0 and message in done.stderr
    assert not (root / UNIT).exists()


def test_no_venv_needs_the_programs_in_the_prefix(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    done = install(tmp_path, "--no-venv", check=False)
    assert done.returncode == 1
    assert f"{PREFIX}/bin/hasherd is missing: install without --no-venv" in done.stderr
