"""``hasherctl``: the thin client of the daemon's control socket (docs/hasherctl.md).

Each command calls one control method and prints its result: ``--json`` prints the raw
result, otherwise a table (rich on a terminal, plain aligned text in pipes). Exit codes:
0 ok, 1 the daemon answered an error (or is unhealthy), 2 usage or bad input, 3 the daemon
is unavailable. Errors go to stderr as ``hasherctl: error: ...``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from hasherd import __version__
from hasherd.cli import ctl_flash, ctl_validate
from hasherd.cli import ctl_views as views
from hasherd.config import parse_duration
from hasherd.control.client import (
    ControlClient,
    ControlError,
    DaemonUnavailable,
    discover_socket_path,
)
from hasherd.control.params import (
    JobOptions,
    JobRef,
    ListJobs,
    ListWeights,
    NoParams,
    Params,
    RestartActor,
    SetPriority,
    SubmitJob,
)
from hasherd.errors import ConfigError, HasherError, InputError
from hasherd.storage.status import JobStatus

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_INTERRUPTED = 130
DEFAULT_TIMEOUT = 10.0
EXPORT_FORMATS = ("csv", "parquet", "json")  # cmd_export.FORMATS, without its imports
EXPORT_MAX_RESPONSE_BYTES = 1 << 30  # weights.list without a limit: a whole table

Command = Callable[[ControlClient, argparse.Namespace], int]
View = Callable[[Mapping[str, Any]], list[views.Section]]


class UsageError(HasherError):
    """The command line is well-formed but cannot be carried out as given (exit 2)."""


class CommandFailed(HasherError):
    """The command could not be carried out (exit 1): the reply or the local side failed."""


class MalformedReply(CommandFailed):
    """The daemon's result lacks a documented field or has one of the wrong type."""

    def __init__(self, method: str, problem: str) -> None:
        super().__init__(f"{method}: malformed reply: {problem}")


# -- output ------------------------------------------------------------------------------------


def use_rich() -> bool:
    """Rich tables and a live monitor on a terminal; plain lines in pipes and journals."""
    return sys.stdout.isatty()


def show(sections: list[views.Section]) -> None:
    if use_rich():
        from rich.console import Console

        Console().print(views.rich(sections))
    else:
        print(views.plain(sections), flush=True)


def print_json(result: Any) -> None:
    print(json.dumps(result, indent=2), flush=True)


def render(method: str, view: View, result: Any) -> list[views.Section]:
    try:
        return view(result)
    except (KeyError, TypeError, AttributeError) as exc:
        problem = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
        raise MalformedReply(method, problem) from None


def answer(args: argparse.Namespace, method: str, result: Any, view: View) -> None:
    if getattr(args, "json", False):
        print_json(result)
    else:
        show(render(method, view, result))


def call_and_show(
    method: str,
    view: View,
    request: Callable[[argparse.Namespace], Params] = lambda args: NoParams(),
) -> Command:
    """The command that calls ``method`` with ``request(args)`` and prints ``view``."""

    def command(client: ControlClient, args: argparse.Namespace) -> int:
        answer(args, method, client.call(method, **request(args).to_params()), view)
        return EXIT_OK

    return command


# -- commands ----------------------------------------------------------------------------------


def cmd_health(client: ControlClient, args: argparse.Namespace) -> int:
    result = client.call("health")
    answer(args, "health", result, views.health_view)
    healthy = result.get("healthy") if isinstance(result, dict) else None
    if not isinstance(healthy, bool):
        raise MalformedReply("health", "'healthy' is not a boolean")
    return EXIT_OK if healthy else EXIT_FAILED


def submit_request(args: argparse.Namespace) -> SubmitJob:
    # the daemon runs in another directory: a relative path would name another file there;
    # and it follows no link (control/access.py): resolve the user's own links here
    data = os.path.realpath(os.path.expanduser(args.data))
    options = JobOptions(
        epochs=args.epochs,
        population=args.population,
        generations=args.generations,
        difficulty_bits=args.difficulty_bits,
        seed=args.seed,
        zero_bits=args.zero_bits,
        passes=args.passes,
        strict=args.strict or None,  # left out unless given: the daemon's default
    )
    return SubmitJob(data, args.name, options, args.priority)


def cmd_version(client: ControlClient, args: argparse.Namespace) -> int:
    try:
        daemon: Any = client.call("ping")
    except ControlError as exc:
        daemon = None
        print(f"hasherctl: note: no daemon version: {exc}", file=sys.stderr)
    if args.json:
        print_json({"hasherctl": __version__, "daemon": daemon})
        return EXIT_OK
    print(f"hasherctl {__version__}")
    if daemon is not None:
        sections = render("ping", _daemon_version_view, daemon)
        print(views.plain(sections))
    return EXIT_OK


def _daemon_version_view(result: Mapping[str, Any]) -> list[views.Section]:
    return [views.Line(f"hasherd {result['version']} (protocol {result['protocol']})")]


def _pong_view(result: Mapping[str, Any]) -> list[views.Section]:
    return [views.Line(f"pong from hasherd {result['version']} (protocol {result['protocol']})")]


def cmd_weights_export(client: ControlClient, args: argparse.Namespace) -> int:
    from hasherd.cli import ctl_export

    out = Path(args.out)
    problem = ctl_export.check_out(out, args.layer)
    if problem:
        raise UsageError(problem)
    client.max_response_bytes = max(client.max_response_bytes, EXPORT_MAX_RESPONSE_BYTES)
    chosen = ListWeights(args.dataset, args.layer, kernel=args.kernel)
    result = client.call("weights.list", **chosen.to_params())
    try:
        items, total = result["weights"], result["total"]
        weights = [ctl_export.weight_row(w) for w in items]
    except (KeyError, TypeError, AttributeError, ctl_export.MalformedWeight) as exc:
        raise MalformedReply("weights.list", str(exc)) from None
    if len(weights) != total:  # a daemon that caps the list: refuse to write a partial layer
        message = f"the daemon sent {len(weights)} of {total} weights; nothing written"
        raise CommandFailed(f"weights.list: {message}")
    try:
        ctl_export.export(weights, args.format, out, args.layer)
    except InputError as exc:  # a layer of several kernels
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise CommandFailed(f"cannot write {exc.filename or out}: {exc.strerror}") from None
    return EXIT_OK


def cmd_monitor(client: ControlClient, args: argparse.Namespace) -> int:
    frames = _rich_frames if use_rich() else _plain_frames
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a monitor is left
        frames(client, args.refresh, args.count)
    return EXIT_OK


def _polls(
    client: ControlClient, refresh: float, count: int | None
) -> Iterator[list[views.Section]]:
    """``status`` results, one per refresh, ``count`` of them (None: until interrupted)."""
    n = 0
    while count is None or n < count:
        if n:
            time.sleep(refresh)
        result = client.call("status")
        n += 1
        yield render("status", lambda r: views.monitor_frame(r, time.time()), result)


def _plain_frames(client: ControlClient, refresh: float, count: int | None) -> None:
    for i, frame in enumerate(_polls(client, refresh, count)):
        print(("\n" if i else "") + views.plain(frame), flush=True)


def _rich_frames(client: ControlClient, refresh: float, count: int | None) -> None:
    from rich.live import Live

    with Live(auto_refresh=False) as live:
        for frame in _polls(client, refresh, count):
            live.update(views.rich(frame), refresh=True)


# -- the command line ----------------------------------------------------------------------------


def _int_at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is below {low}")
        return value

    return parse


def _seconds(key: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            seconds = parse_duration(text, key)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(exc.problem) from None
        if seconds <= 0:
            raise argparse.ArgumentTypeError("must be more than 0")
        return seconds

    return parse


POSITIVE, NATURAL = _int_at_least(1), _int_at_least(0)


def _reader(sub: Any, name: str, help: str, run: Command) -> argparse.ArgumentParser:
    """A command that prints a result, so takes ``--json``."""
    p: argparse.ArgumentParser = sub.add_parser(name, help=help, description=help)
    p.add_argument("--json", action="store_true", help="print the raw result as JSON")
    p.set_defaults(run=run)
    return p


def _by_id(args: argparse.Namespace) -> JobRef:
    return JobRef(args.id)


def _by_name(args: argparse.Namespace) -> RestartActor:
    return RestartActor(args.name)


def _weights_filter(args: argparse.Namespace) -> ListWeights:
    return ListWeights(args.dataset, args.layer, args.limit, args.run_id, args.job_id, args.kernel)


def _jobs_filter(args: argparse.Namespace) -> ListJobs:
    return ListJobs(args.status)


def _new_priority(args: argparse.Namespace) -> SetPriority:
    return SetPriority(args.id, args.priority)


_JOB_CHANGES = (("pause", "paused"), ("resume", "resumed"), ("cancel", "cancelled"))


def _add_jobs(sub: Any) -> None:
    jobs = sub.add_parser("jobs", help="submit, list and steer training jobs")
    jsub = jobs.add_subparsers(dest="jobs_command", metavar="COMMAND", required=True)
    submitted = call_and_show("jobs.submit", views.job_changed_view("submitted"), submit_request)
    p = _reader(jsub, "submit", "queue a training job", submitted)
    p.add_argument(
        "--data",
        required=True,
        metavar="PATH",
        help="dataset file or directory (sent as an absolute path)",
    )
    p.add_argument("--name", help="a name for the job (default: the daemon's choice)")
    p.add_argument("--epochs", type=POSITIVE, metavar="N", help="epochs of the schedule")
    p.add_argument("--population", type=POSITIVE, metavar="N", help="population per record")
    p.add_argument(
        "--generations", type=POSITIVE, metavar="N", help="max generations per record per epoch"
    )
    p.add_argument(
        "--difficulty-bits", type=NATURAL, metavar="D", help="base of the difficulty schedule"
    )
    p.add_argument("--seed", type=int, metavar="N", help="RNG seed (default: drawn)")
    p.add_argument(
        "--zero-bits",
        type=NATURAL,
        metavar="K",
        help="kernel zero bits (a chip serves only its own: docs/chips.md)",
    )
    p.add_argument("--passes", type=POSITIVE, metavar="P", help="kernel passes per candidate")
    p.add_argument("--strict", action="store_true", help="abort on the first invalid row")
    p.add_argument(
        "--priority",
        type=POSITIVE,
        metavar="N",
        help="share weight 1..1000 among running jobs (default 10)",
    )
    p = _reader(
        jsub, "list", "list the jobs", call_and_show("jobs.list", views.jobs_view, _jobs_filter)
    )
    statuses = [s.value for s in JobStatus]
    p.add_argument("--status", choices=statuses, help="only the jobs in this state")
    p = _reader(jsub, "show", "show one job", call_and_show("jobs.show", views.job_view, _by_id))
    p.add_argument("id", type=NATURAL, metavar="ID", help="the job's id")
    for verb, done in _JOB_CHANGES:
        run = call_and_show(f"jobs.{verb}", views.job_changed_view(done), _by_id)
        p = _reader(jsub, verb, f"{verb} a job", run)
        p.add_argument("id", type=NATURAL, metavar="ID", help="the job's id")
    run = call_and_show("jobs.set_priority", views.job_priority_view, _new_priority)
    p = _reader(jsub, "set-priority", "change a job's priority (at once if it runs)", run)
    p.add_argument("id", type=NATURAL, metavar="ID", help="the job's id")
    p.add_argument("priority", type=POSITIVE, metavar="N", help="its share weight, 1..1000")


def _add_weights(sub: Any) -> None:
    weights = sub.add_parser("weights", help="list or export the stored weights")
    wsub = weights.add_subparsers(dest="weights_command", metavar="COMMAND", required=True)
    listed = call_and_show("weights.list", views.weights_view, _weights_filter)
    lister = _reader(wsub, "list", "list stored weights", listed)
    lister.add_argument("--limit", type=POSITIVE, metavar="N", help="at most N weights")
    lister.add_argument(
        "--run", dest="run_id", type=NATURAL, metavar="ID", help="only the weights this run found"
    )
    lister.add_argument(
        "--job", dest="job_id", type=NATURAL, metavar="ID", help="only the weights of this job"
    )
    export = wsub.add_parser("export", help="write the weights as `hasherd export` does")
    export.add_argument("--format", required=True, choices=EXPORT_FORMATS, help="file format")
    export.add_argument(
        "--out",
        required=True,
        metavar="PATH",
        help="a file with --layer, else a directory of layer_N.FORMAT",
    )
    export.set_defaults(run=cmd_weights_export)
    for p in (lister, export):
        p.add_argument("--dataset", type=NATURAL, metavar="ID", help="only this dataset")
        p.add_argument("--layer", type=NATURAL, metavar="N", help="only this layer")
        p.add_argument(
            "--kernel", metavar="SPEC", help="only this kernel: zb=K/p=P/tb=B/mem=HEX, any part"
        )


def _add_actors(sub: Any) -> None:
    actors = sub.add_parser("actors", help="list or restart the daemon's actors")
    asub = actors.add_subparsers(dest="actors_command", metavar="COMMAND", required=True)
    _reader(asub, "list", "list the actors", call_and_show("actors.list", views.actors_view))
    run = call_and_show("actors.restart", views.actor_restarted_view, _by_name)
    p = _reader(asub, "restart", "restart an actor now", run)
    p.add_argument("name", metavar="NAME", help="the actor's name (see `actors list`)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hasherctl", description="Control a running hasherd.")
    parser.add_argument(
        "--socket", metavar="PATH", help="the control socket (default: the daemon's usual path)"
    )
    parser.add_argument(
        "--timeout",
        type=_seconds("--timeout"),
        default=DEFAULT_TIMEOUT,
        metavar="S",
        help="time to wait for the daemon (default 10s)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    status = call_and_show("status", views.status_view)
    _reader(sub, "status", "the daemon's state, jobs, actors and rates", status)
    _reader(sub, "health", "exit 0 when the daemon is healthy, 1 when not", cmd_health)
    _reader(sub, "ping", "check that the daemon answers", call_and_show("ping", _pong_view))
    _add_jobs(sub)
    _add_weights(sub)
    _add_actors(sub)
    nodes = call_and_show("nodes.list", views.nodes_view)
    _reader(sub, "nodes", "the machines the actors run on, and which run where", nodes)
    ctl_flash.register(sub, _reader, call_and_show)
    ctl_validate.register(sub, _reader)
    monitor = sub.add_parser("monitor", help="a live view of jobs, actors and rates")
    monitor.add_argument(
        "--refresh",
        type=_seconds("--refresh"),
        default=5.0,
        metavar="DURATION",
        help="time between refreshes: 5, 5s, 500ms, 1m (default 5s)",
    )
    monitor.add_argument("--count", type=POSITIVE, metavar="N", help="stop after N refreshes")
    monitor.set_defaults(run=cmd_monitor)
    reload = call_and_show("reload", views.reload_view)
    _reader(sub, "reload", "apply the daemon's config file again", reload)
    _reader(sub, "version", "print hasherctl's version and the daemon's", cmd_version)
    return parser


def error(message: object) -> None:
    print(f"hasherctl: error: {views.safe(str(message))}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    path = Path(args.socket) if args.socket else discover_socket_path()
    try:
        with ControlClient(path, timeout=args.timeout) as client:
            status: int = args.run(client, args)
    except DaemonUnavailable as exc:
        error(exc)
        return EXIT_UNAVAILABLE
    except (ControlError, CommandFailed) as exc:
        error(exc)
        return EXIT_FAILED
    except UsageError as exc:
        error(exc)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `hasherctl ... | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except OSError as exc:  # a permission or connection problem is one line, never a traceback
        error(exc)
        return EXIT_FAILED
    return status


if __name__ == "__main__":
    raise SystemExit(main())
