"""``multiengine bench``: start-up, latency and bandwidth, side by side with ipyparallel and dask.

Every system runs the same measurement code (:func:`measure`) through a small adapter
(:class:`~multiengine.bench.systems.System`), one system at a time, on fresh local
clusters of ``n`` engines that are stopped (and checked for leftover processes) before
the next system starts. Values are medians over repeated runs. Each measurement has a
time budget, so a slow peer is sampled fewer times (marked ``*``) instead of holding up
the run, and a watchdog turns a hang into an error. A peer that is missing or fails to
start shows as ``n/a (reason)``.

The package has three parts; this module holds the entry points (:func:`run`, and
:func:`main` for ``multiengine bench`` and ``benchmarks/compare.py``):

- :mod:`.systems`: the systems compared, one adapter each (multiengine, ipyparallel, dask);
- :mod:`.measure`: the measuring (plans, timing loops, watchdog, ``/proc`` reaping);
- :mod:`.report`: the table, the ratios and the notes.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from .measure import FULL, METRICS, QUICK, Outcome, Plan, measure
from .report import environment, table
from .systems import Dask, IPyParallel, MultiEngine, System

__all__ = ["main", "run", "measure", "METRICS", "Plan", "FULL", "QUICK"]


def run(n: int = 2, quick: bool = False, peers: bool = False, stream: Any = None) -> list[Outcome]:
    """Measure multiengine (with ``peers`` also ipyparallel and dask);
    print the table to ``stream``."""
    stream = stream or sys.stdout
    plan = QUICK if quick else FULL
    systems: list[System] = [MultiEngine()]
    if peers:
        systems += [IPyParallel(), Dask()]
    t0 = time.perf_counter()

    def progress(what: str) -> None:
        print(f"[{time.perf_counter() - t0:6.1f} s] {what}", file=sys.stderr, flush=True)

    env = environment()  # the load before our own processes add to it
    outcomes = [measure(s, n, plan, progress) for s in systems]
    print(
        env + "\nversions: " + ", ".join(f"{o.name} {o.version}" for o in outcomes if o.version),
        file=stream,
    )
    print(table(outcomes, n), file=stream)
    print(
        f"total {time.perf_counter() - t0:.1f} s ({'quick' if quick else 'full'} plan: {plan})",
        file=stream,
        flush=True,
    )
    return outcomes


def main(args: argparse.Namespace) -> int:
    """``multiengine bench``: 0 when every multiengine measurement succeeded
    and nothing was left running."""
    if args.n < 1:
        print("multiengine bench: -n must be at least 1", file=sys.stderr)
        return 2
    me = run(args.n, args.quick, args.peers)[0]
    failed = any(isinstance(v, str) for v in me.values.values())
    return 1 if me.unavailable or me.leftovers or failed else 0
