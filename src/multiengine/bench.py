"""``multiengine bench``: start-up, latency and bandwidth, side by side with ipyparallel and dask.

Every system runs the same measurement code (:func:`measure`) through a small adapter
(:class:`System`), one system at a time, on fresh local clusters of ``n`` engines that
are stopped (and checked for leftover processes) before the next system starts. Values
are medians over repeated runs. Each measurement has a time budget, so a slow peer is
sampled fewer times (marked ``*``) instead of holding up the run, and a watchdog turns a
hang into an error. A peer that is missing or fails to start shows as ``n/a (reason)``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import logging
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

__all__ = ["main", "run", "measure", "METRICS", "Plan", "FULL", "QUICK"]

ARRAY_ITEMS = 10_000_000  # 80 MB of float64
MAP_ITEMS = 10_000


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    higher_is_better: bool = False
    goal: float | None = None  # the target for multiengine


METRICS = [
    Metric("startup", "start: nothing -> n engines ready", "s", goal=0.5),
    Metric("rtt1", "execute('pass'), 1 engine, median", "ms", goal=0.6),
    Metric("rtt1_p90", "execute('pass'), 1 engine, p90", "ms"),
    Metric("pull_tiny", "pull('id'), 1 engine, median", "ms"),
    Metric("rtt_all", "execute('pass'), all engines, median", "ms"),
    Metric("push", "push 80 MB float64, 1 engine", "GB/s", True, 1.2),
    Metric("pull", "pull 80 MB float64, 1 engine", "GB/s", True),
    Metric("map", f"map(lambda x: x, range({MAP_ITEMS})), all", "items/s", True),
    Metric(
        "tasks", f"{MAP_ITEMS} tiny load-balanced tasks (chunksize 1)", "tasks/s", True, 10000.0
    ),
]


@dataclass(frozen=True)
class Plan:
    starts: int  # fresh clusters, each timed from nothing to n engines ready
    latency: int  # timed tiny round trips per latency metric
    warmup: int  # untimed round trips before them
    transfers: int  # timed 80 MB pushes, and as many pulls
    maps: int  # timed maps
    budget: float  # seconds per measurement before sampling stops early


FULL = Plan(starts=5, latency=2000, warmup=200, transfers=10, maps=5, budget=30.0)
QUICK = Plan(starts=3, latency=1000, warmup=100, transfers=5, maps=3, budget=6.0)


def _zero() -> int:  # importable, so dask ships it by reference
    return 0


# ---------------------------------------------------------------- the systems
@dataclass(frozen=True)
class Ops:
    """The timed operations of one started system, side by side for easy comparison."""

    execute_one: Callable[[], Any]  # tiny round trip to engine 0
    pull_tiny: Callable[[], Any]  # fetch a tiny value held by engine 0
    execute_all: Callable[[], Any]  # tiny round trip to every engine
    push: Callable[[Any], Any]  # put the array on engine 0 as ``a``
    pull: Callable[[], Any]  # get ``a`` back from engine 0
    map: Callable[[Callable[[Any], Any], range], Any]  # a parallel map over every engine
    tasks: Callable[[Callable[[Any], Any], range], Any]  # one load-balanced task per item
    drop: Callable[[], Any]  # free ``a`` on engine 0


class System(Protocol):
    """``start`` returns once a connected client sees ``n`` engines; ``stop`` also cleans up
    after a partial start. ``module`` is the package to import (and take the version from)."""

    name: str
    module: str

    def start(self, n: int) -> Ops: ...
    def stop(self) -> None: ...


class MultiEngine:
    name = module = "multiengine"
    cluster: Any = None

    def start(self, n: int) -> Ops:
        from .cluster.cluster import Cluster

        self.cluster = Cluster(n)
        mec = self.cluster.start().multiengine_client()
        tc = self.cluster.task_client()
        return Ops(
            execute_one=lambda: mec.execute("pass", targets=0),
            pull_tiny=lambda: mec.pull("id", targets=0),
            execute_all=lambda: mec.execute("pass", targets="all"),
            push=lambda a: mec.push({"a": a}, targets=0),
            pull=lambda: mec.pull("a", targets=0)[0],
            map=lambda f, seq: mec.map(f, seq),
            tasks=lambda f, seq: (tc.map(f, seq, chunksize=1), tc.clear())[0],
            drop=lambda: mec.execute("del a", targets=0),
        )

    def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()
        self.cluster = None


class IPyParallel:
    name = module = "ipyparallel"
    cluster: Any = None
    rc: Any = None
    tmp: str | None = None

    def start(self, n: int) -> Ops:
        import ipyparallel as ipp

        self.tmp = tempfile.mkdtemp(prefix="multiengine-bench-ipp-")  # a throw-away profile
        self.cluster = ipp.Cluster(
            n=n, profile_dir=self.tmp, log_level=logging.WARNING, engine_timeout=60
        )
        self.rc = self.cluster.start_and_connect_sync()
        one, dv, lbv = self.rc[0], self.rc[:], self.rc.load_balanced_view()
        return Ops(
            execute_one=lambda: one.execute("pass", block=True),
            pull_tiny=lambda: one.pull("id", block=True),
            execute_all=lambda: dv.execute("pass", block=True),
            push=lambda a: one.push({"a": a}, block=True),
            pull=lambda: one.pull("a", block=True),
            map=lambda f, seq: dv.map_sync(f, seq),
            tasks=lambda f, seq: lbv.map_sync(f, seq, chunksize=1),
            drop=lambda: one.execute("del a", block=True),
        )

    def stop(self) -> None:
        rc, cluster, self.rc, self.cluster = self.rc, self.cluster, None, None
        try:
            _close_all(rc and rc.close, cluster and cluster.stop_cluster_sync)
        finally:
            if self.tmp:
                shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None


class Dask:
    """No engine namespaces here: a task pinned to a worker stands in for execute, the result of
    a finished task for a tiny pull, ``scatter`` and ``Future.result`` for push and pull."""

    name, module = "dask", "distributed"
    cluster: Any = None
    client: Any = None

    def start(self, n: int) -> Ops:
        from distributed import Client, LocalCluster

        self.cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.CRITICAL,
        )
        client = self.client = Client(self.cluster)
        client.wait_for_workers(n, timeout=60)
        workers = sorted(client.scheduler_info()["workers"])
        held: dict[str, Any] = {}

        def pull_tiny() -> None:  # the first call (a warm-up) makes the value on worker 0
            if "tiny" not in held:
                held["tiny"] = client.submit(_zero, workers=workers[:1], pure=False)
            held["tiny"].result()

        def push(a: Any) -> None:
            held.pop("a", None)
            held["a"] = client.scatter(a, workers=workers[:1], hash=False)

        return Ops(
            execute_one=lambda: client.submit(_zero, workers=workers[:1], pure=False).result(),
            pull_tiny=pull_tiny,
            execute_all=lambda: client.gather(
                [client.submit(_zero, workers=[w], pure=False) for w in workers]
            ),
            push=push,
            pull=lambda: held["a"].result(),
            map=lambda f, seq: client.gather(client.map(f, seq, pure=False)),
            tasks=lambda f, seq: client.gather(client.map(f, seq, pure=False)),
            drop=lambda: held.pop("a", None),
        )

    def stop(self) -> None:
        client, cluster, self.client, self.cluster = self.client, self.cluster, None, None
        _close_all(client and client.close, cluster and cluster.close)


def _close_all(*closers: Callable[[], Any] | None) -> None:
    """Call every closer given, even when one fails; then raise the first failure."""
    failures = []
    for close in closers:
        try:
            if close:
                close()
        except Exception as e:
            failures.append(e)
    if failures:
        raise failures[0]


# ---------------------------------------------------------------- measuring
@dataclass
class Outcome:
    name: str
    version: str = ""
    unavailable: str = ""  # why the whole system is n/a
    values: dict[str, float | str] = field(default_factory=dict)  # a number, or why it failed
    short: set[str] = field(default_factory=set)  # metrics sampled fewer times than planned
    leftovers: list[str] = field(default_factory=list)  # processes that outlived stop()

    def store(self, key: str, value: float, samples: int, planned: int) -> None:
        self.values[key] = value
        if samples < planned:
            self.short.add(key)


def _sample(fn: Callable[[], Any], count: int, budget: float, warmup: int = 0) -> list[float]:
    """Durations of up to ``count`` calls (at least one), stopping once ``budget`` seconds
    are spent."""
    t_end = time.perf_counter() + budget / 5
    for _ in range(warmup):
        fn()
        if time.perf_counter() > t_end:
            break
    out: list[float] = []
    t_end = time.perf_counter() + budget
    while len(out) < count:
        t0 = time.perf_counter()
        fn()
        t1 = time.perf_counter()
        out.append(t1 - t0)
        if t1 > t_end:
            break
    return out


def _reason(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


@contextlib.contextmanager
def _watchdog(seconds: float) -> Iterator[None]:
    """Raise TimeoutError in the main thread after ``seconds`` (POSIX main thread only)."""
    if not hasattr(signal, "SIGALRM") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def fire(signum: int, frame: Any) -> None:
        raise TimeoutError(f"no result after {seconds:.0f} s (hung?)")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _descendants() -> dict[int, str]:
    """pid -> command line of every live descendant of this process
    (from /proc; empty elsewhere)."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            if fields[0] != "Z":
                parent[int(entry)] = int(fields[1])
    found: dict[int, str] = {}
    frontier = [os.getpid()]
    while frontier:
        p = frontier.pop()
        for child in (c for c, pp in parent.items() if pp == p and c not in found):
            with contextlib.suppress(OSError):
                found[child] = (
                    Path(f"/proc/{child}/cmdline")
                    .read_bytes()
                    .replace(b"\0", b" ")
                    .decode(errors="replace")
                )
            frontier.append(child)
    return found


def _reap_leftovers(before: dict[int, str], grace: float = 3.0) -> list[str]:
    """Processes started since ``before`` and still alive after ``grace`` s:
    report them, end them by pid."""
    deadline = time.monotonic() + grace
    while True:  # multiprocessing's resource tracker (dask) ends with this process; leave it be
        left = {
            p: c
            for p, c in _descendants().items()
            if p not in before and "resource_tracker" not in c
        }
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        time.sleep(0.5)
    return [f"{pid} {cmd.strip()[:100]}" for pid, cmd in left.items()]


def _latency(out: Outcome, key: str, fn: Callable[[], Any], plan: Plan) -> None:
    xs = sorted(_sample(fn, plan.latency, plan.budget, warmup=plan.warmup))
    out.store(key, 1e3 * statistics.median(xs), len(xs), plan.latency)
    if key == "rtt1":
        out.store("rtt1_p90", 1e3 * xs[round(0.9 * (len(xs) - 1))], len(xs), plan.latency)


def _transfers(out: Outcome, ops: Ops, plan: Plan) -> None:
    import numpy as np

    a = np.random.default_rng(0).random(ARRAY_ITEMS)
    try:
        ops.push(a)  # warm-up, and the value the pulls read back
        pushes = _sample(lambda: ops.push(a), plan.transfers, plan.budget)
        out.store("push", a.nbytes / 1e9 / statistics.median(pushes), len(pushes), plan.transfers)
        back = ops.pull()
        if getattr(back, "shape", None) != a.shape or back[-1] != a[-1]:
            raise ValueError("pull returned a different array")
        pulls = _sample(ops.pull, plan.transfers, plan.budget)
        out.store("pull", a.nbytes / 1e9 / statistics.median(pulls), len(pulls), plan.transfers)
    finally:
        ops.drop()


def _maps(out: Outcome, ops: Ops, plan: Plan) -> None:
    seq, results = (
        range(MAP_ITEMS),
        [],
    )  # no warm-up: a dask map can take 20 s; the median absorbs a cold run
    xs = _sample(lambda: results.append(ops.map(lambda x: x, seq)), plan.maps, plan.budget)
    if any(list(r) != list(seq) for r in results):
        raise ValueError("map returned wrong results")
    out.store("map", MAP_ITEMS / statistics.median(xs), len(xs), plan.maps)


def _tasks(out: Outcome, ops: Ops, plan: Plan) -> None:
    seq, results = range(MAP_ITEMS), []
    xs = _sample(lambda: results.append(ops.tasks(lambda x: x, seq)), plan.maps, plan.budget)
    if any(list(r) != list(seq) for r in results):
        raise ValueError("load-balanced map returned wrong results")
    out.store("tasks", MAP_ITEMS / statistics.median(xs), len(xs), plan.maps)


def measure(
    system: System, n: int, plan: Plan, progress: Callable[[str], None] = lambda s: None
) -> Outcome:
    """Run every measurement on ``system``; stop it and end whatever it left running."""
    out = Outcome(system.name)
    try:
        out.version = str(importlib.import_module(system.module).__version__)
    except ImportError:
        out.unavailable = "not installed"
        return out
    before = _descendants()
    hang = 2 * plan.budget + 60
    try:
        times: list[float] = []
        ops: Ops | None = None
        t_end = time.perf_counter() + plan.budget
        for i in range(plan.starts):
            progress(f"{system.name}: start {i + 1}/{plan.starts}")
            if i:
                system.stop()
            t0 = time.perf_counter()
            try:
                with _watchdog(hang):
                    ops = system.start(n)
            except Exception as e:
                out.unavailable = f"start failed: {_reason(e)}"
                return out
            times.append(time.perf_counter() - t0)
            if time.perf_counter() > t_end:
                break
        out.store("startup", statistics.median(times), len(times), plan.starts)
        assert ops is not None
        phases: list[tuple[tuple[str, ...], Callable[[], None]]] = [
            (("rtt1", "rtt1_p90"), lambda: _latency(out, "rtt1", ops.execute_one, plan)),
            (("pull_tiny",), lambda: _latency(out, "pull_tiny", ops.pull_tiny, plan)),
            (("rtt_all",), lambda: _latency(out, "rtt_all", ops.execute_all, plan)),
            (("push", "pull"), lambda: _transfers(out, ops, plan)),
            (("map",), lambda: _maps(out, ops, plan)),
            (("tasks",), lambda: _tasks(out, ops, plan)),
        ]
        for keys, phase in phases:
            progress(f"{system.name}: {', '.join(keys)}")
            gc.collect()
            try:
                with _watchdog(hang):
                    phase()
            except Exception as e:
                for k in keys:
                    out.values.setdefault(k, f"error ({_reason(e)[:70]})")
    finally:
        progress(f"{system.name}: stopping")
        try:
            with _watchdog(60):
                system.stop()
        except Exception as e:
            out.leftovers.append(f"stop() raised {_reason(e)}")
        out.leftovers += _reap_leftovers(before)
    return out


# ---------------------------------------------------------------- the report
def _cell(o: Outcome, m: Metric) -> str:
    if o.unavailable:  # the reason once, in the first row
        why = o.unavailable if len(o.unavailable) <= 40 else o.unavailable[:37] + "..."
        return f"n/a ({why})" if m is METRICS[0] else "n/a"
    v = o.values.get(m.key, "n/a")
    if isinstance(v, str):
        return v if len(v) < 30 else "error (see below)"
    text = f"{v:,.0f}" if m.unit == "items/s" else f"{v:.3f}" if v < 10 else f"{v:.1f}"
    return text + ("*" if m.key in o.short else "")


def _ratio(me: Outcome, peer: Outcome, m: Metric) -> str:
    a, b = me.values.get(m.key), peer.values.get(m.key)
    if (
        me.unavailable
        or peer.unavailable
        or not isinstance(a, float)
        or not isinstance(b, float)
        or not a
        or not b
    ):
        return "-"
    return f"{(a / b if m.higher_is_better else b / a):.2f}x"


def _goal(me: Outcome, m: Metric) -> str:
    if m.goal is None:
        return ""
    v, sign = me.values.get(m.key), (">=" if m.higher_is_better else "<")
    if not isinstance(v, float):
        return f"{sign} {m.goal:g}"
    return f"{sign} {m.goal:g} " + (
        "ok" if (v >= m.goal if m.higher_is_better else v < m.goal) else "MISSED"
    )


def table(outcomes: list[Outcome], n: int) -> str:
    """The results as a Markdown table (the first outcome is multiengine's), then notes."""
    me, peers = outcomes[0], outcomes[1:]
    rows = [
        [
            "metric (unit)",
            *(o.name for o in outcomes),
            *(f"{p.name}/me" for p in peers),
            "goal (issue)",
        ]
    ]
    for m in METRICS:
        rows.append(
            [
                f"{m.label} ({m.unit})",
                *(_cell(o, m) for o in outcomes),
                *(_ratio(me, p, m) for p in peers),
                _goal(me, m),
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "| "
        + " | ".join(
            [r[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True))]
        )
        + " |"
        for r in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    notes = [
        f"{n} engine{'s' if n != 1 else ''} per system. "
        "Ratio columns (peer/me) = how many times faster multiengine is: "
        "peer time / multiengine time (for GB/s, items/s: multiengine rate / peer rate). "
        "> 1: multiengine is faster."
    ]
    if any(o.short for o in outcomes):
        notes.append("* fewer samples than planned: that measurement hit its time budget.")
    for o in outcomes:
        if len(o.unavailable) > 40:
            notes.append(f"{o.name}: n/a ({o.unavailable})")
        notes += [
            f"{o.name}, {k}: {v}"
            for k, v in o.values.items()
            if isinstance(v, str) and len(v) >= 30
        ]
        if o.leftovers:
            notes.append(
                f"{o.name}: still running after stop, ended by pid: " + "; ".join(o.leftovers)
            )
    return "\n".join([*lines, "", *notes])


def _environment() -> str:
    import zmq

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    busy = " (busy machine: expect noise)" if load > 0.5 * (os.cpu_count() or 1) else ""
    return (
        f"{platform.node()}: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"pyzmq {zmq.__version__}/libzmq {zmq.zmq_version()}; "
        f"1-min load average before the run {load:.2f}{busy}"
    )


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

    env = _environment()  # the load before our own processes add to it
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
    return (
        1
        if me.unavailable or me.leftovers or any(isinstance(v, str) for v in me.values.values())
        else 0
    )
