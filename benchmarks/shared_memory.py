"""Large arrays between a client and the engines of its host (multiengine.wire.shm).

    python benchmarks/shared_memory.py             # 2 engines, 15 timed transfers per row
    python benchmarks/shared_memory.py -r 30
    MULTIENGINE_SHM_THRESHOLD=0 python benchmarks/shared_memory.py   # over the network

Rows (an 80 MB float64 array; the median of ``-r`` timed transfers after 3 untimed ones):

- push -> 1 engine: ``mec.push({'a': a}, targets=0)``; GB/s of the array;
- push -> both engines: ``mec.push({'a': a})``; GB/s delivered (2 x 80 MB / time);
- push -> both engines, shared: ``mec.push({'a': a}, shared=True)``; delivered, as above
  (skipped where ``push`` has no ``shared``);
- pull <- 1 engine: ``mec.pull('a', targets=0)``.

Each push replaces the engines' ``a``, so with ``shared=True`` the arrays of the
previous push are dropped, and their block is free again, once the next one lands.
"""

from __future__ import annotations

import argparse
import inspect

import numpy as np
from xhost import median_seconds  # this folder's script: the same timing

import multiengine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-r", "--repeat", type=int, default=15, help="timed transfers per row")
    args = parser.parse_args()
    a = np.random.default_rng(0).random(10_000_000)  # 80 MB
    gb = a.nbytes / 1e9
    with multiengine.Cluster(n=2) as cluster:
        mec = cluster.multiengine_client()
        rows: list[tuple[str, float]] = []
        t = median_seconds(lambda: mec.push({"a": a}, targets=0), args.repeat)
        rows.append(("push 80 MB -> 1 engine (writable)", gb / t))
        t = median_seconds(lambda: mec.push({"a": a}), args.repeat)
        rows.append(("push 80 MB -> both engines, delivered (writable)", 2 * gb / t))
        if "shared" in inspect.signature(mec.push).parameters:
            t = median_seconds(lambda: mec.push({"a": a}, shared=True), args.repeat)  # type: ignore[call-arg]
            rows.append(("push 80 MB -> both engines, delivered (shared=True)", 2 * gb / t))
        mec.push({"a": a}, targets=0)
        back = mec.pull("a", targets=0)[0]
        if not np.array_equal(back, a):
            raise SystemExit("pull returned a different array")
        t = median_seconds(lambda: mec.pull("a", targets=0), args.repeat)
        rows.append(("pull 80 MB <- 1 engine", gb / t))
        for name, rate in rows:
            print(f"{name:55s} {rate:6.2f} GB/s")


if __name__ == "__main__":
    main()
