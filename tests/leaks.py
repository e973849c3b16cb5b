"""What a test leaves behind: threads, child processes and asyncio tasks.

``tests/conftest.py`` takes a ``Baseline`` before each test (and each test module) and
asks ``leftovers`` after its teardown; a non-empty answer fails the test with one line per
leak. Only what the test added counts: what was alive before it started is not its doing.

No thread is excused by name. The long-lived threads of the libraries used here never
show as new: numba's worker pool (workqueue, OpenMP or TBB) is made of native threads that
``threading.enumerate`` does not list; anyio's cached worker threads are told to stop when
the root task of their event loop ends, and so end within the grace period; the executor
of an asyncio loop is shut down when the loop closes. A library thread that is started on
first use and then reused for the life of the process would have to be excused here.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Threads that finish on their own shortly after the code that used them returns: an
# anyio worker is told to stop when its event loop's root task ends, a thread that ran a
# callback is on its last lines. They get this long before they count as leaked.
GRACE_S = 2.0

# A leaked thread cannot be stopped from outside: once reported it is not reported again
# by the check around its test module.
_REPORTED: weakref.WeakSet[threading.Thread] = weakref.WeakSet()

# The one task that is pending by design when an event loop closes: anyio's pytest
# runner keeps a task that runs every fixture and test of a test, and cancels it at close.
RUNNER_TASKS = frozenset({"TestRunner._run_tests_and_fixtures"})

# (pid, start time in clock ticks): a pid alone may be reused by an unrelated process.
Child = tuple[int, int]


@dataclass(frozen=True)
class Baseline:
    """What was alive when the test started, so that only what the test added counts."""

    threads: frozenset[threading.Thread]
    children: frozenset[Child]

    @classmethod
    def now(cls) -> Baseline:
        return cls(frozenset(threading.enumerate()), frozenset(children()))


def leftovers(before: Baseline, tasks: list[str]) -> list[str]:
    """One line per thread, child process or task the test left behind.

    Waits up to GRACE_S for new threads to end and new children to be reaped; leaked
    children are then killed and reaped, so that none outlives the run.
    """
    deadline = time.monotonic() + GRACE_S
    lines = [_describe_thread(t) for t in _new_threads(before, deadline)]
    leaked = _new_children(before, deadline)
    lines += [_describe_child(pid) for pid, _ in leaked]
    lines += [f"asyncio task pending when its event loop closed: {t}" for t in tasks]
    for pid, _ in leaked:
        _kill(pid)
    return lines


# -- threads ------------------------------------------------------------------------


def _new_threads(before: Baseline, deadline: float) -> list[threading.Thread]:
    """Threads alive now that were not before the test, after letting them end."""
    new = [t for t in threading.enumerate() if t not in before.threads and t not in _REPORTED]
    for thread in new:
        thread.join(max(0.0, deadline - time.monotonic()))
    leaked = [t for t in new if t.is_alive()]
    _REPORTED.update(leaked)
    return leaked


def _describe_thread(thread: threading.Thread) -> str:
    target: Callable[..., Any] | None = getattr(thread, "_target", None)
    runs = _qualname(target) if target is not None else f"{_qualname(type(thread))}.run"
    kind = "daemon thread" if thread.daemon else "thread"
    return f"{kind} {thread.name!r} running {runs}, now at {_where(thread)}"


def _qualname(obj: Any) -> str:
    name = getattr(obj, "__qualname__", None) or repr(obj)
    module = getattr(obj, "__module__", None)
    return f"{module}.{name}" if module else str(name)


def _where(thread: threading.Thread) -> str:
    """The thread's innermost frames: where it waits, which names its owner."""
    frame = sys._current_frames().get(thread.ident or -1)
    if frame is None:
        return "?"
    stack = traceback.extract_stack(frame)[-3:]
    return " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(stack))


# -- child processes ----------------------------------------------------------------


def children() -> set[Child]:
    """This process's children (of any of its threads), zombies included."""
    lists = list(Path("/proc/self/task").glob("*/children"))
    if not lists:  # a kernel without CONFIG_PROC_CHILDREN: look at every parent pid
        return {(pid, int(s[19])) for pid, s in _stats(_all_pids()) if s[1] == str(os.getpid())}
    pids: set[int] = set()
    for path in lists:
        with suppress(OSError):  # the thread ended meanwhile
            pids.update(int(p) for p in path.read_text().split())
    return {(pid, int(s[19])) for pid, s in _stats(pids)}


def _all_pids() -> Iterator[int]:
    return (int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit())


def _stats(pids: Iterable[int]) -> Iterator[tuple[int, list[str]]]:
    """(pid, its stat fields) for each pid still there."""
    for pid in pids:
        fields = _stat(pid)
        if fields:
            yield pid, fields


def _stat(pid: int) -> list[str]:
    """/proc/<pid>/stat after the command name (state first), [] once the pid is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    return text[text.rindex(")") + 2 :].split()


def _new_children(before: Baseline, deadline: float) -> set[Child]:
    """Children alive (or unreaped) now that were not before, after letting them end."""
    while True:
        new = children() - before.children
        if not new or time.monotonic() >= deadline:
            return new
        time.sleep(0.02)


def _describe_child(pid: int) -> str:
    state = (_stat(pid) or ["?"])[0]
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        command = " ".join(a.decode(errors="replace") for a in argv if a)
    except OSError:
        command = ""
    if not command:
        command = f"[{_read(f'/proc/{pid}/comm')}]"
    status = "zombie (never waited for)" if state == "Z" else "still running"
    return f"child process {pid} {status}: {command}"


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return "?"


def _kill(pid: int) -> None:
    """SIGKILL a leaked child (its group too when it leads one) and reap it.

    The reap is bounded: a child stuck in an uninterruptible sleep must not hang the run.
    """
    with suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid != os.getpgrp():
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + GRACE_S
    with suppress(ChildProcessError):  # someone else (a child watcher) reaped it first
        while os.waitpid(pid, os.WNOHANG) == (0, 0) and time.monotonic() < deadline:
            time.sleep(0.01)


# -- asyncio tasks ------------------------------------------------------------------


@contextmanager
def recording_pending_tasks(into: list[str]) -> Iterator[None]:
    """Record the tasks still pending whenever an event loop closes.

    Every loop the tests run closes through ``asyncio.Runner`` (``asyncio.run``,
    ``anyio.run``, anyio's and pytest-asyncio's test runners), which cancels the tasks
    left over without a word; this notes them first. Loops closed by hand go through
    ``BaseEventLoop.close`` with their tasks still pending.
    """
    runner_close = asyncio.Runner.close
    loop_close = asyncio.BaseEventLoop.close
    lock = threading.Lock()

    def note(loop: asyncio.AbstractEventLoop) -> None:
        with lock:
            into.extend(repr(t) for t in asyncio.all_tasks(loop) if not _runner_task(t))

    def close_runner(self: asyncio.Runner) -> None:
        loop = getattr(self, "_loop", None)
        if loop is not None and not loop.is_closed():
            note(loop)
        runner_close(self)

    def close_loop(self: asyncio.BaseEventLoop) -> None:
        if not self.is_closed() and not self.is_running():
            note(self)
        loop_close(self)

    asyncio.Runner.close = close_runner  # type: ignore[method-assign]
    asyncio.BaseEventLoop.close = close_loop  # type: ignore[method-assign]
    try:
        yield
    finally:
        asyncio.Runner.close = runner_close  # type: ignore[method-assign]
        asyncio.BaseEventLoop.close = loop_close  # type: ignore[method-assign]


def _runner_task(task: asyncio.Task[Any]) -> bool:
    return getattr(task.get_coro(), "__qualname__", "") in RUNNER_TASKS
