#!/usr/bin/env bash
# Time for a fresh process to get its first numba result: with numba's on-disk cache
# (cached kernels), and cold (NUMBA_CACHE_DIR pointed at a fresh empty directory).
#
#   tools/bench-startup.sh [--no-cold] [RUNS]
#
# RUNS (default 3) cached runs are made after one run that fills the cache if needed; the
# median is printed. The time is measured from just before the interpreter starts to the
# first evaluate() result (one batch of 64 candidates, k = 0), so it includes interpreter
# start-up, imports and the kernel load or compile. The cold run takes minutes.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -x "$ROOT/.venv/bin/python" ]]; then
    PY="$ROOT/.venv/bin/python"
else
    PY="python3"
fi

COLD=1
if [[ "${1:-}" == "--no-cold" ]]; then
    COLD=0
    shift
fi
RUNS="${1:-3}"

# Prints "<seconds since T0> <startup kind>" for one fresh process.
PROBE='
import os, sys, time
import numpy as np
from hasherd.backends import create
ev = create("numba")
ev.evaluate([0] * 12, np.zeros((64, 32), dtype=np.uint8), [])
elapsed = time.time() - float(os.environ["BENCH_T0"])
mod = sys.modules["hasherd.kernel.numba_kernels"]
st = mod.run_k0.stats
kind = "compile" if sum(st.cache_misses.values()) else "cache-load"
print(f"{elapsed:.3f} {kind}")
'

probe() {
    BENCH_T0="$(date +%s.%N)" "$PY" -c "$PROBE"
}

cd "$ROOT"
echo "python: $PY"
first="$(probe)"
echo "first run (fills the cache if needed): ${first% *} s (${first#* })"

times=()
for ((i = 1; i <= RUNS; i++)); do
    out="$(probe)"
    echo "cached run $i: ${out% *} s (${out#* })"
    times+=("${out% *}")
done
median="$(printf '%s\n' "${times[@]}" | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}')"
echo "first numba result, cached kernels: ${median} s (median of $RUNS)"

if [[ "$COLD" == 1 ]]; then
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    out="$(NUMBA_CACHE_DIR="$tmp" probe)"
    echo "first numba result, cold compile (empty NUMBA_CACHE_DIR): ${out% *} s (${out#* })"
fi
