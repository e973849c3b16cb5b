#!/usr/bin/env bash
# Installs the Debian packages the test suite needs (Debian 12 names):
#   promtool        <- prometheus   (tests/metrics: `promtool check metrics` on a scrape)
#   prometheus      <- prometheus   (tests/metrics/test_prometheus.py: a real server scraping
#                                    the daemon; a promtool from elsewhere does not bring it)
#   systemd-analyze <- systemd      (tests/systemd: unit verification, sysusers, tmpfiles)
#   bpftool         <- bpftool      (BPF map flashing)
#
# With --bench it installs instead the optional benchmark reference, which no test needs
# (`make bench-deps`; `hasherd bench --against hashcat` runs it):
#   hashcat         <- hashcat, pocl-opencl-icd, ocl-icd-libopencl1 (hashcat's CPU device:
#                      PoCL, and the OpenCL loader that --no-install-recommends leaves out)
#
# Idempotent: when every tool is already on PATH it does not touch apt at all, and it
# installs only the packages whose tool is missing. Runs as root (CI); otherwise it goes
# through sudo when there is one, and else prints what to install and exits 1.
#
# Installing `prometheus` normally starts the server. In a container (no systemd as PID 1)
# that either fails or leaves a stray daemon, so while apt runs, a policy-rc.d answering
# 101 ("action forbidden") tells invoke-rc.d / deb-systemd-invoke not to start anything.
# A policy-rc.d that was already there (Docker images ship one) is put back afterwards.
set -euo pipefail

declare -A PACKAGE_OF=(
    [promtool]=prometheus
    [prometheus]=prometheus
    [systemd-analyze]=systemd
    [bpftool]=bpftool
)
TOOLS=(promtool prometheus systemd-analyze bpftool)
if [[ "${1:-}" == "--bench" ]]; then
    PACKAGE_OF=([hashcat]="hashcat pocl-opencl-icd ocl-icd-libopencl1")
    TOOLS=(hashcat)
fi
POLICY=/usr/sbin/policy-rc.d

missing_packages() {
    local tool
    for tool in "${TOOLS[@]}"; do
        # bpftool lives in /usr/sbin, which a non-root PATH may lack.
        if ! command -v "$tool" >/dev/null 2>&1 && [[ ! -x "/usr/sbin/$tool" ]]; then
            printf '%s\n' ${PACKAGE_OF[$tool]}
        fi
    done
}

mapfile -t packages < <(missing_packages | sort -u)
if ((${#packages[@]} == 0)); then
    echo "install-system-deps: ${TOOLS[*]} present; nothing to do"
    exit 0
fi

if ((EUID != 0)); then
    if command -v sudo >/dev/null 2>&1; then
        exec sudo -- bash "$0" "$@"
    fi
    echo "install-system-deps: not root and no sudo; as root, run:" >&2
    echo "  apt-get update && apt-get install -y --no-install-recommends ${packages[*]}" >&2
    exit 1
fi

restore_policy() {
    if [[ -e "$POLICY.hasherd-saved" ]]; then
        mv -f "$POLICY.hasherd-saved" "$POLICY"
    else
        rm -f "$POLICY"
    fi
}

# A backup left by an interrupted run is the original: keep it, do not save ours over it.
if [[ -e "$POLICY" && ! -e "$POLICY.hasherd-saved" ]]; then
    cp -p "$POLICY" "$POLICY.hasherd-saved"
fi
trap restore_policy EXIT
printf '#!/bin/sh\n# written by hasherd tools/install-system-deps.sh while apt runs\nexit 101\n' \
    >"$POLICY"
chmod 755 "$POLICY"

echo "install-system-deps: installing ${packages[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${packages[@]}"

for tool in "${TOOLS[@]}"; do
    if ! command -v "$tool" >/dev/null 2>&1 && [[ ! -x "/usr/sbin/$tool" ]]; then
        echo "install-system-deps: $tool is still missing after installing ${PACKAGE_OF[$tool]}" >&2
        exit 1
    fi
done
echo "install-system-deps: done (${TOOLS[*]})"
