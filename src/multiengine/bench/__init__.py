"""``multiengine bench``: start-up, latency, bandwidth and shutdown, side by side with
ipyparallel, dask and Ray.

Every system runs the same measurement code (:func:`measure`) through a small adapter
(:class:`~multiengine.bench.systems.System`), one system at a time, on fresh local
clusters of ``n`` engines that are stopped (and checked for leftover processes) before
the next system starts. Values are medians over repeated runs. Each measurement has a
time budget, so a slow peer is sampled fewer times (marked ``*``) instead of holding up
the run, and a watchdog turns a hang into an error. A peer that is missing or fails to
start shows as ``n/a (reason)``.

The package has four parts; this module holds the entry points (:func:`run`, and
:func:`main` for ``multiengine bench`` and ``benchmarks/compare.py``):

- :mod:`.systems`: the systems compared, one adapter each (multiengine, ipyparallel,
  dask, Ray), and the call each row times on each;
- :mod:`.measure`: the measuring (rows, plans, timing loops, watchdog);
- :mod:`.processes`: the processes a system started, from ``/proc`` (stop timing, reaping);
- :mod:`.report`: the table, the ratios and the notes, or the same as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from typing import Any

from .measure import FULL, METRICS, QUICK, Outcome, Plan, measure
from .report import as_json, environment, table
from .systems import Dask, IPyParallel, MultiEngine, Ray, System

__all__ = ["add_arguments", "main", "run", "measure", "METRICS", "Plan", "FULL", "QUICK"]


def add_arguments(parser: argparse.ArgumentParser, peers: bool = True) -> None:
    """The options of ``multiengine bench`` (``peers``: with the ``--peers`` switch)."""
    parser.add_argument("-n", type=int, default=2, help="engines per cluster (default 2)")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    if peers:
        parser.add_argument(
            "--peers",
            action="store_true",
            help="also run ipyparallel, dask and Ray, those installed",
        )
    parser.add_argument(
        "--many",
        type=int,
        default=0,
        metavar="N",
        help="also time a start of N engines and their all-engine execute('pass') "
        "(multiengine only)",
    )
    parser.add_argument(
        "--json",
        metavar="PATH",
        help="also write the figures as JSON to PATH ('-': to stdout instead of the table)",
    )


def run(
    n: int = 2,
    quick: bool = False,
    peers: bool = False,
    stream: Any = None,
    many: int = 0,
    json_path: str | None = None,
    plan: Plan | None = None,
) -> list[Outcome]:
    """Measure multiengine (with ``peers`` also ipyparallel, dask and Ray; with ``many`` also
    a cluster of that many engines); print the table to ``stream``, and with ``json_path``
    write the figures as JSON there (``-``: to ``stream`` instead of the table).
    ``plan`` overrides the one ``quick`` chooses (the tests run a miniature one)."""
    stream = stream or sys.stdout
    plan = plan or (QUICK if quick else FULL)
    plan_name = "full" if plan == FULL else "quick" if plan == QUICK else "custom"
    systems: list[System] = [MultiEngine()]
    if peers:
        systems += [IPyParallel(), Dask(), Ray()]
    t0 = time.perf_counter()

    def progress(what: str) -> None:
        print(f"[{time.perf_counter() - t0:6.1f} s] {what}", file=sys.stderr, flush=True)

    env = environment()  # the load before our own processes add to it
    outcomes = [
        measure(s, n, plan, progress, many=many if i == 0 else 0) for i, s in enumerate(systems)
    ]
    total = time.perf_counter() - t0
    if json_path is not None:
        figures = as_json(
            outcomes,
            n,
            environment=env,
            plan={"name": plan_name, **dataclasses.asdict(plan)},
            total_s=round(total, 1),
        )
        text = json.dumps(figures, indent=1, ensure_ascii=False)
        if json_path == "-":
            print(text, file=stream, flush=True)
            return outcomes
        with open(json_path, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    print(
        env + "\nversions: " + ", ".join(f"{o.name} {o.version}" for o in outcomes if o.version),
        file=stream,
    )
    print(table(outcomes, n), file=stream)
    print(
        f"total {total:.1f} s ({plan_name} plan: {plan})",
        file=stream,
        flush=True,
    )
    return outcomes


def failed(me: Outcome) -> bool:
    """Whether multiengine's run failed: not started, a measurement's error, or a leftover."""
    errors = any(isinstance(v, str) and v.startswith("error") for v in me.values.values())
    return bool(me.unavailable or me.leftovers or errors)


def main(args: argparse.Namespace) -> int:
    """``multiengine bench``: 0 when every multiengine measurement succeeded
    and nothing was left running."""
    if args.n < 1:
        print("multiengine bench: -n must be at least 1", file=sys.stderr)
        return 2
    if args.many < 0:
        print("multiengine bench: --many must not be negative", file=sys.stderr)
        return 2
    me = run(args.n, args.quick, args.peers, many=args.many, json_path=args.json)[0]
    return 1 if failed(me) else 0
