"""The measuring of ``multiengine bench``: what is measured, how often, and how.

:data:`METRICS` lists the rows of the table, :class:`Plan` how many samples of each
(:data:`FULL`, :data:`QUICK`), and :func:`measure` makes them for one
:class:`~multiengine.bench.systems.System`: it starts the system ``plan.starts`` times
(timing each start, and each stop until every process it started is gone), then runs
the timing loops on the last cluster through its :class:`~multiengine.bench.systems.Ops`
and stops it. With ``many``, it then times the start of a cluster of that many engines
and its all-engine round trip. Values are medians. Each measurement has a time budget,
so a slow peer is sampled fewer times (marked ``*``) instead of holding up the run, and
a watchdog (``SIGALRM``) turns a hang into an error. After the stop, every process the
system started that is still alive (found in ``/proc``) is reported and ended by its pid.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import signal
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .processes import descendants, reap_leftovers, timed_stop
from .systems import NOT_BUILT, Ops, System

__all__ = [
    "METRICS",
    "FULL",
    "QUICK",
    "NOT_APPLICABLE",
    "Metric",
    "Outcome",
    "Plan",
    "measure",
]

ARRAY_ITEMS = 10_000_000  # 80 MB of float64
LIST_ITEMS = 1_000_000  # the scatter/gather list; its MB/s count 8 bytes per int
MAP_ITEMS = 10_000
NOT_APPLICABLE = "—"  # the system has no such operation (its method says why)


@dataclass(frozen=True)
class Metric:
    key: str
    label: str  # ``{many}`` stands for the engine count of ``--many``
    unit: str
    higher_is_better: bool = False
    goal: float | None = None  # the target for multiengine
    relative_to: str | None = None  # the goal is ``goal`` times this metric's value
    many: bool = False  # measured only with ``--many``


METRICS = [
    Metric("startup", "start: nothing -> n engines ready", "s", goal=0.5),
    Metric("rtt1", "execute('pass'), 1 engine, median", "ms", goal=0.35),
    Metric("rtt1_p90", "execute('pass'), 1 engine, p90", "ms"),
    Metric("call1", "no-op function call, 1 engine, median", "ms", goal=1.5, relative_to="rtt1"),
    Metric("pull_tiny", "pull('id'), 1 engine, median", "ms"),
    Metric("rtt_all", "execute('pass') (dask, Ray: no-op call), all engines", "ms"),
    Metric("push", "push 80 MB float64 -> 1 engine (writable)", "GB/s", True, 2.6),
    Metric("push_all", "push 80 MB -> all engines, writable (delivered)", "GB/s", True, 5.0),
    Metric("push_shared", "push 80 MB -> all engines, shared (delivered)", "GB/s", True, 13.0),
    Metric("pull", "pull 80 MB float64 <- 1 engine (writable)", "GB/s", True, 3.5),
    Metric("pull_shared", "pull 80 MB <- 1 engine, read-only (shared)", "GB/s", True),
    Metric("scatter", "scatter a 1M-int list over all engines (8 B/int)", "MB/s", True),
    Metric("gather", "gather a 1M-int list from all engines (8 B/int)", "MB/s", True, 180.0),
    Metric("map", f"map(lambda x: x, range({MAP_ITEMS})), all", "items/s", True),
    Metric("tasks", f"{MAP_ITEMS:,} tiny tasks, chunk 1", "tasks/s", True, 10000.0),
    Metric("shutdown", "shutdown until every process is gone", "s", goal=0.15),
    Metric("many_start", "{many} engines on one host: start", "s", goal=2.0, many=True),
    Metric("many_rtt_all", "{many} engines: execute('pass') on all", "ms", goal=15.0, many=True),
]


@dataclass(frozen=True)
class Plan:
    starts: int  # fresh clusters, each timed from nothing to n engines ready
    latency: int  # timed tiny round trips per latency metric
    warmup: int  # untimed round trips before them
    transfers: int  # timed 80 MB pushes, and as many pulls, scatters and gathers
    maps: int  # timed maps
    budget: float  # seconds per measurement before sampling stops early


FULL = Plan(starts=3, latency=1000, warmup=100, transfers=8, maps=3, budget=30.0)
QUICK = Plan(starts=2, latency=300, warmup=30, transfers=3, maps=1, budget=6.0)


@dataclass
class Outcome:
    name: str
    version: str = ""
    unavailable: str = ""  # why the whole system is n/a
    values: dict[str, float | str] = field(default_factory=dict)  # a number, or why there is none
    samples: dict[str, int] = field(default_factory=dict)  # how many samples made each number
    short: set[str] = field(default_factory=set)  # metrics sampled fewer times than planned
    leftovers: list[str] = field(default_factory=list)  # processes that outlived stop()
    methods: dict[str, str] = field(default_factory=dict)  # metric key -> the call timed
    many: int = 0  # engines of the ``many_*`` rows (0: not measured)

    def store(self, key: str, value: float, samples: int, planned: int) -> None:
        self.values[key] = value
        self.samples[key] = samples
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


def _latency(out: Outcome, key: str, fn: Callable[[], Any] | None, plan: Plan) -> None:
    if fn is None:
        out.values[key] = NOT_APPLICABLE
        if key == "rtt1":
            out.values["rtt1_p90"] = NOT_APPLICABLE
        return
    xs = sorted(_sample(fn, plan.latency, plan.budget, warmup=plan.warmup))
    out.store(key, 1e3 * statistics.median(xs), len(xs), plan.latency)
    if key == "rtt1":
        out.store("rtt1_p90", 1e3 * xs[round(0.9 * (len(xs) - 1))], len(xs), plan.latency)


def _array() -> Any:
    import numpy as np

    return np.random.default_rng(0).random(ARRAY_ITEMS)


def _push_pull(out: Outcome, ops: Ops, plan: Plan) -> None:
    a = _array()
    try:
        ops.push(a)  # warm-up, and the value the pulls read back
        pushes = _sample(lambda: ops.push(a), plan.transfers, plan.budget)
        out.store("push", a.nbytes / 1e9 / statistics.median(pushes), len(pushes), plan.transfers)
        back = ops.pull()
        if getattr(back, "shape", None) != a.shape or back[-1] != a[-1]:
            raise ValueError("pull returned a different array")
        pulls = _sample(ops.pull, plan.transfers, plan.budget)
        out.store("pull", a.nbytes / 1e9 / statistics.median(pulls), len(pulls), plan.transfers)
        del back
        if ops.pull_shared is None:
            out.values["pull_shared"] = NOT_APPLICABLE
            return
        back = ops.pull_shared()
        if getattr(back, "shape", None) != a.shape or back[-1] != a[-1]:
            raise ValueError("read-only pull returned a different array")
        del back
        pulls = _sample(ops.pull_shared, plan.transfers, plan.budget)
        gbs = a.nbytes / 1e9 / statistics.median(pulls)
        out.store("pull_shared", gbs, len(pulls), plan.transfers)
    finally:
        ops.drop()


def _push_all(
    out: Outcome, key: str, push: Callable[[Any], Any] | None, ops: Ops, n: int, plan: Plan
) -> None:
    """80 MB to each of the ``n`` engines: GB/s of the bytes delivered (n x 80 MB)."""
    if push is None:
        out.values[key] = NOT_APPLICABLE
        return
    a = _array()
    try:
        try:
            push(a)  # warm-up
        except TypeError as e:  # multiengine's push(..., shared=True) is not there yet
            if "shared" not in str(e):
                raise
            out.values[key] = NOT_BUILT
            return
        xs = _sample(lambda: push(a), plan.transfers, plan.budget)
        out.store(key, n * a.nbytes / 1e9 / statistics.median(xs), len(xs), plan.transfers)
    finally:
        ops.drop()


def _lists(out: Outcome, ops: Ops, plan: Plan) -> None:
    """Scatter and gather of a list of LIST_ITEMS ints: MB/s counting 8 bytes per int."""
    if ops.scatter is None or ops.gather is None:
        out.values["scatter"] = out.values["gather"] = NOT_APPLICABLE
        return
    scatter, gather = ops.scatter, ops.gather
    xs = list(range(LIST_ITEMS))
    nbytes = 8 * LIST_ITEMS
    try:
        scatter(xs)  # warm-up, and the parts the gathers read back
        scatters = _sample(lambda: scatter(xs), plan.transfers, plan.budget)
        mbs = nbytes / 1e6 / statistics.median(scatters)
        out.store("scatter", mbs, len(scatters), plan.transfers)
        if list(gather()) != xs:
            raise ValueError("gather returned a different list")
        gathers = _sample(gather, plan.transfers, plan.budget)
        mbs = nbytes / 1e6 / statistics.median(gathers)
        out.store("gather", mbs, len(gathers), plan.transfers)
    finally:
        ops.drop()


def _maps(out: Outcome, ops: Ops, plan: Plan) -> None:
    # no warm-up: a dask map can take 20 s; the median absorbs a cold run
    seq, results = range(MAP_ITEMS), []
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


def _phases(out: Outcome, ops: Ops, n: int, plan: Plan) -> list[tuple[tuple[str, ...], Any]]:
    return [
        (("rtt1", "rtt1_p90"), lambda: _latency(out, "rtt1", ops.execute_one, plan)),
        (("call1",), lambda: _latency(out, "call1", ops.call_one, plan)),
        (("pull_tiny",), lambda: _latency(out, "pull_tiny", ops.pull_tiny, plan)),
        (("rtt_all",), lambda: _latency(out, "rtt_all", ops.execute_all, plan)),
        (("push", "pull", "pull_shared"), lambda: _push_pull(out, ops, plan)),
        (("push_all",), lambda: _push_all(out, "push_all", ops.push_all, ops, n, plan)),
        (("push_shared",), lambda: _push_all(out, "push_shared", ops.push_shared, ops, n, plan)),
        (("scatter", "gather"), lambda: _lists(out, ops, plan)),
        (("map",), lambda: _maps(out, ops, plan)),
        (("tasks",), lambda: _tasks(out, ops, plan)),
    ]


def _stop(system: System, before: dict[int, str], stops: list[float], out: Outcome) -> None:
    """Stop ``system``, adding the time until its processes are gone to ``stops``
    (a failure to stop is the shutdown row's error)."""
    try:
        with _watchdog(60):
            stops.append(timed_stop(system.stop, before))
    except Exception as e:
        out.values.setdefault("shutdown", f"error ({_reason(e)[:70]})")


def measure(
    system: System,
    n: int,
    plan: Plan,
    progress: Callable[[str], None] = lambda s: None,
    many: int = 0,
) -> Outcome:
    """Run every measurement on ``system``; stop it and end whatever it left running.
    With ``many``, then also time a start of ``many`` engines and their round trip."""
    out = Outcome(system.name, methods=dict(system.methods))
    try:
        out.version = str(importlib.import_module(system.module).__version__)
    except ImportError:
        out.unavailable = "not installed"
        return out
    before = descendants()
    hang = 2 * plan.budget + 60
    stops: list[float] = []
    try:
        times: list[float] = []
        ops: Ops | None = None
        t_end = time.perf_counter() + plan.budget
        for i in range(plan.starts):
            progress(f"{system.name}: start {i + 1}/{plan.starts}")
            if i:
                _stop(system, before, stops, out)
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
        for keys, phase in _phases(out, ops, n, plan):
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
        _stop(system, before, stops, out)
        if stops and "shutdown" not in out.values:
            out.store("shutdown", statistics.median(stops), len(stops), plan.starts)
        out.leftovers += reap_leftovers(before)
    if many and not out.unavailable:
        _many(out, system, many, plan, progress)
    return out


def _many(
    out: Outcome, system: System, count: int, plan: Plan, progress: Callable[[str], None]
) -> None:
    """One start of ``count`` engines (timed), then their all-engine round trips."""
    out.many = count
    before = descendants()
    keys = ("many_start", "many_rtt_all")
    try:
        progress(f"{system.name}: start {count} engines")
        t0 = time.perf_counter()
        with _watchdog(plan.budget * 4 + count):
            ops = system.start(count)
            out.store("many_start", time.perf_counter() - t0, 1, 1)
            progress(f"{system.name}: execute('pass') on {count} engines")
            xs = _sample(ops.execute_all, plan.latency // 10, plan.budget, plan.warmup // 10)
        out.store("many_rtt_all", 1e3 * statistics.median(xs), len(xs), plan.latency // 10)
    except Exception as e:
        for k in keys:
            out.values.setdefault(k, f"error ({_reason(e)[:70]})")
    finally:
        progress(f"{system.name}: stopping {count} engines")
        try:
            with _watchdog(120):
                system.stop()
        except Exception as e:
            out.leftovers.append(f"stop() of {count} engines raised {_reason(e)}")
        out.leftovers += reap_leftovers(before)
