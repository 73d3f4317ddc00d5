"""CPU per call in each process: client, controller and engine, for tiny round trips.

Wall time on a shared 2-vCPU VM moves by ±10% from run to run; the CPU each process
spends per call moves far less, and says which process a change made slower. Run it
pinned to one CPU to make the wall time the sum of the three:

    taskset -c 0 python benchmarks/cpu_per_call.py

Microseconds per call: the median of ``--rounds`` rounds of ``-n`` calls each, on a fresh
local cluster of one engine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import multiengine


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def noop(x: Any) -> None:
    """The function of the no-op call (defined here, in ``__main__``: sent by value)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("-n", type=int, default=10000, help="calls per round")
    args = parser.parse_args()
    with multiengine.Cluster(n=1) as cluster:
        mec = cluster.multiengine_client()
        controller = mec.status()["pid"]
        (engine,) = cluster.engine_pids().values()
        on_zero = mec.executor(targets=0)
        calls: dict[str, Callable[[], Any]] = {
            "get_ids": mec.get_ids,
            "pull('id')": lambda: mec.pull("id", targets=0, block=True),
            # through the controller ('all' never goes direct), before any direct call: the
            # engine waits on its command socket alone, as each of 128 engines does in an
            # all-engine call (docs/protocol.md §6, "A direct path on one host")
            "execute, all": lambda: mec.execute("pass", block=True),
            "execute('pass')": lambda: mec.execute("pass", targets=0, block=True),
            "map(noop, [0])": lambda: mec.raw_map(noop, [[0]], targets=0, block=True),
            "executor(noop)": lambda: on_zero.submit(noop, 0).result(),
        }
        for name, fn in calls.items():
            for _ in range(1000):
                fn()  # warm up (each row just before it is measured: in this order)
            rows: dict[str, list[float]] = {}
            for _ in range(args.rounds):
                c, e, me = cpu_seconds(controller), cpu_seconds(engine), time.process_time()
                start = time.perf_counter()
                for _ in range(args.n):
                    fn()
                per = 1e6 / args.n
                rows.setdefault("wall", []).append((time.perf_counter() - start) * per)
                rows.setdefault("client", []).append((time.process_time() - me) * per)
                rows.setdefault("controller", []).append((cpu_seconds(controller) - c) * per)
                rows.setdefault("engine", []).append((cpu_seconds(engine) - e) * per)
            cells = ", ".join(f"{k} {statistics.median(v):6.1f}" for k, v in rows.items())
            print(f"{name:<16} µs per call: {cells}")


if __name__ == "__main__":
    main()
