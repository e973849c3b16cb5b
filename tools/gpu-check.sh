#!/usr/bin/env bash
# The CUDA evaluator on a real GPU, in one run of a few minutes (docs/gpu.md):
#
#   tools/gpu-check.sh [SECONDS]      (SECONDS per bench measurement, default 1)
#
# GPU_CHECK_BENCH (default "cuda numba") names the evaluators the bench measures beside
# the reference; "cuda" alone spares the numba evaluator's cold compile (about a minute).
#
# 1. nvidia-smi's summary and the versions in use;
# 2. `hasherd vectors check tests/data/kernel-v1.json --evaluator cuda` (every vector,
#    with and without a trace);
# 3. a check at scale against the reference evaluator (4096-candidate batches, traces,
#    several records in one launch, k = 8 and 12 scans) and throughput figures for large
#    batches (the GPU needs about 10^5 candidates in flight to fill);
# 4. `hasherd bench --evaluator cuda --evaluator numba --seconds SECONDS --json`;
# 5. the daemon with one CUDA actor and no CPU actor (`devices.gpu_actors = 1`): it trains a
#    frames dataset submitted with hasherctl, every stored weight is then checked with
#    `hasherd verify`, and it stops cleanly on SIGTERM.
#
# GPU_CHECK_STEPS (default "vectors scale bench daemon") picks the steps.
#
# Everything goes to stdout and to ${OUT:-.}/gpu-check/. Exit status 0 when the vectors and
# the scale check pass, 1 otherwise, 2 when no usable Python environment was found.
#
# Python environment, the first that works (the machine may have no network):
#   a. .venv, if it runs here (made on this machine: make deps; pip install -e '.[cuda]');
#   b. python3 as it is (a GPU image whose python3 has numba, numba-cuda and numpy), with
#      the source tree and .gpu-site/ on PYTHONPATH; .gpu-site/ holds the pure-Python
#      wheels of wheels-cuda/ (aiosqlite, pyserial, ...; made with pip download, see
#      docs/gpu.md), installed with pip --target. No venv: a venv made from a python3 that
#      is itself in a venv would not see that venv's packages;
#   c. a new .venv from PyPI (python3 -m venv .venv; pip install -e '.[cuda]'): needs
#      network, and is tried only when .venv does not exist.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BENCH_SECONDS="${1:-1}"
read -r -a BENCH_EVALUATORS <<<"${GPU_CHECK_BENCH:-cuda numba}"
VECTORS="tests/data/kernel-v1.json"
DEST="${OUT:-.}/gpu-check"
mkdir -p "$DEST"
: >"$DEST/summary.txt"

say() { printf '== %s\n' "$*" | tee -a "$DEST/summary.txt"; }
works() { [[ -x "$1" ]] && "$1" -c 'import hasherd.cli.main, numba.cuda' >/dev/null 2>&1; }

if [[ -z "${CUDA_HOME:-}" && -d /usr/local/cuda ]]; then
    export CUDA_HOME=/usr/local/cuda # where numba-cuda looks for NVVM without pip's wheels
fi

PY=""
if works .venv/bin/python; then
    PY=.venv/bin/python
elif command -v python3 >/dev/null; then
    export PYTHONPATH="$ROOT/.gpu-site:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
    if [[ -d wheels-cuda && ! -d .gpu-site ]]; then
        say "installing wheels-cuda/ into .gpu-site/ for $(command -v python3)"
        mapfile -t WHEELS < <(find wheels-cuda -maxdepth 1 -name '*.whl' ! -name 'numpy-*')
        python3 -m pip install --quiet --no-index --no-deps --no-compile --target .gpu-site \
            "${WHEELS[@]}" || say "pip could not install wheels-cuda/"
        # numba-cuda 0.30 still registers np.row_stack, which numpy 2.5 removed: a numpy
        # wheel of 2.4 in wheels-cuda/ then goes in front of python3's own.
        if ! python3 -c 'import numpy; numpy.row_stack' 2>/dev/null && ls wheels-cuda/numpy-* >/dev/null 2>&1; then
            say "python3's numpy has no row_stack (numpy >= 2.5): using $(ls wheels-cuda/numpy-*)"
            python3 -m pip install --quiet --no-index --no-deps --no-compile --target .gpu-site \
                wheels-cuda/numpy-*.whl || say "pip could not install the numpy wheel"
        fi
    fi
    if works "$(command -v python3)"; then
        PY="$(command -v python3)"
    else
        say "python3 cannot import hasherd and numba.cuda:"
        python3 -c 'import hasherd.cli.main, numba.cuda' 2>&1 | tail -3 | tee -a "$DEST/summary.txt" || true
    fi
fi
if [[ -z "$PY" && ! -e .venv ]]; then
    say "no usable environment; trying a new .venv from PyPI (needs network)"
    if python3 -m venv .venv && .venv/bin/python -m pip install --quiet -e '.[cuda]' &&
        works .venv/bin/python; then
        PY=.venv/bin/python
    else
        say "FAILED: pip could not install hasherd[cuda] (no network?); see docs/gpu.md"
    fi
fi
if [[ -z "$PY" ]]; then
    say "FAILED: no Python environment with hasherd and numba-cuda"
    exit 2
fi
HASHERD=("$PY" -m hasherd.cli.main)
say "python: $PY"

say "nvidia-smi"
{
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,temperature.gpu,utilization.gpu --format=csv ||
        echo "nvidia-smi failed or is missing"
} 2>&1 | tee "$DEST/env.txt"

say "versions"
if ! "$PY" - <<'EOF' 2>&1 | tee -a "$DEST/env.txt"; then
import importlib.metadata as md
import sys
import numpy, numba
print("numpy", numpy.__version__, "from", numpy.__file__)
print("numba", numba.__version__)
for name in ("numba-cuda", "cuda-bindings", "llvmlite"):
    try:
        print(f"{name} {md.version(name)}")
    except md.PackageNotFoundError:
        print(f"{name} (not installed)")
print("python", sys.version.split()[0])
from numba import cuda
print("cuda.is_available():", cuda.is_available())
sys.exit(0 if cuda.detect() else 1)
EOF
    say "FAILED: numba-cuda finds no usable GPU (see $DEST/env.txt)"
    exit 1
fi

status=0
read -r -a STEPS <<<"${GPU_CHECK_STEPS:-vectors scale bench daemon}"
step() { [[ " ${STEPS[*]} " == *" $1 "* ]]; }

if step vectors; then
say "vectors check ($VECTORS) --evaluator cuda"
t0=$(date +%s)
if ! "${HASHERD[@]}" vectors check "$VECTORS" --evaluator cuda 2>&1 | tee "$DEST/vectors.txt"; then
    status=1
fi
say "vectors check took $(($(date +%s) - t0)) s"
fi

if step scale; then
say "scale check against the reference, and throughput"
if ! "$PY" - "$DEST/scale.json" <<'EOF' 2>&1 | tee "$DEST/scale.txt"; then
import json, statistics, sys, time
import numpy as np
from hasherd.backends.bench import make_memory, make_records
from hasherd.kernel.evaluators.base import make_request
from hasherd.kernel.evaluators.cuda import CudaEvaluator
from hasherd.kernel.evaluators.reference import ReferenceEvaluator

FIELDS = ("output", "golden_nonce", "ntime_roll", "final_digest", "last_key")
TRACE = ("pass_keys", "pass_nonces", "jitters", "jitter_found", "final_header")
rng = np.random.default_rng(20261126)
mem = make_memory(1000, rng)
records = make_records(mem, rng)
ev, ref = CudaEvaluator(), ReferenceEvaluator()
report = {"device": ev.device_name, "multiprocessors": ev.multiprocessors,
          "warm_up_s": ev.warm_up(), "checks": {}, "rates": {}}
print(f"{ev.device_name}: {ev.multiprocessors} SMs, warm-up {report['warm_up_s']:.1f} s")

def same(a, b, trace=False, rows=None):
    rows = slice(None) if rows is None else rows
    ok = all(np.array_equal(getattr(a, f)[rows], getattr(b, f)) for f in FIELDS)
    if trace:
        ok = ok and all(np.array_equal(getattr(a.trace, f), getattr(b.trace, f)) for f in TRACE)
    return ok

def check(name, ok):
    report["checks"][name] = bool(ok)
    print(f"{'ok  ' if ok else 'FAIL'} {name}")

for rec, slots in records.items():
    seeds = rng.integers(0, 256, size=(4096, 32), dtype=np.uint8)
    pick = np.sort(rng.choice(4096, 40, replace=False))
    got = ev.evaluate(slots, seeds, mem, 21, 0)
    check(f"k=0 {rec} 4096 vs reference (40 sampled)", same(got, ref.evaluate(slots, seeds[pick], mem, 21, 0), rows=pick))
    check(f"k=0 {rec} dsha", got.dsha == 4096 * (22 if rec == "miss" else 14))
    want = ref.evaluate(slots, seeds[pick], mem, 21, 0, trace=True)
    check(f"k=0 {rec} trace", same(ev.evaluate(slots, seeds[pick], mem, 21, 0, trace=True), want, True))
    for k, n in ((8, 24), (12, 2)):
        s = seeds[:n]
        want = ref.evaluate(slots, s, mem, 21, k, trace=True)
        check(f"k={k} {rec} {n} traced vs reference", same(ev.evaluate(slots, s, mem, 21, k, trace=True), want, True))
        check(f"k={k} {rec} {n} untraced", same(ev.evaluate(slots, s, mem, 21, k), want))
    s = seeds[:8]
    want = ref.evaluate(slots, s, mem, 5, 7, trace=True, nonce_space=40)
    got = ev.evaluate(slots, s, mem, 5, 7, trace=True, nonce_space=40)
    check(f"ntime roll {rec}", same(got, want, True) and int(want.ntime_roll.max()) > 0)

reqs = []
for r in range(16):
    slots = records["miss" if r % 2 else "zone1_hit"].copy()
    slots[2] = r
    reqs.append(make_request(slots, rng.integers(0, 256, size=(4096, 32), dtype=np.uint8), mem, 21, 0))
many = ev.evaluate_many(reqs)
check("evaluate_many 16 x 4096 equals one call each",
      all(same(m, ev.evaluate_request(q)) for m, q in zip(many, reqs)))

def rate(label, fn, candidates, dsha_of):
    fn()
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        res = fn()
        times.append(time.perf_counter() - t0)
    t = statistics.median(times)
    report["rates"][label] = {"candidates_per_s": candidates / t, "dsha_per_s": dsha_of(res) / t, "seconds": t}
    print(f"{label:<44} {candidates / t / 1e6:8.2f} M cand/s {dsha_of(res) / t / 1e9:7.2f} G dsha/s")

miss = records["miss"]
for n in (256, 4096):
    seeds = rng.integers(0, 256, size=(n, 32), dtype=np.uint8)
    rate(f"k=0 evaluate, miss, {n}", lambda s=seeds: ev.evaluate(miss, s, mem, 21, 0), n, lambda r: r.dsha)
for count in (16, 64):
    batch = [make_request(miss, rng.integers(0, 256, size=(4096, 32), dtype=np.uint8), mem, 21, 0) for _ in range(count)]
    rate(f"k=0 evaluate_many, miss, {count} x 4096", lambda b=batch: ev.evaluate_many(b), count * 4096, lambda r: sum(x.dsha for x in r))
seeds = rng.integers(0, 256, size=(2048, 32), dtype=np.uint8)
rate("k=8 evaluate, miss, 2048", lambda: ev.evaluate(miss, seeds, mem, 21, 8), 2048, lambda r: r.dsha)
print("pool and cache:", ev.stats())
with open(sys.argv[1], "w") as f:
    json.dump(report, f, indent=2)
sys.exit(0 if all(report["checks"].values()) else 1)
EOF
    status=1
fi
fi

if step bench; then
BENCH_ARGS=()
for name in "${BENCH_EVALUATORS[@]}"; do
    BENCH_ARGS+=(--evaluator "$name")
done
say "bench ${BENCH_ARGS[*]} --seconds $BENCH_SECONDS --json"
"${HASHERD[@]}" bench "${BENCH_ARGS[@]}" --seconds "$BENCH_SECONDS" --json \
    >"$DEST/bench.json" 2>"$DEST/bench.log" || { cat "$DEST/bench.log"; status=1; }
"$PY" - "$DEST/bench.json" <<'EOF' 2>&1 | tee -a "$DEST/summary.txt" || true
import json, sys
rep = json.load(open(sys.argv[1]))
for name, e in [("reference", rep["baseline"]), *rep["evaluators"].items()]:
    for rec, fig in (("miss", e), ("zone1_hit", e["zone1_hit"])):
        print(f"{name:<10} {rec:<10} {fig['candidates_per_s'] / 1e6:9.3f} M cand/s  "
              f"population {fig['population']}  startup {e['startup_s']:.1f} s ({e['startup_kind']})")
EOF
fi

if step daemon; then
    say "daemon: one CUDA actor trains 400 frames, then hasherd verify"
    bash tools/gpu-daemon-step.sh "$PY" "$DEST" || status=1
fi

say "$([[ $status -eq 0 ]] && echo "all checks passed" || echo "FAILED: see $DEST")"
exit "$status"
