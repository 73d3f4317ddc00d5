#!/usr/bin/env bash
# Installs the real systems the launcher tests run against (Debian 12, as root):
# OpenMPI, Slurm + munge, Son of Grid Engine, OpenSSH, iproute2, tcpdump, and Chromium
# with its driver (the dashboard's browser tests).
# Idempotent; the daemons are started by the tests themselves (tests/systems/).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
if [ "$(id -u)" != 0 ]; then echo "install-systems: not root, nothing installed" >&2; exit 0; fi
H=$(hostname)
for p in gridengine-common gridengine-client; do
  debconf-set-selections <<SEL
$p gridengine/gridengineconfig boolean true
$p gridengine/gridenginecell string default
$p gridengine/gridenginemaster string $H
SEL
done
pkgs=(openmpi-bin libopenmpi-dev slurmctld slurmd slurm-client munge
      gridengine-master gridengine-exec gridengine-client
      openssh-server openssh-client iproute2 tcpdump procps bc
      chromium chromium-driver)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  s=$(date +%s)
  for attempt in 1 2 3; do
    if apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; then
      echo "install-systems: installed ${missing[*]} in $(( $(date +%s) - s )) s"
      exit 0
    fi
    echo "install-systems: apt failed (attempt $attempt), retrying" >&2
    sleep $(( attempt * 5 ))
  done
  # The tests that need these systems then skip, each saying loudly which binary is missing.
  echo "install-systems: WARNING: could not install ${missing[*]}; their tests will be skipped" >&2
else
  echo "install-systems: all present"
fi
