#!/usr/bin/env bash
# Step 5 of tools/gpu-check.sh: the daemon with one CUDA actor and no CPU actor.
#
#   tools/gpu-daemon-step.sh PYTHON DEST
#
# Writes 400 random frames and a config (devices.cpu_actors = 0, gpu_actors = 1), starts
# `hasherd run`, waits for the actor, submits the frames with hasherctl, waits for the job,
# prints the job, the status and the actor metrics, stops the daemon with SIGTERM (it must
# exit 0) and runs `hasherd verify` on the database. Output goes to stdout and to
# DEST/summary.txt (the daemon's log to DEST/daemon.log). Exit 1 when any of that fails.
# GPU_STEP_CPU=1 runs the same with one CPU actor instead (a dry run without a GPU);
# GPU_STEP_BATCH sets daemon.batch (records in flight, default 64).
set -uo pipefail

PY=$1
DEST=$2
RUN="$(mktemp -d /tmp/hd-gpu-XXXXXX)" # short: AF_UNIX socket paths
trap 'rm -rf "$RUN"' EXIT
status=0
log() { tee -a "$DEST/summary.txt"; }

"$PY" - "$RUN" "${GPU_STEP_CPU:-0}" "${GPU_STEP_BATCH:-64}" <<'EOF'
import json, socket, sys
import numpy as np
run = sys.argv[1]
rng = np.random.default_rng(7)
frames = [{"feature_vector": rng.integers(0, 2**32, 12, dtype=np.uint64).tolist(),
           "target_token": int(rng.integers(0, 100_000))} for _ in range(400)]
with open(f"{run}/frames.json", "w") as f:
    json.dump(frames, f)
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
with open(f"{run}/hasherd.toml", "w") as f:
    f.write(f"""
[daemon]
database = "{run}/hasherd.db"
status_interval = "2s"
batch = {int(sys.argv[3])}
[control]
socket = "{run}/control.sock"
[metrics]
address = "127.0.0.1:{port}"
[jitter]
enabled = false
[training]
epochs = 2
difficulty_bits = 14
seed = 1
validation_split = 0.0
[devices]
cpu_actors = {1 if sys.argv[2] == "1" else 0}
gpu_actors = {0 if sys.argv[2] == "1" else 1}
""")
with open(f"{run}/port", "w") as f:
    f.write(str(port))
EOF

CTL=("$PY" -m hasherd.cli.ctl --socket "$RUN/control.sock" --timeout 30)
"$PY" -m hasherd.cli.main run --config "$RUN/hasherd.toml" >"$DEST/daemon.log" 2>&1 &
DAEMON=$!
for _ in $(seq 600); do
    "${CTL[@]}" actors list --json 2>/dev/null | grep -q '"state": "ready"' && break
    kill -0 "$DAEMON" 2>/dev/null || break
    sleep 0.5
done
"${CTL[@]}" actors list 2>&1 | log || status=1
t0=$(date +%s.%N)
"${CTL[@]}" jobs submit --data "$RUN/frames.json" --name gpu 2>&1 | log || status=1
for _ in $(seq 1200); do
    "${CTL[@]}" jobs show 1 --json 2>/dev/null | grep -Eq '"status": "(finished|failed)"' && break
    kill -0 "$DAEMON" 2>/dev/null || break
    sleep 0.5
done
t1=$(date +%s.%N)
{
    "${CTL[@]}" jobs show 1
    "${CTL[@]}" status
    "$PY" -c "print(f'job wall time {float($t1) - float($t0):.1f} s')"
    "$PY" - "$(cat "$RUN/port")" <<'EOF'
import sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=10).read()
keep = ("hasherd_actor_dsha_total", "hasherd_actor_candidates_total",
        "hasherd_actor_busy_seconds_total", "hasherd_job_tokens_trained_total")
print("\n".join(l for l in text.decode().splitlines() if l.startswith(keep)))
EOF
} 2>&1 | log
"${CTL[@]}" jobs show 1 --json 2>/dev/null | grep -q '"status": "finished"' || status=1
kill -TERM "$DAEMON" 2>/dev/null
if ! wait "$DAEMON"; then
    echo "FAILED: the daemon did not exit 0 on SIGTERM" | log
    status=1
fi
"$PY" -m hasherd.cli.main verify --db "$RUN/hasherd.db" 2>&1 | log || status=1
tail -n 5 "$DEST/daemon.log"
exit "$status"
