"""The measuring of ``multiengine bench``: what is measured, how often, and how.

:data:`METRICS` lists the numbers the bench makes, :class:`Plan` how many samples of
each (:data:`FULL`, :data:`QUICK`), and :func:`measure` makes them for one
:class:`~multiengine.bench.systems.System`: it starts the system ``plan.starts`` times
(timing each start), then runs the timing loops on the last cluster through its
:class:`~multiengine.bench.systems.Ops` and stops it. Values are medians. Each
measurement has a time budget, so a slow peer is sampled fewer times (marked ``*``)
instead of holding up the run, and a watchdog (``SIGALRM``) turns a hang into an error.
After the stop, every process the system started that is still alive (found in
``/proc``) is reported and ended by its pid.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import signal
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .systems import Ops, System

__all__ = ["METRICS", "FULL", "QUICK", "Metric", "Outcome", "Plan", "measure"]

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
