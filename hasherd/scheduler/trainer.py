"""The GRPO training scheduler: datasets in, weights out, one population per record.

``Trainer.run()`` opens the run (scheduler/runs.py: the dataset stored, its unfinished run
with the same configuration resumed, or a new one), then walks the difficulty schedule:
epoch e trains every record whose best stored seed has fewer than D(e) prefix bits, for up
to ``max_generations`` generations per record. Records are trained in lockstep batches: one
step evaluates a generation of each active record in one call of the dispatch
(scheduler/dispatch.py: the daemon's actor pool, or one evaluator), and commits those
generations (checkpoint, the seeds evaluated, a better weight, events) in one
transaction, so a kill at any instant loses at most the step in flight, and the same
command resumes from the last committed generation. A finished run ends with its
validation sample (validation/sample.py).

Nothing compiled runs on the event loop: a record's search is built (or restored) on the
trainer's own thread, and scored and bred on the dispatch's, so a first run on a cold
numba cache waits for the compiler off the loop (the daemon keeps answering and feeding
systemd's watchdog meanwhile). The seen history a record keeps is its current epoch's:
the generation that ends a record's epoch (a win, or ``max_generations`` spent) also drops
its history, so the database grows with the records, not with the candidates.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import numpy as np

from hasherd.actors.base import JobWithdrawn
from hasherd.actors.thread import CallThread
from hasherd.config import Config
from hasherd.data import Dataset
from hasherd.kernel.evaluators.base import MAX_BATCH, EvalRequest, EvalResult, make_request
from hasherd.kernel.spec import DifficultySchedule
from hasherd.scheduler.dispatch import Dispatch, Post
from hasherd.scheduler.phases import PhaseClock
from hasherd.scheduler.runs import close_run, open_run
from hasherd.storage import GenerationWrite, Store
from hasherd.storage.rows import Checkpoint, Event, RecordRow, RunRow, WeightRow
from hasherd.training import search as search_mod
from hasherd.training import steps
from hasherd.training.search import (
    Generation,
    RecordSearch,
    SearchParams,
    absorb_many,
    record_key,
)
from hasherd.validation.sample import check_sample

LOGGER = logging.getLogger(__name__)
DEFAULT_BATCH = 64  # records in flight, in ``lanes`` groups: one call each
# A group's generations are committed together at most this often (and at once for a
# record whose epoch ends, and for every record when the trainer stops): a record's
# checkpoint is then written once per interval instead of once per generation.
COMMIT_SECONDS = 1.0
# The most seen hashes a record's table is sized for when its search is built (a table of
# twice as many slots, 256 KiB); a search that remembers more grows its table as it goes.
EXPECT_CAP = 1 << 14


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


@dataclass
class _EpochRecord:
    """A record being trained this epoch."""

    rec: RecordRow
    slots: np.ndarray
    search: RecordSearch
    epoch_start: int  # the search's generation when this epoch began for the record
    done: bool = False
    # What the record's generations since its last write found, for the next write: the
    # hashes its search remembered, a better weight, events, the last generation's best.
    hashes: list[np.ndarray] = field(default_factory=list)
    weight: WeightRow | None = None
    events: list[Event] = field(default_factory=list)
    best_prefix: int = -1
    unsaved: int = 0  # generations since the last write
    request: EvalRequest | None = None  # the record's first request, checked in full


@dataclass(frozen=True)
class _Begin:
    """What a record's search is built from (``Trainer._begin``). ``seen`` is given for a
    search continuing within its epoch; without it, a checkpoint starts a new epoch, and
    only its carried members are remembered."""

    rec: RecordRow
    slots: np.ndarray
    key: int
    ck: Checkpoint | None
    seen: np.ndarray | None
    epoch_start: int | None  # the epoch's first generation, when continuing within it
    init_seed: bytes | None = None  # the dataset's seed for a fresh search (docs/data.md)

    def build(self, params: SearchParams, expect: int) -> _EpochRecord:
        """The record's search (runs compiled steps: call it off the event loop), its
        table sized for ``expect`` more hashes."""
        search = RecordSearch(self.slots, self.rec.token_id, params, self.key, self.seen, expect)
        if self.ck is None and self.init_seed is not None:
            search.plant(self.init_seed)
        if self.ck is not None:
            search.restore(self.ck.population, self.ck.results, self.ck.rng_state)
            if self.seen is None:
                search.remember_carried()
        start = search.generation if self.epoch_start is None else self.epoch_start
        return _EpochRecord(self.rec, self.slots, search, start)


class Trainer:
    """One training job over one dataset (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        dataset: Dataset,
        config: Config,
        dispatch: Dispatch,
        *,
        on_progress: Callable[[Progress], None] | None = None,
        on_step: Callable[[float], None] | None = None,
        batch: int = DEFAULT_BATCH,
        clock: PhaseClock | None = None,
    ) -> None:
        """``dispatch`` evaluates the batches (the daemon's actor pool, or ``hasherd
        train``'s evaluator), with ``dispatch.lanes`` groups in flight at once; ``clock``
        adds up where the time goes (scheduler/phases.py)."""
        self.clock = clock or PhaseClock()
        self.store, self.ds, self.cfg = store, dataset, config
        self.dispatch = dispatch
        self.lanes = max(1, dispatch.lanes)
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
        self.tokens = steps.token_map(self.token_set, self.params.token_bits)
        # Builds and restores the records' searches (compiled code) off the event loop.
        self.searches = CallThread("hasherd-search")

    # -- the run ---------------------------------------------------------------------------

    async def run(self) -> RunSummary:
        try:
            return await self._run()
        finally:
            self.searches.close()

    async def _run(self) -> RunSummary:
        t0 = time.monotonic()
        # Load (or compile) the kernels before anything else touches numba: the process
        # then peaks about 20 MiB lower than when the search's helpers load first.
        await self.dispatch.warm_up()
        opened = await open_run(self.store, self.ds, self.cfg)
        run, resumed, records = opened.run, opened.resumed, opened.records
        self.progress.run_id = run.id
        self.progress.records_total = len(records)
        self.best = opened.best
        first_epoch = max(1, run.epoch) if resumed else 1
        epoch = first_epoch - 1
        for epoch in range(first_epoch, self.cfg.training.epochs + 1):
            d = self.schedule.bits(epoch)
            await self.store.set_run_progress(run.id, epoch, d)
            todo = [r for r in records if self.best.get(r.id, (-1, 0.0))[0] < d]
            self._start_epoch(epoch, d, todo, records)
            t_epoch, dsha0 = time.monotonic(), self.progress.dsha
            await self._train_epoch(run, epoch, d, todo)
            await self.store.reclaim_space()  # the pages of the histories the epoch dropped
            self._check_hash_rate(self.progress.dsha - dsha0, time.monotonic() - t_epoch)
            self._end_epoch(epoch, d, records, time.monotonic() - t_epoch)
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

    def _end_epoch(self, epoch: int, d: int, records: list[RecordRow], seconds: float) -> None:
        """The epoch's outcome in one line (``--verbose`` adds one per winner before it)."""
        won = sum(1 for r in records if self.best.get(r.id, (-1, 0.0))[0] >= d)
        LOGGER.info(
            "epoch %d %s: %d of %d records hold a winner at %d bits (%.1f s)",
            epoch,
            "stopped" if self.stop.is_set() else "done",
            won,
            len(records),
            d,
            seconds,
        )

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
        groups). Several groups keep the evaluators busy: while one group's batch is in a
        kernel, another's results are taken and handed to the writer, so the Python and
        SQLite work overlaps the hashing instead of following it. A group's generations
        are committed together, in one transaction, every ``COMMIT_SECONDS``; a record
        whose epoch ends is committed at once, and every record when the trainer stops.
        Commits happen in order, each whole (a record's checkpoint with the seen hashes
        and weight of every generation since its last one), so a kill at any instant
        loses at most the generations not yet committed (about a second's work), and the
        same command resumes from the last committed one to the same weights. A finished
        record makes room for the next."""
        queue = list(reversed(todo))
        size = max(1, -(-self.batch // self.lanes))
        groups: list[list[_EpochRecord]] = [[] for _ in range(self.lanes)]
        started = [0.0] * self.lanes
        committed = [time.monotonic()] * self.lanes
        done_tx, done_rx = anyio.create_memory_object_stream[
            tuple[int, list[EvalResult], list[Generation]]
        ](self.lanes)
        save_tx, save_rx = anyio.create_memory_object_stream[list[GenerationWrite]](2)

        async def evaluate(g: int) -> None:
            started[g] = time.perf_counter()
            active = groups[g]
            searches = [a.search for a in active]

            def score(results: list[EvalResult]) -> list[Generation]:
                # Off the event loop, where the dispatch runs it (scheduler/dispatch.py).
                with self.clock.time("step"):
                    return absorb_many(searches, results, d, self.token_set, self.tokens)

            try:
                res, gens = await self._evaluate(active, score)
            except JobWithdrawn:
                if not self.stop.is_set():
                    raise
                res, gens = [], []  # stopped: the group's batch was dropped, not computed
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
                        with self.clock.time("absorb"):
                            if gens:  # else withdrawn on stop: only the earlier ones to commit
                                self._absorb(run, groups[g], results, gens, epoch, d)
                                self.on_step(time.perf_counter() - started[g])
                            every = not gens or self.stop.is_set()
                            if every or time.monotonic() - committed[g] >= COMMIT_SECONDS:
                                every, committed[g] = True, time.monotonic()
                            writes = self._writes(run, groups[g], epoch, d, every)
                        if writes:
                            await save_tx.send(writes)
                        if not gens:
                            continue
                        groups[g] = [a for a in groups[g] if not a.done]
                        if self.stop.is_set():
                            continue
                        await self._fill(run, epoch, groups[g], queue, size)
                        if groups[g]:
                            tg.start_soon(evaluate, g)
                            in_flight += 1

    async def _fill(
        self, run: RunRow, epoch: int, group: list[_EpochRecord], queue: list[RecordRow], size: int
    ) -> None:
        """Begin records from ``queue`` until ``group`` holds ``size`` of them or the
        queue is empty: their stored state is read here, then their searches are built in
        one call on the trainer's thread (they run compiled steps, and a cold numba cache
        compiles them first)."""
        while queue and len(group) < size:
            t0 = time.perf_counter()
            recs = [queue.pop() for _ in range(min(size - len(group), len(queue)))]
            plans = [await self._begin(run, rec, epoch) for rec in recs]
            todo = [plan for plan in plans if plan is not None]
            expect = self._expected_history(self.schedule.bits(epoch))
            group.extend(await self.searches.call(_build_all, todo, self.params, expect))
            self.clock.add("begin", time.perf_counter() - t0)
            if len(todo) < len(plans):
                self.progress.done += len(plans) - len(todo)  # over before an interruption
                self.on_progress(self.progress)

    def _absorb(
        self,
        run: RunRow,
        group: list[_EpochRecord],
        results: list[EvalResult],
        gens: list[Generation],
        epoch: int,
        d: int,
    ) -> None:
        """Take one group's scored generation: progress, and what the records' next
        writes will hold."""
        limit = self.cfg.training.max_generations
        p = self.progress
        p.best_reward = max(g.best.reward for g in gens)
        p.mean_reward = sum(g.mean_reward for g in gens) / len(gens)
        for a, gen in zip(group, gens, strict=True):
            won = gen.best.prefix_bits >= d
            a.done = won or a.search.generation - a.epoch_start >= limit
            self._note(run, a, gen, epoch, d)
            p.records_won += won
            p.tokens += won
        self._count(gens, results, sum(a.done for a in group))

    def _writes(
        self, run: RunRow, group: list[_EpochRecord], epoch: int, d: int, every: bool
    ) -> list[GenerationWrite]:
        """The writes due: of every record with generations not yet written when
        ``every``, else only of those whose epoch just ended."""
        return [self._write(run, a, epoch, d) for a in group if a.unsaved and (every or a.done)]

    async def _save(self, writes: list[GenerationWrite]) -> None:
        """Commit one group's generations (shielded: never abandoned half way)."""
        with anyio.CancelScope(shield=True), self.clock.time("commit"):
            await self.store.save_generations(writes)

    def _expected_history(self, d: int) -> int:
        """About how many seeds a record's search remembers this epoch, which its table is
        sized for up front: a table that doubles as it fills rehashes every slot each
        time, which on 40 generations costs more than the rest of the step's Python.
        A win at D bits takes about 2^D candidates, ``max_generations`` bounds the
        epoch, and ``EXPECT_CAP`` keeps a hard epoch's records from each taking a large
        table at once (theirs grow as they go)."""
        p = self.params
        per_epoch = self.cfg.training.max_generations * (p.population - p.n_elite)
        return min(per_epoch + p.population, 1 << min(d, 32), EXPECT_CAP)

    async def _begin(self, run: RunRow, rec: RecordRow, epoch: int) -> _Begin | None:
        """What the record's search is built from: nothing (fresh), its checkpoint and this
        epoch's seen history (continuing within its epoch), or the checkpoint of an
        earlier epoch (starting this one). None when the checkpoint shows the record's
        epoch already over (``max_generations`` spent before an interruption)."""
        slots = np.frombuffer(rec.slots, dtype="<u4").astype(np.uint32)
        ck = await self.store.checkpoint(run.id, rec.id)  # populations stay on disk
        seen, epoch_start = None, None
        if ck is not None and ck.epoch == epoch:
            epoch_start = int(json.loads(ck.rng_state)["epoch_start"])
            if ck.generation - epoch_start >= self.cfg.training.max_generations:
                return None
            seen = await self.store.seen_hashes(run.id, rec.id, after=epoch_start)
        init = self.ds.init_seeds.get(rec.idx) if ck is None else None
        return _Begin(rec, slots, record_key(run.rng_seed, rec.idx), ck, seen, epoch_start, init)

    async def _evaluate(
        self, active: list[_EpochRecord], post: Post
    ) -> tuple[list[EvalResult], Any]:
        """One batch of generations, evaluated in one dispatch call off the event loop (the
        numba evaluator runs the whole batch as one kernel launch), then ``post`` on the
        same thread."""
        with self.clock.time("requests"):
            reqs = [self._request(a) for a in active]
        return await self.dispatch.evaluate_then(reqs, post)

    def _request(self, a: _EpochRecord) -> EvalRequest:
        """The evaluation of the record's pending seeds. Its first request is checked in
        full (``make_request``); later ones reuse that request's checked slots, memory and
        settings around the seeds the search made (C-contiguous uint8 rows, never
        empty): about 0.6 µs instead of 1.9, once per record and generation."""
        seeds = a.search.pending()
        first = a.request
        if first is None or not 1 <= len(seeds) <= MAX_BATCH:
            t = self.cfg.training
            a.request = make_request(a.slots, seeds, self.memory, t.passes, t.zero_bits)
            return a.request
        return EvalRequest(
            first.slots,
            seeds,
            first.memory,
            first.passes,
            first.zero_bits,
            False,
            first.nonce_space,
        )

    def _note(self, run: RunRow, a: _EpochRecord, gen: Generation, epoch: int, d: int) -> None:
        """Keep what one record's generation found for its next write (a better weight
        included)."""
        rec, best = a.rec, gen.best
        a.hashes.append(gen.new_hashes)
        a.best_prefix = best.prefix_bits
        a.unsaved += 1
        if (best.prefix_bits, best.reward) > self.best.get(rec.id, (-1, -1.0)):
            self.best[rec.id] = (best.prefix_bits, best.reward)
            a.weight = self._weight(run, rec, best, gen, epoch, d)
            if best.prefix_bits >= d:
                found = {"prefix_bits": best.prefix_bits, "difficulty": d, "generation": gen.number}
                a.events.append(Event("winner", found, run.id, rec.id))

    def _write(self, run: RunRow, a: _EpochRecord, epoch: int, d: int) -> GenerationWrite:
        """What the store keeps of a record's generations since its last write: its
        checkpoint now, the hashes they remembered, the best weight they found."""
        population, results, state = a.search.state(epoch_start=a.epoch_start)
        ck = Checkpoint(epoch, a.search.generation, d, population, results, state, a.best_prefix)
        hashes = a.hashes[0] if len(a.hashes) == 1 else np.concatenate(a.hashes)
        write = GenerationWrite(run.id, a.rec.id, ck, hashes, a.weight, a.events, ends_epoch=a.done)
        a.hashes, a.weight, a.events, a.unsaved = [], None, [], 0
        return write

    def _count(self, gens: list[Generation], results: list[EvalResult], done: int) -> None:
        p = self.progress
        p.candidates += sum(len(r) for r in results)
        p.dsha += sum(r.dsha for r in results)
        p.generations += len(gens)
        p.done += done
        self.on_progress(p)

    def _weight(
        self, run: RunRow, rec: RecordRow, best: Any, gen: Generation, epoch: int, d: int
    ) -> WeightRow:
        """The weight stored for a better ``best``; a winner at ``d`` (its winner event goes
        with this weight) is also logged, for ``--verbose``."""
        if best.prefix_bits >= d:
            LOGGER.debug(
                "winner: record %d (token %d), %d prefix bits at D=%d, generation %d",
                rec.idx,
                rec.token_id,
                best.prefix_bits,
                d,
                gen.number,
            )
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
            passes=self.cfg.training.passes,
            zero_bits=self.cfg.training.zero_bits,
            token_bits=self.ds.token_bits,
        )

    # -- the end ------------------------------------------------------------------------------

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
            validated, bad = await check_sample(self.store, run, self.memory, self.cfg)
        await close_run(
            self.store,
            run.id,
            status,
            {"winners": winners, "records": len(records), "difficulty": d, "converged": converged},
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


def _build_all(plans: list[_Begin], params: SearchParams, expect: int) -> list[_EpochRecord]:
    return [plan.build(params, expect) for plan in plans]


async def warm_up_search() -> None:
    """Load (or compile) the search's compiled steps on a thread of their own: the daemon
    starts this at start-up, so that neither the event loop nor a job's first records
    wait for numba's compiler when the cache is cold. The thread is a daemon thread, so a
    daemon stopped during the compile does not wait for it. A failure is only logged: a
    job's first search meets it again, and fails the job with it."""
    thread = CallThread("hasherd-warm-up")
    try:
        await thread.call(search_mod.warm_up)
    except Exception:
        LOGGER.warning("warming up the search's compiled steps failed", exc_info=True)
    finally:
        thread.close()
