#!/usr/bin/env bash
# An emulated rig end to end, without hardware (docs/chips.md):
#   1. `hasherd emulate bm1370` chains on ptys: a healthy one, and one that drops nonces;
#   2. a daemon whose only evaluator is the healthy chain (baud switch included), training
#      a few records of the embedded sample at the emulator's zero bits;
#   3. `hasherctl validate`: the chain against numba, in the daemon;
#   4. the per-chip metrics, scraped;
#   5. `hasherd validate` with the dropping chain against numba: it is flagged.
#
#   tools/rig-demo.sh [RECORDS] [PASSES]      (defaults 6 and 21)
#
# Prints every step's output; exits 1 if a step fails. Everything lives in a temporary
# directory that is removed at the end.
set -euo pipefail

records=${1:-6}
passes=${2:-21}
here=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-$here/.venv/bin/python}
work=$(mktemp -d "${TMPDIR:-/tmp}/rig-XXXXXX")
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# arrays, not functions: a function run with & is a subshell, and its $! is not python's
hasherd=("$py" -m hasherd.cli.main)
hasherctl=("$py" -m hasherd.cli.ctl --socket "$work/control.sock")

emulate() {  # emulate NAME ARGS...: start an emulator; its pty path goes to $work/NAME.path
    local name=$1
    shift
    "${hasherd[@]}" emulate bm1370 "$@" >"$work/$name.path" 2>"$work/$name.log" &
    pids+=($!)  # not in $(...): a subshell would lose the pid, and the emulator with it
    for _ in $(seq 100); do
        [[ -s "$work/$name.path" ]] && break
        sleep 0.1
    done
}

emulate good --chips 2 --zero-bits 4 --sweep-limit 1024
emulate bad --chips 1 --zero-bits 4 --sweep-limit 1024 --fault drop_nonce
good=$(head -n 1 "$work/good.path")
bad=$(head -n 1 "$work/bad.path")
echo "== chains: healthy on $good, dropping nonces on $bad"

"$py" - "$records" >"$work/frames.json" <<'EOF'
import json, sys
from importlib import resources
from hasherd.data import load_dataset
ds = load_dataset(str(resources.files("hasherd.data").joinpath("sample")))
n = int(sys.argv[1])
print(json.dumps([{"feature_vector": [int(x) for x in ds.slots[i]],
                   "target_token": int(ds.targets[i])} for i in range(n)]))
EOF

port=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
chain() {  # chain NAME PATH [EXTRA...]: one [[devices.chips]] table
    printf '[[devices.chips]]\nname = "%s"\npath = "%s"\nzero_bits = 4\n' "$1" "$2"
    printf 'nonces_per_chip = 1024\nsweep_time = "50ms"\nquiet = "40ms"\n'
    shift 2
    printf '%s\n' "$@"
}
common() {
    cat <<EOF
[daemon]
database = "$work/hasherd.db"
status_interval = "5s"
[control]
socket = "$work/control.sock"
[metrics]
address = "127.0.0.1:$port"
[jitter]
enabled = false
[training]
epochs = 1
passes = $passes
zero_bits = 4
validation_split = 0.0
seed = 21
[validation]
enable_asic = true
retry_attempts = 0
tolerance_threshold = 0.0
[devices]
cpu_actors = 0
EOF
}
{ common; chain chain0 "$good" "chips = 2" "baud = 3125000"; } >"$work/rig.toml"

"${hasherd[@]}" run --config "$work/rig.toml" 2>"$work/daemon.log" &
daemon=$!
pids+=("$daemon")
for _ in $(seq 300); do
    "${hasherctl[@]}" actors list --json 2>/dev/null | grep -q '"state": "ready"' && break
    sleep 0.2
done
echo "== actors"
"${hasherctl[@]}" actors list
echo "== training $records records, $passes passes, difficulty 3, population 8"
start=$(date +%s.%N)
"${hasherctl[@]}" jobs submit --data "$work/frames.json" --name rig --difficulty-bits 3 --population 8
while ! "${hasherctl[@]}" jobs show 1 --json | grep -Eq '"status": "(finished|failed)"'; do sleep 1; done
end=$(date +%s.%N)
"${hasherctl[@]}" jobs show 1
"$py" -c "print(f'wall time {float($end) - float($start):.1f} s')"
echo "== weights"
"${hasherctl[@]}" weights list
echo "== hasherd verify (every weight against the reference evaluator)"
"${hasherd[@]}" verify --db "$work/hasherd.db"
echo "== hasherctl validate --job 1 (chain0 against numba, in the daemon)"
"${hasherctl[@]}" validate --job 1
echo "== chip metrics"
"$py" - "$port" <<'EOF'
import sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics").read().decode()
for line in text.splitlines():
    if line.startswith(("hasherd_chip_", "hasherd_device_", "hasherd_validation_")):
        print(line)
EOF
kill -TERM "$daemon"
if wait "$daemon"; then echo "== the daemon stopped on SIGTERM, exit 0"; else
    echo "== FAILED: the daemon did not exit 0 on SIGTERM"; exit 1; fi
echo "== hasherd validate with the chain that drops nonces (expect exit 1)"
{ common; chain dropper "$bad"; } >"$work/bad.toml"
set +e
"${hasherd[@]}" validate --db "$work/hasherd.db" --config "$work/bad.toml"
status=$?
set -e
echo "exit status $status"
[[ $status == 1 ]]
