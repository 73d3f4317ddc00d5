"""What the controller knows of each engine: its id, its FIFO queue, its liveness."""

from __future__ import annotations

import heapq
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..wire.protocol import Xfer

if TYPE_CHECKING:
    from .jobs import Job

__all__ = ["Command", "EngineState", "IdAllocator", "IncomingReply"]


@dataclass(eq=False, slots=True)
class Command:
    """One engine's share of a job, or one attempt of a task: what to send, and where
    its answer goes (``job`` for MultiEngine calls, ``task`` for load-balanced tasks)."""

    job: Job | None
    index: int  # position of this engine in the job's targets
    name: str
    desc: str
    content: Any
    buffers: list[Any]
    cmd_id: int = 0
    raw: bool = True  # the buffers are raw out-of-band data (signed by length)
    xfer: Xfer | None = None  # buffers coming as pieces
    pieces: list[Any] | None = None  # pieces arrived before dispatch
    streaming: bool = False  # dispatched: later pieces go straight to the engine
    task: Any = None  # the scheduler's Task, for a task attempt
    time_limit: float | None = None  # a task's, enforced by the engine
    live: bool = False  # stream what it prints
    sent: bool = False  # sent to the engine
    started: float | None = None  # when it became the engine's current command
    detached: bool = False  # taken back unrun: its answer, when it comes, is dropped

    @property
    def start_key(self) -> tuple[str, Any]:
        """What a ``wait_started`` request names to wait for this command."""
        if self.task is not None:
            return ("task", self.task.tid)
        return ("job", self.job.job_id if self.job is not None else None)


@dataclass(eq=False, slots=True)
class IncomingReply:
    """A reply whose buffers are still arriving in pieces."""

    status: str
    enc: str
    content: Any
    xfer: Xfer
    flags: Any  # the reply's task flags, for the scheduler
    stream: bool  # relayed on to the client piece by piece
    elapsed: float | None = None
    pieces: list[Any] = field(default_factory=list)
    left: int = 0


@dataclass(eq=False, slots=True)
class EngineState:
    id: int
    ident: bytes  # routing identity on the engine channel (also used on heartbeat)
    pid: int
    host: str
    queue: deque[Command] = field(default_factory=deque)
    current: Command | None = None  # sent and running (or first in line on the engine)
    ahead: deque[Command] = field(default_factory=deque)  # tasks sent behind current (prefetch)
    incoming: IncomingReply | None = None  # a reply whose pieces are still arriving
    last_seen: float = field(default_factory=time.monotonic)
    registered_at: float = field(default_factory=time.time)
    last_task: float = 0.0  # when a task was last handed to it (round-robin among idle engines)

    @property
    def idle(self) -> bool:
        return self.current is None and not self.queue

    @property
    def load(self) -> int:
        """Commands on this engine: running, sent ahead, and queued here."""
        return (self.current is not None) + len(self.ahead) + len(self.queue)

    def only_tasks(self) -> bool:
        """True when nothing but tasks is running, sent ahead, or queued."""
        return (self.current is None or self.current.task is not None) and all(
            c.task is not None for c in (*self.ahead, *self.queue)
        )

    def queued_descs(self) -> list[str]:
        return [c.desc for c in (*self.ahead, *self.queue)]


class IdAllocator:
    """Lowest free id first; a desired id honoured when free; ids reused; no cap."""

    def __init__(self) -> None:
        self._free: list[int] = []  # heap of released ids below _next
        self._next = 0
        self._used: set[int] = set()

    def take(self, desired: int | None = None) -> int:
        if desired is not None and desired >= 0 and desired not in self._used:
            while self._next <= desired:
                heapq.heappush(self._free, self._next)
                self._next += 1
            self._used.add(desired)
            return desired
        while self._free:
            i = heapq.heappop(self._free)
            if i not in self._used:
                self._used.add(i)
                return i
        i = self._next
        self._next += 1
        self._used.add(i)
        return i

    def release(self, i: int) -> None:
        if i in self._used:
            self._used.discard(i)
            heapq.heappush(self._free, i)
