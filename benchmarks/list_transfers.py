"""Scatter and gather of a 1M-int Python list over two engines (the bench's list rows).

    python benchmarks/list_transfers.py          # 2 engines, 15 timed transfers per row
    python benchmarks/list_transfers.py -r 30

Rows (the median of ``-r`` timed calls after 2 untimed ones; MB/s count 8 bytes per
int, as ``multiengine bench`` does):

- scatter: ``mec.scatter('x', xs)``, a 500k-int part to each engine;
- gather: ``mec.gather('x')``, one 1M-int list back, checked equal to ``xs``.
"""

from __future__ import annotations

import argparse

from xhost import median_seconds  # this folder's script: the same timing

import multiengine

ITEMS = 1_000_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-r", "--repeat", type=int, default=15, help="timed calls per row")
    args = parser.parse_args()
    xs = list(range(ITEMS))
    mb = 8 * ITEMS / 1e6
    with multiengine.Cluster(n=2) as cluster:
        mec = cluster.multiengine_client()
        t_scatter = median_seconds(lambda: mec.scatter("x", xs), args.repeat)
        if list(mec.gather("x")) != xs:
            raise SystemExit("gather returned a different list")
        t_gather = median_seconds(lambda: mec.gather("x"), args.repeat)
        print(f"scatter 1M-int list   {mb / t_scatter:7.1f} MB/s  ({t_scatter * 1e3:.1f} ms)")
        print(f"gather 1M-int list    {mb / t_gather:7.1f} MB/s  ({t_gather * 1e3:.1f} ms)")


if __name__ == "__main__":
    main()
