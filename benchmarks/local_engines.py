"""Many local engines on this host: how long until they are ready, and an all-engine
``execute('pass')``.

    python benchmarks/local_engines.py                  # 128 engines, 3 rounds
    python benchmarks/local_engines.py -n 64 --rounds 5
    MULTIENGINE_FORK_SERVER=0 python benchmarks/local_engines.py   # each engine a fresh Python

Each round starts a fresh ``Cluster(n=N)`` (local launcher) and reports:

* **ready**: from ``Cluster(...).start()`` (nothing running) until a new client's
  ``get_ids()`` lists all N engines;
* **execute('pass'), all engines**: median (and p90) of ``--repeat`` blocking calls on
  every engine, after 3 untimed ones;
* **stop**: ``Cluster.stop()`` until every process it started has gone.

The table shows the median over rounds. It uses only the public API, so it runs against
any tree: ``PYTHONPATH=/work/main/src`` and a branch, back to back (take
``flock /tmp/bench.lock`` around it). 128 engines hold about 2 GB of memory.
"""

from __future__ import annotations

import argparse
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
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            client.execute("pass")
            times.append(time.perf_counter() - t)
        times.sort()
    finally:
        t = time.perf_counter()
        cluster.stop()
        stop = time.perf_counter() - t
    return {
        "ready_s": ready,
        "execute_ms": statistics.median(times) * 1e3,
        "execute_p90_ms": times[int(0.9 * (len(times) - 1))] * 1e3,
        "stop_s": stop,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=128, help="engines")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=30, help="timed executes per round")
    args = parser.parse_args()
    rounds = [one_round(args.n, args.repeat) for _ in range(args.rounds)]
    print(f"{args.n} local engines, {args.rounds} rounds (median over rounds)")
    for key in rounds[0]:
        values = [r[key] for r in rounds]
        shown = ", ".join(f"{v:.3g}" for v in values)
        print(f"  {key:16s} {statistics.median(values):8.3g}   ({shown})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
