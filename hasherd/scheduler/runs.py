"""Run bookkeeping: a training's dataset stored, its run created or resumed, and closed.

A run is its dataset (``records_digest``) trained with one configuration
(``config_digest``): the same command after an interruption finds the unfinished run with
both digests and resumes it, so that it ends with exactly the weights of an uninterrupted
run. The search itself (what a generation does) lives in training/; the trainer walks the
schedule between ``open_run`` and ``close_run``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from hasherd import __version__
from hasherd.config import Config
from hasherd.data import Dataset
from hasherd.kernel import spec
from hasherd.storage import Store
from hasherd.storage.rows import Kernel, RecordRow, RunRow
from hasherd.training.search import SEARCH_VERSION

LOGGER = logging.getLogger(__name__)


def records_digest(ds: Dataset) -> str:
    h = hashlib.sha256()
    h.update(ds.token_bits.to_bytes(1, "little"))
    h.update(ds.slots.astype("<u4").tobytes())
    h.update(ds.targets.astype("<u4").tobytes())
    return h.hexdigest()


def init_seeds_digest(ds: Dataset) -> str:
    h = hashlib.sha256()
    for index in sorted(ds.init_seeds):
        h.update(index.to_bytes(8, "little") + ds.init_seeds[index])
    return h.hexdigest()


def config_digest(cfg: Config, ds: Dataset) -> str:
    """What makes two invocations the same run (the RNG seed only when one is given)."""
    t = cfg.training
    key = {k: v for k, v in cfg.to_dict()["training"].items() if k not in ("seed", "epochs")}
    key.update(seed=t.seed, memory_id=ds.memory_id, spec=spec.SPEC, search=SEARCH_VERSION)
    if ds.init_seeds:  # they change the first generations: another run
        key["init_seeds"] = init_seeds_digest(ds)
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def kernel_of(cfg: Config, ds: Dataset) -> Kernel:
    """The kernel this training's weights belong to: a run only competes with the stored
    weights of its own kernel."""
    t = cfg.training
    return Kernel(t.passes, t.zero_bits, ds.token_bits, ds.memory_id)


@dataclass(frozen=True)
class OpenRun:
    """A run ready to train: its row, whether it was resumed, its dataset's records, and
    the best stored (prefix bits, fitness) of each record that has a weight."""

    run: RunRow
    resumed: bool
    dataset_id: int
    records: list[RecordRow]
    best: dict[int, tuple[int, float]]


async def open_run(store: Store, ds: Dataset, cfg: Config) -> OpenRun:
    """Store the dataset (once: a dataset already stored is found by its digest), then
    resume its unfinished run with this configuration, or create a new run."""
    dataset_id, records = await _store_dataset(store, ds)
    run, resumed = await _resume_or_create(store, ds, cfg, dataset_id)
    stored = await store.weights(dataset_id, kernel=kernel_of(cfg, ds))
    best = {w.record_id: (w.prefix_bits, w.fitness) for w in stored}
    return OpenRun(run, resumed, dataset_id, records, best)


async def close_run(store: Store, run_id: int, status: str, payload: dict[str, Any]) -> None:
    """Mark the run ``status`` ("finished" or "stopped") and record a ``run_<status>``
    event with ``payload``."""
    await store.set_run_status(run_id, status)
    await store.add_event("run_" + status, payload, run_id=run_id)


async def _store_dataset(store: Store, ds: Dataset) -> tuple[int, list[RecordRow]]:
    rows = [
        (int(ds.targets[i]), int(ds.context_keys[i]), ds.slots[i].astype("<u4").tobytes())
        for i in range(len(ds))
    ]
    dataset_id = await store.add_dataset(
        ds.name, ds.source, ds.memory_id, ds.token_bits, records_digest(ds), rows
    )
    return dataset_id, await store.records(dataset_id)


async def _resume_or_create(
    store: Store, ds: Dataset, cfg: Config, dataset_id: int
) -> tuple[RunRow, bool]:
    digest = config_digest(cfg, ds)
    old = await store.resumable_run(dataset_id, digest)
    if old is not None:
        await store.set_run_status(old.id, "running")
        await store.add_event("run_resumed", {"epoch": old.epoch}, run_id=old.id)
        LOGGER.info("resuming run %d at epoch %d", old.id, old.epoch)
        return await store.run(old.id), True
    seed = cfg.training.seed
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % 2**63)  # type: ignore[operator]
    versions = json.dumps({"hasherd": __version__, "kernel": spec.SPEC, "numpy": np.__version__})
    config_json = json.dumps(cfg.to_dict(), sort_keys=True)
    run_id = await store.create_run(dataset_id, config_json, digest, seed, versions)
    await store.add_event("run_started", {"rng_seed": seed}, run_id=run_id)
    return await store.run(run_id), False
