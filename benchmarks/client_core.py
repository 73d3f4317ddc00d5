"""Why the client's I/O core reads blocking answers on the waiting thread.

Measures one controller round trip (``get_ids``) and ``execute('pass')`` on one engine,
through each way the core can wait for an answer, on a fresh local cluster:

* ``waiting thread``: the blocking clients' path: the calling thread reads the answer
  from the foreground socket itself;
* ``I/O thread``: the background socket, read by the core's I/O thread, which hands the
  answer to the waiting thread through a Future (what a dedicated I/O thread for every
  call would cost);
* ``asyncio``: ``AsyncMultiEngineClient``, awaiting the core's Future on an event loop.

Medians of interleaved rounds, microseconds. Run: ``python benchmarks/client_core.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any

import multiengine
from multiengine.wire import protocol as P


def timed(fn: Callable[[], Any], n: int) -> float:
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples) * 1e6


async def timed_async(fn: Callable[[], Any], n: int) -> float:
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        await fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("-n", type=int, default=1000, help="round trips per measurement")
    args = parser.parse_args()
    results: dict[str, list[float]] = {}
    with multiengine.Cluster(n=1) as cluster:
        mec = cluster.multiengine_client()
        core = mec._core
        amec = multiengine.AsyncMultiEngineClient(cluster_dir=cluster.cluster_dir.path)
        loop = asyncio.new_event_loop()

        def fg() -> Any:
            return core.wait(core.request({"t": P.GET_IDS}))

        def bg() -> Any:
            return core.wait(core.request({"t": P.GET_IDS}, background=True))

        for fn in (fg, bg, lambda: mec.execute("pass", targets=0)):
            timed(fn, 200)  # warm up
        for _ in range(args.rounds):
            results.setdefault("get_ids, waiting thread reads", []).append(timed(fg, args.n))
            results.setdefault("get_ids, I/O thread reads", []).append(timed(bg, args.n))
            results.setdefault("get_ids, asyncio", []).append(
                loop.run_until_complete(timed_async(amec.get_ids, args.n))
            )
            results.setdefault("execute('pass'), waiting thread reads", []).append(
                timed(lambda: mec.execute("pass", targets=0), args.n)
            )
            results.setdefault("execute('pass'), asyncio", []).append(
                loop.run_until_complete(
                    timed_async(lambda: amec.execute("pass", targets=0, block=True), args.n)
                )
            )
        loop.run_until_complete(amec.close())
        loop.close()
    width = max(map(len, results))
    for name, values in results.items():
        print(
            f"{name:<{width}}  median {statistics.median(values):6.0f} µs  "
            f"(rounds: {', '.join(f'{v:.0f}' for v in values)})"
        )


if __name__ == "__main__":
    main()
