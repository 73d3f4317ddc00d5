"""multiengine side by side with ipyparallel and dask.distributed (those that are installed).

    python benchmarks/compare.py [-n 2] [--quick]

The same as ``multiengine bench --peers``: the measurements live in ``multiengine.bench``.
Install the peers with ``pip install -e '.[bench]'`` (or ``make bench``).
"""

from __future__ import annotations

import argparse
import sys

from multiengine.bench import main


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="multiengine vs ipyparallel vs dask.distributed")
    p.add_argument("-n", type=int, default=2, help="engines/workers per cluster (default 2)")
    p.add_argument(
        "--quick", action="store_true", help="fewer repetitions (about 1.5 min with both peers)"
    )
    args = p.parse_args(argv)
    args.peers = True
    return args


# the guard matters: dask starts its workers with multiprocessing "spawn"
if __name__ == "__main__":
    sys.exit(main(parse()))
