"""What runs on a Ray node for one remote evaluator actor (docs/scale-out.md).

``NodeEvaluator`` is a plain class; ``hasherd.backends.cluster`` makes it a Ray actor
(an async one: its methods run on the Ray worker's event loop). It holds one evaluator:

* a simulator (``numba:N``, ``reference``, ``cuda:D``) built and run on one thread of its
  own, as the daemon's ``ThreadBackend`` does (a CUDA context and numba's threading layer
  belong to the thread that made them), so ``abort`` can reach the running batch. The
  head sends the next batch while one runs (``RayBackend.pipeline_depth``): it waits for
  that thread here. Each batch carries a ticket, so that ``abort`` stops the batch it
  names, running or waiting, and no other;
* a chip chain (a ``[[devices.chips]]`` table) driven by ``ChipBackend`` on the worker's
  event loop, its serial port being this node's.

Requests arrive packed (``cluster_wire``) and without their jitter memory: each names it
by ``memory_id`` and the call carries a Ray object reference per memory, put in the
object store once by the head. A node fetches a memory once and keeps the last few,
indices built, for every later batch.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import socket
import threading
from collections import OrderedDict
from typing import Any

from hasherd.backends.asic import ChipBackend, chip_backend
from hasherd.backends.cluster_wire import (
    MEMORIES_KEPT,
    memory_ids,
    missing,
    pack_results,
    unpack_requests,
)
from hasherd.backends.registry import create
from hasherd.config import ChipDeviceConfig
from hasherd.errors import EvaluatorError
from hasherd.kernel.evaluators.base import EvalRequest, Evaluator
from hasherd.kernel.memory import JitterMemory


class NodeEvaluator:
    """One evaluator on a Ray node (see the module docstring). Built with a simulator
    spec or a chip table; nothing opens before ``start``."""

    def __init__(
        self, spec: str | None, chip: ChipDeviceConfig | None, node: str, share: int = 1
    ) -> None:
        self.spec, self.chip, self.node = spec, chip, node
        self.share = max(1, share)  # CPU actors sharing the node's cores
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._evaluator: Evaluator | None = None
        self._chain: ChipBackend | None = None
        self._memories: OrderedDict[str, JitterMemory] = OrderedDict()
        self._lock = threading.Lock()  # the tickets, between the loop and the thread
        self._running = 0  # the ticket of the batch on the thread (0: none)
        self._started_upto = 0  # the highest ticket that has started
        self._cancelled: set[int] = set()  # tickets aborted before they started

    async def start(self) -> dict[str, Any]:
        """Open the evaluator (again: a no-op); where it runs (node, host, process) and
        on how many threads."""
        if self._evaluator is None and self._chain is None:
            if self.chip is not None:
                chain = chip_backend(self.chip)
                await chain.start()
                self._chain = chain
            else:
                await self._start_simulator()
        threads = self._chain.threads if self._chain else self._started().threads
        return {
            "node": self.node,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "threads": threads,
        }

    async def _start_simulator(self) -> None:
        spec = self.spec or "reference"
        if spec == "numba:0":  # the node's cores, shared by its CPU actors
            spec = f"numba:{max(1, (os.cpu_count() or 1) // self.share)}"
        pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="hasherd-node")
        loop = asyncio.get_running_loop()
        try:
            evaluator = await loop.run_in_executor(pool, create, spec)
            await loop.run_in_executor(pool, evaluator.warm_up)
        except BaseException:
            pool.shutdown(wait=False)
            raise
        self._pool, self._evaluator = pool, evaluator

    def _started(self) -> Evaluator:
        if self._evaluator is None:
            raise EvaluatorError(self.node, "not started")
        return self._evaluator

    async def evaluate(
        self, packed: dict[str, Any], memories: dict[str, Any], ticket: int = 0
    ) -> Any:
        """The batch (``cluster_wire.pack_requests``), its memories fetched from the
        object store when not kept; the results packed the same way. ``ticket`` names
        it for ``abort`` (0: none)."""
        ids = list(dict.fromkeys(memory_ids(packed)))
        gone = [m for m in ids if m not in self._memories and m not in memories]
        if gone:
            return missing(gone)
        found = {m: await self._fetch(m, memories) for m in ids}
        reqs = unpack_requests(packed, found.__getitem__)
        if self._chain is not None:
            return pack_results(await self._chain.evaluate_many(reqs))
        evaluator = self._started()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._evaluate, evaluator, reqs, ticket)

    def _evaluate(self, evaluator: Evaluator, reqs: list[EvalRequest], ticket: int) -> Any:
        """On the evaluator's thread, packed for the way back; a batch aborted before it
        started does not run."""
        with self._lock:
            if ticket in self._cancelled:
                self._cancelled.discard(ticket)
                raise EvaluatorError(evaluator.name, "aborted")
            self._running = ticket
            self._started_upto = max(self._started_upto, ticket)
            evaluator.clear_abort()
        try:
            return pack_results(evaluator.evaluate_many(reqs))
        finally:
            with self._lock:
                self._running = 0

    async def _fetch(self, memory_id: str, memories: dict[str, Any]) -> JitterMemory:
        """``memory_id``'s memory, fetched from the object store once and kept."""
        memory = self._memories.get(memory_id)
        if memory is not None:
            self._memories.move_to_end(memory_id)
            return memory
        memory = self._memories[memory_id] = JitterMemory(await memories[memory_id])
        while len(self._memories) > MEMORIES_KEPT:
            self._memories.popitem(last=False)
        return memory

    async def abort(self, ticket: int = 0) -> None:
        """Make the batch ``ticket`` return soon (the numba kernel's abort flag), or not
        run at all when it has not started; 0: the running batch, whichever it is."""
        with self._lock:
            if self._evaluator is None:
                return
            if ticket == 0 or ticket == self._running:
                self._evaluator.abort()
            elif ticket > self._started_upto:
                self._cancelled.add(ticket)

    async def device_stats(self) -> dict[str, Any] | None:
        return self._chain.device_stats() if self._chain is not None else None

    async def close(self) -> None:
        """Release the device; never raises."""
        chain, self._chain = self._chain, None
        if chain is not None:
            await chain.close()
        evaluator, self._evaluator = self._evaluator, None
        pool, self._pool = self._pool, None
        if evaluator is not None and pool is not None:
            evaluator.abort()
            pool.submit(evaluator.close)
            pool.shutdown(wait=False)
