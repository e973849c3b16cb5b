"""The Grafana dashboard and the Prometheus rules, checked against a real Prometheus.

``etc/grafana/hasherd-dashboard.json`` and ``etc/prometheus/hasherd-rules.yml`` are only
useful if every query in them finds data. The live test starts a hasherd daemon training
the embedded sample corpus and Debian's ``prometheus`` on loopback, scraping it every
second with the rules loaded (evaluated every second), waits for a few scrapes, and then
runs every expression through Prometheus' HTTP API:

* every dashboard query (Grafana's ``$instance`` becomes ``.+`` and ``$__rate_interval``
  becomes ``1m``) and the selector of the ``instance`` variable must return data;
* every recording rule's expression must return data, and so must its recorded series;
* an alert expression compares against a threshold, so when the daemon is healthy it
  rightly returns nothing (``up == 0`` is empty while the daemon is up). For each alert the
  test therefore checks two things: the expression itself evaluates (status ``success``;
  its value, normally empty, is recorded), and the same expression with every comparison
  turned into a ``bool`` comparison (``up == bool 0``) returns data. The ``bool`` form
  keeps every series the comparison would filter, with value 0 or 1, so it returns data
  exactly when every metric, recording rule and ``and on (...)`` join the alert reads
  exists: the "un-thresholded" alert. Prometheus must also report every rule healthy.

The daemon runs an emulated BM1370 chain as a ``[[devices.chips]]`` device (``hasherd
emulate bm1370`` in a process of its own) and a validation (``validate.start``), so the
per-chip and validation panels have data too.

Every metric name the dashboard and the rules use must be exported by the daemon (its real
``/metrics`` scrape), or be a recording rule of the rules file, or ``up``; and every
exported name used must be documented in docs/metrics.md.

With ``HASHERD_PROM_REPORT=PATH`` the live test writes each query and the value it
returned to PATH as JSON.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hasherd.control.client import ControlClient, ControlError
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "etc" / "grafana" / "hasherd-dashboard.json"
RULES = ROOT / "etc" / "prometheus" / "hasherd-rules.yml"
PROMETHEUS_EXAMPLE = ROOT / "etc" / "prometheus" / "prometheus.yml"
METRICS_DOC = ROOT / "docs" / "metrics.md"

PROMETHEUS = shutil.which("prometheus")
HASHERD = [sys.executable, "-m", "hasherd.cli.main"]
SCRAPE_JOB = "hasherd"  # the example's job_name; the alerts select job="hasherd"

# the first test to use `live` pays for starting a daemon and Prometheus (19 s), and for
# the daemon's numba compile on a cold cache
pytestmark = pytest.mark.timeout(300)

# Grafana's variables, as the test queries them.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$instance": ".+"}


def daemon_config(d: Path, port: int, chip_path: str) -> str:
    """The test daemon's config: a CPU actor trains the sample; an emulated chain serves
    zero_bits 4 (its metrics appear once it is up, whether or not it gets work)."""
    return f"""
[daemon]
database = "{d / "hasherd.db"}"
status_interval = "1s"
shutdown_timeout = "10s"
[control]
socket = "{d / "control.sock"}"
[metrics]
address = "127.0.0.1:{port}"
[simulator]
max_concurrency = 1
[training]
validation_split = 0.0
seed = 5
[jitter]
enabled = false
[logging]
level = "info"
[validation]
max_concurrency = 1
[[devices.chips]]
name = "chain0"
path = "{chip_path}"
zero_bits = 4
chips = 2
nonces_per_chip = 1024
sweep_time = "100ms"
"""


# The job the daemon trains: the embedded sample at a difficulty that keeps it running
# (several minutes) for as long as the test needs.
JOB = {"name": "sample", "difficulty_bits": 15, "epochs": 3}
# Before it, a small job at the emulated chain's zero bits (4): its batches go to the chain
# or to the CPU actor, which serves every zero bits; its weights are then validated on the
# chain, so the chain has hashed by the time Prometheus is queried.
CHIP_JOB = {
    "name": "chip",
    "zero_bits": 4,
    "passes": 3,
    "population": 4,
    "difficulty_bits": 2,
    "epochs": 1,
    "seed": 3,
}


def prometheus_config(rules: Path, target: str) -> str:
    """Prometheus' config, as JSON (YAML accepts it): the example's job, 1 s intervals."""
    return json.dumps(
        {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rules)],
            "scrape_configs": [
                {
                    "job_name": SCRAPE_JOB,
                    "metrics_path": "/metrics",
                    "static_configs": [{"targets": [target]}],
                }
            ],
        }
    )


# -- PromQL, lexed just enough ------------------------------------------------------------

_TOKEN = re.compile(
    r"""(?P<space>\s+)
      | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
      | (?P<braces>\{(?:[^}"'`]|"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)*\})
      | (?P<range>\[[^\]]*\])
      | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+(?:ms|[smhdwy]))+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
      | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
      | (?P<compare>==|!=|>=|<=|>|<)
      | (?P<op>[-+*/%^(),@])
    """,
    re.VERBOSE,
)
_KEYWORDS = frozenset(
    {
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "bool",
        "and",
        "or",
        "unless",
        "offset",
        "atan2",
        "inf",
        "nan",
        "start",
        "end",
    }
)
_LABEL_LISTS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})


def lex(expr: str) -> list[tuple[str, str]]:
    """(kind, text) tokens; label matchers, strings and ranges are single tokens."""
    tokens, pos = [], 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None:
            raise ValueError(f"cannot lex {expr[pos:]!r} in {expr!r}")
        assert m.lastgroup is not None
        tokens.append((m.lastgroup, m.group()))
        pos = m.end()
    return tokens


def metric_names(expr: str) -> set[str]:
    """The metric (and recording rule) names an expression reads."""
    tokens = [t for t in lex(expr) if t[0] != "space"]
    names: set[str] = set()
    skip_labels = False
    depth = 0  # inside a label list such as by (a, b)
    for i, (kind, text) in enumerate(tokens):
        if depth:
            depth += text == "("
            depth -= text == ")"
            continue
        if skip_labels and text == "(":
            depth, skip_labels = 1, False
            continue
        skip_labels = False
        if kind != "ident":
            continue
        if text.lower() in _KEYWORDS:
            skip_labels = text in _LABEL_LISTS
            continue
        if i + 1 < len(tokens) and tokens[i + 1][1] == "(":
            continue  # a function or an aggregation
        if i + 1 < len(tokens) and tokens[i + 1][1] in _LABEL_LISTS:
            continue  # an aggregation written as `sum by (x) (...)`
        names.add(text)
    return names


def without_thresholds(expr: str) -> str:
    """``expr`` with ``bool`` after every comparison operator that lacks it, so that no
    comparison filters series out: ``up == 0`` becomes ``up == bool 0``."""
    tokens = lex(expr)
    out: list[str] = []
    for i, (kind, text) in enumerate(tokens):
        out.append(text)
        if kind == "compare":
            following = [t for t in tokens[i + 1 :] if t[0] != "space"]
            if not following or following[0][1] != "bool":
                out.append(" bool")
    return "".join(out)


def test_the_promql_helpers() -> None:
    expr = (
        'sum by (job, le) (rate(x_bucket{a="{b}", c!="d"}[5m] offset 1h)) > 0.5 * '
        "max_over_time(hasherd:y:rate1m[1h]) and on (instance) up == bool 1"
    )
    assert metric_names(expr) == {"x_bucket", "hasherd:y:rate1m", "up"}
    assert without_thresholds(expr).count(" bool") == 2
    assert without_thresholds('a{s!="x"} != 1e-3') == 'a{s!="x"} != bool 1e-3'
    assert metric_names("time() - z") == {"z"}


# -- The files ----------------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels(dash: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dash["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row holds its panels


def substitute(expr: str) -> str:
    for var, value in sorted(GRAFANA_VARIABLES.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(var, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr!r}"
    return expr


@dataclass
class Query:
    key: str  # panel:TITLE/REFID, variable:NAME, record:NAME, alert:NAME
    expr: str  # as written in the file (or as Prometheus loaded it)
    query: str  # what the test sends
    must_have_data: bool = True
    label: str | None = None  # a variable's label: every result must carry it
    status: str = ""
    result: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""


def dashboard_queries() -> list[Query]:
    dash, out = dashboard(), []
    for panel in panels(dash):
        for target in panel.get("targets", []):
            key = f"panel:{panel['title']}/{target['refId']}"
            out.append(Query(key, target["expr"], substitute(target["expr"])))
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            q = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", q)
            assert m, f"variable {var['name']}: expected label_values(SELECTOR, LABEL), got {q}"
            out.append(Query(f"variable:{var['name']}", q, substitute(m[1]), label=m[2]))
    return out


def test_dashboard_is_an_importable_grafana_dashboard() -> None:
    dash = dashboard()
    assert dash["uid"] == "hasherd-overview" and dash["title"] == "hasherd"
    assert dash.get("id") is None  # import assigns one
    assert isinstance(dash["schemaVersion"], int)
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    ds = variables["datasource"]
    assert (ds["type"], ds["query"]) == ("datasource", "prometheus")
    ids: list[int] = []
    for panel in panels(dash):
        where = f"panel {panel.get('id')} {panel.get('title')!r}"
        assert isinstance(panel.get("id"), int) and panel["title"], where
        ids.append(panel["id"])
        grid = panel["gridPos"]
        assert {"h", "w", "x", "y"} <= grid.keys(), where
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] + grid["w"] <= 24, where
        assert panel["datasource"]["uid"] == "${datasource}", where
        if panel["type"] == "row":
            continue
        assert panel["targets"], where
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", where
            assert target["expr"].strip() and target["refId"], where
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for var in variables.values():
        if var["type"] == "query":
            assert var["datasource"]["uid"] == "${datasource}"
    titles = [p["title"] for p in panels(dash)]
    assert len(titles) == len(set(titles)), "panel titles name the queries: keep them unique"


def test_promtool_accepts_the_rules_and_the_example_config() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail(
            "promtool not found: run `sudo tools/install-system-deps.sh` (Debian prometheus)"
        )
    for args in (["check", "rules", str(RULES)], ["check", "config", str(PROMETHEUS_EXAMPLE)]):
        done = subprocess.run(
            [promtool, *args], capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        assert "SUCCESS" in done.stdout and "WARNING" not in done.stdout + done.stderr


def test_every_alert_fires_on_its_series_and_stays_quiet_otherwise() -> None:
    """``promtool test rules`` on tests/metrics/hasherd-rules-test.yml: each alert silent on
    healthy series, then firing with its labels and rendered annotations (the values in
    them, such as 14.29 % or 100 double SHA-256/s, follow from the input series)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found: run `sudo tools/install-system-deps.sh`")
    tests = Path(__file__).with_name("hasherd-rules-test.yml")
    done = subprocess.run(
        [promtool, "test", "rules", tests.name],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tests.parent,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout
    alerts = set(re.findall(r"^\s*- alert: (\S+)", RULES.read_text(), re.MULTILINE))
    tested = set(re.findall(r"alertname: (\w+)", tests.read_text()))
    assert alerts and alerts == tested  # every alert has its test


# -- The live rig -------------------------------------------------------------------------


def _get(url: str, timeout: float = 10) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def _wait(pred: Any, what: str, timeout: float, log: Any = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got = pred()
        except (OSError, ControlError, ValueError):
            got = None
        if got:
            return got
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}" + (f"\n{log()}" if log else ""))


def _end(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


@dataclass
class Live:
    dir: Path
    api: str  # Prometheus' base URL
    metrics_url: str  # the daemon's /metrics
    rules: list[dict[str, Any]]  # /api/v1/rules, every group's rules

    def log(self) -> str:
        out = []
        for name in ("daemon.log", "prometheus.log"):
            path = self.dir / name
            if path.exists():
                out.append(f"--- {name}\n{path.read_text(errors='replace')[-3000:]}")
        return "\n".join(out)

    def query(self, promql: str) -> dict[str, Any]:
        url = f"{self.api}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        try:
            return _get(url)  # type: ignore[no-any-return]
        except urllib.error.HTTPError as exc:  # 400/422: a bad query; the body says why
            return json.loads(exc.read()) if exc.fp else {"status": "error", "error": str(exc)}

    def value(self, promql: str) -> float | None:
        got = self.query(promql)
        result = got.get("data", {}).get("result", [])
        return float(result[0]["value"][1]) if got["status"] == "success" and result else None


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    if PROMETHEUS is None:
        pytest.skip(
            "the prometheus server binary is not installed (Debian package `prometheus`; "
            "`sudo tools/install-system-deps.sh` installs it)"
        )
    d = Path(tempfile.mkdtemp(prefix="hdp-"))
    if len(str(d / "control.sock")) > 100:
        shutil.rmtree(d, ignore_errors=True)
        pytest.fail(f"{d} is too long for an AF_UNIX socket path: set a shorter TMPDIR")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        metrics_port, prom_port = free_port(), free_port()
        emulator = subprocess.Popen(
            [
                *HASHERD,
                "emulate",
                "bm1370",
                "--chips",
                "2",
                "--zero-bits",
                "4",
                "--sweep-limit",
                "1024",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        procs.append(emulator)
        assert emulator.stdout is not None
        chip_path = emulator.stdout.readline().decode().strip()
        emulator.stdout.close()
        assert chip_path.startswith("/dev/"), f"the emulator printed {chip_path!r}"
        config = d / "hasherd.toml"
        config.write_text(daemon_config(d, metrics_port, chip_path))
        with open(d / "daemon.log", "ab") as log:
            procs.append(
                subprocess.Popen([*HASHERD, "run", "--config", str(config)], stdout=log, stderr=log)
            )
        prom_cfg = d / "prometheus.json"
        prom_cfg.write_text(prometheus_config(RULES, f"127.0.0.1:{metrics_port}"))
        with open(d / "prometheus.log", "ab") as log:
            procs.append(
                subprocess.Popen(
                    [
                        PROMETHEUS,
                        f"--config.file={prom_cfg}",
                        f"--storage.tsdb.path={d / 'tsdb'}",
                        f"--web.listen-address=127.0.0.1:{prom_port}",
                        "--log.level=warn",
                    ],
                    stdout=log,
                    stderr=log,
                    cwd=d,
                )
            )
        rig = Live(
            d, f"http://127.0.0.1:{prom_port}", f"http://127.0.0.1:{metrics_port}/metrics", []
        )

        def ping() -> bool:
            if any(p.poll() is not None for p in procs):
                raise AssertionError(f"a process exited\n{rig.log()}")
            with ControlClient(d / "control.sock", timeout=10) as c:
                return bool(c.call("ping")["pong"])

        _wait(ping, "the daemon's control socket", 180, rig.log)
        sample = resources.files("hasherd.data").joinpath("sample")
        frames = d / "chip-frames.json"
        frames.write_text(
            json.dumps(
                [
                    {"feature_vector": list(range(i, i + 12)), "target_token": 1000 + i}
                    for i in range(3)
                ]
            )
        )
        # the chain works while Prometheus watches: its rates are then above 0
        _wait(
            lambda: (rig.value(f'count_over_time(up{{job="{SCRAPE_JOB}"}}[1m])') or 0) >= 2,
            "Prometheus' first scrapes",
            120,
            rig.log,
        )
        with ControlClient(d / "control.sock", timeout=20) as c:
            # first a small job at the chain's zero bits (CHIP_JOB)
            chip_job = c.call("jobs.submit", data=str(frames), **CHIP_JOB)["job"]["id"]
            _wait(
                lambda: c.call("jobs.show", id=chip_job)["job"]["status"] == "finished",
                "the chain's job",
                120,
                rig.log,
            )
            job_id = c.call("jobs.submit", data=str(sample), **JOB)["job"]["id"]
            # the chain's weights validated through the chain, against numba
            run = c.call("validate.start", job=chip_job, evaluator="chain0")["validation"]
            done = _wait(
                lambda: (
                    (v := c.call("validate.show", id=run["id"])["validation"])["state"] != "running"
                    and v
                ),
                "the validation",
                120,
                rig.log,
            )
            assert done["state"] == "finished", done["error"]
            assert (done["report"]["agree"], done["report"]["checked"]) == (3, 3), done
            _wait(
                lambda: (c.call("jobs.show", id=job_id)["job"]["progress"] or {}).get("tokens"),
                "the job to train a token",
                180,
                rig.log,
            )

        def scraped() -> bool:
            targets = _get(f"{rig.api}/api/v1/targets")["data"]["activeTargets"]
            if [t["health"] for t in targets] != ["up"]:
                return False
            n = rig.value(
                f'count_over_time(hasherd_job_tokens_trained_total{{job="{SCRAPE_JOB}"}}[1m])'
            )
            return (n or 0) >= 5  # five scrapes with the job training

        _wait(scraped, "five scrapes of the training daemon", 120, rig.log)

        def rules_evaluated() -> list[dict[str, Any]]:
            groups = _get(f"{rig.api}/api/v1/rules")["data"]["groups"]
            rules = [r for g in groups for r in g["rules"]]
            return rules if all(r.get("lastEvaluation", "").startswith("2") for r in rules) else []

        rig.rules = _wait(rules_evaluated, "the rules to be evaluated", 60, rig.log)
        time.sleep(2.0)  # two more scrapes and evaluations: rates over the recorded series
        yield rig
    finally:
        for proc in reversed(procs):
            _end(proc)
        shutil.rmtree(d, ignore_errors=True)


def rule_queries(live: Live) -> list[Query]:
    out = []
    for rule in live.rules:
        if rule["type"] == "recording":
            out.append(Query(f"record:{rule['name']}", rule["query"], rule["query"]))
            out.append(Query(f"record:{rule['name']} (series)", rule["name"], rule["name"]))
        else:
            key = f"alert:{rule['name']}"
            out.append(Query(key, rule["query"], rule["query"], must_have_data=False))
            bool_form = without_thresholds(rule["query"])
            out.append(Query(f"{key} (bool)", rule["query"], bool_form))
    return out


def test_the_rules_file_is_what_prometheus_loaded(live: Live) -> None:
    text = RULES.read_text()
    written = re.findall(r"^\s*- (record|alert): (\S+)", text, re.MULTILINE)
    loaded = [("record" if r["type"] == "recording" else "alert", r["name"]) for r in live.rules]
    assert sorted(loaded) == sorted(written)  # the API lists the groups by name
    unhealthy = [
        (r["name"], r["health"], r.get("lastError")) for r in live.rules if r["health"] != "ok"
    ]
    assert not unhealthy


def test_every_dashboard_and_rule_expression_returns_data(live: Live) -> None:
    queries = dashboard_queries() + rule_queries(live)

    def run(q: Query) -> None:
        got = live.query(q.query)
        q.status, q.error = got["status"], got.get("error", "")
        q.result = got.get("data", {}).get("result", []) if q.status == "success" else []

    pending = list(queries)
    deadline = time.monotonic() + 20  # a rule evaluated a moment after a scrape: retry
    while True:
        for q in pending:
            run(q)
        pending = [
            q for q in queries if q.status != "success" or (q.must_have_data and not q.result)
        ]
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(1.0)

    report = os.environ.get("HASHERD_PROM_REPORT")
    if report:
        Path(report).write_text(
            json.dumps(
                [
                    {
                        "key": q.key,
                        "expr": q.expr,
                        "query": q.query,
                        "status": q.status,
                        "error": q.error,
                        "must_have_data": q.must_have_data,
                        "result": [
                            {
                                "metric": {
                                    k: v
                                    for k, v in r["metric"].items()
                                    if k not in ("job", "instance")
                                },
                                "value": r["value"][1],
                            }
                            for r in q.result
                        ],
                    }
                    for q in queries
                ],
                indent=2,
            )
            + "\n"
        )

    failed = [
        f"{q.key}: {q.status} {q.error} <- {q.query}" for q in queries if q.status != "success"
    ]
    assert not failed, "\n".join(failed)
    empty = [f"{q.key}: no data <- {q.query}" for q in queries if q.must_have_data and not q.result]
    assert not empty, "\n".join(empty) + "\n" + live.log()
    for q in queries:
        if q.label:
            assert all(q.label in r["metric"] for r in q.result), q.key


def _used_names(live: Live) -> dict[str, set[str]]:
    """Metric name -> the keys of the expressions that read it."""
    used: dict[str, set[str]] = {}
    for q in dashboard_queries() + rule_queries(live):
        for name in metric_names(q.query):
            used.setdefault(name, set()).add(q.key)
    return used


def test_every_metric_name_used_is_exported(live: Live) -> None:
    with urllib.request.urlopen(live.metrics_url, timeout=10) as resp:
        families = list(text_string_to_metric_families(resp.read().decode()))
    exported = {f.name for f in families} | {s.name for f in families for s in f.samples}
    records = {r["name"] for r in live.rules if r["type"] == "recording"}
    unknown = {
        name: sorted(keys)
        for name, keys in _used_names(live).items()
        if name not in exported | records | {"up"}
    }
    assert not unknown


def _family(name: str) -> str:
    return re.sub(r"_(bucket|sum|count)$", "", name)


def test_every_metric_name_used_is_documented(live: Live) -> None:
    doc = METRICS_DOC.read_text()
    documented = set(re.findall(r"\b(hasherd_[a-z0-9_]+)", doc))
    missing = {
        name: sorted(keys)
        for name, keys in _used_names(live).items()
        if name.startswith("hasherd_")
        and name not in documented
        and _family(name) not in documented
    }
    assert not missing, f"add these to docs/metrics.md: {sorted(missing)}"
