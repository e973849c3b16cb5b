#!/usr/bin/env bash
# hasherd under a real systemd: boots Debian in systemd-nspawn, installs this checkout
# with tools/install.sh, and checks the service as a user meets it.
#
#   sudo tools/systemd-check.sh [--cache DIR] [--suite SUITE] [--keep]
#   make systemd-check                        (not part of `make test`)
#
# Needs root, debootstrap and systemd-nspawn (apt-get install debootstrap
# systemd-container), and the network for the Debian mirror (the first run only: the
# root file system is cached in DIR, default /var/cache/hasherd-systemd-check) and for
# PyPI (the installer's pip, at every run).
#
# Each run boots a fresh copy of the cached system, with a BPF file system mounted mode
# 0700 on /sys/fs/bpf as systemd mounts it on a host, and checks:
#   install       tools/install.sh in the container (a venv in /opt/hasherd)
#   start         `systemctl start hasherd` (Type=notify: returns at READY); time to active
#   watchdog      no restart while numba compiles on the cold cache and the first job runs
#   config-ro     /etc/hasherd is read-only inside the service
#   status-*      `hasherctl status` as root, as a member of group hasherd, and as an
#                 outsider (a clean refusal: no traceback)
#   train         a job on the shipped sample, submitted with hasherctl, finishes
#   reload-*      `systemctl reload` with a broken config fails and the daemon keeps its
#                 pid; with the config fixed it succeeds
#   restart       `systemctl restart`; kill-9: SIGKILL, Restart=on-failure brings it back
#   flash         `hasherctl flash --layer 0` pins the maps as the hasherd user
#   journal-*     errors at priority err (`journalctl -p err`), info lines at info, no
#                 second timestamp
#   security      `systemd-analyze security hasherd`: the exposure score
#   uninstall     tools/install.sh --uninstall keeps the config and the data
# One PASS or FAIL line per check, then the figures; exit status 1 if any check failed.
# --keep leaves the container's directory for inspection (its path is printed).
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=/var/cache/hasherd-systemd-check
SUITE=bookworm
MIRROR=${MIRROR:-http://deb.debian.org/debian}
KEEP=0
# minbase plus what the install needs (python3-venv, libusb for S3 boards) and the checks
PACKAGES=systemd,systemd-sysv,dbus,python3,python3-venv,libusb-1.0-0,ca-certificates,procps,iproute2
SAMPLE= # the shipped sample's 04-fan.txt in the installed package, found after the install
CONFIG=/etc/hasherd/hasherd.toml
JOB_TIMEOUT=${JOB_TIMEOUT:-900}

while (($#)); do
    case $1 in
    --cache) CACHE=${2:?}; shift ;;
    --suite) SUITE=${2:?}; shift ;;
    --keep) KEEP=1 ;;
    -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
    *) echo "systemd-check: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

((EUID == 0)) || { echo "systemd-check: run as root (debootstrap, nspawn, mount)" >&2; exit 2; }
for tool in debootstrap systemd-nspawn nsenter; do
    command -v "$tool" >/dev/null || {
        echo "systemd-check: $tool not found: apt-get install debootstrap systemd-container" >&2
        exit 2
    }
done

PASSED=0
FAILED=0
FIGURES=()
WORK=
NSPAWN=
LEADER=

log() { echo "== $*"; }
pass() { PASSED=$((PASSED + 1)); printf 'PASS  %-16s %s\n' "$1" "${*:2}"; }
fail() { FAILED=$((FAILED + 1)); printf 'FAIL  %-16s %s\n' "$1" "${*:2}"; }
check() { # check NAME DETAIL CMD...: PASS when CMD succeeds
    local name=$1 detail=$2
    shift 2
    if "$@"; then pass "$name" "$detail"; else fail "$name" "$detail"; fi
}
figure() { FIGURES+=("$1: $2"); }

# -- the container ------------------------------------------------------------------------

rootfs() { # the cached system, made once with debootstrap
    local dir=$CACHE/$SUITE stamp="$SUITE $PACKAGES"
    if [[ -f $dir/.hasherd-check && $(cat "$dir/.hasherd-check") == "$stamp" ]]; then
        log "reusing $dir" >&2
    else
        log "debootstrap $SUITE from $MIRROR into $dir (a few minutes)" >&2
        rm -rf "$dir" "$dir.partial"
        mkdir -p "$CACHE"
        debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$dir.partial" "$MIRROR" \
            >"$CACHE/debootstrap.log" 2>&1 || {
            tail -n 20 "$CACHE/debootstrap.log" >&2
            exit 2
        }
        mv "$dir.partial" "$dir"
        echo "$stamp" >"$dir/.hasherd-check"
    fi
    echo "$dir"
}

# The checkout's files (tracked and untracked, not ignored: no .venv, no caches).
copy_checkout() {
    local dest=$1
    mkdir -p "$dest"
    if git -C "$SRC" rev-parse --git-dir >/dev/null 2>&1; then
        git -C "$SRC" ls-files -z --cached --others --exclude-standard |
            (cd "$SRC" && tar --null --ignore-failed-read -T - -cf -) | tar -C "$dest" -xf -
    else
        tar -C "$SRC" --exclude=.venv --exclude=.git --exclude=__pycache__ -cf - . |
            tar -C "$dest" -xf -
    fi
}

boot() {
    local root=$1
    mkdir -p "$WORK/bpffs"
    # a BPF file system of its own, as systemd mounts one on a host: mode 0700
    mount -t bpf -o mode=700 bpf "$WORK/bpffs"
    echo hasherd-check >"$root/etc/hostname"
    # --register=no --keep-unit: no machined or host systemd needed. The capabilities a
    # host's root has and nspawn drops by default (the service's CAP_BPF comes from
    # them), and the calls nspawn's own seccomp filter refuses without CAP_SYS_ADMIN.
    systemd-nspawn -D "$root" -b --register=no --keep-unit --console=read-only \
        --resolv-conf=copy-host --bind="$WORK/bpffs:/sys/fs/bpf" \
        --capability=CAP_BPF,CAP_PERFMON,CAP_SYS_RESOURCE,CAP_NET_ADMIN \
        --system-call-filter="bpf perf_event_open" \
        >"$WORK/console.log" 2>&1 &
    NSPAWN=$!
    local state=
    for _ in $(seq 240); do
        # the container's PID 1, once nspawn's helper has exec'd systemd
        LEADER=$(ps --ppid "$NSPAWN" -o pid=,comm= | awk '$2 == "systemd" { print $1; exit }' || true)
        if [[ -n $LEADER ]]; then
            state=$(ct systemctl is-system-running 2>/dev/null || true)
            [[ $state == running || $state == degraded ]] && return 0
        fi
        kill -0 "$NSPAWN" 2>/dev/null || break
        sleep 0.5
    done
    echo "systemd-check: the container did not boot (state: ${state:-none})" >&2
    tail -n 30 "$WORK/console.log" >&2
    exit 2
}

# Run a command in the container as root, with a clean environment.
ct() {
    nsenter -t "$LEADER" -a -- env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root LANG=C.UTF-8 "$@"
}

# Run a command in the container as USER (with that user's groups).
ct_as() {
    local user=$1
    shift
    ct setpriv --reuid="$user" --regid="$user" --init-groups --reset-env -- "$@"
}

cleanup() {
    if [[ -n $NSPAWN ]] && kill -0 "$NSPAWN" 2>/dev/null; then
        kill "$NSPAWN" 2>/dev/null || true # nspawn asks the container's systemd to halt
        for _ in $(seq 60); do kill -0 "$NSPAWN" 2>/dev/null || break; sleep 0.5; done
        kill -9 "$NSPAWN" 2>/dev/null || true
    fi
    [[ -z $WORK ]] && return 0
    umount "$WORK/bpffs" 2>/dev/null || true
    if ((KEEP)); then
        echo "systemd-check: kept $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

# -- the checks ---------------------------------------------------------------------------

main_pid() { ct systemctl show -P MainPID hasherd; }
now() { date +%s.%N; }
seconds() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# READY time of the current start: from the main process's exec to active (monotonic us)
time_to_active() {
    local start active
    start=$(ct systemctl show -P ExecMainStartTimestampMonotonic hasherd)
    active=$(ct systemctl show -P ActiveEnterTimestampMonotonic hasherd)
    awk -v a="$start" -v b="$active" 'BEGIN { printf "%.2f", (b - a) / 1e6 }'
}

check_install() {
    local t0 t1
    t0=$(now)
    if ct bash /root/hasherd-src/tools/install.sh >"$WORK/install.log" 2>&1; then
        t1=$(now)
        pass install "tools/install.sh in $(seconds "$t0" "$t1") s"
    else
        fail install "tools/install.sh failed:"
        tail -n 30 "$WORK/install.log"
        exit 1
    fi
    SAMPLE=$(ct /opt/hasherd/bin/python -c \
        'import hasherd, pathlib; print(pathlib.Path(hasherd.__file__).parent / "data/sample/04-fan.txt")')
    check bpffs-mode "/sys/fs/bpf is $(ct stat -c %a /sys/fs/bpf) after tmpfiles (mounted 700)" \
        test "$(ct stat -c %a /sys/fs/bpf)" = 1711
    ct useradd --create-home member
    ct usermod -aG hasherd member
    ct useradd --create-home outsider
}

check_start() {
    local t0 t1 out
    t0=$(now)
    ct systemctl enable --now hasherd >/dev/null 2>&1 || true
    t1=$(now)
    out=$(ct systemctl is-active hasherd || true)
    figure "time to active, first start (cold numba cache)" "$(time_to_active) s from exec to READY; systemctl start returned after $(seconds "$t0" "$t1") s"
    check start "systemctl start: $out, $(time_to_active) s to READY" test "$out" = active
}

# The first start compiled numba's kernels (cold cache) while serving: had the event loop
# stalled past WatchdogSec=, systemd would have killed and restarted the daemon.
check_no_restart() {
    local n
    n=$(ct systemctl show -P NRestarts hasherd)
    check watchdog "restarts since the cold-cache start, through the first job: $n" test "$n" = 0
}

check_config_readonly() {
    local pid out
    pid=$(main_pid)
    out=$(ct nsenter -t "$pid" -m -- touch /etc/hasherd/probe 2>&1 || true)
    check config-ro "writing /etc/hasherd in the service: ${out:-it succeeded}" \
        grep -q "Read-only file system" <<<"$out"
    ct nsenter -t "$pid" -m -- rm -f /etc/hasherd/probe 2>/dev/null || true
}

status_as() { # status_as NAME USER: hasherctl status must answer
    local rc=0
    ct_as "$2" /usr/local/bin/hasherctl status >"$WORK/status-$1.out" 2>&1 || rc=$?
    check "status-$1" "hasherctl status as $2: exit $rc" test "$rc" = 0
}

check_status() {
    local rc=0 out
    status_as root root
    status_as member member
    ct_as outsider /usr/local/bin/hasherctl status >"$WORK/status-outsider.out" 2>&1 || rc=$?
    out=$(cat "$WORK/status-outsider.out")
    if ((rc != 0)) && ! grep -q Traceback <<<"$out"; then
        pass status-outsider "refused, exit $rc: $(head -n 1 <<<"$out")"
    else
        fail status-outsider "exit $rc, output:"
        sed 's/^/    /' <<<"$out" | tail -n 12
    fi
}

job_status() { ct hasherctl jobs show "$1" --json | ct python3 -c 'import json,sys; print(json.load(sys.stdin)["job"]["status"])'; }

submit_job() { # submit_job ARGS...: prints the job id
    ct hasherctl jobs submit --data "$SAMPLE" --json "$@" |
        ct python3 -c 'import json,sys; print(json.load(sys.stdin)["job"]["id"])'
}

wait_job() { # wait_job ID TIMEOUT: prints the final status
    local id=$1 deadline=$((SECONDS + $2)) status
    while ((SECONDS < deadline)); do
        status=$(job_status "$id" 2>/dev/null || echo unknown)
        case $status in finished | failed | cancelled) break ;; esac
        sleep 5
    done
    echo "$status"
}

check_train() {
    local id t0 status
    t0=$(now)
    id=$(submit_job --name check --epochs 1 --difficulty-bits 8 --population 32) || {
        fail train "jobs submit failed"
        return
    }
    status=$(wait_job "$id" "$JOB_TIMEOUT")
    figure "sample job (04-fan.txt, 1 epoch, 8 bits)" "$(seconds "$t0" "$(now)") s"
    check train "job $id on $(basename "$SAMPLE"): $status in $(seconds "$t0" "$(now)") s" \
        test "$status" = finished
}

check_reload() {
    local pid rc=0 good
    pid=$(main_pid)
    good=$(mktemp -p "$WORK")
    cp "$WORK/root$CONFIG" "$good"
    sed -i 's/^# epochs = 2 .*/epochs = 0/' "$WORK/root$CONFIG"
    ct systemctl reload hasherd >"$WORK/reload.out" 2>&1 || rc=$?
    check reload-broken "systemctl reload with training.epochs = 0: exit $rc" test "$rc" != 0
    check reload-kept "still $(ct systemctl is-active hasherd || true), pid $pid -> $(main_pid)" \
        test "$(main_pid)" = "$pid"
    cat "$good" >"$WORK/root$CONFIG"
    rc=0
    ct systemctl reload hasherd >"$WORK/reload.out" 2>&1 || rc=$?
    check reload-good "systemctl reload with the config fixed: exit $rc" test "$rc" = 0
}

wait_active() { # wait_active OLD_PID: until active with another main pid (60 s)
    local old=$1
    for _ in $(seq 120); do
        if [[ $(ct systemctl is-active hasherd || true) == active && $(main_pid) != "$old" && $(main_pid) != 0 ]]; then
            return 0
        fi
        sleep 0.5
    done
    return 1
}

check_restart() {
    local pid id t0 status
    pid=$(main_pid)
    ct systemctl restart hasherd
    check restart "pid $pid -> $(main_pid), $(time_to_active) s to READY (warm cache)" wait_active "$pid"
    figure "time to active, restart (warm numba cache)" "$(time_to_active) s"
    # a job in flight when the daemon is killed resumes after the restart
    id=$(submit_job --name resume --epochs 1 --difficulty-bits 8 --population 32)
    sleep 8
    pid=$(main_pid)
    t0=$(now)
    ct kill -9 "$pid"
    if wait_active "$pid"; then
        pass kill-9 "SIGKILL to $pid: active again as $(main_pid) after $(seconds "$t0" "$(now)") s"
    else
        fail kill-9 "SIGKILL to $pid: $(ct systemctl is-active hasherd || true)"
        return
    fi
    status=$(wait_job "$id" "$JOB_TIMEOUT")
    check resume "job $id, in flight at the kill: $status" test "$status" = finished
}

check_flash() {
    local rc=0 owner
    ct hasherctl flash --layer 0 >"$WORK/flash.out" 2>&1 || rc=$?
    owner=$(ct stat -c '%U %a' /sys/fs/bpf/hasherd/hasher_weights 2>/dev/null || echo none)
    if ((rc == 0)); then
        pass flash "hasherctl flash --layer 0: $(head -n 1 "$WORK/flash.out"); pin: $owner"
    else
        fail flash "hasherctl flash --layer 0: exit $rc"
        sed 's/^/    /' "$WORK/flash.out" | tail -n 12
    fi
}

check_journal() {
    local errors info stamped
    errors=$(ct journalctl -q -o cat -p err -u hasherd --no-pager || true)
    check journal-err "journalctl -p err -u hasherd: $(wc -l <<<"$errors" | tr -d ' ') lines, first: $(head -n 1 <<<"$errors")" \
        grep -q "check-config: error: .*training.epochs" <<<"$errors"
    info=$(ct journalctl -q -o cat -p info..info -u hasherd --no-pager | grep -m 1 "hasherd.daemon" || true)
    check journal-info "an info line at priority 6: ${info:-none}" test -n "$info"
    stamped=$(ct journalctl -q -o cat -u hasherd --no-pager | grep -cE '^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:,]+ (INFO|WARNING|ERROR)' || true)
    check journal-stamp "lines with a timestamp of their own: $stamped" test "$stamped" = 0
}

check_security() {
    local score
    ct systemd-analyze security hasherd --no-pager >"$WORK/security.out" 2>&1 || true
    # "→ Overall exposure level for hasherd.service: 2.6 OK :-)"
    score=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' "$WORK/security.out")
    figure "systemd-analyze security hasherd" "${score:-?} ($(grep -o 'Overall exposure level.*' "$WORK/security.out"))"
    check security "exposure ${score:-unknown} (at most 3.0 expected)" \
        awk -v s="${score:-99}" 'BEGIN { exit !(s <= 3.0) }'
}

check_uninstall() {
    local left
    ct bash /root/hasherd-src/tools/install.sh --uninstall >"$WORK/uninstall.log" 2>&1 || true
    left=$(ct sh -c 'ls -d /opt/hasherd /usr/local/bin/hasherctl /usr/local/lib/systemd/system/hasherd.service 2>/dev/null' || true)
    check uninstall "removed: ${left:-everything}; kept: $(ct sh -c 'ls -d /etc/hasherd/hasherd.toml /var/lib/hasherd/data' | tr '\n' ' ')" \
        test -z "$left" -a -f "$WORK/root$CONFIG" -a -d "$WORK/root/var/lib/hasherd/data"
}

main() {
    local base
    base=$(rootfs)
    mkdir -p "$CACHE"
    WORK=$(mktemp -d "$CACHE/run.XXXXXX")
    log "copying $base and the checkout into $WORK"
    cp -a "$base" "$WORK/root"
    copy_checkout "$WORK/root/root/hasherd-src"
    # a site or proxy CA the host trusts (for pip's downloads) is trusted inside too
    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
        cp /usr/local/share/ca-certificates/*.crt "$WORK/root/usr/local/share/ca-certificates/"
        chroot "$WORK/root" update-ca-certificates >/dev/null 2>&1
    fi
    log "booting $SUITE in systemd-nspawn"
    boot "$WORK/root"
    log "container up: $(ct systemctl --version | head -n 1), kernel $(uname -r), bpffs $(stat -c %a "$WORK/bpffs")"
    check_install
    check_start
    check_config_readonly
    check_status
    check_train
    check_no_restart
    check_reload
    check_restart
    check_flash
    check_journal
    check_security
    check_uninstall
    echo
    log "figures"
    printf '  %s\n' "${FIGURES[@]}"
    log "$PASSED passed, $FAILED failed"
    ((FAILED == 0))
}

main
