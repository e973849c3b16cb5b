"""One OS thread that runs blocking calls for the event loop, one at a time, in order.

Evaluator kernels run here, off the event loop. Each evaluator gets exactly one such
thread rather than a pool: numba's OpenMP threading layer keeps a team of worker threads
per *calling* thread, so kernel calls arriving from a pool of threads would build a team
(stacks, allocator arenas) for each of them (measured: about 13 MiB more peak RSS for
``hasherd train`` on 1,000 records). A single caller also serialises the kernel calls,
which the threading layer requires anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

LOGGER = logging.getLogger(__name__)
T = TypeVar("T")
_STOP = object()


class CallThread:
    """``await thread.call(fn, *args)`` runs ``fn(*args)`` on this object's own thread.

    Cancelling the awaiting task does not interrupt the call (a kernel cannot be
    stopped half way); its result is then dropped. ``close()`` lets queued calls finish
    and ends the thread. The thread is a daemon thread, so a hung kernel never keeps
    the process from exiting.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.calls = 0

    def _ensure(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        self._ensure()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((loop, future, fn, args))
        return await future

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if callable(item):  # close(then=...): a last call nobody waits for
                try:
                    item()
                except Exception:
                    LOGGER.exception("%s: closing call failed", self.name)
                continue
            loop, future, fn, args = item
            if future.cancelled():
                continue
            try:
                result = fn(*args)
            except BaseException as exc:  # handed to the awaiting task, raised there
                _deliver(loop, future, None, exc)
            else:
                _deliver(loop, future, result, None)
            self.calls += 1

    def close(self, then: Callable[[], object] | None = None) -> None:
        """Stop after the calls already queued, and ``then()`` when given (a device's
        release, on the thread that used it); does not wait for any of them."""
        with self._lock:
            if self._thread is not None:
                if then is not None:
                    self._queue.put(then)
                self._queue.put(_STOP)
                self._thread = None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


def _deliver(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[Any],
    result: Any,
    exc: BaseException | None,
) -> None:
    def settle() -> None:
        if future.cancelled():
            return
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)

    with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is waiting
        loop.call_soon_threadsafe(settle)
