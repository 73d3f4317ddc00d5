"""A million unfetched results: does the controller's memory stay within its budget?

Starts a cluster whose controller keeps at most ``--budget`` of results in memory,
makes ``--results`` non-blocking calls without fetching them, samples the controller's
resident memory (RSS, from /proc) all along, then fetches every result back (from
memory or from results.db) and checks each one. Reports the RSS before, at most and at
the end, against budget + the controller's RSS before any result.

    python benchmarks/million_results.py                      # 1,000,000 results, 64 MB
    python benchmarks/million_results.py --results 100000 --budget 16MB

The calls are ``queue_status`` (answered by the controller itself, so the run measures the
controller, not engines; ``--call execute`` makes engines run ``pass`` instead). They are
made from an asyncio client, 1,000 in flight at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any

import multiengine
from multiengine.config import parse_size


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with multiengine.Cluster(n=2, result_memory_budget=args.budget) as cluster:
        amec = multiengine.AsyncMultiEngineClient(cluster_dir=cluster.cluster_dir.path)
        controller = (await amec.status())["pid"]
        start_rss = rss(controller)
        peak = start_rss
        ids: list[str] = []
        t0 = time.perf_counter()

        async def call() -> Any:
            if args.call == "execute":
                return await amec.execute("pass", targets=0, block=False)
            return await amec.queue_status(targets=0, block=False)

        while len(ids) < args.results:
            n = min(1000, args.results - len(ids))
            prs = await asyncio.gather(*(call() for _ in range(n)))
            ids.extend(pr.result_id for pr in prs)
            if len(ids) % 20000 < 1000:
                peak = max(peak, rss(controller))
        made = time.perf_counter() - t0
        status = await amec.status()
        peak = max(peak, rss(controller))
        t1 = time.perf_counter()
        fetched = 0
        for i in range(0, len(ids), 1000):
            values = await asyncio.gather(
                *(amec.get_pending_deferred(j) for j in ids[i : i + 1000])
            )
            fetched += sum(1 for v in values if v)
            if i % 20000 == 0:
                peak = max(peak, rss(controller))
        fetch_time = time.perf_counter() - t1
        end_rss = rss(controller)
        db = cluster.cluster_dir.path / "results.db"
        db_size = sum(os.path.getsize(p) for p in (db, f"{db}-wal") if os.path.exists(p))
        await amec.close()
    return {
        "results": len(ids),
        "budget": parse_size(args.budget),
        "rss_before": start_rss,
        "rss_peak": peak,
        "rss_end": end_rss,
        "in_memory": status["results_in_memory"],
        "on_disk": status["results_on_disk"],
        "fetched": fetched,
        "made_per_s": len(ids) / made,
        "fetched_per_s": len(ids) / fetch_time,
        "db_bytes": db_size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=int, default=1_000_000)
    parser.add_argument("--budget", default="64MB")
    parser.add_argument("--call", choices=("queue_status", "execute"), default="queue_status")
    args = parser.parse_args()
    r = asyncio.run(run(args))
    mb = 1e6
    print(f"{r['results']:,} unfetched results ({args.call}), budget {r['budget'] / mb:.0f} MB")
    print(
        f"  made at {r['made_per_s']:,.0f}/s; controller held {r['in_memory']:,} in memory and "
        f"{r['on_disk']:,} on disk (results.db {r['db_bytes'] / mb:.0f} MB)"
    )
    print(
        f"  controller RSS: {r['rss_before'] / mb:.0f} MB before, {r['rss_peak'] / mb:.0f} MB at "
        f"most, {r['rss_end'] / mb:.0f} MB at the end; budget + RSS before = "
        f"{(r['budget'] + r['rss_before']) / mb:.0f} MB"
    )
    print(f"  fetched back: {r['fetched']:,} of {r['results']:,} at {r['fetched_per_s']:,.0f}/s")
    within = r["rss_peak"] <= r["budget"] + r["rss_before"] + 64e6
    print(f"  within budget + fixed overhead (64 MB of slack): {'yes' if within else 'NO'}")


if __name__ == "__main__":
    main()
