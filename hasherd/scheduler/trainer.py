"""The GRPO training scheduler: datasets in, weights out, one population per record.

``Trainer.run()`` stores the dataset, creates the run (or resumes the unfinished run with
the same dataset and configuration), then walks the difficulty schedule: epoch e trains
every record whose best stored seed has fewer than D(e) prefix bits, for up to
``max_generations`` generations per record. Records are trained in lockstep batches: one
step evaluates a generation of each active record in one worker-thread call, and commits
those generations (checkpoint, the seeds evaluated, a better weight, events) in one
transaction, so a kill at any instant loses at most the step in flight, and the same
command resumes from the last committed generation.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import numpy as np

from hasherd import __version__
from hasherd.actors.thread import CallThread
from hasherd.config import Config
from hasherd.data import Dataset
from hasherd.kernel import spec
from hasherd.kernel.evaluators.base import EvalRequest, EvalResult, Evaluator, make_request
from hasherd.kernel.spec import DifficultySchedule
from hasherd.storage import GenerationWrite, Store
from hasherd.storage.rows import Checkpoint, Event, RecordRow, RunRow, Validation, WeightRow
from hasherd.training.search import (
    SEARCH_VERSION,
    Generation,
    RecordSearch,
    SearchParams,
    absorb_many,
    record_key,
)

LOGGER = logging.getLogger(__name__)
# (requests, post) -> (results, post(results)); ``post`` runs on the evaluator's thread.
Post = Callable[[list[EvalResult]], Any]
Dispatch = Callable[[list[EvalRequest], Post], Awaitable[tuple[list[EvalResult], Any]]]
DEFAULT_BATCH = 64  # records in flight, in ``lanes`` groups: one call, one commit each


@dataclass
class Progress:
    """What a progress display needs; updated after every generation."""

    run_id: int = 0
    records_total: int = 0
    records_won: int = 0  # records holding a winner at the current difficulty
    epoch: int = 0
    epochs: int = 0
    difficulty: int = 0
    todo: int = 0  # records this epoch still has to train
    done: int = 0  # records this epoch has finished (won or out of generations)
    candidates: int = 0
    dsha: int = 0
    generations: int = 0
    tokens: int = 0  # records that won at their epoch's difficulty (winners stored)
    best_reward: float = float("nan")  # the best member's reward in the last step
    mean_reward: float = float("nan")  # the mean reward of the last step's groups
    started: float = field(default_factory=time.monotonic)

    @property
    def candidates_per_s(self) -> float:
        return self.candidates / max(1e-9, time.monotonic() - self.started)


@dataclass(frozen=True)
class RunSummary:
    run_id: int
    status: str
    resumed: bool
    epochs_done: int
    final_difficulty: int
    records: int
    winners: int  # records with a winner at the final difficulty
    converged: bool
    candidates: int
    dsha: int
    seconds: float
    validated: int
    non_deterministic: int


def records_digest(ds: Dataset) -> str:
    h = hashlib.sha256()
    h.update(ds.token_bits.to_bytes(1, "little"))
    h.update(ds.slots.astype("<u4").tobytes())
    h.update(ds.targets.astype("<u4").tobytes())
    return h.hexdigest()


def config_digest(cfg: Config, ds: Dataset) -> str:
    """What makes two invocations the same run (the RNG seed only when one is given)."""
    t = cfg.training
    key = {k: v for k, v in cfg.to_dict()["training"].items() if k not in ("seed", "epochs")}
    key.update(seed=t.seed, memory_id=ds.memory_id, spec=spec.SPEC, search=SEARCH_VERSION)
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


@dataclass
class _Active:
    """A record being trained this epoch."""

    rec: RecordRow
    slots: np.ndarray
    search: RecordSearch
    epoch_start: int  # the search's generation when this epoch began for the record
    done: bool = False


class Trainer:
    """One training job over one dataset (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        dataset: Dataset,
        config: Config,
        evaluator: Evaluator | None = None,
        *,
        on_progress: Callable[[Progress], None] | None = None,
        on_step: Callable[[float], None] | None = None,
        batch: int = DEFAULT_BATCH,
        dispatch: Dispatch | None = None,
        lanes: int = 2,
    ) -> None:
        """``evaluator`` runs the batches on a thread of the trainer's own; or ``dispatch``
        (the daemon's actor pool) takes them, with ``lanes`` groups in flight at once."""
        if (evaluator is None) == (dispatch is None):
            raise ValueError("give an evaluator or a dispatch function, not both")
        self.store, self.ds, self.cfg, self.evaluator = store, dataset, config, evaluator
        self.dispatch = dispatch
        self.lanes = max(1, lanes)
        t = config.training
        self.params = SearchParams(
            population=t.population_size,
            elite_ratio=t.elite_ratio,
            mutation_rate=t.mutation_rate,
            passes=t.passes,
            zero_bits=t.zero_bits,
            token_bits=t.token_bits,
        )
        self.schedule = DifficultySchedule(base=t.difficulty_bits)
        self.on_progress = on_progress or (lambda p: None)
        self.on_step = on_step or (lambda seconds: None)  # one group's generation, timed
        self.batch = max(1, batch)
        self.stop = anyio.Event()
        self.progress = Progress(epochs=t.epochs)
        self.best: dict[int, tuple[int, float]] = {}
        self.memory = dataset.memory
        self.memory.set_record_cache_size(config.simulator.cache_size)
        self.token_set = dataset.token_set
        self.kernel_thread = CallThread("hasherd-kernel")

    # -- the run ---------------------------------------------------------------------------

    async def run(self) -> RunSummary:
        try:
            return await self._run()
        finally:
            self.kernel_thread.close()

    async def _run(self) -> RunSummary:
        t0 = time.monotonic()
        # Load (or compile) the kernels before anything else touches numba: the process
        # then peaks about 20 MiB lower than when the search's helpers load first.
        if self.evaluator is not None:
            await self.kernel_thread.call(self.evaluator.warm_up)
        dataset_id, records = await self._store_dataset()
        run, resumed = await self._open_run(dataset_id)
        self.progress.run_id = run.id
        self.progress.records_total = len(records)
        self.best = await self._best(dataset_id)
        first_epoch = max(1, run.epoch) if resumed else 1
        epoch = first_epoch - 1
        for epoch in range(first_epoch, self.cfg.training.epochs + 1):
            d = self.schedule.bits(epoch)
            await self.store.set_run_progress(run.id, epoch, d)
            todo = [r for r in records if self.best.get(r.id, (-1, 0.0))[0] < d]
            self._start_epoch(epoch, d, todo, records)
            t_epoch, dsha0 = time.monotonic(), self.progress.dsha
            await self._train_epoch(run, epoch, d, todo)
            self._check_hash_rate(self.progress.dsha - dsha0, time.monotonic() - t_epoch)
            if self.stop.is_set():
                break
        return await self._finish(run, resumed, records, epoch, t0)

    def _start_epoch(
        self, epoch: int, d: int, todo: list[RecordRow], records: list[RecordRow]
    ) -> None:
        p = self.progress
        p.epoch, p.difficulty, p.todo, p.done = epoch, d, len(todo), 0
        p.records_won = sum(1 for r in records if self.best.get(r.id, (-1, 0.0))[0] >= d)
        LOGGER.info(
            "epoch %d: difficulty %d bits, %d of %d records to train",
            epoch,
            d,
            len(todo),
            len(records),
        )
        self.on_progress(p)

    def _check_hash_rate(self, dsha: int, seconds: float) -> None:
        """Warn when an epoch that did hash ran below ``simulator.target_hash_rate``."""
        target = self.cfg.simulator.target_hash_rate
        rate = dsha / max(seconds, 1e-9)
        if target and dsha and rate < target:
            LOGGER.warning(
                "hash rate %.3g double SHA-256/s is below simulator.target_hash_rate %.3g",
                rate,
                target,
            )

    async def _train_epoch(self, run: RunRow, epoch: int, d: int, todo: list[RecordRow]) -> None:
        """Train ``todo`` in lockstep groups: each evaluation call runs one generation of
        every record of a group (``self.batch`` records in all, split in ``self.lanes``
        groups), and each group's generations are committed in one transaction. Several
        groups keep the evaluators busy: while one group's batch is in a kernel, another's
        results are scored, bred and handed to the writer, so the Python and SQLite work
        overlaps the hashing instead of following it. Commits happen in order, each whole,
        so a kill at any instant loses at most the generations not yet committed, and the
        same command resumes from the last committed one. A finished record makes room for
        the next."""
        queue = list(reversed(todo))
        size = max(1, -(-self.batch // self.lanes))
        groups: list[list[_Active]] = [[] for _ in range(self.lanes)]
        started = [0.0] * self.lanes
        done_tx, done_rx = anyio.create_memory_object_stream[
            tuple[int, list[EvalResult], list[Generation]]
        ](self.lanes)
        save_tx, save_rx = anyio.create_memory_object_stream[list[GenerationWrite]](2)

        async def evaluate(g: int) -> None:
            started[g] = time.perf_counter()
            active = groups[g]
            searches = [a.search for a in active]

            def score(results: list[EvalResult]) -> list[Generation]:
                # On the evaluator's thread, right after its kernel: the group's scoring
                # and breeding then never compete with a kernel for the cores.
                return absorb_many(searches, results, d, self.token_set)

            res, gens = await self._evaluate(
                [a.slots for a in active], [s.pending() for s in searches], score
            )
            await done_tx.send((g, res, gens))

        async def saver() -> None:
            async with save_rx:
                async for writes in save_rx:
                    await self._save(writes)

        with done_tx, done_rx:
            async with anyio.create_task_group() as tg:
                tg.start_soon(saver)
                in_flight = 0
                async with save_tx:
                    for g in range(self.lanes):
                        await self._fill(run, epoch, groups[g], queue, size)
                        if groups[g]:
                            tg.start_soon(evaluate, g)
                            in_flight += 1
                    while in_flight:
                        g, results, gens = await done_rx.receive()
                        in_flight -= 1
                        writes = self._absorb(run, groups[g], results, gens, epoch, d)
                        self.on_step(time.perf_counter() - started[g])
                        await save_tx.send(writes)
                        groups[g] = [a for a in groups[g] if not a.done]
                        if self.stop.is_set():
                            continue
                        await self._fill(run, epoch, groups[g], queue, size)
                        if groups[g]:
                            tg.start_soon(evaluate, g)
                            in_flight += 1

    async def _fill(
        self, run: RunRow, epoch: int, group: list[_Active], queue: list[RecordRow], size: int
    ) -> None:
        while queue and len(group) < size:
            group.append(await self._begin(run, queue.pop(), epoch))

    def _absorb(
        self,
        run: RunRow,
        group: list[_Active],
        results: list[EvalResult],
        gens: list[Generation],
        epoch: int,
        d: int,
    ) -> list[GenerationWrite]:
        """Take one group's scored generation; what the writer must commit for it."""
        limit = self.cfg.training.max_generations
        p = self.progress
        p.best_reward = max(g.best.reward for g in gens)
        p.mean_reward = sum(g.mean_reward for g in gens) / len(gens)
        writes = []
        for a, gen in zip(group, gens, strict=True):
            writes.append(self._generation(run, a, gen, epoch, d))
            won = gen.best.prefix_bits >= d
            a.done = won or a.search.generation - a.epoch_start >= limit
            p.records_won += won
            p.tokens += won
        self._count(writes, results, sum(a.done for a in group))
        return writes

    async def _save(self, writes: list[GenerationWrite]) -> None:
        """Commit one group's generations (shielded: never abandoned half way)."""
        with anyio.CancelScope(shield=True):
            await self.store.save_generations(writes)

    async def _begin(self, run: RunRow, rec: RecordRow, epoch: int) -> _Active:
        """The record's search: fresh, or continued from its last checkpoint."""
        slots = np.frombuffer(rec.slots, dtype="<u4").astype(np.uint32)
        ck = await self.store.checkpoint(run.id, rec.id)  # populations stay on disk
        seen = await self.store.seen_hashes(run.id, rec.id) if ck else None
        key = record_key(run.rng_seed, rec.idx)
        search = RecordSearch(slots, rec.token_id, self.params, key, seen)
        epoch_start = 0
        if ck is not None:
            search.restore(ck.population, ck.results, ck.rng_state)
            if ck.epoch == epoch:
                epoch_start = int(json.loads(ck.rng_state)["epoch_start"])
            else:
                epoch_start = search.generation
        return _Active(rec, slots, search, epoch_start)

    async def _evaluate(
        self, slots: list[np.ndarray], seeds: list[np.ndarray], post: Post
    ) -> tuple[list[EvalResult], Any]:
        """One batch of generations, evaluated in one call on the evaluator's thread (the
        loop stays free; the numba evaluator runs the whole batch as one kernel launch)
        within ``simulator.timeout``, then ``post`` on the same thread."""
        t = self.cfg.training
        reqs = [
            make_request(s, b, self.memory, t.passes, t.zero_bits)
            for s, b in zip(slots, seeds, strict=True)
        ]

        if self.dispatch is not None:
            return await self.dispatch(reqs, post)  # the pool applies the timeout per actor
        assert self.evaluator is not None
        with anyio.fail_after(self.cfg.simulator.timeout):
            results = await self.kernel_thread.call(self.evaluator.evaluate_many, reqs)
        return results, await self.kernel_thread.call(post, results)

    def _generation(
        self, run: RunRow, a: _Active, gen: Generation, epoch: int, d: int
    ) -> GenerationWrite:
        """What the store keeps of one record's generation (a better weight included)."""
        rec, search = a.rec, a.search
        population, results, state = search.state(epoch_start=a.epoch_start)
        best = gen.best
        ck = Checkpoint(epoch, search.generation, d, population, results, state, best.prefix_bits)
        weight, events = None, []
        if (best.prefix_bits, best.reward) > self.best.get(rec.id, (-1, -1.0)):
            self.best[rec.id] = (best.prefix_bits, best.reward)
            weight = self._weight(run, rec, best, gen, epoch, d)
            if best.prefix_bits >= d:
                found = {"prefix_bits": best.prefix_bits, "difficulty": d, "generation": gen.number}
                events.append(Event("winner", found, run.id, rec.id))
        return GenerationWrite(run.id, rec.id, ck, gen.new_hashes, weight, events)

    def _count(self, writes: list[GenerationWrite], results: list[EvalResult], done: int) -> None:
        p = self.progress
        p.candidates += sum(len(r) for r in results)
        p.dsha += sum(r.dsha for r in results)
        p.generations += len(writes)
        p.done += done
        self.on_progress(p)

    def _weight(
        self, run: RunRow, rec: RecordRow, best: Any, gen: Generation, epoch: int, d: int
    ) -> WeightRow:
        return WeightRow(
            record_id=rec.id,
            run_id=run.id,
            token_id=rec.token_id,
            context_key=rec.context_key,
            slots=rec.slots,
            seed=best.seed,
            output=best.output,
            golden_nonce=best.golden_nonce,
            prefix_bits=best.prefix_bits,
            difficulty_bits=d,
            fitness=best.reward,
            generation=gen.number,
            epoch=epoch,
            memory_id=self.ds.memory_id,
            layer=rec.token_id // self.cfg.storage.layer_size,
        )

    # -- setup and teardown -------------------------------------------------------------------

    async def _store_dataset(self) -> tuple[int, list[RecordRow]]:
        ds = self.ds
        rows = [
            (int(ds.targets[i]), int(ds.context_keys[i]), ds.slots[i].astype("<u4").tobytes())
            for i in range(len(ds))
        ]
        dataset_id = await self.store.add_dataset(
            ds.name, ds.source, ds.memory_id, ds.token_bits, records_digest(ds), rows
        )
        return dataset_id, await self.store.records(dataset_id)

    async def _open_run(self, dataset_id: int) -> tuple[RunRow, bool]:
        digest = config_digest(self.cfg, self.ds)
        old = await self.store.resumable_run(dataset_id, digest)
        if old is not None:
            await self.store.set_run_status(old.id, "running")
            await self.store.add_event("run_resumed", {"epoch": old.epoch}, run_id=old.id)
            LOGGER.info("resuming run %d at epoch %d", old.id, old.epoch)
            return await self.store.run(old.id), True
        seed = self.cfg.training.seed
        if seed is None:
            seed = int(np.random.SeedSequence().entropy % 2**63)  # type: ignore[operator]
        versions = json.dumps(
            {"hasherd": __version__, "kernel": spec.SPEC, "numpy": np.__version__}
        )
        config_json = json.dumps(self.cfg.to_dict(), sort_keys=True)
        run_id = await self.store.create_run(dataset_id, config_json, digest, seed, versions)
        await self.store.add_event("run_started", {"rng_seed": seed}, run_id=run_id)
        return await self.store.run(run_id), False

    async def _best(self, dataset_id: int) -> dict[int, tuple[int, float]]:
        return {
            w.record_id: (w.prefix_bits, w.fitness) for w in await self.store.weights(dataset_id)
        }

    async def _finish(
        self, run: RunRow, resumed: bool, records: list[RecordRow], epoch: int, t0: float
    ) -> RunSummary:
        d = self.schedule.bits(max(1, epoch))
        winners = sum(1 for r in records if self.best.get(r.id, (-1, 0.0))[0] >= d)
        converged = winners >= self.cfg.training.target_fitness * len(records)
        validated = bad = 0
        if self.stop.is_set():
            status = "stopped"
        else:
            status = "finished"
            validated, bad = await self._validate_sample(run)
        await self.store.set_run_status(run.id, status)
        await self.store.add_event(
            "run_" + status,
            {"winners": winners, "records": len(records), "difficulty": d, "converged": converged},
            run_id=run.id,
        )
        p = self.progress
        return RunSummary(
            run.id,
            status,
            resumed,
            epoch,
            d,
            len(records),
            winners,
            converged,
            p.candidates,
            p.dsha,
            time.monotonic() - t0,
            validated,
            bad,
        )

    async def _validate_sample(self, run: RunRow) -> tuple[int, int]:
        """Re-run ``validation_split`` of this run's weights on the reference evaluator,
        ``validation.max_concurrency`` at a time, each within ``validation.timeout`` and
        retried ``validation.retry_attempts`` times; a weight that cannot be re-run stays
        unvalidated (an event says why)."""
        mine = [w for w in await self.store.weights() if w.run_id == run.id and w.id is not None]
        k = round(self.cfg.training.validation_split * len(mine))
        if k == 0:
            return 0, 0
        rng = np.random.default_rng(run.rng_seed)
        pick = [mine[i] for i in rng.choice(len(mine), size=k, replace=False)]
        limiter = anyio.CapacityLimiter(self.cfg.validation.max_concurrency)
        counts = {"validated": 0, "non-deterministic": 0}

        async def one(w: WeightRow) -> None:
            state = await self._validate_one(run, w, limiter)
            if state is not None and w.id is not None:
                await self.store.set_validation(w.id, state)
                counts[state] += 1

        async with anyio.create_task_group() as tg:
            for w in pick:
                tg.start_soon(one, w)
        return counts["validated"], counts["non-deterministic"]

    async def _validate_one(
        self, run: RunRow, w: WeightRow, limiter: anyio.CapacityLimiter
    ) -> Validation | None:
        from hasherd.kernel.evaluators.reference import ReferenceEvaluator

        t, vc = self.cfg.training, self.cfg.validation
        slots = np.frombuffer(w.slots, dtype="<u4").astype(np.uint32)
        call = functools.partial(
            ReferenceEvaluator().evaluate, slots, [w.seed], self.memory, t.passes, t.zero_bits
        )
        for attempt in range(vc.retry_attempts + 1):
            try:
                with anyio.fail_after(vc.timeout):
                    res = await anyio.to_thread.run_sync(
                        call, limiter=limiter, abandon_on_cancel=True
                    )
            except TimeoutError:
                LOGGER.warning("validation of weight %s timed out (attempt %d)", w.id, attempt + 1)
                continue
            same = int(res.output[0]) == w.output and int(res.golden_nonce[0]) == w.golden_nonce
            return "validated" if same else "non-deterministic"
        await self.store.add_event(
            "validation_failed",
            {"weight": w.id, "reason": "timeout"},
            run_id=run.id,
            record_id=w.record_id,
        )
        return None
