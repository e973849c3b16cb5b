"""What ``hasherctl`` prints: the daemon's results as sections (lines, key/value pairs,
tables), drawn as rich tables on a terminal and as plain aligned text otherwise.

Plain text is for pipes and journals: one record a line, columns separated by two or more
spaces, an empty cell shown as ``-`` so every line has the same number of fields, and
free text (names, paths, errors) in the last columns. The views read only the documented
result fields and ignore the rest; a missing field raises ``KeyError`` or ``TypeError``,
which ``hasherctl`` reports as a malformed reply.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hasherd.storage.rows import Kernel
from hasherd.storage.sizes import human_bytes
from hasherd.storage.status import JobStatus

if TYPE_CHECKING:
    from rich.console import RenderableType


@dataclass(frozen=True)
class Line:
    text: str


@dataclass(frozen=True)
class Pairs:
    rows: Sequence[tuple[str, str]]


@dataclass(frozen=True)
class Table:
    headers: Sequence[str]
    rows: Sequence[Sequence[str]]
    title: str | None = None


Section = Line | Pairs | Table


# -- values --------------------------------------------------------------------------------


def safe(text: str) -> str:
    """``text`` with every unprintable character (newlines, ANSI escapes, other control
    characters) shown as its Python escape: a name or a message from the daemon can
    never move the cursor, recolour the terminal or forge a line."""
    if text.isprintable():
        return text
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
    )


def cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def rate(value: float) -> str:
    """A per-second figure with an SI suffix: ``987.6``, ``12.35k``, ``4.56M``, ``1.20G``."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{suffix}"
    return f"{value:.1f}"


def duration(seconds: float) -> str:
    """``4.2s``, ``2m03s``, ``1h02m03s``, ``3d04h05m``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h{minutes:02d}m"
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s"


def when(unix: float | None) -> str:
    """Local time, to the second (``-`` when unknown)."""
    if unix is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(unix))


def options_text(options: Mapping[str, Any]) -> str:
    parts = [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in options.items()]
    return " ".join(parts) or "-"


def job_counts(jobs: Mapping[str, int]) -> str:
    return ", ".join(f"{jobs[k]} {k}" for k in JobStatus)


# -- jobs ------------------------------------------------------------------------------------

JOB_HEADERS = (
    "ID",
    "STATUS",
    "EPOCH",
    "D",
    "RECORDS",
    "WON",
    "CAND/S",
    "PRIO",
    "SHARE",
    "CREATED",
    "NAME",
    "DATA",
)


def _progress_cells(progress: Mapping[str, Any] | None) -> list[str]:
    if progress is None:
        return ["-"] * 5
    p = progress
    return [
        f"{p['epoch']}/{p['epochs']}",
        str(p["difficulty_bits"]),
        f"{p['records_done']}/{p['records_todo']}",
        f"{p['records_won']}/{p['records_total']}",
        rate(p["candidates_per_s"]),
    ]


def share(lease: Mapping[str, Any] | None) -> str:
    """A running job's share of its devices, ``62%`` (``-`` when it does not run)."""
    return "-" if lease is None else f"{lease['share']:.0%}"


def job_row(job: Mapping[str, Any]) -> list[str]:
    # priority and lease: absent from a daemon older than the shares (shown as -)
    return [
        str(job["id"]),
        job["status"],
        *_progress_cells(job["progress"]),
        cell(job.get("priority")),
        share(job.get("lease")),
        when(job["created_at"]),
        cell(job["name"]),
        cell(job["data"]),
    ]


def jobs_view(result: Mapping[str, Any]) -> list[Section]:
    jobs = result["jobs"]
    if not jobs:
        return [Line("no jobs")]
    return [Table(JOB_HEADERS, [job_row(j) for j in jobs])]


def progress_text(p: Mapping[str, Any]) -> str:
    return (
        f"epoch {p['epoch']}/{p['epochs']} D={p['difficulty_bits']}: "
        f"{p['records_done']}/{p['records_todo']} records this epoch, "
        f"{p['records_won']}/{p['records_total']} hold a winner, "
        f"{p['candidates']} candidates ({rate(p['candidates_per_s'])}/s)"
    )


def job_view(result: Mapping[str, Any]) -> list[Section]:
    job = result["job"]
    progress = job["progress"]
    rows = [
        ("id", str(job["id"])),
        ("name", cell(job["name"])),
        ("status", job["status"]),
        ("data", cell(job["data"])),
        ("dataset", cell(job["dataset_id"])),
        ("run", cell(job["run_id"])),
        ("created", when(job["created_at"])),
        ("updated", when(job["updated_at"])),
        ("options", options_text(job["options"])),
        ("priority", cell(job.get("priority"))),
        ("share", share(job.get("lease"))),
        ("progress", progress_text(progress) if progress else "-"),
        ("error", cell(job["error"])),
    ]
    return [Pairs(rows)]


def job_changed_view(verb: str) -> Callable[[Mapping[str, Any]], list[Section]]:
    """The one-line answer to submit, pause, resume and cancel."""

    def view(result: Mapping[str, Any]) -> list[Section]:
        job = result["job"]
        return [Line(f"job {job['id']} {verb}: {job['name']} is {job['status']} ({job['data']})")]

    return view


def job_priority_view(result: Mapping[str, Any]) -> list[Section]:
    """The one-line answer to set-priority."""
    job = result["job"]
    return [
        Line(
            f"job {job['id']} priority {job['priority']}: {job['name']} is {job['status']} "
            f"({job['data']})"
        )
    ]


# -- actors ----------------------------------------------------------------------------------

ACTOR_HEADERS = (
    "NAME",
    "KIND",
    "STATE",
    "MAILBOX",
    "IN-FLIGHT",
    "THREADS",
    "JOBS",
    "CANDIDATES",
    "DSHA",
    "FAILURES",
    "RESTARTS",
    "BUSY",
    "ERRORS",
    "LAST-ERROR",
)


def errors_text(errors: Mapping[str, int]) -> str:
    return ",".join(f"{kind}={count}" for kind, count in sorted(errors.items())) or "-"


def actor_row(a: Mapping[str, Any]) -> list[str]:
    return [
        a["name"],
        a["kind"],
        a["state"],
        f"{a['mailbox']}/{a['mailbox_capacity']}",
        str(a["in_flight"]),
        str(a["threads"]),
        str(a["jobs"]),
        str(a["candidates"]),
        str(a["dsha"]),
        str(a["failures"]),
        str(a["restarts"]),
        duration(a["busy_seconds"]),
        errors_text(a["errors"]),
        cell(a["last_error"]),
    ]


def actors_table(actors: Iterable[Mapping[str, Any]], title: str | None = None) -> Table:
    return Table(ACTOR_HEADERS, [actor_row(a) for a in actors], title)


def actors_view(result: Mapping[str, Any]) -> list[Section]:
    """``actors list``: the actors table with where each runs (NODE, after STATE;
    ``local`` from a daemon that predates clusters)."""
    actors = result["actors"]
    if not actors:
        return [Line("no actors")]
    headers = (*ACTOR_HEADERS[:3], "NODE", *ACTOR_HEADERS[3:])
    rows = [[*r[:3], str(a.get("node", "local")), *r[3:]] for a in actors for r in [actor_row(a)]]
    return [Table(headers, rows)]


NODE_HEADERS = ("NODE", "ALIVE", "ADDRESS", "CPUS", "GPUS", "WORKING", "ACTORS")


def nodes_view(result: Mapping[str, Any]) -> list[Section]:
    """``nodes``: one row per node; ALIVE is the cluster's word (``-``: not asked or
    no answer), WORKING counts its actors that are READY or BUSY."""

    def number(v: Any) -> str:
        return "-" if v is None else f"{v:g}"

    rows = [
        [
            n["name"],
            "-" if n["alive"] is None else ("yes" if n["alive"] else "NO"),
            n["address"] or "-",
            number(n["cpus"]),
            number(n["gpus"]),
            f"{n['working']}/{len(n['actors'])}",
            ",".join(n["actors"]) or "-",
        ]
        for n in result["nodes"]
    ]
    sections: list[Section] = [Table(NODE_HEADERS, rows)]
    if result.get("cluster_error"):
        sections.append(Line(f"cluster: {result['cluster_error']}"))
    return sections


def actor_restarted_view(result: Mapping[str, Any]) -> list[Section]:
    a = result["actor"]
    return [Line(f"actor {a['name']} restarted: {a['state']}, {a['restarts']} restarts")]


# -- status, health, weights, reload, version ------------------------------------------------


def active_job_text(job: Mapping[str, Any] | None) -> str:
    if job is None:
        return "-"
    progress = job["progress"]
    detail = progress_text(progress) if progress else job["status"]
    return f"{job['id']} {job['name']}: {detail}"


def running_jobs(result: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """``status``'s running jobs: ``active_jobs``, or the one ``active_job`` of a daemon
    older than several jobs at once."""
    if "active_jobs" in result:
        jobs: list[Mapping[str, Any]] = result["active_jobs"]
        return jobs
    job = result["active_job"]
    return [] if job is None else [job]


def status_view(result: Mapping[str, Any]) -> list[Section]:
    rows = [
        ("version", result["version"]),
        ("pid", str(result["pid"])),
        ("state", result["state"]),
        ("uptime", duration(result["uptime_s"])),
        ("database", result["database"]),
        ("database size", human_bytes(result.get("database_bytes"))),
        ("jobs", job_counts(result["jobs"])),
        ("active job", active_job_text(result["active_job"])),
        ("candidates/s", rate(result["candidates_per_s"])),
        ("dSHA/s", rate(result["dsha_per_s"])),
    ]
    sections: list[Section] = [Pairs(rows)]
    jobs = running_jobs(result)
    if len(jobs) > 1:
        sections.append(Table(JOB_HEADERS, [job_row(j) for j in jobs], "running jobs"))
    if result["actors"]:
        sections.append(actors_table(result["actors"], "actors"))
    return sections


def health_view(result: Mapping[str, Any]) -> list[Section]:
    word = "healthy" if result["healthy"] else "unhealthy"
    reason = result["reason"]
    return [Line(f"{word}: {reason}" if reason else word)]


WEIGHT_HEADERS = (
    "ID",
    "RECORD",
    "RUN",
    "TOKEN",
    "CONTEXT",
    "LAYER",
    "KERNEL",
    "PREFIX",
    "D",
    "FITNESS",
    "GEN",
    "EPOCH",
    "VALIDATION",
    "SEED",
)


def _kernel_label(w: Mapping[str, Any]) -> str:
    """A weight's kernel in the ``--kernel`` form (``Kernel.label``)."""
    kernel = Kernel(w["passes"], w["zero_bits"], w["token_bits"], str(w["memory_id"]))
    return kernel.label


_WEIGHT_KEYS = (
    "id",
    "record_id",
    "run_id",
    "token_id",
    "context_key",
    "layer",
    "prefix_bits",
    "difficulty_bits",
    "fitness",
    "generation",
    "epoch",
    "validation",
    "seed",
)


def weights_view(result: Mapping[str, Any]) -> list[Section]:
    weights, total = result["weights"], result["total"]
    rows = [[cell(w[k]) for k in _WEIGHT_KEYS] for w in weights]
    for row, w in zip(rows, weights, strict=True):  # the kernel as --kernel takes it
        row.insert(_WEIGHT_KEYS.index("layer") + 1, _kernel_label(w))
    footer = Line(f"{len(weights)} of {total} weights")
    return [Table(WEIGHT_HEADERS, rows), footer] if rows else [footer]


def reload_view(result: Mapping[str, Any]) -> list[Section]:
    return [
        Line(f"reloaded: {' '.join(result['reloaded']) or '-'}"),
        Line(f"restart needed: {' '.join(result['restart_needed']) or '-'}"),
    ]


def monitor_frame(result: Mapping[str, Any], now: float) -> list[Section]:
    """One refresh of ``hasherctl monitor``: a headline, job counts, the running jobs,
    actors."""
    clock = time.strftime("%H:%M:%S", time.localtime(now))
    head = (
        f"{clock} hasherd {result['version']} (pid {result['pid']}) {result['state']}, "
        f"up {duration(result['uptime_s'])}, {rate(result['candidates_per_s'])} candidates/s, "
        f"{rate(result['dsha_per_s'])} dSHA/s"
    )
    sections: list[Section] = [Line(head), Line(f"jobs: {job_counts(result['jobs'])}")]
    jobs = running_jobs(result)
    if not jobs:
        sections.append(Line("active job: -"))
    else:
        title = "active job" if len(jobs) == 1 else "active jobs"
        sections.append(Table(JOB_HEADERS, [job_row(j) for j in jobs], title))
    if result["actors"]:
        sections.append(actors_table(result["actors"], "actors"))
    return sections


# -- drawing ---------------------------------------------------------------------------------


def plain(sections: Iterable[Section]) -> str:
    """Sections as plain aligned text (no trailing newline)."""
    out: list[str] = []
    for section in sections:
        if isinstance(section, Line):
            out.append(safe(section.text))
        elif isinstance(section, Pairs):
            width = max((len(k) for k, _ in section.rows), default=0)
            out.extend(f"{k:<{width}}  {safe(v)}" for k, v in section.rows)
        else:
            if section.title:
                out.append(f"{section.title}:")
            out.extend(_aligned([section.headers, *[[safe(c) for c in r] for r in section.rows]]))
    return "\n".join(out)


def _aligned(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def rich(sections: Iterable[Section]) -> RenderableType:
    """Sections as one rich renderable (tables with headers and borders)."""
    from rich.console import Group
    from rich.table import Table as RichTable
    from rich.text import Text

    parts: list[RenderableType] = []
    for section in sections:
        if isinstance(section, Line):
            parts.append(Text(safe(section.text)))
        elif isinstance(section, Pairs):
            grid = RichTable.grid(padding=(0, 2))
            grid.add_column(style="bold")
            grid.add_column()
            for k, v in section.rows:
                grid.add_row(k, Text(safe(v)))  # Text: a value's "[...]" is not markup
            parts.append(grid)
        else:
            table = RichTable(*section.headers, title=section.title, title_justify="left")
            for row in section.rows:
                table.add_row(*(Text(safe(c)) for c in row))
            parts.append(table)
    return Group(*parts)
