"""Scatter of a 1M-int list over two engines: wall time and CPU per process per call.

    python benchmarks/scatter_cpu.py                 # 3 rounds of 30 scatters
    python benchmarks/scatter_cpu.py -n 20 --rounds 5
    python benchmarks/scatter_cpu.py --peer          # and ipyparallel, side by side

Each round times ``-n`` calls of ``mec.scatter('x', xs)`` (after 3 untimed ones) and
reads the CPU time of the client, the controller and each engine from
``/proc/<pid>/stat`` before and after: the CPU per call is the figure that moves least
on a shared VM, and it says which process a change made faster or slower. The parts
are checked on the engines at the end. With ``--peer``, ipyparallel is started beside
multiengine (``multiengine.bench.systems``), and the two are timed alternately in blocks
of ``-n`` calls (wall time only): their ratio in one run, under the same load.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from cpu_per_call import cpu_seconds  # this folder's script: CPU time from /proc

import multiengine
from multiengine.bench.systems import IPyParallel, MultiEngine

ITEMS = 1_000_000
MB = 8 * ITEMS / 1e6  # MB/s count 8 bytes per int, as ``multiengine bench`` does


def timed(fn: Callable[[], Any], n: int) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def line(name: str, times: list[float]) -> str:
    times = sorted(times)
    med = statistics.median(times)
    q1, q3 = times[len(times) // 4], times[3 * len(times) // 4]
    spread = f"q1-q3 {q1 * 1e3:.1f}-{q3 * 1e3:.1f} ms"
    return f"{name:<12} median {med * 1e3:5.1f} ms = {MB / med:5.0f} MB/s  ({spread})"


def cpu_rounds(n: int, rounds: int) -> None:
    xs = list(range(ITEMS))
    with multiengine.Cluster(n=2) as cluster:
        mec = cluster.multiengine_client()
        pids = {"client": os.getpid(), "controller": int(mec.status()["pid"])}
        for eid, pid in sorted(cluster.engine_pids().items()):
            pids[f"engine {eid}"] = pid
        timed(lambda: mec.scatter("x", xs), 3)
        for r in range(rounds):
            before = {k: cpu_seconds(p) for k, p in pids.items()}
            times = timed(lambda: mec.scatter("x", xs), n)
            cpu = {k: (cpu_seconds(p) - before[k]) / n * 1e3 for k, p in pids.items()}
            print(line(f"round {r}", times), " CPU ms/call:", end="")
            print("".join(f"  {k} {v:.1f}" for k, v in cpu.items()))
        if mec.gather("x") != xs:
            raise SystemExit("the engines hold another list than the one scattered")


def side_by_side(n: int, rounds: int) -> None:
    xs = list(range(ITEMS))
    systems = {"multiengine": MultiEngine(), "ipyparallel": IPyParallel()}
    ops = {}
    try:
        for name, system in systems.items():
            ops[name] = system.start(2)
            timed(functools.partial(ops[name].scatter, xs), 3)
        times: dict[str, list[float]] = {name: [] for name in ops}
        for _ in range(rounds):
            for name, o in ops.items():
                times[name] += timed(functools.partial(o.scatter, xs), n)
        for name, t in times.items():
            print(line(name, t))
        ratio = statistics.median(times["ipyparallel"]) / statistics.median(times["multiengine"])
        print(f"multiengine / ipyparallel (MB/s): {ratio:.2f}x")
    finally:
        for system in systems.values():
            system.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=30, help="timed scatters per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--peer", action="store_true", help="also ipyparallel, side by side")
    args = parser.parse_args()
    cpu_rounds(args.n, args.rounds)
    if args.peer:
        side_by_side(args.n, args.rounds)


if __name__ == "__main__":
    main()
