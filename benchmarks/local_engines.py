"""Many local engines on this host: how long until they are ready, and an all-engine
``execute('pass')``.

    python benchmarks/local_engines.py                  # 128 engines, 3 rounds
    python benchmarks/local_engines.py -n 64 --rounds 5
    MULTIENGINE_FORK_SERVER=0 python benchmarks/local_engines.py   # each engine a fresh Python
    python benchmarks/local_engines.py --simulated      # the controller's own cost

Each round starts a fresh ``Cluster(n=N)`` (local launcher) and reports:

* **ready**: from ``Cluster(...).start()`` (nothing running) until a new client's
  ``get_ids()`` lists all N engines;
* **execute('pass'), all engines**: median (and p90) of ``--repeat`` blocking calls on
  every engine, after 3 untimed ones;
* **CPU per call** (``*_cpu_ms``): over the timed calls, per call, the controller's
  and the engines' (all of them added up) user + system time from ``/proc``, I/O
  threads included, and this client's: on two cores the call takes at least half their
  sum, and they say which side a change made cheaper (they move far less than the
  wall time on a shared machine);
* **engines_main_cpu_ms**, **engines_io_cpu_ms**: the engines' CPU split between
  their main threads (receive, run, answer: mostly Python) and their libzmq I/O
  threads (``ZMQbg/IO/*``), all engines added up: each thread's run time as the
  scheduler counts it (``/proc/<pid>/task/<tid>/schedstat``, in nanoseconds; the
  clock-tick figures of ``stat`` are too coarse for a thread that runs in bursts of
  microseconds);
* **phases** of a call, medians, from the answer's own times (``started``: when the
  controller had sent the command to the engines; ``completed``: when it took each
  answer in): *fanout_ms* from the call until the command went out, *first_ms* from
  then until the first answer was taken in, *answers_ms* from the first answer to the
  last, *tail_ms* from the last answer until the call returned (the controller's result,
  its trip, the client's decoding): the serial parts of a call sit at both ends;
* **stop**: ``Cluster.stop()`` until every process it started has gone.

With ``--simulated``, the engines are ``benchmarks/many_engines.py``'s simulated ones
(two processes answering for 64 engines each) against a real controller, and it
reports the controller's CPU time (user + system, its I/O threads included) per
all-engine ``execute('pass')``, beside the call's median: the fan-out and the collection
of the answers, without 128 engine processes in the way.

The table shows the median over rounds. It uses only the public API, so it runs against
any tree: ``PYTHONPATH=/work/main/src`` and a branch, back to back (take
``flock /tmp/bench.lock`` around it). 128 engines hold about 2 GB of memory.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import multiengine


def one_round(n: int, repeat: int) -> dict[str, float]:
    began = time.perf_counter()
    cluster = multiengine.Cluster(n=n, timeout=120)
    cluster.start()
    try:
        client = cluster.multiengine_client()
        ids = client.get_ids()
        ready = time.perf_counter() - began
        assert len(ids) == n, f"{len(ids)} of {n} engines"
        for _ in range(3):
            client.execute("pass")
        engines = list(cluster.engine_pids().values())
        pids = {"controller": [client.status()["pid"]], "engines": engines}
        before = {k: sum(map(cpu_seconds, v)) for k, v in pids.items()}
        threads_before = engine_threads(engines)
        mine = time.process_time()
        times = []
        phases: list[tuple[float, float, float, float]] = []
        for _ in range(repeat):
            t, at = time.perf_counter(), time.time()
            result = client.execute("pass")
            times.append(time.perf_counter() - t)
            returned, own = time.time(), time.process_time()
            sent = min(s for s in result.started if s is not None)
            taken = [c for c in result.completed if c is not None]
            phases.append(
                (sent - at, min(taken) - sent, max(taken) - min(taken), returned - max(taken))
            )
            mine += time.process_time() - own  # (this bookkeeping is not the client's)
        cpu = {k: sum(map(cpu_seconds, v)) - before[k] for k, v in pids.items()}
        cpu["client"] = time.process_time() - mine
        threads = engine_threads(engines)
        cpu["engines_main"] = threads[0] - threads_before[0]
        cpu["engines_io"] = threads[1] - threads_before[1]
        times.sort()
    finally:
        t = time.perf_counter()
        cluster.stop()
        stop = time.perf_counter() - t
    return {
        "ready_s": ready,
        "execute_ms": statistics.median(times) * 1e3,
        "execute_p90_ms": times[int(0.9 * (len(times) - 1))] * 1e3,
        **{f"{k}_cpu_ms": v / repeat * 1e3 for k, v in cpu.items()},
        **{
            f"{name}_ms": statistics.median(p[i] for p in phases) * 1e3
            for i, name in enumerate(("fanout", "first", "answers", "tail"))
        },
        "stop_s": stop,
    }


def engine_threads(pids: list[int]) -> tuple[float, float]:
    """Run time in seconds of the engines' main threads and of their libzmq I/O
    threads, added up (``schedstat``: exact, where ``stat`` counts clock ticks)."""
    main = io = 0.0
    for pid in pids:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/comm") as f:
                    name = f.read().strip()
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    seconds = int(f.read().split()[0]) / 1e9
            except (FileNotFoundError, IndexError, ValueError):
                continue
            if tid == str(pid):
                main += seconds
            elif name.startswith("ZMQbg/IO"):
                io += seconds
    return main, io


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def simulated_round(n: int, repeat: int) -> dict[str, float]:
    import argparse as _argparse
    import signal
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    import many_engines as me

    options = _argparse.Namespace(
        heartbeat_period=None, heartbeat_timeout=None, ipc=False, per=me.PER_PROCESS
    )
    ctl = me.Controller(options)
    sims = []
    try:
        client = multiengine.MultiEngineClient(cluster_dir=ctl.dir, timeout=30)
        sims = [me.spawn_simulator(ctl.cdir.engine_file, k, options) for k in me.split(n, 64)]
        for sim in sims:
            assert me.read_line(sim, 60) == "ready"
        for sim in sims:
            assert sim.stdin is not None
            sim.stdin.write("go\n")
            sim.stdin.flush()
        me.wait_for(lambda: len(client.get_ids()) >= n, 60)
        for _ in range(5):
            client.execute("pass")
        cpu = me.cpu_seconds(ctl.proc.pid)
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            client.execute("pass")
            times.append(time.perf_counter() - t)
        cpu = me.cpu_seconds(ctl.proc.pid) - cpu
        client.close()
    finally:
        for sim in sims:
            me.stop_pid(sim, signal.SIGKILL)
        ctl.stop()
    return {
        "execute_ms": statistics.median(times) * 1e3,
        "controller_cpu_ms": cpu / repeat * 1e3,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=128, help="engines")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=30, help="timed executes per round")
    parser.add_argument("--simulated", action="store_true", help="simulated engines")
    args = parser.parse_args()
    if args.simulated:
        repeat = max(args.repeat, 200)
        rounds = [simulated_round(args.n, repeat) for _ in range(args.rounds)]
        what = "simulated"
    else:
        rounds = [one_round(args.n, args.repeat) for _ in range(args.rounds)]
        what = "local"
    print(f"{args.n} {what} engines, {args.rounds} rounds (median over rounds)")
    for key in rounds[0]:
        values = [r[key] for r in rounds]
        shown = ", ".join(f"{v:.3g}" for v in values)
        print(f"  {key:20s} {statistics.median(values):8.3g}   ({shown})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
