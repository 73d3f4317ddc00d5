"""Scatter and gather of a 1M-int Python list over two engines (the bench's list rows).

    python benchmarks/list_transfers.py          # 2 engines, 15 timed transfers per row
    python benchmarks/list_transfers.py -r 30

Rows (the median of ``-r`` timed calls after 2 untimed ones; MB/s count 8 bytes per
int, as ``multiengine bench`` does):

- scatter: ``mec.scatter('x', xs)``, a 500k-int part to each engine;
- gather: ``mec.gather('x')``, one 1M-int list back, checked equal to ``xs``;
- the floor of a gather in one process, timed the same way: the two 500k-int halves
  unpickled from bytes already in memory and joined, the previous result freed inside the
  timed call as in the gather row (no sockets, no signatures, no other process). A
  Python client that unpickles the list cannot beat it; the same with the halves as
  int64 buffers turned into lists (``array.tolist``) shows what skipping pickle would buy;
  and the same unpickling into the arenas the previous list left, kept mapped as the
  client keeps them (``multiengine.wire.warm``): fresh memory is most of the first floor.
"""

from __future__ import annotations

import argparse
import array
import pickle

from xhost import median_seconds  # this folder's script: the same timing

import multiengine
from multiengine.wire import warm

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
    for name, t in floors(xs, args.repeat):
        print(f"{name:<21} {mb / t:7.1f} MB/s  ({t * 1e3:.1f} ms)")


def floors(xs: list[int], repeat: int) -> list[tuple[str, float]]:
    """The in-process floors of the gather row (module docstring)."""
    half = len(xs) // 2
    pickles = [pickle.dumps(xs[:half], 5), pickle.dumps(xs[half:], 5)]
    int64s = [array.array("q", xs[:half]).tobytes(), array.array("q", xs[half:]).tobytes()]

    def unpickled() -> list[int]:
        joined: list[int] = pickle.loads(pickles[0])
        joined += pickle.loads(pickles[1])
        return joined

    def from_int64() -> list[int]:
        joined: list[int] = array.array("q", int64s[0]).tolist()
        joined += array.array("q", int64s[1]).tolist()
        return joined

    def unpickled_warm() -> list[int]:
        joined = unpickled()
        warm.keep(joined)  # as the client does with each slice (wire/warm.py)
        return joined

    if unpickled() != xs or from_int64() != xs:
        raise SystemExit("a floor made a different list")
    warm.release()
    cold = [
        ("floor: unpickle", median_seconds(unpickled, repeat)),
        ("floor: int64 buffers", median_seconds(from_int64, repeat)),
    ]
    t_warm = median_seconds(unpickled_warm, repeat)
    warm.release()
    return [*cold, ("floor: warm arenas", t_warm)]


if __name__ == "__main__":
    main()
