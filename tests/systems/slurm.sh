#!/usr/bin/env bash
# A single-node Slurm cluster (slurmctld + slurmd, munge auth) for the tests, as root.
# Every file of it lives in DIR; recipe: shared/recipes (Slurm 22.05, Debian 12).
#   slurm.sh up DIR    start munged (if none runs), slurmctld and slurmd; wait until the
#                      node is idle; print SLURM_CONF=DIR/slurm.conf on stdout
#   slurm.sh down DIR  cancel the jobs left, stop slurmd, slurmctld and the munged that
#                      `up` started; wait until they are gone. Idempotent.
set -euo pipefail
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
# shellcheck source=tests/systems/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() { echo "usage: $0 up|down DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1
dir=$(abs_dir "$2")
export SLURM_CONF=$dir/slurm.conf

munge_answers() {
  alive "$(cat /run/munge/munged.pid 2>/dev/null || true)" munged && munge -n </dev/null >/dev/null 2>&1
}

munge_up() {
  if munge -n </dev/null >/dev/null 2>&1; then
    log "munged already running: using it"
    return 0
  fi
  mkdir -p /run/munge
  chown munge:munge /run/munge
  [ -s /etc/munge/munge.key ] || runuser -u munge -- /usr/sbin/mungekey --create
  "${CLEAN_ENV[@]}" runuser -u munge -- /usr/sbin/munged --force </dev/null >>"$dir/log/munged.out" 2>&1
  wait_for 5 munge_answers || die "munged did not start"
  cat /run/munge/munged.pid >"$dir/munged.pid"
}

write_conf() {
  local host cpus
  host=$(hostname -s)
  cpus=$(nproc)
  cat >"$SLURM_CONF" <<EOF
# written by tests/systems/slurm.sh
ClusterName=ci
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
KillWait=5
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

# node_idle: our daemons run, the controller that answers is ours (not another
# cluster's on the same port) and it sees the node idle
node_idle() {
  alive "$(cat "$dir/slurmctld.pid")" slurmctld || die "slurmctld exited"
  alive "$(cat "$dir/slurmd.pid")" slurmd || die "slurmd exited"
  timeout 5 scontrol show config 2>/dev/null | grep -Eq "^StateSaveLocation += $dir/state\$" &&
    [ "$(timeout 5 sinfo -h -o %T 2>/dev/null || true)" = idle ]
}

# ports_free: nothing listens on slurmctld's and slurmd's default ports yet
ports_free() {
  local busy
  busy=$(ss -Hltnp 'sport = :6817 or sport = :6818' 2>/dev/null || true)
  [ -z "$busy" ] || die "ports 6817/6818 already in use (a Slurm left running?): $busy"
}

on_up_exit() {
  local rc=$?
  [ "$rc" = 0 ] && return 0
  log "up failed (exit $rc); daemon logs follow"
  tail_logs "$dir"/log/*
  down || true
  exit 1
}

up() {
  need munge munged slurmctld slurmd sinfo squeue scancel scontrol runuser ss
  local t0
  t0=$(now)
  mkdir -p "$dir/state" "$dir/spool" "$dir/log" "$dir/run"
  ports_free
  trap on_up_exit EXIT
  munge_up
  write_conf
  "${CLEAN_ENV[@]}" SLURM_CONF="$SLURM_CONF" setsid slurmctld -D -c -i </dev/null >"$dir/log/slurmctld.out" 2>&1 &
  echo $! >"$dir/slurmctld.pid"
  settle $!
  "${CLEAN_ENV[@]}" SLURM_CONF="$SLURM_CONF" setsid slurmd -D </dev/null >"$dir/log/slurmd.out" 2>&1 &
  echo $! >"$dir/slurmd.pid"
  settle $!
  wait_for 20 node_idle || die "node not idle after 20 s (sinfo: '$(timeout 5 sinfo -h -o %T 2>&1 || true)')"
  trap - EXIT
  log "up in $(since "$t0") s"
  echo "SLURM_CONF=$SLURM_CONF"
}

no_jobs() { [ -z "$(timeout 5 squeue -h -o %i 2>/dev/null || true)" ]; }

down() {
  local t0 ids ctld pid
  t0=$(now)
  ctld=$(cat "$dir/slurmctld.pid" 2>/dev/null || true)
  if [ -f "$SLURM_CONF" ] && alive "$ctld" slurmctld; then
    ids=$(timeout 10 squeue -h -o %i 2>/dev/null || true)
    if [ -n "$ids" ]; then
      log "cancelling jobs left: $(echo "$ids" | tr '\n' ' ')"
      # shellcheck disable=SC2086  # one word per job id
      timeout 10 scancel $ids || true
      wait_for 15 no_jobs || log "jobs still in squeue after 15 s: $(timeout 5 squeue -h -o %i | tr '\n' ' ' || true)"
    fi
  fi
  stop_pid slurmd "$(cat "$dir/slurmd.pid" 2>/dev/null || true)" || die "slurmd would not stop"
  stop_pid slurmctld "$ctld" || die "slurmctld would not stop"
  rm -f "$dir/slurmd.pid" "$dir/slurmctld.pid"
  if [ -f "$dir/munged.pid" ]; then
    pid=$(cat "$dir/munged.pid")
    stop_pid munged "$pid" || die "munged would not stop"
    rm -f "$dir/munged.pid"
  fi
  log "down in $(since "$t0") s"
}

case $cmd in
  up) up ;;
  down) down ;;
  *) usage ;;
esac
