"""multiengine side by side with ipyparallel, dask.distributed and Ray (those installed).

    python benchmarks/compare.py [-n 2] [--quick] [--many 128] [--json PATH]

The same as ``multiengine bench --peers``: the measurements live in ``multiengine.bench``.
Install the peers with ``pip install -e '.[bench]'`` (or ``make bench``).
"""

from __future__ import annotations

import argparse
import sys

from multiengine.bench import add_arguments, main


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="multiengine vs ipyparallel vs dask vs Ray")
    add_arguments(p, peers=False)
    args = p.parse_args(argv)
    args.peers = True
    return args


# the guard matters: dask starts its workers with multiprocessing "spawn"
if __name__ == "__main__":
    sys.exit(main(parse()))
