"""The memories a jitter service holds, by ``memory_id`` (docs/jitter-rpc.md, "Memories").

* the default memory: legacy requests and lookups naming no memory use it;
* pinned memories: given by the owner (``add``), never dropped;
* uploaded memories: sent by clients, the least recently used dropped past ``max_uploads``.

Each is held with its ``BatchIndex``, built before it is served, so no request pays for
it; the default and pinned ones also with the Python indices of ``JitterMemory.lookup``,
which answer one or a few records faster than numpy.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import anyio
import numpy as np

from hasherd.kernel.jitter_batch import BatchIndex
from hasherd.kernel.memory import JitterMemory

_REQ = struct.Struct("<14I")


@dataclass
class Served:
    """A memory the service holds, with its batch index. ``scalar``: the Python indices of
    ``JitterMemory.lookup`` are built (about 120 bytes a frame, so only for the default
    and pinned memories; uploads are always looked up with numpy)."""

    index: BatchIndex
    pinned: bool
    scalar: bool

    @property
    def memory(self) -> JitterMemory:
        return self.index.memory

    def each(self, records: bytes) -> list[tuple[int, bool]]:
        """``JitterMemory.lookup`` per 56-byte record: cheaper than numpy for a few."""
        lookup = self.index.memory.lookup
        return [lookup(w[:12], w[12], w[13]) for w in _REQ.iter_unpack(records)]


def warm_scalar(memory: JitterMemory) -> None:
    memory.lookup([0] * 12, 0, 8)  # builds the Python zone-2 lists of JitterMemory.lookup


def prepare(memory: JitterMemory, scalar: bool = True) -> BatchIndex:
    """The indices lookups need (seconds for a large memory: not on the loop)."""
    index = BatchIndex(memory)
    if scalar:
        warm_scalar(memory)
    return index


def prepare_upload(frames: np.ndarray) -> BatchIndex:
    return prepare(JitterMemory(frames), scalar=False)


class JitterMemories:
    """The default, pinned and uploaded memories of one service."""

    def __init__(self, max_uploads: int) -> None:
        if max_uploads < 1:
            raise ValueError("max_uploads must be positive")
        self.max_uploads = max_uploads
        self.default: Served | None = None
        self._by_id: dict[str, Served] = {}  # least recently used first

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, memory_id: object) -> bool:
        return memory_id in self._by_id

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(self._by_id)

    def add(
        self, memory: JitterMemory, *, default: bool = False, index: BatchIndex | None = None
    ) -> str:
        """Hold ``memory`` pinned; returns its memory_id. A new default unpins the one it
        replaces, which is then dropped like an upload."""
        served = self._by_id.get(memory.memory_id)
        if served is None:
            served = Served(index or prepare(memory), pinned=True, scalar=True)
            self._by_id[memory.memory_id] = served
        if not served.scalar:
            warm_scalar(served.memory)
        served.pinned = served.scalar = True
        if default and served is not self.default:
            if self.default is not None:
                self.default.pinned = False
            self.default = served
            self._evict()
        return memory.memory_id

    async def set_default(self, memory: JitterMemory) -> str:
        """``add(memory, default=True)`` with the indices built on a worker thread."""
        index, held = None, self._by_id.get(memory.memory_id)
        if held is None:
            index = await anyio.to_thread.run_sync(prepare, memory)
        elif not held.scalar:
            await anyio.to_thread.run_sync(warm_scalar, held.memory)
            held.scalar = True
        return self.add(memory, default=True, index=index)

    def resolve(self, memory_id: str | None) -> Served | None:
        """The memory a request names (None: the default), marked as just used."""
        if memory_id is None:
            return self.default
        served = self._by_id.pop(memory_id, None)
        if served is not None:
            self._by_id[memory_id] = served
        return served

    def keep_upload(self, index: BatchIndex) -> None:
        self._by_id[index.memory.memory_id] = Served(index, pinned=False, scalar=False)
        self._evict()

    def _evict(self) -> None:
        uploaded = [k for k, s in self._by_id.items() if not s.pinned]
        for memory_id in uploaded[: max(0, len(uploaded) - self.max_uploads)]:
            del self._by_id[memory_id]
