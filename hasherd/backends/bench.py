"""The kernel benchmark behind ``hasherd bench``: measurement only, no printing.

Workload. A jitter memory of M frames drawn from a seeded RNG so that zone 2 is populated
like real data (slot 4's low byte from a few word-class codes, slot 10's bits 12..15 from
a few domain codes, every other slot uniform), and two records:

* ``miss``: slot 0 is in no frame, so no evaluator can take the zone-1 shortcut and every
  candidate hashes all P + 1 passes (22 double SHA-256 at the default P = 21);
* ``zone1_hit``: a frame of the memory itself, as training sees for records drawn from
  the memory; evaluators that take the zone-1 shortcut skip passes 0..7 of it.

Shape. With ``records_per_call`` R = 1 (the default) each call is one ``evaluate`` of one
record's N candidates. The trainer sends several records per call instead (its batch in
``dispatch.lanes`` groups, through ``evaluate_many``: scheduler/trainer.py), so with R > 1
each call is one ``evaluate_many`` of R distinct records of the kind, N candidates each:
R ``miss`` records (each a slot 0 in no frame) or R ``zone1_hit`` frames (distinct while
the memory has R frames). The first record of each kind is the R = 1 record.

Method (docs/perf.md, section 3). Each evaluator is warmed up (JIT compile or cache load,
timed) and primed with untimed calls. Then ``rounds`` rounds run; in each round every
(evaluator, record) case, round-robin, calls ``evaluate`` for ``seconds / rounds`` seconds
(at least once). A case's figures come from its median round by candidates/s. Rates count
the work the results report (``dsha``, ``compressions``), not the nominal work.

Seeds are fresh for every call without RNG cost in the timed loop: each call takes the
next window of N rows of a seed pool drawn before timing (consecutive windows disjoint).
The baseline (``reference``, one core) gets a population cut, from a timed probe, so that
one call takes about a tenth of a round. The CPU steal time of the timed part is reported:
on a shared VM a stolen vCPU stalls every multi-thread parallel region.
"""

from __future__ import annotations

import logging
import math
import os
import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hasherd.backends import create, hashcat
from hasherd.errors import InputError
from hasherd.kernel import spec
from hasherd.kernel.evaluators import MAX_BATCH, Evaluator
from hasherd.kernel.evaluators.base import make_request
from hasherd.kernel.memory import JitterMemory

LOGGER = logging.getLogger(__name__)

BASELINE = "reference"
DEFAULT_EVALUATORS = ("numba:1", "numba")
RECORDS = ("miss", "zone1_hit")
WORD_CLASSES = 16  # slot 4 low byte: 0..15
DOMAINS = (0x1, 0x2, 0x3, 0x4, 0x5)  # slot 10 bits 12..15
MAX_MEMORY_FRAMES = 1_000_000
MAX_RECORDS_PER_CALL = 4096  # as daemon.batch: the trainer's whole batch in one group
MAX_CANDIDATES_PER_CALL = 1 << 20  # records x population: bounds the results' memory
SEED_POOL_ROWS = 1 << 14
NUMBA_KERNELS_MODULE = "hasherd.kernel.numba_kernels"
NUMBA_DRIVERS = ("run_k0", "run_scan")


@dataclass(frozen=True)
class BenchConfig:
    """What to measure; ``validate`` raises an ``InputError`` for an out-of-range value."""

    seconds: float = 3.0
    population: int = 256
    zero_bits: int = 0
    evaluators: tuple[str, ...] = DEFAULT_EVALUATORS
    memory_frames: int = 1000
    passes: int = spec.DEFAULT_PASSES
    rounds: int = 3
    rng_seed: int = 1
    against: str | None = None  # "hashcat": run its benchmark in the same run
    records_per_call: int = 1  # R > 1: one evaluate_many of R records, as the trainer calls

    def validate(self) -> None:
        if not isinstance(self.seconds, (int, float)) or not math.isfinite(self.seconds):
            raise InputError("seconds", f"expected a finite number, got {self.seconds!r}")
        if self.seconds <= 0:
            raise InputError("seconds", f"must be > 0, got {self.seconds}")
        _check_int("population", self.population, 1, MAX_BATCH)
        _check_int("records_per_call", self.records_per_call, 1, MAX_RECORDS_PER_CALL)
        if self.records_per_call * self.population > MAX_CANDIDATES_PER_CALL:
            raise InputError(
                "records_per_call",
                f"{self.records_per_call} records x population {self.population} is more than"
                f" {MAX_CANDIDATES_PER_CALL} candidates per call",
            )
        _check_int("zero_bits", self.zero_bits, 0, spec.MAX_ZERO_BITS)
        _check_int("memory_frames", self.memory_frames, 1, MAX_MEMORY_FRAMES)
        _check_int("rounds", self.rounds, 1, 99)
        spec.check_passes(self.passes)
        if not self.evaluators:
            raise InputError("evaluators", "name at least one evaluator")
        if self.against not in (None, hashcat.NAME):
            raise InputError("against", f"unknown reference {self.against!r}; known: hashcat")

    def to_dict(self) -> dict[str, Any]:
        return {
            "seconds": self.seconds,
            "rounds": self.rounds,
            "round_s": self.seconds / self.rounds,
            "population": self.population,
            "records_per_call": self.records_per_call,
            "shape": shape(self.records_per_call, self.population),
            "zero_bits": self.zero_bits,
            "passes": self.passes,
            "memory_frames": self.memory_frames,
            "rng_seed": self.rng_seed,
            "evaluators": list(self.evaluators),
            "baseline": BASELINE,
            "against": self.against,
        }


def shape(records: int, population: int) -> str:
    """A call's shape as people say it: "32 records x 256" (or "1 record x 256")."""
    return f"{records} record{'s' if records != 1 else ''} x {population}"


def _check_int(name: str, value: Any, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(name, f"expected an integer, got {value!r}")
    if not lo <= value <= hi:
        raise InputError(name, f"{value} is outside {lo}..{hi}")


# -- workload ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    memory: JitterMemory
    records: dict[str, np.ndarray]  # record name -> (12,) uint32 slots
    batches: dict[str, np.ndarray]  # record name -> (R, 12): one call's records, row 0 above
    seed_pool: np.ndarray  # (rows, 32) uint8


def make_memory(frames: int, rng: np.random.Generator) -> JitterMemory:
    """M frames like real data: zone-2 groups drawn from a few word classes and domains."""
    f = rng.integers(0, 1 << 32, size=(frames, spec.N_SLOTS), dtype=np.uint32)
    word_class = rng.integers(0, WORD_CLASSES, size=frames, dtype=np.uint32)
    f[:, 4] = (f[:, 4] & np.uint32(0xFFFFFF00)) | word_class
    domain = rng.choice(np.array(DOMAINS, dtype=np.uint32), size=frames)
    f[:, 10] = (f[:, 10] & np.uint32(0xFFFF0FFF)) | (domain << np.uint32(12))
    return JitterMemory(f)


def make_records(memory: JitterMemory, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The ``miss`` record (slot 0 in no frame) and the ``zone1_hit`` record (a frame)."""
    frames = memory.frames
    hit = frames[int(rng.integers(0, len(memory)))].copy()
    miss = frames[int(rng.integers(0, len(memory)))].copy()  # zone-2 group like real data
    taken = set(frames[:, 0].tolist())
    slot0 = int(rng.integers(0, 1 << 32))
    while slot0 in taken:
        slot0 = int(rng.integers(0, 1 << 32))
    miss[0] = slot0
    miss[1:4] = rng.integers(0, 1 << 32, size=3, dtype=np.uint32)
    return {"miss": miss, "zone1_hit": hit}


def make_batches(
    memory: JitterMemory, first: dict[str, np.ndarray], count: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """``count`` distinct records of each kind, ``first``'s record leading: further
    ``miss`` records drawn like it, further frames without repeats while there are enough."""
    frames = memory.frames
    misses, hits = [first["miss"]], [first["zone1_hit"]]
    taken = set(frames[:, 0].tolist()) | {int(first["miss"][0])}
    while len(misses) < count:
        rec = frames[int(rng.integers(0, len(memory)))].copy()
        rec[0] = int(rng.integers(0, 1 << 32))
        if int(rec[0]) in taken:
            continue
        taken.add(int(rec[0]))
        rec[1:4] = rng.integers(0, 1 << 32, size=3, dtype=np.uint32)
        misses.append(rec)
    others = np.flatnonzero(~(frames == first["zone1_hit"]).all(axis=1))
    if len(others) == 0:
        others = np.arange(len(memory))  # a one-frame memory: its frame, repeated
    more = count - 1
    idx = rng.choice(others, size=more, replace=more > len(others))
    hits += [frames[int(i)].copy() for i in idx]
    return {"miss": np.stack(misses), "zone1_hit": np.stack(hits)}


def make_workload(cfg: BenchConfig) -> Workload:
    rng = np.random.default_rng(cfg.rng_seed)
    memory = make_memory(cfg.memory_frames, rng)
    records = make_records(memory, rng)
    if cfg.records_per_call > 1:  # drawn before the pool only then: R = 1 stays as it was
        batches = make_batches(memory, records, cfg.records_per_call, rng)
    else:
        batches = {name: rec[np.newaxis, :] for name, rec in records.items()}
    rows = max(SEED_POOL_ROWS, 4 * cfg.population)
    pool = rng.integers(0, 256, size=(rows, spec.SEED_BYTES), dtype=np.uint8)
    memory.record_view(int(records["miss"][0]), int(records["miss"][4]))  # build indices now
    return Workload(memory, records, batches, pool)


# -- one (evaluator, record) case ------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    """One case's figures (from its median round) and its work per candidate."""

    candidates_per_s: float
    dsha_per_s: float
    compressions_per_s: float
    dsha_per_candidate: float
    compressions_per_candidate: float
    population: int
    calls: int
    round_candidates_per_s: tuple[float, ...]
    # Compressions per second of this process's CPU time (all its threads): the kernel's
    # speed per busy core, which other work on a shared machine does not dilute.
    compressions_per_cpu_s: float = 0.0
    records_per_call: int = 1

    def to_dict(self, baseline: Figures | None, zero_bits: int) -> dict[str, Any]:
        out: dict[str, Any] = {
            "candidates_per_s": self.candidates_per_s,
            "dsha_per_s": self.dsha_per_s,
            "compressions_per_s": self.compressions_per_s,
        }
        if zero_bits > 0:
            out["nonces_per_s"] = self.dsha_per_s  # each scanned nonce is one double SHA
        if baseline is not None:
            out["ratio_to_baseline"] = self.candidates_per_s / baseline.candidates_per_s
        out.update(
            dsha_per_candidate=self.dsha_per_candidate,
            compressions_per_candidate=self.compressions_per_candidate,
            population=self.population,
            records_per_call=self.records_per_call,
            candidates_per_call=self.population * self.records_per_call,
            calls=self.calls,
            round_candidates_per_s=list(self.round_candidates_per_s),
            compressions_per_cpu_s=self.compressions_per_cpu_s,
        )
        return out


@dataclass
class _Round:
    candidates: int = 0
    dsha: int = 0
    compressions: int = 0
    elapsed: float = 0.0
    cpu: float = 0.0  # process CPU seconds over the round

    @property
    def rate(self) -> float:
        return self.candidates / self.elapsed if self.elapsed > 0 else 0.0


@dataclass
class _Case:
    evaluator: Evaluator
    slots: np.ndarray  # (R, 12): the records of one call
    population: int
    cursor: int = 0
    rounds: list[_Round] = field(default_factory=list)

    def next_seeds(self, pool: np.ndarray) -> np.ndarray:
        rows = pool.shape[0]
        if self.cursor + self.population > rows:
            self.cursor = (self.cursor + self.population) % (rows - self.population + 1)
        batch = pool[self.cursor : self.cursor + self.population]
        self.cursor += self.population + 7
        return batch

    @property
    def per_call(self) -> int:
        """Candidates one call evaluates."""
        return self.population * len(self.slots)

    def call(self, wl: Workload, cfg: BenchConfig) -> tuple[int, int]:
        """One call: ``evaluate`` for one record, else ``evaluate_many`` (the trainer's
        path), each record with the next window of seeds."""
        if len(self.slots) == 1:
            res = self.evaluator.evaluate(
                self.slots[0], self.next_seeds(wl.seed_pool), wl.memory, cfg.passes, cfg.zero_bits
            )
            return res.dsha, res.compressions
        reqs = [
            make_request(s, self.next_seeds(wl.seed_pool), wl.memory, cfg.passes, cfg.zero_bits)
            for s in self.slots
        ]
        results = self.evaluator.evaluate_many(reqs)
        return sum(r.dsha for r in results), sum(r.compressions for r in results)

    def run_round(self, wl: Workload, cfg: BenchConfig, budget: float) -> None:
        rnd = _Round()
        t0, c0 = time.perf_counter(), time.process_time()
        while True:
            dsha, blocks = self.call(wl, cfg)
            rnd.candidates += self.per_call
            rnd.dsha += dsha
            rnd.compressions += blocks
            rnd.elapsed = time.perf_counter() - t0
            if rnd.elapsed >= budget:
                break
        rnd.cpu = time.process_time() - c0
        self.rounds.append(rnd)

    def figures(self) -> Figures:
        best = sorted(self.rounds, key=lambda r: r.rate)
        mid = best[(len(best) - 1) // 2]  # the lower median: a real round, consistent figures
        cands = sum(r.candidates for r in self.rounds)
        return Figures(
            candidates_per_s=mid.rate,
            dsha_per_s=mid.dsha / mid.elapsed,
            compressions_per_s=mid.compressions / mid.elapsed,
            dsha_per_candidate=sum(r.dsha for r in self.rounds) / cands,
            compressions_per_candidate=sum(r.compressions for r in self.rounds) / cands,
            population=self.population,
            calls=cands // self.per_call,
            round_candidates_per_s=tuple(r.rate for r in self.rounds),
            compressions_per_cpu_s=mid.compressions / mid.cpu if mid.cpu > 0 else 0.0,
            records_per_call=len(self.slots),
        )


# -- evaluators -----------------------------------------------------------------------------


@dataclass(frozen=True)
class EvaluatorReport:
    name: str
    threads: int
    startup_s: float
    startup_kind: str
    records: dict[str, Figures]

    def to_dict(self, baseline: EvaluatorReport | None, zero_bits: int) -> dict[str, Any]:
        def base(rec: str) -> Figures | None:
            return baseline.records[rec] if baseline is not None else None

        out: dict[str, Any] = {"evaluator": self.name, "threads": self.threads}
        out.update(self.records["miss"].to_dict(base("miss"), zero_bits))
        out["startup_s"] = self.startup_s
        out["startup_kind"] = self.startup_kind
        out["zone1_hit"] = self.records["zone1_hit"].to_dict(base("zone1_hit"), zero_bits)
        return out


def _numba_cache_counts() -> tuple[int, int] | None:
    """(cache hits, cache misses) of the numba drivers so far; None if not imported."""
    module = sys.modules.get(NUMBA_KERNELS_MODULE)
    if module is None:
        return None
    hits = misses = 0
    for name in NUMBA_DRIVERS:
        stats = getattr(getattr(module, name, None), "stats", None)
        if stats is not None:
            hits += sum(stats.cache_hits.values())
            misses += sum(stats.cache_misses.values())
    return hits, misses


def _startup_kind(before: tuple[int, int] | None, after: tuple[int, int] | None) -> str:
    """What a warm-up did, from numba's dispatcher statistics."""
    if after is None:
        return "none"  # nothing to compile (a plain-Python evaluator)
    b_hits, b_misses = before or (0, 0)
    if after[1] > b_misses:
        return "compile"
    if after[0] > b_hits:
        return "cache load"
    return "already loaded"


def warm_up(ev: Evaluator) -> tuple[float, str]:
    """Seconds the evaluator's warm-up took and what it did (compile, cache load, ...)."""
    before = _numba_cache_counts()
    seconds = ev.warm_up()
    return seconds, _startup_kind(before, _numba_cache_counts())


def _baseline_population(case: _Case, wl: Workload, cfg: BenchConfig) -> int:
    """Population for which one baseline call of one record takes about a tenth of a
    round (the per-candidate rate it is compared by does not depend on the shape)."""
    full = case.population
    case.population = 1
    case.slots = case.slots[:1]
    t0 = time.perf_counter()
    case.call(wl, cfg)
    per_candidate = max(time.perf_counter() - t0, 1e-9)
    want = int(cfg.seconds / cfg.rounds / 10 / per_candidate)
    return max(1, min(full, want))


def _prime(case: _Case, wl: Workload, cfg: BenchConfig, adapt: bool) -> None:
    if adapt:
        case.population = _baseline_population(case, wl, cfg)
    case.call(wl, cfg)


def cpu_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count() or 1,
        "load_avg_1m_at_start": os.getloadavg()[0],  # other work on the machine skews figures
    }
    try:
        from hasherd.kernel import numba_setup

        info.update(numba_setup.configure())
    except ImportError:
        info["cpu_name"] = "unknown (numba not installed)"
    return info


def cpu_ticks() -> tuple[int, int] | None:
    """(steal, total) jiffies of all CPUs from /proc/stat; None where there is none."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if len(fields) < 9 or fields[0] != "cpu":
        return None
    ticks = [int(x) for x in fields[1:9]]  # user nice system idle iowait irq softirq steal
    return ticks[7], sum(ticks)


def steal_percent(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """Share of the machine's CPU time the hypervisor gave to others between two readings."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return 100.0 * (after[0] - before[0]) / (after[1] - before[1])


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


# -- the run ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchReport:
    config: BenchConfig
    baseline: EvaluatorReport
    evaluators: dict[str, EvaluatorReport]
    cpu: dict[str, Any]
    memory_id: str
    peak_rss_mib: float
    reference: hashcat.HashcatFigures | None = None  # --against hashcat

    def to_dict(self) -> dict[str, Any]:
        k = self.config.zero_bits
        conf = self.config.to_dict()
        conf["memory_id"] = self.memory_id
        conf["records"] = record_notes(self.config.passes)
        out: dict[str, Any] = {
            "baseline": self.baseline.to_dict(None, k),
            "evaluators": {n: r.to_dict(self.baseline, k) for n, r in self.evaluators.items()},
            "config": conf,
            "cpu": self.cpu,
            "peak_rss_mib": self.peak_rss_mib,
        }
        if self.reference is not None:
            out["against"] = self.against_hashcat(self.reference)
        return out

    def against_hashcat(self, hc: hashcat.HashcatFigures) -> dict[str, Any]:
        """hashcat's figures and, per evaluator and record, hasherd's compressions/s
        (nominal and performed) with their ratios to hashcat's."""
        per: dict[str, Any] = {}
        cfg = self.config
        for name, rep in self.evaluators.items():
            per[name] = {rec: _versus(name, fig, hc, cfg) for rec, fig in rep.records.items()}
        cfg = self.config
        return {
            "hashcat": hc.to_dict(),
            "records_per_call": cfg.records_per_call,
            "shape": shape(cfg.records_per_call, cfg.population),
            "evaluators": per,
        }


def _versus(
    name: str, fig: Figures, hc: hashcat.HashcatFigures, cfg: BenchConfig
) -> dict[str, float]:
    """One case against hashcat, counted three ways:

    * ``function``: candidates/s times the compressions kernel.md gives a candidate at
      k = 0, (P + 1) x 3, whatever an evaluator skips (as hashcat and miners count
      hashes: the work done per second of the function asked for); only at k = 0;
    * ``compressions_per_s`` / ``ratio``: 3 per double SHA-256 the evaluator reports
      hashing (the zone-1 shortcut's skipped passes not counted);
    * ``performed``: SHA-256 rounds really run / 64 (pass-invariant rounds once)."""
    hashed = fig.compressions_per_s
    performed = fig.candidates_per_s * performed_compressions(name, fig.dsha_per_candidate)
    out = {
        "compressions_per_s": hashed,
        "compressions_per_cpu_s": fig.compressions_per_cpu_s,
        "performed_compressions_per_s": performed,
        "ratio": hashed / hc.compressions_per_s,
        "performed_ratio": performed / hc.compressions_per_s,
        "dsha_per_candidate": fig.dsha_per_candidate,
    }
    if cfg.zero_bits == 0:
        function = fig.candidates_per_s * function_compressions(cfg.passes)
        out["function_compressions_per_candidate"] = function_compressions(cfg.passes)
        out["function_compressions_per_s"] = function
        out["function_ratio"] = function / hc.compressions_per_s
    return out


def function_compressions(passes: int) -> int:
    """SHA-256 compressions of one candidate at k = 0 as kernel.md counts them:
    P passes and the final one, each a double SHA-256 of an 80-byte header (3)."""
    return 3 * (passes + 1)


def performed_compressions(name: str, dsha_per_candidate: float) -> float:
    """Compressions a candidate really costs: SHA-256 rounds executed / 64.

    Nominally a double SHA-256 of a header is 3 compressions. The numba kernel computes
    the pass-invariant rounds once per candidate (``PREP_ROUNDS``) and runs
    ``PASS_ROUNDS`` per pass (docs/kernel.md, "The numba evaluator"); the others run
    every round."""
    if not name.startswith("numba"):
        return 3 * dsha_per_candidate
    from hasherd.kernel import _lanes

    return (dsha_per_candidate * _lanes.PASS_ROUNDS + _lanes.PREP_ROUNDS) / 64


def record_notes(passes: int) -> dict[str, str]:
    return {
        "miss": f"slot 0 in no frame: no zone-1 shortcut, all {passes + 1} passes hashed",
        "zone1_hit": "a frame of the memory (as in training): evaluators that take the "
        "zone-1 shortcut skip passes 0..7",
    }


def _unique(names: tuple[str, ...]) -> list[str]:
    return list(dict.fromkeys(names))


def _prepare(
    cfg: BenchConfig, wl: Workload
) -> tuple[dict[str, Evaluator], dict[str, tuple[float, str]], dict[tuple[str, str], _Case]]:
    names = [BASELINE, *(n for n in _unique(cfg.evaluators) if n != BASELINE)]
    evs = {n: create(n) for n in names}  # unknown names fail here, before any work
    for n, ev in evs.items():
        if not ev.supports(cfg.zero_bits):
            raise InputError("zero_bits", f"{cfg.zero_bits} is not served by evaluator {n!r}")
    startup: dict[str, tuple[float, str]] = {}
    cases: dict[tuple[str, str], _Case] = {}
    for n, ev in evs.items():
        startup[n] = warm_up(ev)
        LOGGER.info("bench: %s warmed up in %.2f s (%s)", n, *startup[n])
        for rec in RECORDS:
            case = _Case(ev, wl.batches[rec], cfg.population)
            _prime(case, wl, cfg, adapt=(n == BASELINE))
            cases[(n, rec)] = case
    return evs, startup, cases


def _run_hashcat() -> hashcat.HashcatFigures:
    LOGGER.info("bench: running %s", " ".join((hashcat.NAME, *hashcat.ARGS)))
    return hashcat.run()


def run(cfg: BenchConfig) -> BenchReport:
    """Run the whole benchmark (about 2 x seconds x (evaluators + 1), plus warm-ups)."""
    cfg.validate()
    if cfg.against == hashcat.NAME:
        hashcat.find_binary()  # fail before minutes of measuring, not after
    cpu = cpu_info()  # configures numba's code generation before anything compiles
    wl = make_workload(cfg)
    evs, startup, cases = _prepare(cfg, wl)
    hashcat_runs = [_run_hashcat()] if cfg.against == hashcat.NAME else []
    budget = cfg.seconds / cfg.rounds
    ticks = cpu_ticks()
    for r in range(cfg.rounds):
        LOGGER.info("bench: round %d of %d", r + 1, cfg.rounds)
        for case in cases.values():
            case.run_round(wl, cfg, budget)
    reports = {
        n: EvaluatorReport(
            n, ev.threads, *startup[n], {rec: cases[(n, rec)].figures() for rec in RECORDS}
        )
        for n, ev in evs.items()
    }
    cpu["steal_percent"] = steal_percent(ticks, cpu_ticks())  # high: 2-thread figures suffer
    baseline = reports.pop(BASELINE)
    wanted = {n: reports.get(n, baseline) for n in _unique(cfg.evaluators)}
    rss = peak_rss_mib()
    hc = None
    if hashcat_runs:
        hc = hashcat.bracket([*hashcat_runs, _run_hashcat()])
    return BenchReport(cfg, baseline, wanted, cpu, wl.memory.memory_id, rss, hc)
