# Helpers shared by slurm.sh, sge.sh and netns.sh (sourced, never run on its own).
# shellcheck shell=bash

# log MSG...: a line on stderr, prefixed with the calling script's name.
log() { echo "[${0##*/}] $*" >&2; }

# die MSG...: log and exit 1.
die() { log "ERROR: $*"; exit 1; }

# now: seconds since the epoch, with decimals (for the timings printed on stderr).
now() { date +%s.%N; }

# since T0: seconds elapsed since T0 (from `now`), two decimals.
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

# alive PID [COMM]: true while PID runs (and, if given, is still called COMM).
# A zombie counts as gone: PID 1 here reaps lazily, so a killed daemon can stay
# <defunct> for about a second and `kill -0` would still succeed on it.
alive() {
  local pid=${1:-} comm=${2:-} st
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  st=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) || return 1
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ] || return 1
  if [ -n "$comm" ]; then
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$comm" ] || return 1
  fi
}

# settle PID: a daemon just started as `env ... setsid NAME &` is `env` or `setsid` for a
# moment (longer on a loaded machine); wait (up to 5 s) until it has exec'd into NAME, so
# that the name checks of `alive` and `stop_pid` hold from then on.
settle() {
  local pid=$1 _
  for _ in $(seq 100); do
    case "$(cat "/proc/$pid/comm" 2>/dev/null || true)" in
      env | setsid) sleep 0.05 ;;
      *) return 0 ;;
    esac
  done
}

# wait_gone SECONDS PID...: poll until none of the PIDs is alive; false on timeout.
wait_gone() {
  local secs=$1 end pid left
  shift
  end=$(( $(date +%s%N) + secs * 1000000000 ))
  while :; do
    left=0
    for pid in "$@"; do alive "$pid" && left=1; done
    [ "$left" = 0 ] && return 0
    [ "$(date +%s%N)" -lt "$end" ] || return 1
    sleep 0.1
  done
}

# wait_for SECONDS CMD...: run CMD every 0.25 s until it succeeds; false after SECONDS.
wait_for() {
  local end=$(( $(date +%s%N) + $1 * 1000000000 ))
  shift
  until "$@"; do
    [ "$(date +%s%N)" -lt "$end" ] || return 1
    sleep 0.25
  done
}

# stop_pid COMM PID [SECONDS]: SIGTERM PID if it still is COMM, wait up to SECONDS
# (default 20), then SIGKILL and wait 5 s more. False if it would not die.
stop_pid() {
  local comm=$1 pid=$2 secs=${3:-20}
  alive "$pid" "$comm" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  wait_gone "$secs" "$pid" && return 0
  log "$comm ($pid) still alive after ${secs}s: SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  wait_gone 5 "$pid"
}

# tail_logs FILE...: the last lines of each existing file, on stderr.
tail_logs() {
  local f
  for f in "$@"; do
    [ -f "$f" ] || continue
    echo "----- tail $f -----" >&2
    tail -n 30 "$f" >&2 || true
  done
}

# need CMD...: exit 1 naming the first command that is not installed.
need() {
  local c
  for c in "$@"; do
    command -v "$c" >/dev/null 2>&1 || die "'$c' not found (.ci/install-systems.sh installs it)"
  done
}

# "${CLEAN_ENV[@]}" [VAR=VALUE...] CMD...: run CMD with a minimal environment. Daemons are
# started so: SGE's execd, for one, hands its own environment down to every job, and the
# test runner's (MULTIENGINE_DIR, VIRTUAL_ENV, ...) must not leak into what tests launch.
# (An array, not a function: `"${CLEAN_ENV[@]}" daemon &` keeps $! the daemon's pid.)
# shellcheck disable=SC2034  # used by the scripts that source this file
CLEAN_ENV=(env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8)

# abs_dir DIR: create DIR if needed and print its absolute path.
abs_dir() { mkdir -p "$1" && (cd "$1" && pwd -P); }
