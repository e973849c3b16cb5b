"""``hasherd train``: one training job in the foreground.

With no arguments it trains the sample corpus shipped inside the package into
``<storage.base_path>/hasherd.db``. The same command after an interruption (Ctrl-C,
SIGTERM, even SIGKILL) resumes the unfinished run from its last finished generation.
It holds the database's writer lock for its whole run: a second writer (another ``train``,
the daemon) is refused, naming this process.

Exit status: 0 finished and converged, 1 finished without converging
(``target_fitness``), 2 bad input, a storage error (disk full, read-only, permission
denied, corrupt) or the database in use by another writer, 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio

from hasherd import config as config_mod
from hasherd.cli.common import add_config_args, evaluator_for, setup_logging
from hasherd.cli.writer import hold_writer_lock
from hasherd.config import Config
from hasherd.data import load_dataset
from hasherd.kernel.evaluators.base import Evaluator
from hasherd.scheduler.dispatch import EvaluatorDispatch
from hasherd.scheduler.trainer import Progress, RunSummary, Trainer
from hasherd.storage import Store

LOGGER = logging.getLogger(__name__)
EXIT_NOT_CONVERGED = 1
EXIT_INTERRUPTED = 130
DB_NAME = "hasherd.db"


def register(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="train seeds for a dataset (default: the embedded sample)",
        description="Train seeds for every record of a dataset with the GRPO evolutionary "
        "search. The same command resumes an interrupted run.",
    )
    p.add_argument(
        "--data",
        metavar="PATH",
        help="dataset file or directory (default: the embedded sample corpus)",
    )
    add_config_args(p)
    p.add_argument(
        "--db", metavar="PATH", help=f"SQLite database (default: <storage.base_path>/{DB_NAME})"
    )
    p.add_argument("--epochs", type=int, help="epochs of the difficulty schedule")
    p.add_argument("--population", type=int, help="population per record (1..4096)")
    p.add_argument("--generations", type=int, help="max generations per record per epoch")
    p.add_argument("--difficulty-bits", type=int, help="base of the difficulty schedule")
    p.add_argument("--seed", type=int, help="RNG seed (recorded; default: drawn)")
    p.add_argument(
        "--zero-bits",
        type=int,
        metavar="K",
        help="kernel zero bits (training.zero_bits; asic:PATH,K needs K)",
    )
    p.add_argument("--passes", type=int, metavar="P", help="kernel passes (training.passes)")
    p.add_argument(
        "--evaluator", metavar="NAME", help="evaluator (default from simulator.device_type: numba)"
    )
    p.add_argument("--strict", action="store_true", help="abort on the first invalid row")
    p.add_argument(
        "--init-seeds",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="start each record's first generation with the seed its frame carries "
        "(best_seed, or a *_with_seeds file beside the data; default: on)",
    )
    p.add_argument("--verbose", "-v", action="store_true", help="log every epoch and winner")
    p.set_defaults(handler=run_train)


def effective_config(args: argparse.Namespace) -> Config:
    cfg = config_mod.load(args.config)
    if getattr(args, "log_level", None):  # hasherd --log-level, in place of logging.level
        cfg = replace(cfg, logging=replace(cfg.logging, level=args.log_level.lower()))
    changes = {
        key: value
        for key, value in (
            ("epochs", args.epochs),
            ("population_size", args.population),
            ("max_generations", args.generations),
            ("difficulty_bits", args.difficulty_bits),
            ("seed", args.seed),
            ("zero_bits", args.zero_bits),
            ("passes", args.passes),
        )
        if value is not None
    }
    return cfg.with_training(**changes) if changes else cfg


def db_path(args: argparse.Namespace, cfg: Config) -> Path:
    return Path(args.db) if args.db else Path(cfg.storage.base_path) / DB_NAME


def run_train(args: argparse.Namespace) -> int:
    cfg = effective_config(args)
    setup_logging(cfg, verbose=args.verbose)
    ds = load_dataset(
        args.data,
        token_bits=cfg.training.token_bits,
        strict=args.strict,
        init_seeds=args.init_seeds,
    )
    print(ds.report.summary(), file=sys.stderr)
    evaluator = evaluator_for(cfg, args.evaluator)
    path = db_path(args, cfg)
    # Held until the run ends; taken before the database is opened (or created).
    with hold_writer_lock(path, args, instead="jobs submit", must_exist=False):
        summary = anyio.run(_train, cfg, ds, evaluator, path)
    print_summary(summary, path)
    if summary.status == "stopped":
        return EXIT_INTERRUPTED
    return 0 if summary.converged else EXIT_NOT_CONVERGED


async def _train(cfg: Config, ds: Any, evaluator: Evaluator, path: Path) -> RunSummary:
    display = make_display()
    async with await Store.open(path) as store:
        with EvaluatorDispatch(evaluator, cfg.simulator.timeout) as dispatch:
            trainer = Trainer(store, ds, cfg, dispatch, on_progress=display.update)
            try:
                return await _run_until_signal(trainer)
            finally:
                display.close()


async def _run_until_signal(trainer: Trainer) -> RunSummary:
    """The run, stopped after the current generation on SIGINT or SIGTERM."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(_watch_signals, trainer, tg.cancel_scope)
        summary = await trainer.run()
        tg.cancel_scope.cancel()
    return summary


async def _watch_signals(trainer: Trainer, scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            print(
                f"\n{signal.Signals(signum).name}: stopping after the current generation",
                file=sys.stderr,
            )
            trainer.stop.set()
            return


class PlainDisplay:
    """Periodic log lines, for journals and pipes."""

    def __init__(self, every: float = 5.0) -> None:
        self.every, self.last = every, 0.0

    def update(self, p: Progress) -> None:
        now = time.monotonic()
        if now - self.last >= self.every or p.done == p.todo:
            self.last = now
            print(progress_line(p), file=sys.stderr, flush=True)

    def close(self) -> None:
        pass


class RichDisplay:
    """A progress bar on a terminal: records trained, difficulty, candidates/s, ETA."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(
            TextColumn("epoch {task.fields[epoch]} D={task.fields[d]}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} records"),
            TextColumn("{task.fields[rate]} cand/s"),
            TimeRemainingColumn(),
            transient=False,
        )
        self.bar.start()
        self.task = self.bar.add_task("train", total=1, epoch=0, d=0, rate="0")

    def update(self, p: Progress) -> None:
        self.bar.update(
            self.task,
            total=max(1, p.todo),
            completed=p.done,
            epoch=p.epoch,
            d=p.difficulty,
            rate=f"{p.candidates_per_s:,.0f}",
        )

    def close(self) -> None:
        self.bar.stop()


def make_display() -> PlainDisplay | RichDisplay:
    return RichDisplay() if sys.stderr.isatty() else PlainDisplay()


def progress_line(p: Progress) -> str:
    return (
        f"epoch {p.epoch}/{p.epochs} D={p.difficulty}: {p.done}/{p.todo} records this epoch, "
        f"{p.records_won}/{p.records_total} hold a winner, "
        f"{p.candidates:,} candidates ({p.candidates_per_s:,.0f}/s)"
    )


def print_summary(s: RunSummary, path: Path) -> None:
    rows = [
        ("run", f"{s.run_id} ({'resumed' if s.resumed else 'new'}), {s.status}"),
        ("database", str(path)),
        ("epochs", f"{s.epochs_done} (final difficulty {s.final_difficulty} bits)"),
        ("records with a winner", f"{s.winners} of {s.records}"),
        ("converged", "yes" if s.converged else "no"),
        (
            "candidates evaluated",
            f"{s.candidates:,} in {s.seconds:.1f} s ({s.candidates / max(s.seconds, 1e-9):,.0f}/s)",
        ),
        ("double SHA-256", f"{s.dsha:,}"),
        ("validated sample", f"{s.validated} validated, {s.non_deterministic} non-deterministic"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
