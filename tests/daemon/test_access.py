"""The control socket's refusals as a user sees them: a real server with the daemon's own
``jobs.*`` handlers, and a real ``hasherctl`` (or client) run as another user (nobody, in
the socket's group) with ``setpriv``: a root-only file, a link, bounds, and a user
outside the group, each answered with its code and message, never a traceback."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from hasherd.actors.evaluator import EvaluatorActor
from hasherd.actors.pool import ActorPool
from hasherd.backends import create
from hasherd.config import Config
from hasherd.control.server import ControlServer
from hasherd.daemon import handlers
from hasherd.scheduler.jobs import JobScheduler
from hasherd.storage import Store

NOBODY = 65534  # nobody and nogroup (Debian, Ubuntu)
AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]
HASHERCTL = [sys.executable, "-m", "hasherd.cli.ctl"]
# a client that sends the params as given (hasherctl resolves the user's links first, and
# checks some values before it sends them): argv socket, method, params as JSON
RAW_CALL = (
    "import json, sys; from hasherd.control.client import ControlClient, ControlError\n"
    "try:\n"
    "    ControlClient(sys.argv[1]).call(sys.argv[2], **json.loads(sys.argv[3]))\n"
    "except ControlError as exc:\n"
    "    print(exc.code, exc.message, sep='|')\n"
)


@dataclass(frozen=True)
class Ran:
    rc: int
    out: str
    err: str


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory another user may enter (pytest's tmp_path is under a 0700 one)."""
    root = Path(tempfile.mkdtemp(prefix="hasherd-peer-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root)


@pytest.fixture
async def socket_path(open_dir: Path, tmp_path: Path) -> AsyncIterator[Path]:
    """A control socket whose group is nobody's, served with the daemon's jobs handlers."""
    pool = ActorPool([EvaluatorActor("ref0", "reference", lambda: create("reference"))])
    server = ControlServer(open_dir / "control.sock", group=NOBODY)
    async with await Store.open(tmp_path / "h.db") as store, anyio.create_task_group() as tg:
        handlers.register_jobs(server, store, JobScheduler(store, pool, Config))
        handlers.register_weights(server, store)
        yield await tg.start(server.serve)
        server.stop()


async def as_nobody(*argv: str) -> Ran:
    done = await anyio.run_process([*AS_NOBODY, *argv], check=False)
    return Ran(done.returncode, done.stdout.decode(), done.stderr.decode())


async def raw_call(socket_path: Path, method: str, **params: object) -> str:
    """``code|message`` of the error a plain client gets, as nobody."""
    ran = await as_nobody(
        sys.executable, "-c", RAW_CALL, str(socket_path), method, json.dumps(params)
    )
    return ran.out


def root_only(path: Path, text: str = "and the vault password is 1234") -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


@pytest.mark.anyio
async def test_a_group_member_cannot_submit_a_file_only_root_may_read(
    socket_path: Path, open_dir: Path
) -> None:
    secret = root_only(open_dir / "vault.txt")
    ran = await as_nobody(
        *HASHERCTL, "--socket", str(socket_path), "jobs", "submit", "--data", str(secret)
    )
    assert ran.rc == 1 and "Traceback" not in ran.err
    assert ran.err == (
        f"hasherctl: error: jobs.submit: data: {secret}: uid {NOBODY} may not read it; the "
        "daemon reads only what the submitting user can read [invalid_params]\n"
    )
    readable = open_dir / "frames.json"
    readable.write_text("[]")
    readable.chmod(0o644)
    ran = await as_nobody(
        *HASHERCTL, "--socket", str(socket_path), "jobs", "submit", "--data", str(readable)
    )
    assert ran.rc == 0, ran.err
    assert "frames.json" in ran.out


@pytest.mark.anyio
async def test_a_link_is_refused_and_hasherctl_sends_what_it_points_to(
    socket_path: Path, open_dir: Path
) -> None:
    secret = root_only(open_dir / "vault.txt")
    link = open_dir / "innocent.txt"
    link.symlink_to(secret)
    assert await raw_call(socket_path, "jobs.submit", data=str(link)) == (
        f"invalid_params|data: {link} is a symbolic link; submit the path of the file it "
        "points to\n"
    )
    ran = await as_nobody(
        *HASHERCTL, "--socket", str(socket_path), "jobs", "submit", "--data", str(link)
    )
    assert ran.rc == 1 and f"data: {secret}: uid {NOBODY} may not read it" in ran.err


@pytest.mark.anyio
async def test_out_of_range_and_unprintable_params_answer_invalid_params(
    socket_path: Path, open_dir: Path
) -> None:
    ctl = [*HASHERCTL, "--socket", str(socket_path)]
    ran = await as_nobody(*ctl, "jobs", "show", str(2**63))
    assert ran.err == (
        f"hasherctl: error: jobs.show: id: must be in {-(2**63)}..{2**63 - 1} [invalid_params]\n"
    )
    assert await raw_call(socket_path, "jobs.list", status="bogus") == (
        "invalid_params|status: 'bogus' is not a job status (queued, running, paused, "
        "finished, cancelled, failed)\n"
    )
    assert await raw_call(socket_path, "weights.list", layer=2**64) == (
        f"invalid_params|layer: must be in {-(2**63)}..{2**63 - 1}\n"
    )
    assert await raw_call(socket_path, "jobs.submit", data="/x", epochs=10**20) == (
        "invalid_params|epochs: must be in 1..100 (training.epochs)\n"
    )
    assert await raw_call(socket_path, "jobs.submit", data="/x", name="n" * 65) == (
        "invalid_params|name: is 65 characters long; at most 64\n"
    )
    data = open_dir / "f.json"
    data.write_text("[]")
    data.chmod(0o644)
    ran = await as_nobody(*ctl, "jobs", "submit", "--data", str(data), "--name", "a\x1b[31mred\nb")
    assert ran.err == (
        "hasherctl: error: jobs.submit: name: must be printable; it contains '\\x1b' "
        "[invalid_params]\n"
    )


def test_an_outsider_gets_forbidden_not_a_traceback(open_dir: Path) -> None:
    """A user who may not enter the daemon's runtime directory (mode 0700): the socket it
    finds there cannot even be probed; hasherctl says forbidden, exit 1."""
    private = open_dir / "run"
    private.mkdir(mode=0o700)
    sock_path = private / "control.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(sock_path))
        sock.listen(1)
        script = (
            "import sys; from pathlib import Path; from hasherd.control import client\n"
            "client.SYSTEM_SOCKET = Path(sys.argv[1])\n"
            "from hasherd.cli.ctl import main\n"
            "raise SystemExit(main(['status']))\n"
        )
        env = {"PATH": "/usr/bin:/bin", "XDG_RUNTIME_DIR": str(open_dir / "none")}
        env["PYTHONPATH"] = str(Path(__file__).parents[2])
        done = subprocess.run(
            [*AS_NOBODY, sys.executable, "-c", script, str(sock_path)],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr == (
        f"hasherctl: error: permission denied on {sock_path}: run as root or as a member "
        "of the daemon's control group [forbidden]\n"
    )
