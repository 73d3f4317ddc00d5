"""The processes a benchmarked system starts, found in ``/proc``: timing its stop, reaping.

``multiengine bench`` needs two things of every system it starts: how long its stop takes
until *every* process it started is gone (a stop call that returns while workers still
exit does not count as done), and that nothing is left running afterwards. Both are
answered from ``/proc`` by pid: :func:`descendants` lists this process's live
descendants, :func:`timed_stop` times a stop until each of those started since a
snapshot has exited, and :func:`reap_leftovers` ends by pid whatever outlived the stop.
A process is told apart from a later one that reuses its pid by its start time. Off
Linux (no ``/proc``) nothing is found, so stops are timed to their return.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["descendants", "timed_stop", "reap_leftovers"]

# multiprocessing's resource tracker (dask) ends with this process; leave it be
_OURS = ("resource_tracker",)


def _stat(pid: int | str) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name; None if gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else fields


def _start_time(pid: int) -> str | None:
    fields = _stat(pid)
    return fields[19] if fields else None  # field 22 of stat: start time in clock ticks


def descendants() -> dict[int, str]:
    """pid -> command line of every live descendant of this process
    (from /proc; empty elsewhere)."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if entry.isdigit() and (fields := _stat(entry)) is not None:
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


def _started_since(before: dict[int, str]) -> dict[int, str]:
    return {
        p: c for p, c in descendants().items() if p not in before and not any(o in c for o in _OURS)
    }


def timed_stop(stop: Callable[[], Any], before: dict[int, str], limit: float = 30.0) -> float:
    """Seconds from calling ``stop`` until every process started since ``before`` is gone.

    Raises TimeoutError when some are still alive ``limit`` s after the call (they are
    left for :func:`reap_leftovers`).
    """
    started = {p: _start_time(p) for p in _started_since(before)}
    t0 = time.perf_counter()
    stop()
    while True:
        alive = [p for p, t in started.items() if t is not None and _start_time(p) == t]
        elapsed = time.perf_counter() - t0
        if not alive:
            return elapsed
        if elapsed > limit:
            raise TimeoutError(f"{len(alive)} processes still alive {limit:g} s after the stop")
        time.sleep(0.001)


def reap_leftovers(before: dict[int, str], grace: float = 3.0) -> list[str]:
    """Processes started since ``before`` and still alive after ``grace`` s:
    report them, end them by pid."""
    deadline = time.monotonic() + grace
    while True:
        left = _started_since(before)
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        time.sleep(0.5)
    return [f"{pid} {cmd.strip()[:100]}" for pid, cmd in left.items()]
