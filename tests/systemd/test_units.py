"""The systemd files: the unit passes ``systemd-analyze verify`` and carries the settings
the daemon relies on; sysusers.d and tmpfiles.d files run for real in a scratch root."""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from hasherd.control.client import SYSTEM_SOCKET

SYSTEMD = Path(__file__).resolve().parents[2] / "systemd"
UNIT = SYSTEMD / "hasherd.service"
SYSUSERS = SYSTEMD / "hasherd.sysusers"
TMPFILES = SYSTEMD / "hasherd.tmpfiles"
MODULES = SYSTEMD / "hasherd.modules-load"
REPO = SYSTEMD.parent
PREFIX = "/opt/hasherd"  # where tools/install.sh puts the venv by default
CONFIG = "/etc/hasherd/hasherd.toml"
CHECK = f"/bin/sh -c 'exec {PREFIX}/bin/hasherd check-config {CONFIG} >/dev/null'"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} not found: install systemd (apt-get install systemd) to check the units"
        )
    return path


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> every value, in order (units repeat keys; configparser cannot)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {raw!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def one(section: dict[str, list[str]], key: str) -> str:
    values = section.get(key, [])
    assert len(values) == 1, f"{key}: expected one value, found {values}"
    return values[0]


def verify(unit_text: str, tmp_path: Path) -> str:
    """``systemd-analyze verify`` output for the unit with ExecStart on a real binary."""
    lines = unit_text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("ExecStart="):
            args = line.split(None, 1)[1] if " " in line else ""
            lines[i] = f"ExecStart={sys.executable} {args}"
    unit = tmp_path / "hasherd.service"
    unit.write_text("\n".join(lines) + "\n")
    done = subprocess.run(
        [tool("systemd-analyze"), "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return "\n".join(line for line in output.splitlines() if "hasherd.service" in line)


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    assert verify(UNIT.read_text(), tmp_path) == ""


def test_verify_would_notice_a_mistake(tmp_path: Path) -> None:
    broken = UNIT.read_text().replace("WatchdogSec=30", "WatchdogSecs=30")
    assert "Unknown key" in verify(broken, tmp_path)


def test_unit_has_the_settings_the_daemon_relies_on() -> None:
    unit = parse_unit(UNIT.read_text())
    service = unit["Service"]
    expected = {
        "Type": "notify",
        "NotifyAccess": "main",
        "Restart": "on-failure",
        "RestartSec": "5",
        "WatchdogSec": "30",
        "TimeoutStopSec": "20",
        "User": "hasherd",
        "Group": "hasherd",
        "RuntimeDirectory": "hasherd",
        "RuntimeDirectoryMode": "0750",
        "StateDirectory": "hasherd",
        "ConfigurationDirectory": "hasherd",
        "WorkingDirectory": "/var/lib/hasherd",
    }
    assert {key: one(service, key) for key in expected} == expected
    assert one(service, "ExecStart") == f"{PREFIX}/bin/hasherd run --config {CONFIG}"
    # the config is checked before the SIGHUP: a broken one fails `systemctl reload`
    assert service["ExecReload"] == [CHECK, "/bin/kill -HUP $MAINPID"]
    assert SYSTEM_SOCKET.parent == Path("/run") / one(service, "RuntimeDirectory")
    assert one(unit["Install"], "WantedBy") == "multi-user.target"
    # Unix sockets and loopback only: nothing to wait for on the network at boot
    assert not {"After", "Wants", "Requires"} & set(unit["Unit"])


def reload_check(config: Path) -> subprocess.CompletedProcess[str]:
    """The unit's first ``ExecReload=`` as systemd runs it, on ``config``, with this
    checkout's hasherd in place of the installed one."""
    argv = shlex.split(CHECK)
    hasherd = shlex.join([sys.executable, "-m", "hasherd.cli.main"])
    argv[-1] = argv[-1].replace(f"{PREFIX}/bin/hasherd", hasherd).replace(CONFIG, str(config))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(argv, capture_output=True, text=True, env=env, check=False)


def test_reload_fails_on_a_broken_config_and_passes_a_good_one(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[training]\nepochs = 0\n")
    done = reload_check(broken)
    assert done.returncode == 2 and done.stdout == ""
    assert "training.epochs" in done.stderr and "check-config: error" in done.stderr
    done = reload_check(REPO / "etc" / "hasherd" / "hasherd.toml")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_unit_is_hardened_but_leaves_bpf_writable() -> None:
    service = parse_unit(UNIT.read_text())["Service"]
    hardening = {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "ProtectControlGroups": "yes",
        "ProtectKernelModules": "yes",
        "LockPersonality": "yes",
        "RestrictRealtime": "yes",
        "RestrictSUIDSGID": "yes",
        "SystemCallArchitectures": "native",
        "DevicePolicy": "closed",
    }
    assert {key: one(service, key) for key in hardening} == hardening
    families = set(one(service, "RestrictAddressFamilies").split())
    assert families == {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}
    caps = {"CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN", "CAP_SYS_RESOURCE"}
    assert set(one(service, "CapabilityBoundingSet").split()) == caps
    assert set(one(service, "AmbientCapabilities").split()) == caps
    # ProtectKernelTunables=yes would mount /sys/fs/bpf read-only; its parts are spelled out
    assert one(service, "ProtectKernelTunables") == "no"
    # /etc/hasherd too: ConfigurationDirectory= alone makes it writable (ProtectSystem=strict)
    assert {"/proc/sys", "/sys", "/etc/hasherd"} <= set(one(service, "ReadOnlyPaths").split())
    assert one(service, "ReadWritePaths").split() == ["/sys/fs/bpf"]
    assert service.get("MemoryDenyWriteExecute", ["no"]) == ["no"]  # numba JITs
    assert "PrivateDevices" not in service
    assert {"char-ttyUSB rw", "char-ttyACM rw", "char-usb_device rw"} <= set(service["DeviceAllow"])
    # the system services' calls plus BPF map flashing; the rest fails with EPERM
    assert one(service, "SystemCallFilter").split() == ["@system-service", "bpf", "perf_event_open"]
    assert one(service, "SystemCallErrorNumber") == "EPERM"


def test_serial_drivers_load_at_boot_for_hot_plugged_adapters() -> None:
    """DeviceAllow=char-ttyUSB/char-ttyACM resolve to device numbers at start, from the
    drivers loaded then: modules-load.d loads both drivers before the service starts."""
    modules = [
        line.strip()
        for line in MODULES.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert modules == ["usbserial", "cdc_acm"]
    allowed = parse_unit(UNIT.read_text())["Service"]["DeviceAllow"]
    assert {"char-ttyUSB rw", "char-ttyACM rw"} <= set(allowed)


def test_groups_agree_between_unit_and_sysusers() -> None:
    service = parse_unit(UNIT.read_text())["Service"]
    members = [
        line.split()[2]
        for line in SYSUSERS.read_text().splitlines()
        if line.startswith("m ") and line.split()[1] == "hasherd"
    ]
    assert sorted(one(service, "SupplementaryGroups").split()) == sorted(members)


@pytest.fixture
def scratch_root(tmp_path: Path) -> Path:
    """An empty root with the two files installed where packages put them."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    for source, kind in ((SYSUSERS, "sysusers.d"), (TMPFILES, "tmpfiles.d")):
        target = root / "usr/lib" / kind / "hasherd.conf"
        target.parent.mkdir(parents=True)
        shutil.copyfile(source, target)
    return root


def run_tool(name: str, root: Path, *args: str) -> None:
    done = subprocess.run(
        [tool(name), f"--root={root}", *args], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def read_db(path: Path) -> dict[str, list[str]]:
    return {line.split(":")[0]: line.split(":") for line in path.read_text().splitlines()}


def test_sysusers_creates_the_user_and_its_groups(scratch_root: Path) -> None:
    run_tool("systemd-sysusers", scratch_root)
    users = read_db(scratch_root / "etc/passwd")
    groups = read_db(scratch_root / "etc/group")
    _, _, uid, gid, gecos, home, shell = users["hasherd"]
    assert (gecos, home) == ("hasherd daemon", "/var/lib/hasherd")
    assert shell.endswith("nologin") and int(uid) < 1000
    assert groups["hasherd"][2] == gid
    for name in ("dialout", "plugdev"):
        assert "hasherd" in groups[name][3].split(",")


@pytest.mark.skipif(os.geteuid() != 0, reason="creating directories for another user needs root")
def test_tmpfiles_creates_the_directories(scratch_root: Path) -> None:
    run_tool("systemd-sysusers", scratch_root)
    bpffs = scratch_root / "sys/fs/bpf"
    bpffs.mkdir(parents=True)
    bpffs.chmod(0o1700)  # as systemd mounts the BPF file system on a host
    run_tool("systemd-tmpfiles", scratch_root, "--create")
    uid = int(read_db(scratch_root / "etc/passwd")["hasherd"][2])
    assert uid > 0
    expected = {
        "run/hasherd": (0o750, uid),
        "var/lib/hasherd": (0o750, uid),
        "etc/hasherd": (0o755, 0),
        # traversable, so that the hasherd user reaches its own directory (CAP_BPF does
        # not bypass file permissions)
        "sys/fs/bpf": (0o1711, 0),
        "sys/fs/bpf/hasherd": (0o750, uid),
    }
    found = {}
    for path in expected:
        st = (scratch_root / path).stat()
        assert stat.S_ISDIR(st.st_mode)
        found[path] = (stat.S_IMODE(st.st_mode), st.st_uid)
    assert found == expected
