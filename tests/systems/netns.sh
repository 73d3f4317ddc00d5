#!/usr/bin/env bash
# N "remote hosts" for the tests, as root: network namespaces meh1..mehN on a bridge
# mebr0 (10.200.0.1/24 on the host side), host k at 10.200.0.(k+1), each with its own
# sshd (key-only root login; config, host key and pid in DIR/hK/). The namespaces share
# the filesystem, users and PIDs with the host: only the network differs.
#   netns.sh up DIR N    build them, wait until `ssh root@IP true` works on each;
#                        print HOSTS=10.200.0.2 ... and SSH_KEY=DIR/id_ed25519
#   netns.sh down DIR N  kill every process left in meh* namespaces (sshd included),
#                        delete the namespaces and the bridge. Idempotent.
set -euo pipefail
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
# shellcheck source=tests/systems/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

BRIDGE=mebr0
BRIDGE_IP=10.200.0.1
usage() { echo "usage: $0 up|down DIR N" >&2; exit 2; }
[ $# -eq 3 ] || usage
cmd=$1
dir=$(abs_dir "$2")
n=$3
if ! [[ $n =~ ^[0-9]+$ ]] || [ "$n" -lt 1 ] || [ "$n" -gt 250 ]; then usage; fi

ip_of() { echo "10.200.0.$(($1 + 1))"; }
ssh_opts=(-i "$dir/id_ed25519" -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=no
          -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o ConnectTimeout=5)

# our namespaces: meh1..mehN and any other meh<digits> left by an earlier run
namespaces() {
  { seq -f 'meh%g' 1 "$n"; ip netns list 2>/dev/null | awk '{ print $1 }' | grep -E '^meh[0-9]+$' || true; } | sort -u
}

start_host() {
  local k=$1 ns=meh$1 addr h=$dir/h$1
  addr=$(ip_of "$k")
  mkdir -p "$h"
  ssh-keygen -q -t ed25519 -N '' -C "$ns" -f "$h/host_key" </dev/null
  cat >"$h/sshd_config" <<EOF
# written by tests/systems/netns.sh
ListenAddress $addr:22
HostKey $h/host_key
PidFile $h/sshd.pid
PermitRootLogin prohibit-password
PubkeyAuthentication yes
AuthorizedKeysFile $dir/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowTcpForwarding yes
X11Forwarding no
PrintMotd no
MaxStartups 100:30:200
MaxSessions 100
Subsystem sftp internal-sftp
EOF
  ip netns add "$ns"
  ip link add "ve-$ns" type veth peer name eth0 netns "$ns"
  ip link set "ve-$ns" master "$BRIDGE" up
  ip -n "$ns" addr add "$addr/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
  ip -n "$ns" route add default via "$BRIDGE_IP"
  "${CLEAN_ENV[@]}" ip netns exec "$ns" /usr/sbin/sshd -f "$h/sshd_config" -E "$h/sshd.log" </dev/null >/dev/null 2>&1
}

on_up_exit() {
  local rc=$?
  [ "$rc" = 0 ] && return 0
  log "up failed (exit $rc); sshd logs follow"
  tail_logs "$dir"/h*/sshd.log
  down || true
  exit 1
}

up() {
  need ip ssh ssh-keygen sshd
  local t0 k addr end err hosts=()
  t0=$(now)
  if ip link show "$BRIDGE" >/dev/null 2>&1 || [ -n "$(ip netns list | grep -E '^meh[0-9]+( |$)' || true)" ]; then
    log "left over from an earlier run: $BRIDGE or meh* namespaces; removing them first"
    down
  fi
  trap on_up_exit EXIT
  mkdir -p /run/sshd   # sshd's privilege separation directory; it refuses to start without
  rm -f "$dir/id_ed25519" "$dir/id_ed25519.pub"
  ssh-keygen -q -t ed25519 -N '' -C multiengine-tests -f "$dir/id_ed25519" </dev/null
  cp "$dir/id_ed25519.pub" "$dir/authorized_keys"
  ip link add "$BRIDGE" type bridge
  ip addr add "$BRIDGE_IP/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  for k in $(seq 1 "$n"); do
    rm -rf "$dir/h$k"
    start_host "$k"
  done
  for k in $(seq 1 "$n"); do
    addr=$(ip_of "$k")
    end=$(( $(date +%s) + 20 ))
    until err=$(timeout 10 ssh "${ssh_opts[@]}" "root@$addr" true </dev/null 2>&1 >/dev/null); do
      # (root's ~/.bashrc runs for ssh commands: a stale pyenv rehash lock makes each one wait 60 s)
      [ "$(date +%s)" -lt "$end" ] || die "ssh root@$addr does not answer after 20 s: ${err:-timed out}"
      sleep 0.25
    done
    hosts+=("$addr")
  done
  trap - EXIT
  log "up ($n hosts) in $(since "$t0") s"
  echo "HOSTS=${hosts[*]}"
  echo "SSH_KEY=$dir/id_ed25519"
}

down() {
  local t0 ns k pid pids=() left
  t0=$(now)
  for ns in $(namespaces); do
    k=${ns#meh}
    # the sshd (and whatever ssh started in there: its pid is in the namespace too)
    pid=$(cat "$dir/h$k/sshd.pid" 2>/dev/null || true)
    if alive "$pid" sshd; then pids+=("$pid"); fi
    if ip netns list | grep -qE "^$ns( |$)"; then
      mapfile -t -O "${#pids[@]}" pids < <(ip netns pids "$ns" 2>/dev/null || true)
    fi
  done
  if [ ${#pids[@]} -gt 0 ]; then
    kill -TERM "${pids[@]}" 2>/dev/null || true
    if ! wait_gone 5 "${pids[@]}"; then
      kill -KILL "${pids[@]}" 2>/dev/null || true
      wait_gone 5 "${pids[@]}" || log "processes still alive: ${pids[*]}"
    fi
  fi
  for ns in $(namespaces); do
    k=${ns#meh}
    if ip netns list | grep -qE "^$ns( |$)"; then
      left=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ' || true)
      [ -z "$left" ] || log "still in $ns: $left"
      ip netns del "$ns"   # deletes its end of the veth, so the pair goes
    fi
    ip link del "ve-$ns" >/dev/null 2>&1 || true
    rm -f "$dir/h$k/sshd.pid"
  done
  if ip link show "$BRIDGE" >/dev/null 2>&1; then ip link del "$BRIDGE"; fi
  log "down in $(since "$t0") s"
}

case $cmd in
  up) up ;;
  down) down ;;
  *) usage ;;
esac
