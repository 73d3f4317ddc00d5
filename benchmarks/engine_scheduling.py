"""All-engine ``execute('pass')`` with the engines as ordinary threads and as SCHED_BATCH,
interleaved in one cluster (Linux).

    python benchmarks/engine_scheduling.py                 # 128 engines, 3 pairs of rounds
    python benchmarks/engine_scheduling.py -n 2 --calls 2000 --one   # 1-engine latency

One ``Cluster(n=N)``; each round first sets the scheduling policy of every thread of
every engine process (main, heartbeat, libzmq's I/O thread) from here, then times
``--calls`` blocking calls after 5 untimed ones. Rounds alternate between the policies,
so a machine whose load drifts (a shared one) weighs on both alike. For each round it
prints the median and p10/p90 of the calls, the engines' CPU per command (user +
system of all their threads, from /proc, divided by calls and engines), the
controller's CPU per call and the engines' context switches per command (voluntary +
involuntary, from /proc/PID/task/*/status). Engines run as SCHED_BATCH by default (the
``batch_scheduling`` setting); the policy set here overrides it for the round.

Take ``flock /tmp/bench.lock`` around it on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import multiengine

POLICIES = {"ordinary": getattr(os, "SCHED_OTHER", 0), "batch": getattr(os, "SCHED_BATCH", 3)}


def threads(pid: int) -> list[int]:
    return [int(t) for t in os.listdir(f"/proc/{pid}/task")]


def set_policy(pids: list[int], policy: int) -> None:
    for pid in pids:
        for tid in threads(pid):
            os.sched_setscheduler(tid, policy, os.sched_param(0))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of every thread of ``pid``."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def switches(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        for tid in threads(pid):
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                total += sum(int(line.split()[1]) for line in f if "ctxt_switches" in line)
    return total


def one_round(call: Callable[[], Any], calls: int, engines: list[int], controller: int) -> str:
    for _ in range(5):
        call()
    engine_cpu = sum(map(cpu_seconds, engines))
    controller_cpu = cpu_seconds(controller)
    switched = switches(engines)
    samples = []
    for _ in range(calls):
        t = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t)
    per_cmd = (sum(map(cpu_seconds, engines)) - engine_cpu) / calls / len(engines) * 1e6
    per_call = (cpu_seconds(controller) - controller_cpu) / calls * 1e6
    per_switch = (switches(engines) - switched) / calls / len(engines)
    samples.sort()
    return (
        f"median {statistics.median(samples) * 1e3:6.2f} ms (p10 {samples[calls // 10] * 1e3:.2f}, "
        f"p90 {samples[9 * calls // 10] * 1e3:.2f}); engine CPU {per_cmd:4.0f} µs per command, "
        f"controller {per_call:5.0f} µs per call, {per_switch:.2f} context switches per command"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=128, help="engines")
    parser.add_argument("--pairs", type=int, default=3, help="rounds of each policy")
    parser.add_argument("--calls", type=int, default=80, help="timed calls per round")
    parser.add_argument("--one", action="store_true", help="call engine 0 only")
    args = parser.parse_args()
    if not hasattr(os, "SCHED_BATCH"):
        print("engine_scheduling: SCHED_BATCH is Linux's", file=sys.stderr)
        return 2
    print(
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}, multiengine from "
        f"{os.path.dirname(multiengine.__file__)}",
        flush=True,
    )
    with multiengine.Cluster(n=args.n, timeout=120) as cluster:
        mec = cluster.multiengine_client()
        controller = mec.status()["pid"]
        engines = list(cluster.engine_pids().values())
        targets = 0 if args.one else None

        def call() -> None:
            mec.execute("pass", targets=targets)

        for i in range(args.pairs):
            order = list(POLICIES) if i % 2 == 0 else list(reversed(POLICIES))
            for name in order:
                set_policy(engines, POLICIES[name])
                line = one_round(call, args.calls, engines, controller)
                print(f"{name:>8}: {line}", flush=True)
        mec.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
