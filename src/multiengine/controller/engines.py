"""What the controller knows of each engine: its id, its FIFO queue, its liveness."""

from __future__ import annotations

import heapq
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..wire.protocol import Xfer

if TYPE_CHECKING:
    from .jobs import Job

__all__ = ["Command", "DirectJob", "EngineState", "IdAllocator", "IncomingReply"]


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
    digest: bytes | None = None  # the content's SHA-256, made by the client (``cdg``)
    xfer: Xfer | None = None  # buffers coming as pieces
    pieces: list[Any] | None = None  # pieces arrived before dispatch
    streaming: bool = False  # dispatched: later pieces go straight to the engine
    abandoned: bool = False  # its client stopped sending the pieces (transfers.py)
    task: Any = None  # the scheduler's Task, for a task attempt
    time_limit: float | None = None  # a task's, enforced by the engine
    live: bool = False  # stream what it prints
    sent: bool = False  # sent to the engine
    started: float | None = None  # when it became the engine's current command
    detached: bool = False  # taken back unrun: its answer, when it comes, is dropped
    batch: int = 0  # the ``cmds`` message it went in (0: on its own)

    @property
    def start_key(self) -> tuple[str, Any]:
        """What a ``wait_started`` request names to wait for this command."""
        if self.task is not None:
            return ("task", self.task.tid)
        return ("job", self.job.job_id if self.job is not None else None)


@dataclass(eq=False, slots=True)
class DirectJob:
    """A command a client sent straight to an engine (controller/direct.py), as far as
    the controller knows not answered yet. ``after``: the last command number given
    when the controller heard of it; the engine's queued commands numbered above it
    (made later: perhaps the same client's next ones) wait until it is answered."""

    job: Job
    after: int
    asked: bool = False  # the engine was asked for its held reports (``direct_flush``)


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
    ahead: bool = False  # relayed on ahead of the job's result, one of several parts
    sent: int = 0  # pieces relayed on so far (ahead)
    unsigned: bool = False  # a piece kept came raw (signed by its length only)
    changed: bool = False  # a piece kept did not match its digest (``dg``)


@dataclass(eq=False, slots=True)
class EngineState:
    id: int
    ident: bytes  # routing identity on the engine channel (also used on heartbeat)
    pid: int
    host: str
    node: str = ""  # where its shared memory can be mapped (``register`` ``node``)
    queue: deque[Command] = field(default_factory=deque)
    current: Command | None = None  # sent and running (or first in line on the engine)
    ahead: deque[Command] = field(default_factory=deque)  # tasks sent behind current (prefetch)
    incoming: IncomingReply | None = None  # a reply whose pieces are still arriving
    conn: int | None = None  # its engine-channel connection (the socket's fd in libzmq)
    hb_conn: int | None = None  # its heartbeat-channel connection (named by ``hello``)
    epoch: int = 0  # how many times the engine had lost the controller when it registered
    registered_at: float = field(default_factory=time.time)
    last_task: float = 0.0  # when a task was last handed to it (round-robin among idle engines)
    depth: int = 0  # tasks it may hold sent ahead (Dispatch: PREFETCH, deeper for tiny tasks)
    direct_url: str = ""  # where clients of its host send direct commands ("": nowhere)
    direct_on: bool = False  # it was sent ``direct_on`` (it reads its direct socket)
    # direct commands it was sent by clients (command id -> job), not answered yet as
    # far as the controller knows, in the order the controller heard of them: commands
    # queued after one wait behind it (docs/protocol.md §6)
    direct: dict[str, DirectJob] = field(default_factory=dict)

    def held(self) -> bool:
        """Whether the first queued command waits behind a direct command."""
        for first in self.direct.values():  # (the first heard of: the lowest ``after``)
            return bool(self.queue) and self.queue[0].cmd_id > first.after
        return False

    @property
    def idle(self) -> bool:
        return self.current is None and not self.queue and not self.direct

    @property
    def load(self) -> int:
        """Commands on this engine: running, sent ahead, queued here, and direct."""
        return (self.current is not None) + len(self.ahead) + len(self.queue) + len(self.direct)

    def only_tasks(self) -> bool:
        """True when nothing but tasks is running, sent ahead, or queued. (Only tasks are
        ever sent ahead, behind a task: ``Dispatch.dispatch``. So ``ahead``, up to 32 long
        with tiny tasks, is not looked through: this runs for every task scheduled.)"""
        return (self.current is None or self.current.task is not None) and all(
            c.task is not None for c in self.queue
        )

    def queued_descs(self) -> list[str]:
        return [c.desc for c in (*self.ahead, *self.queue)]


class IdAllocator:
    """Engine ids: the lowest free id first; a desired id honoured when no live engine
    holds it; ids reused; no cap.

    An id released with an ``owner`` (the routing identity of an engine that was lost,
    not one that said goodbye) stays *reserved* for ``grace`` seconds: an engine asking
    for no particular id does not get it, the same owner gets it back, and an engine
    that asks for it by ``desired`` (a restarted engine) gets it. ``clock`` is the
    monotonic clock reservations expire on (a test passes its own).
    """

    def __init__(self, grace: float = 0.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.grace = grace
        self.clock = clock
        self._free: list[int] = []  # heap of ids below _next, free or reserved (lazily skipped)
        self._next = 0
        self._used: set[int] = set()
        self._reserved: dict[int, tuple[bytes, float]] = {}  # id -> (owner, until)
        self._owned: dict[bytes, int] = {}  # owner -> its reserved id
        self._expiry: list[tuple[float, int]] = []  # heap of (until, id)

    def take(self, desired: int | None = None, owner: bytes | None = None) -> int:
        self._expire()
        if desired is not None and desired >= 0 and desired not in self._used:
            while self._next <= desired:
                heapq.heappush(self._free, self._next)
                self._next += 1
            return self._use(desired, owner)
        mine = self._owned.get(owner) if owner is not None else None
        if mine is not None and mine not in self._used:
            return self._use(mine, owner)
        while self._free:
            i = heapq.heappop(self._free)
            if i not in self._used and i not in self._reserved:
                return self._use(i, owner)
        i = self._next
        self._next += 1
        return self._use(i, owner)

    def _use(self, i: int, owner: bytes | None) -> int:
        self._used.add(i)
        self._unreserve(i)
        if owner is not None and owner in self._owned:  # back under another id: it needs
            self._unreserve(self._owned[owner])  # the old one no longer
        return i

    def release(self, i: int, owner: bytes | None = None) -> None:
        """``i`` is free again; reserved for ``owner`` for the grace period if one is named."""
        if i not in self._used:
            return
        self._used.discard(i)
        if owner is not None and self.grace > 0:
            until = self.clock() + self.grace
            self._unreserve(i)
            if owner in self._owned:
                self._unreserve(self._owned[owner])
            self._reserved[i] = (owner, until)
            self._owned[owner] = i
            heapq.heappush(self._expiry, (until, i))
        else:
            heapq.heappush(self._free, i)

    def _unreserve(self, i: int) -> None:
        held = self._reserved.pop(i, None)
        if held is not None:
            self._owned.pop(held[0], None)
            if i not in self._used:
                heapq.heappush(self._free, i)

    def _expire(self) -> None:
        heap = self._expiry
        if not heap:
            return
        now = self.clock()
        while heap and heap[0][0] <= now:
            until, i = heapq.heappop(heap)
            held = self._reserved.get(i)
            if held is not None and held[1] == until:
                self._unreserve(i)

    def reserved(self) -> dict[int, float]:
        """The reserved ids and how many seconds each stays reserved."""
        self._expire()
        now = self.clock()
        return {i: until - now for i, (_, until) in sorted(self._reserved.items())}
