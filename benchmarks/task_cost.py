"""What one tiny load-balanced task costs: CPU in each process, and controller memory.

Runs ``tc.map(identity, range(N))`` (one task per item) on a local cluster a few times
and reads each process's CPU time from /proc: the controller's, the engines' (summed)
and this client's, per task; and the tasks per second. First it keeps ``N`` finished
tasks (submitted one by one, not cleared) and reports the controller's resident memory
per kept task.

    python benchmarks/task_cost.py                 # 10,000 tasks, 3 rounds, 2 engines
    PYTHONPATH=/path/to/other/src python benchmarks/task_cost.py    # another version

Run each version under the same conditions (nothing else busy) and compare.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import multiengine
from multiengine import MapTask


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def identity(x: int) -> int:
    return x


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-n", type=int, default=10_000, help="tasks per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--engines", type=int, default=2)
    args = p.parse_args()
    with multiengine.Cluster(n=args.engines) as cluster:
        tc = cluster.task_client()
        mec = cluster.multiengine_client()
        status = mec.status()
        controller = status["pid"]
        engines = [e["pid"] for e in status["engines"]]
        tc.map(identity, range(2000))  # warm up
        tc.clear()
        # memory first: later rounds leave freed memory the allocator reuses
        time.sleep(0.5)
        before = rss_bytes(controller)
        tids = [tc.run(MapTask(identity, (i,))) for i in range(args.n)]
        tc.barrier(tids)
        time.sleep(0.5)
        kept = (rss_bytes(controller) - before) / args.n
        tc.clear()
        per: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            c0, e0 = cpu_seconds(controller), sum(cpu_seconds(e) for e in engines)
            me0, t0 = time.process_time(), time.perf_counter()
            tc.map(identity, range(args.n))
            wall = time.perf_counter() - t0
            per.setdefault("controller_us_per_task", []).append(
                (cpu_seconds(controller) - c0) / args.n * 1e6
            )
            per.setdefault("engines_us_per_task", []).append(
                (sum(cpu_seconds(e) for e in engines) - e0) / args.n * 1e6
            )
            per.setdefault("client_us_per_task", []).append(
                (time.process_time() - me0) / args.n * 1e6
            )
            per.setdefault("tasks_per_s", []).append(args.n / wall)
            tc.clear()
    figures = {k: round(statistics.median(v), 1) for k, v in per.items()}
    figures["controller_rss_bytes_per_kept_task"] = round(kept)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
