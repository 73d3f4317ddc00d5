"""Engines that come back: how soon the work of a killed engine fails, how soon the
engine is back, and what watching the engines costs the process that started them.

    python benchmarks/engine_restart.py            # 8 engines, each killed once
    python benchmarks/engine_restart.py -n 32

For each kill: an engine runs ``time.sleep(600)``; it is sent SIGKILL; the time until
the client holds the ``EngineError`` (the supervisor's ``engine_exit``; the heartbeat
timeout is set to 60 s, so it cannot be the heartbeat), then until the engine is
registered again under its id and has answered ``execute('pass')``. Each engine is
killed once (the first restart of an engine within the hour is immediate; later ones
back off, 1 s, 2 s, 4 s, ..., which is not what this measures). Then the
CPU the supervising process spends over ``--idle`` seconds with nothing to do (the
thread that polls the engines and, with ``--memory-limit``, reads their memory).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import time

import multiengine
from multiengine.errors import CompositeError


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=8, help="engines, each killed once (default 8)")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle CPU measured")
    parser.add_argument("--memory-limit", default="1GB", help="engine_memory_limit (default 1GB)")
    args = parser.parse_args()
    failed, back = [], []
    with multiengine.Cluster(
        n=args.n,
        heartbeat_period=0.5,
        heartbeat_timeout=60.0,
        engine_memory_limit=args.memory_limit,
    ) as cluster:
        mec = cluster.multiengine_client()
        for eid in range(args.n):
            pr = mec.execute("import time; time.sleep(600)", targets=eid, block=False)
            while mec.queue_status(targets=eid)[0][1]["pending"] is None:
                time.sleep(0.005)
            pid = cluster.engine_pids()[eid]
            start = time.perf_counter()
            os.kill(pid, signal.SIGKILL)
            try:
                pr.get_result()
            except CompositeError:
                failed.append(time.perf_counter() - start)
            while cluster.engine_pids().get(eid) in (None, pid):
                time.sleep(0.002)
            mec.execute("pass", targets=eid)
            back.append(time.perf_counter() - start)
            time.sleep(0.3)  # let the other engines settle before the next kill
        me = time.process_time()
        time.sleep(args.idle)
        idle_cpu = (time.process_time() - me) / args.idle
    print(f"{args.n} engines, each killed once (SIGKILL mid-execute), local launcher")
    print(
        f"EngineError at the client: median {statistics.median(failed) * 1000:.0f} ms, "
        f"max {max(failed) * 1000:.0f} ms"
    )
    print(
        f"engine back under its id and answering: median {statistics.median(back) * 1000:.0f} ms,"
        f" max {max(back) * 1000:.0f} ms"
    )
    print(
        f"supervising process, idle, memory limit on: {idle_cpu * 100:.2f}% of a core "
        f"({idle_cpu * 1e6 / args.n:.0f} µs of CPU per engine per second)"
    )


if __name__ == "__main__":
    main()
