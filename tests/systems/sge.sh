#!/usr/bin/env bash
# A single-node Son of Grid Engine 8.1.9 (Debian's gridengine-* packages, cell "default"
# created by their postinst) for the tests, as root. Recipe: shared/recipes/sge_smoke.sh,
# without its apt purge/install: `up` only (re)configures the installed cell, so
# up/down cycles can repeat on one machine.
#   sge.sh up DIR    start sge_qmaster, configure (root jobs, 1 s scheduling, PEs
#                    make/smp/mpi, all.q on localhost with nproc slots), start sge_execd,
#                    wait until all.q@localhost is usable; print SGE_ROOT=... SGE_CELL=...
#   sge.sh down DIR  delete the jobs left, stop execd and qmaster, wait until gone. Idempotent.
set -euo pipefail
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
# shellcheck source=tests/systems/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() { echo "usage: $0 up|down DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1
dir=$(abs_dir "$2")
export SGE_ROOT=${SGE_ROOT:-/var/lib/gridengine} SGE_CELL=${SGE_CELL:-default}
common=$SGE_ROOT/$SGE_CELL/common
qspool=$(awk '$1 == "qmaster_spool_dir" { print $2 }' "$common/bootstrap" 2>/dev/null || true)
qspool=${qspool:-/var/spool/gridengine/qmaster}
espool=/var/spool/gridengine/execd   # execd_spool_dir of the cell; re-read from qmaster in `up`

qmaster_pid() { cat "$dir/qmaster.pid" 2>/dev/null || cat "$qspool/qmaster.pid" 2>/dev/null || true; }
execd_pid() { cat "$dir/execd.pid" 2>/dev/null || cat "$espool/localhost/execd.pid" 2>/dev/null || true; }
qmaster_answers() { timeout 5 qconf -sh >/dev/null 2>&1; }

# q CMD...: run an SGE client (10 s at most); its chatter on stderr only if it fails
q() {
  local out rc=0
  out=$(timeout 10 "$@" 2>&1) || rc=$?
  [ "$rc" = 0 ] || log "'$*' failed ($rc): $out"
  return "$rc"
}

# queue_ready: all.q@localhost has all its slots, a load value and no state flag
queue_ready() {
  timeout 5 qstat -f -q all.q 2>/dev/null | awk -v n="$(nproc)" '
    $1 == "all.q@localhost" && NF == 5 && $3 ~ ("/" n "$") && $4 != "-NA-" { ok = 1 }
    END { exit !ok }'
}

execd_registered() {
  alive "$(cat "$espool/localhost/execd.pid" 2>/dev/null || true)" sge_execd &&
    timeout 5 qconf -sel 2>/dev/null | grep -qx localhost
}

no_jobs() { [ -z "$(timeout 5 qstat -u '*' 2>/dev/null || true)" ]; }

on_up_exit() {
  local rc=$?
  [ "$rc" = 0 ] && return 0
  log "up failed (exit $rc); logs follow"
  tail_logs "$dir/qmaster.out" "$dir/execd.out" "$qspool/messages" "$espool/localhost/messages" \
    /tmp/qmaster_messages /tmp/execd_messages
  timeout 5 qstat -f >&2 2>&1 || true
  down || true
  exit 1
}

up() {
  need sge_qmaster sge_execd qconf qsub qstat qdel qmod
  local t0 host pid fresh=0 pe f
  t0=$(now)
  [ -s "$common/bootstrap" ] || die "no SGE cell at $common (gridengine-master's postinst creates it: .ci/install-systems.sh)"
  trap on_up_exit EXIT
  host=$(hostname)
  # act_qmaster stays empty when debconf's shared/gridenginemaster was not answered
  # (qmaster itself rewrites it as "localhost", see host_aliases)
  case $(cat "$common/act_qmaster" 2>/dev/null || true) in
    localhost | "$host") ;;
    *) echo "$host" >"$common/act_qmaster" ;;
  esac
  # the hostname resolves to 127.0.0.1, which reverse-resolves to localhost: without
  # this alias qmaster refuses the clients ("access denied ... resolved to localhost")
  [ "$(cat "$common/host_aliases" 2>/dev/null || true)" = "localhost $host" ] ||
    echo "localhost $host" >"$common/host_aliases"

  pid=$(cat "$qspool/qmaster.pid" 2>/dev/null || true)
  if alive "$pid" sge_qmaster; then
    log "sge_qmaster already running ($pid): using it"
  else
    rm -f "$qspool/qmaster.pid"
    "${CLEAN_ENV[@]}" SGE_ROOT="$SGE_ROOT" SGE_CELL="$SGE_CELL" setsid sge_qmaster </dev/null >>"$dir/qmaster.out" 2>&1
    fresh=1
  fi
  wait_for 20 qmaster_answers || die "qmaster does not answer after 20 s"
  pid=$(cat "$qspool/qmaster.pid" 2>/dev/null || true)
  alive "$pid" sge_qmaster || die "no sge_qmaster pid in $qspool/qmaster.pid"
  echo "$pid" >"$dir/qmaster.pid"
  if [ "$fresh" = 1 ]; then   # jobs spooled by an earlier run would take the slots
    timeout 10 qdel -f -u '*' >/dev/null 2>&1 || true
  fi

  # root's jobs (min_uid/min_gid 0) must be allowed BEFORE execd starts, else the
  # first root job sets all.q in error state E. login_shells NONE: `-S /bin/bash` jobs
  # run as "bash script", not as a login shell "-bash" that reads root's ~/.profile and
  # ~/.bashrc (here: `pyenv init`, whose rehash lock, left by a job killed by qdel's
  # SIGKILL, makes every later login shell wait 60 s)
  timeout 10 qconf -sconf global >"$dir/global.cur"
  if ! grep -Eq '^min_uid +0$' "$dir/global.cur" || ! grep -Eq '^min_gid +0$' "$dir/global.cur" ||
     ! grep -Eq '^login_shells +NONE$' "$dir/global.cur"; then
    sed -E 's/^(min_uid|min_gid) .*/\1 0/; s/^login_shells .*/login_shells NONE/' \
      "$dir/global.cur" >"$dir/global"   # must be named "global"
    q qconf -Mconf "$dir/global"
  fi
  f=$(awk '$1 == "execd_spool_dir" { print $2 }' "$dir/global.cur")
  espool=${f:-$espool}
  timeout 10 qconf -ssconf >"$dir/sched.cur"
  if ! grep -Eq '^schedule_interval +0:0:1$' "$dir/sched.cur" ||
     ! grep -Eq '^flush_submit_sec +1$' "$dir/sched.cur" || ! grep -Eq '^flush_finish_sec +1$' "$dir/sched.cur"; then
    sed -E 's/^schedule_interval .*/schedule_interval 0:0:1/; s/^flush_(submit|finish)_sec .*/flush_\1_sec 1/' \
      "$dir/sched.cur" >"$dir/sched"
    q qconf -Msconf "$dir/sched"
  fi
  timeout 10 qconf -ss 2>/dev/null | grep -qx localhost || q qconf -as localhost
  for pe in make smp mpi; do   # the default queue template refers to these PEs
    printf '%s\n' "pe_name $pe" "slots 999" "user_lists NONE" "xuser_lists NONE" \
      "start_proc_args NONE" "stop_proc_args NONE" "allocation_rule \$pe_slots" \
      "control_slaves TRUE" "job_is_first_task TRUE" "urgency_slots min" \
      "accounting_summary FALSE" "qsort_args NONE" >"$dir/pe_$pe"
    if timeout 10 qconf -spl 2>/dev/null | grep -qx "$pe"; then
      q qconf -Mp "$dir/pe_$pe"
    else
      q qconf -Ap "$dir/pe_$pe"
    fi
  done

  pid=$(cat "$espool/localhost/execd.pid" 2>/dev/null || true)
  if alive "$pid" sge_execd; then
    log "sge_execd already running ($pid): using it"
  else
    rm -f "$espool/localhost/execd.pid"
    # registers itself as exec host localhost; its environment is the jobs' base one
    "${CLEAN_ENV[@]}" SGE_ROOT="$SGE_ROOT" SGE_CELL="$SGE_CELL" setsid sge_execd </dev/null >>"$dir/execd.out" 2>&1
  fi
  wait_for 20 execd_registered || die "sge_execd did not start and register within 20 s"
  cat "$espool/localhost/execd.pid" >"$dir/execd.pid"

  timeout 10 qconf -sql 2>/dev/null | grep -qx all.q || EDITOR=true q qconf -aq all.q
  q qconf -mattr queue hostlist localhost all.q
  q qconf -mattr queue slots "$(nproc)" all.q
  # no load alarm: a busy test machine (load above 1.75 per core) would otherwise put
  # all.q in alarm state "a", where it takes no jobs and is not ready
  q qconf -rattr queue load_thresholds NONE all.q
  q qmod -cq all.q   # clear an error state (E) left by an earlier run
  q qmod -e all.q
  wait_for 20 queue_ready || die "all.q@localhost not ready after 20 s"
  trap - EXIT
  log "up in $(since "$t0") s"
  echo "SGE_ROOT=$SGE_ROOT"
  echo "SGE_CELL=$SGE_CELL"
}

down() {
  local t0 qpid epid
  t0=$(now)
  qpid=$(qmaster_pid)
  epid=$(execd_pid)
  if alive "$qpid" sge_qmaster && qmaster_answers; then
    if timeout 10 qdel -u '*' >/dev/null 2>&1; then
      log "deleted the jobs left"
      wait_for 10 no_jobs || timeout 10 qdel -f -u '*' >/dev/null 2>&1 || true
    fi
    alive "$epid" sge_execd && { timeout 10 qconf -kej localhost >/dev/null 2>&1 || true; }
    timeout 10 qconf -km >/dev/null 2>&1 || true
  fi
  wait_gone 20 "$qpid" "$epid" || log "qmaster/execd still alive after 20 s"
  stop_pid sge_execd "$epid" 5 || die "sge_execd ($epid) would not stop"
  stop_pid sge_qmaster "$qpid" 5 || die "sge_qmaster ($qpid) would not stop"
  rm -f "$dir/qmaster.pid" "$dir/execd.pid"
  log "down in $(since "$t0") s"
}

case $cmd in
  up) up ;;
  down) down ;;
  *) usage ;;
esac
