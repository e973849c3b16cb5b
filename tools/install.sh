#!/usr/bin/env bash
# Installs hasherd as a systemd service from this checkout, or removes it again.
#
#   tools/install.sh [--prefix DIR] [--wheel FILE] [--no-venv] [--root DIR]
#   tools/install.sh --uninstall [--purge] [--prefix DIR] [--root DIR]
#
# Install (systemd/INSTALL.md explains each step):
#   1. a virtual environment in PREFIX (default /opt/hasherd) with hasherd and its
#      dependencies, from a wheel built from this checkout (or --wheel FILE). A virtual
#      environment, because Debian 12+ and Ubuntu 24.04 refuse `pip install` into the
#      system Python (PEP 668, externally-managed-environment).
#   2. the unit, with ExecStart= and ExecReload= pointing into PREFIX, the sysusers.d,
#      tmpfiles.d and modules-load.d files, under /usr/local/lib (searched by systemd after
#      /etc, so a file of the same name in /etc still overrides ours).
#   3. the user, its groups and the directories (systemd-sysusers, systemd-tmpfiles).
#   4. /etc/hasherd/hasherd.toml, only when there is none (an upgrade keeps yours).
#   5. links to hasherd and hasherctl in /usr/local/bin.
# It neither enables nor starts the service; it prints what to run next.
#
# Uninstall removes the virtual environment, the links and the systemd files, and keeps
# the configuration and the data (/etc/hasherd, /var/lib/hasherd, the numba cache);
# --purge removes those too, and the BPF maps pinned in /sys/fs/bpf/hasherd. The hasherd
# user and group stay: files elsewhere may still belong to them.
#
# --no-venv leaves PREFIX alone (it must hold bin/hasherd already) and installs only the
# files of steps 2-5, for example after a local change to the unit. --root DIR installs
# into DIR as if it were / (a scratch root or an image being built): nothing is run
# against the live system then (no systemctl, no modprobe).
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PREFIX=/opt/hasherd
ROOT=
WHEEL=
ACTION=install
PURGE=0
VENV=1
PYTHON=${PYTHON:-python3}

LIBDIR=/usr/local/lib
BINDIR=/usr/local/bin
UNIT=$LIBDIR/systemd/system/hasherd.service
SYSUSERS=$LIBDIR/sysusers.d/hasherd.conf
TMPFILES=$LIBDIR/tmpfiles.d/hasherd.conf
MODULES=$LIBDIR/modules-load.d/hasherd.conf
CONFIG=/etc/hasherd/hasherd.toml
# the prefix the shipped unit names; replaced by PREFIX when the unit is installed
SHIPPED_PREFIX=/opt/hasherd

say() { echo "install.sh: $*"; }
die() {
    echo "install.sh: error: $*" >&2
    exit 1
}

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
    exit "${1:-0}"
}

parse_args() {
    while (($#)); do
        case $1 in
        --prefix) PREFIX=${2:?--prefix needs a directory}; shift ;;
        --prefix=*) PREFIX=${1#*=} ;;
        --root) ROOT=${2:?--root needs a directory}; shift ;;
        --root=*) ROOT=${1#*=} ;;
        --wheel) WHEEL=${2:?--wheel needs a file}; shift ;;
        --wheel=*) WHEEL=${1#*=} ;;
        --no-venv) VENV=0 ;;
        --uninstall) ACTION=uninstall ;;
        --purge) PURGE=1 ;;
        -h | --help) usage 0 ;;
        *) echo "install.sh: unknown argument: $1" >&2; usage 2 ;;
        esac
        shift
    done
    [[ $PREFIX == /* ]] || die "--prefix must be an absolute path, not $PREFIX"
    PREFIX=${PREFIX%/}
    [[ -n $PREFIX && $PREFIX != /usr && $PREFIX != /usr/local ]] ||
        die "--prefix $PREFIX: give a directory of its own, such as /opt/hasherd"
    if [[ -n $ROOT ]]; then
        ROOT=$(cd "$ROOT" && pwd) || die "--root $ROOT: no such directory"
    fi
    ((PURGE == 0)) || [[ $ACTION == uninstall ]] || die "--purge goes with --uninstall"
}

# True when the live system is the target and systemd runs it.
live_systemd() { [[ -z $ROOT && -d /run/systemd/system ]]; }

# systemd-sysusers / systemd-tmpfiles on the target, when the tool is there.
run_systemd_tool() {
    local tool=$1
    shift
    if ! command -v "$tool" >/dev/null 2>&1; then
        say "$tool not found: skipped (run it once systemd is installed)"
        return 0
    fi
    "$tool" ${ROOT:+"--root=$ROOT"} "$@"
}

# -- install ------------------------------------------------------------------------------

install_venv() {
    local venv=$ROOT$PREFIX wheel=$WHEEL tmp
    "$PYTHON" -c 'import sys, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null ||
        die "$PYTHON is not Python >= 3.11 with the venv module (Debian, Ubuntu: apt-get install python3-venv)"
    # a venv without pip is one whose creation was interrupted: make it again
    if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
        say "creating the virtual environment $PREFIX"
        "$PYTHON" -m venv --clear "$venv" ||
            die "python3 -m venv failed (Debian, Ubuntu: apt-get install python3-venv)"
    fi
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    tmp=$(mktemp -d)
    if [[ -z $wheel ]]; then
        say "building the wheel from $SRC"
        "$venv/bin/python" -m pip wheel --quiet --no-deps --wheel-dir "$tmp" "$SRC"
        wheel=$(echo "$tmp"/hasherd-*.whl)
    fi
    [[ -f $wheel ]] || die "no wheel at $wheel"
    say "installing $(basename "$wheel") and its dependencies into $PREFIX"
    "$venv/bin/python" -m pip install --quiet --upgrade "$wheel"
    # An upgrade with the same version number: pip would keep the old files.
    "$venv/bin/python" -m pip install --quiet --no-deps --force-reinstall "$wheel"
    rm -rf "$tmp"
}

# The unit with the Exec lines pointing into PREFIX.
render_unit() {
    sed -e "/^Exec/ s|$SHIPPED_PREFIX/bin/|$PREFIX/bin/|g" "$SRC/systemd/hasherd.service"
}

install_files() {
    render_unit | install -D -m 0644 /dev/stdin "$ROOT$UNIT"
    install -D -m 0644 "$SRC/systemd/hasherd.sysusers" "$ROOT$SYSUSERS"
    install -D -m 0644 "$SRC/systemd/hasherd.tmpfiles" "$ROOT$TMPFILES"
    install -D -m 0644 "$SRC/systemd/hasherd.modules-load" "$ROOT$MODULES"
    say "installed $UNIT, $SYSUSERS, $TMPFILES, $MODULES"
}

# The shipped example with the two settings a service install needs: BPF maps in the
# directory the hasherd user owns, and hasherctl for the members of group hasherd.
render_config() {
    sed -e 's|^# bpf_map_path = "/sys/fs/bpf/hasher_weights" .*|bpf_map_path = "/sys/fs/bpf/hasherd/hasher_weights"|' \
        -e '/^\[control\]/,/^\[/ s|^# group = "" .*|group = "hasherd"                      # members of this group may use hasherctl|' \
        "$SRC/etc/hasherd/hasherd.toml"
}

# The numeric id of a group in the target's /etc/group (the host's may differ under --root).
target_gid() { awk -F: -v name="$1" '$1 == name { print $3 }' "$ROOT/etc/group" 2>/dev/null; }

install_config() {
    local gid
    if [[ -e $ROOT$CONFIG ]]; then
        say "kept the existing $CONFIG"
        return 0
    fi
    gid=$(target_gid hasherd)
    render_config | install -D -m 0640 ${gid:+-g "$gid"} /dev/stdin "$ROOT$CONFIG"
    say "wrote $CONFIG (readable by group hasherd)"
}

install_links() {
    local name
    mkdir -p "$ROOT$BINDIR"
    for name in hasherd hasherctl; do
        [[ -x $ROOT$PREFIX/bin/$name ]] || die "$PREFIX/bin/$name is missing: install without --no-venv"
        ln -sfn "$PREFIX/bin/$name" "$ROOT$BINDIR/$name"
    done
    say "linked $BINDIR/hasherd and $BINDIR/hasherctl to $PREFIX/bin"
}

# Register the serial drivers' device numbers now as well as at every boot (see
# hasherd.modules-load); in a container there is no module to load, and that is fine.
load_modules() {
    if [[ -n $ROOT ]] || ! command -v modprobe >/dev/null 2>&1; then
        return 0
    fi
    modprobe -a usbserial cdc_acm 2>/dev/null ||
        say "modprobe usbserial cdc_acm failed (normal in a container): serial boards need them"
}

do_install() {
    ((VENV == 0)) || install_venv
    install_files
    # by name: a file of the same name in /etc/sysusers.d or /etc/tmpfiles.d wins
    run_systemd_tool systemd-sysusers hasherd.conf
    # /run and /sys/fs/bpf lines fail in a scratch root without those file systems; the
    # other lines are still applied.
    run_systemd_tool systemd-tmpfiles --create hasherd.conf || say "systemd-tmpfiles reported errors (above)"
    install_config
    install_links
    load_modules
    if live_systemd; then
        systemctl daemon-reload
        say "done. Check the config: hasherd check-config $CONFIG"
        say "then: systemctl enable --now hasherd   (after an upgrade: systemctl restart hasherd)"
    else
        say "done (systemd is not running here: systemctl daemon-reload was skipped)"
    fi
}

# -- uninstall ----------------------------------------------------------------------------

do_uninstall() {
    local name
    if live_systemd; then
        systemctl disable --now hasherd.service 2>/dev/null || true
    fi
    for name in hasherd hasherctl; do
        if [[ $(readlink "$ROOT$BINDIR/$name" 2>/dev/null) == "$PREFIX/bin/$name" ]]; then
            rm -f "$ROOT$BINDIR/$name"
        fi
    done
    rm -f "$ROOT$UNIT" "$ROOT$SYSUSERS" "$ROOT$TMPFILES" "$ROOT$MODULES"
    # only a virtual environment: never a directory that merely has the same name
    if [[ -f $ROOT$PREFIX/pyvenv.cfg ]]; then
        rm -rf -- "$ROOT$PREFIX"
    fi
    say "removed $PREFIX, the links in $BINDIR and the systemd files"
    if ((PURGE)); then
        rm -rf "$ROOT/etc/hasherd" "$ROOT/var/lib/hasherd" "$ROOT/var/cache/hasherd" \
            "$ROOT/var/log/hasherd" "$ROOT/run/hasherd" "$ROOT/sys/fs/bpf/hasherd"
        say "purged /etc/hasherd, /var/lib/hasherd, /var/cache/hasherd, /var/log/hasherd and /sys/fs/bpf/hasherd"
    else
        say "kept /etc/hasherd, /var/lib/hasherd and /var/cache/hasherd (--purge removes them)"
    fi
    ! live_systemd || systemctl daemon-reload
}

parse_args "$@"
if [[ -z $ROOT ]] && ((EUID != 0)); then
    die "run as root (or with --root DIR for a scratch root)"
fi
"do_$ACTION"
