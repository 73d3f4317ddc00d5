"""What a live view of the cluster asks the controller: recent command and task events,
and each engine's memory and CPU (the ``monitor`` request, docs/protocol.md).

:class:`Timeline` is a bounded ring of events, numbered in order: a command or task
that started on an engine, and how it ended. A viewer asks for the events after the last
number it has seen; once the ring has wrapped it gets the newest ``capacity`` events and
knows from the numbers that it missed some.

:class:`Usage` keeps the engines' resident memory and CPU time as their heartbeat
threads report them (``usage``). The controller asks (``probe``) only when a viewer
asks and the figures are older than ``max_age``: nothing is sent per engine per
heartbeat, and any number of viewers cost one probe per engine per ``max_age``.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

__all__ = ["Timeline", "Usage", "START", "OK", "FAILED", "LOST", "REVOKED"]

# event kinds
START = "start"
OK = "ok"
FAILED = "failed"
LOST = "lost"  # the engine went away with it
REVOKED = "revoked"  # a task sent ahead, taken back unrun


class Timeline:
    """Recent events as ``[seq, time, engine, what, kind, desc]`` lists (``what``:
    ``"task N"`` or ``"job J"``; ``kind``: :data:`START`, :data:`OK`, ...)."""

    def __init__(self, capacity: int = 4096) -> None:
        self.events: deque[list[Any]] = deque(maxlen=capacity)
        self.seq = 0

    def record(self, engine: int, what: str, kind: str, desc: str, at: float = 0.0) -> None:
        """Add an event; ``at``: its time, when the caller has it (else now)."""
        self.seq += 1
        self.events.append([self.seq, at or time.time(), engine, what, kind, desc[:120]])

    def since(self, seq: int) -> list[list[Any]]:
        """The events numbered above ``seq``, oldest first."""
        if seq >= self.seq:
            return []
        n = min(self.seq - seq, len(self.events))
        return list(self.events)[-n:] if n else []


class Usage:
    """Engines' memory (bytes) and CPU (seconds), as last reported, with when."""

    def __init__(self, max_age: float = 1.0) -> None:
        self.max_age = max_age
        self.by_engine: dict[int, dict[str, float]] = {}
        self.probed: float | None = None  # monotonic time of the last probe

    def due(self, now: float) -> bool:
        """Whether to probe the engines again (and note that it is being done)."""
        if self.probed is not None and now - self.probed < self.max_age:
            return False
        self.probed = now
        return True

    def report(self, engine: int, rss: Any, cpu: Any) -> None:
        if isinstance(rss, int) and isinstance(cpu, (int, float)):
            self.by_engine[engine] = {"rss": rss, "cpu": float(cpu), "at": time.time()}

    def forget(self, engine: int) -> None:
        self.by_engine.pop(engine, None)
