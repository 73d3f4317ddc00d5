"""What the controller's parts share: the engine registry, and sending.

:class:`Dispatch` is the narrow interface between the controller's hub
(``relay.py``, which owns the sockets and the loop) and its satellites, the task
scheduler (``scheduler.py``) and the large-transfer relay (``transfers.py``). They see
the registered engines and may queue commands on them, send to clients and engines,
interrupt commands, and take command numbers; they never see the hub. Sending goes
through an :class:`Outbox`: the hub's signs and sends on its sockets, a test's records
what would have been sent, so the scheduler is tested without a process or a socket.

Each engine runs one command at a time, in the order of its FIFO queue. While it runs
only tasks, up to :data:`PREFETCH` more tasks are sent to it ahead of time, so it never
waits for the controller between two of them; up to :data:`PREFETCH_DEEP` while its
tasks are tiny (see ``EngineState.depth``).

In a running controller (:attr:`Dispatch.batching`) the task commands for one engine
that are dispatched during one turn of the loop go out together at the turn's end, as
one ``cmds`` message (one ``cmd`` when there is one): an engine that answers several
tiny tasks in one ``replies`` message gets as many new ones in one message.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from ..wire import protocol as P
from ..wire.message import pack
from ..wire.protocol import BatchedCmd
from .engines import Command, EngineState, IdAllocator
from .monitor import START, Timeline

__all__ = ["Dispatch", "FAST_TASK", "Outbox", "PREFETCH", "PREFETCH_DEEP", "StartKey"]

# Tasks sent to a busy engine ahead of time. Only tasks, only behind tasks, and only
# this many: a failing task takes the ones sent ahead back (they return to the
# scheduler), an engine that goes idle takes them over, and priorities keep ordering
# what still waits in the controller.
PREFETCH = 2
# While an engine's tasks are tiny (each ran under FAST_TASK seconds), one more per such
# task is sent ahead, up to PREFETCH_DEEP: at most ~32 ms of work waits behind a running
# tiny task, and the engine answers in batches (engine/replies.py) while the controller
# refills it. A slower or failed task brings the depth back to PREFETCH. (Measured with
# benchmarks/task_cost.py: 32 gave ~15% more tasks/s than 16.)
PREFETCH_DEEP = 32
FAST_TASK = 0.001

StartKey = tuple[str, Any]  # ("job", job id) or ("task", task id): what wait_started names


class Outbox(Protocol):
    """Where the controller's messages go: signed and sent, or recorded in a test."""

    def to_client(
        self, client: bytes, header: dict[str, Any], content: Any = b"", buffers: Any = ()
    ) -> None: ...

    def to_engine(
        self, ident: bytes, header: dict[str, Any], content: Any = b"", buffers: Any = ()
    ) -> None: ...

    def to_engines(
        self, idents: list[bytes], header: dict[str, Any], content: Any = b"", buffers: Any = ()
    ) -> None:
        """The same message to each of several engines: signed once, sent to each."""

    def to_heartbeat(self, ident: bytes, header: dict[str, Any]) -> None: ...


class Dispatch:
    """The registered engines and their queues, and every way of sending."""

    def __init__(self, outbox: Outbox, ids: IdAllocator | None = None) -> None:
        self.outbox = outbox
        self.engines: dict[int, EngineState] = {}
        self.by_ident: dict[bytes, EngineState] = {}
        self.by_conn: dict[int, EngineState] = {}  # connection (either channel) -> engine
        self.ids = ids or IdAllocator()
        self.prefetching: set[int] = set()  # engines holding tasks sent ahead
        self._sorted: list[int] | None = None  # engine ids, ascending (cached)
        # Command numbers start above any an earlier controller gave (microseconds since
        # the epoch), so a reply meant for a controller that was restarted never matches
        # a command of this one.
        self._last_cmd = time.time_ns() // 1000
        # clients waiting for a job or task to start (wait_started); empty almost always
        self.start_waiters: dict[StartKey, list[tuple[bytes, Any]]] = {}
        self.to_client = outbox.to_client  # bound once: this is on every answer's path
        # told when a task's command starts on its engine (the scheduler writes it down)
        self.on_task_start: Callable[[Command], None] | None = None
        # recent starts and ends of commands, for live views (monitor)
        self.timeline = Timeline()
        # task commands dispatched during this turn, by engine id, sent at its end
        # (send_batched); off (each sent at once) unless the running controller sets it
        self.batching = False
        self._outgoing: dict[int, tuple[EngineState, list[Command]]] = {}
        self._batches = 0  # cmds messages sent (their numbers)

    # ------------------------------------------------------------ the registry
    def add_engine(
        self,
        ident: bytes,
        pid: int,
        host: str,
        desired: int | None,
        conn: int | None = None,
        epoch: int = 0,
    ) -> EngineState:
        engine = EngineState(
            self.ids.take(desired, ident), ident, pid, host, conn=conn, epoch=epoch
        )
        engine.depth = PREFETCH
        self.engines[engine.id] = engine
        self.by_ident[ident] = engine
        if conn is not None:
            self.by_conn[conn] = engine
        self._sorted = None
        return engine

    def remove_engine(self, engine: EngineState, reserve: bool = False) -> bool:
        """Forget ``engine`` (False if it was already gone); its queues are the caller's.

        ``reserve``: the engine was lost rather than gone for good, so its id stays
        reserved for it for a while (:class:`~.engines.IdAllocator`).
        """
        if self.engines.get(engine.id) is not engine:
            return False
        del self.engines[engine.id]
        self.by_ident.pop(engine.ident, None)
        for conn in (engine.conn, engine.hb_conn):
            if conn is not None and self.by_conn.get(conn) is engine:
                del self.by_conn[conn]
        self.ids.release(engine.id, engine.ident if reserve else None)
        self.prefetching.discard(engine.id)
        self._sorted = None
        return True

    def attach_heartbeat(self, engine: EngineState, conn: int) -> None:
        """``engine``'s heartbeat connection is ``conn`` (its closing loses the engine)."""
        if engine.hb_conn is not None and self.by_conn.get(engine.hb_conn) is engine:
            del self.by_conn[engine.hb_conn]
        engine.hb_conn = conn
        self.by_conn[conn] = engine

    def sorted_ids(self) -> list[int]:
        """The registered engine ids, ascending (do not change the list)."""
        if self._sorted is None:
            self._sorted = sorted(self.engines)
        return self._sorted

    def idle_engines(self) -> Iterator[EngineState]:
        return (e for e in self.engines.values() if e.idle)

    def new_cmd_id(self) -> int:
        self._last_cmd += 1
        return self._last_cmd

    @property
    def last_cmd_id(self) -> int:
        """The last command number given (later commands have larger ones)."""
        return self._last_cmd

    # ------------------------------------------------------------ queues
    def enqueue(self, engine: EngineState, cmd: Command) -> None:
        """Put ``cmd`` at the end of ``engine``'s queue and send what can go now."""
        engine.queue.append(cmd)
        self.dispatch(engine)

    def dispatch(self, engine: EngineState) -> None:
        """Send the engine its next command, and tasks ahead while it runs tasks."""
        if engine.current is None and engine.queue:
            if engine.direct and engine.held():
                self._ask_for_reports(engine)
            else:
                engine.current = engine.queue.popleft()
                self._send_cmd(engine, engine.current)
                self._started(engine.current, engine)
        while (
            engine.queue
            and engine.current is not None
            and engine.current.task is not None
            and engine.queue[0].task is not None
            and len(engine.ahead) < engine.depth
            and not engine.current.task.alone
            and not engine.queue[0].task.alone
        ):
            cmd = engine.queue.popleft()
            engine.ahead.append(cmd)
            self.prefetching.add(engine.id)
            self._send_cmd(engine, cmd)

    def _ask_for_reports(self, engine: EngineState) -> None:
        """The engine's queue waits behind a direct command it may have answered long
        ago, its report held with others (docs/protocol.md §6): ask for them (once)."""
        first = next(iter(engine.direct.values()))  # (the queue waits behind the first)
        if not first.asked:
            first.asked = True
            self.outbox.to_engine(engine.ident, {"t": P.DIRECT_FLUSH})

    def advance(self, engine: EngineState) -> None:
        """The engine answered its current command: the next one sent ahead (if any) runs."""
        engine.current = engine.ahead.popleft() if engine.ahead else None
        if self.prefetching and not engine.ahead:
            self.prefetching.discard(engine.id)
        if engine.current is not None:
            self._started(engine.current, engine)

    def task_answered(self, engine: EngineState, ok: bool, elapsed: float | None) -> None:
        """A task attempt on ``engine`` ended: how deep to send tasks ahead to it."""
        if ok and isinstance(elapsed, (int, float)) and elapsed < FAST_TASK:
            if engine.depth < PREFETCH_DEEP:
                engine.depth += 1
        else:
            engine.depth = PREFETCH

    def send_batched(self) -> None:
        """Send the task commands dispatched during this turn: one message per engine."""
        if not self._outgoing:
            return
        outgoing, self._outgoing = self._outgoing, {}
        for engine, cmds in outgoing.values():
            if self.engines.get(engine.id) is not engine:
                continue  # it left meanwhile (its commands went back to the scheduler)
            run: list[Command] = []
            for cmd in cmds:  # a task to run alone goes in a message of its own
                if cmd.task is not None and cmd.task.alone:
                    self._send_batch(engine, run)
                    self._send_batch(engine, [cmd])
                    run = []
                else:
                    run.append(cmd)
            self._send_batch(engine, run)

    def _send_batch(self, engine: EngineState, cmds: list[Command]) -> None:
        if len(cmds) <= 1:
            for cmd in cmds:
                self._send_now(engine, cmd)
            return
        self._batches += 1
        items = []
        for c in cmds:
            c.batch = self._batches
            items.append(BatchedCmd(c.cmd_id, c.name, len(c.buffers), c.time_limit, c.live))
        _, frames, raw = P.pack_parts((c.content, c.buffers) for c in cmds)
        header: dict[str, Any] = {"t": P.CMDS, "cmds": [i.to_wire() for i in items]}
        if raw:
            header["raw"] = raw
        self.outbox.to_engine(engine.ident, header, b"", frames)

    def _send_cmd(self, engine: EngineState, cmd: Command) -> None:
        if self.batching and cmd.task is not None and cmd.xfer is None:
            cmd.sent = True
            held = self._outgoing.get(engine.id)
            if held is None or held[0] is not engine:
                self._outgoing[engine.id] = (engine, [cmd])
            else:
                held[1].append(cmd)
            return
        if self._outgoing and engine.id in self._outgoing:
            self.send_batched()  # what was dispatched before it goes first
        self._send_now(engine, cmd)

    def start_together(self, started: list[tuple[EngineState, Command]]) -> None:
        """Idle engines each start their command of one call, all sharing one command
        number, content and buffers (no pieces to follow): one message, signed once and
        sent to each (at 128 engines, 127 signatures fewer). Sent at once, so no message
        signed later reaches an engine before it (which would make it a replay there)."""
        if self._outgoing and any(e.id in self._outgoing for e, _ in started):
            self.send_batched()  # what was dispatched before it goes first
        first = started[0][1]
        header = self._cmd_header(first)
        self.outbox.to_engines([e.ident for e, _ in started], header, first.content, first.buffers)
        now, what = time.time(), what_of(first)  # (one call: the same for all of them)
        for engine, cmd in started:
            engine.current = cmd
            cmd.sent = True
            self._started(cmd, engine, now, what)

    def _cmd_header(self, cmd: Command) -> dict[str, Any]:
        header: dict[str, Any] = {"t": P.CMD, "cmd": cmd.cmd_id, "name": cmd.name}
        if cmd.xfer is not None:
            header["xfer"] = cmd.xfer.to_wire()
        if cmd.buffers and cmd.raw:
            header["raw"] = True  # out-of-band buffers; the content (the pickle) is hashed
        if cmd.digest is not None:
            header["cdg"] = cmd.digest  # ...or covered by the client's digest (§2)
        if cmd.time_limit:
            header["tl"] = cmd.time_limit
        if cmd.live:
            header["live"] = True
        return header

    def _send_now(self, engine: EngineState, cmd: Command) -> None:
        self.outbox.to_engine(engine.ident, self._cmd_header(cmd), cmd.content, cmd.buffers)
        cmd.sent = True
        if cmd.xfer is not None:  # pieces that arrived before it: right behind it; later ones
            for piece in cmd.pieces or ():  # go straight on (Transfers)
                self.send_piece(engine, cmd, piece)
            cmd.pieces = None
            cmd.streaming = True
            if cmd.abandoned:
                self.send_abandon(engine, cmd)

    def send_piece(self, engine: EngineState, cmd: Command, piece: Any) -> None:
        """A piece of a large transfer, to the engine running ``cmd``."""
        header = {"t": P.CHUNK, "cmd": cmd.cmd_id, "raw": True}
        self.outbox.to_engine(engine.ident, header, b"", (piece,))

    def send_abandon(self, engine: EngineState, cmd: Command) -> None:
        """No more pieces will come for ``cmd``: an empty ``chunk`` (no buffer) says so."""
        self.outbox.to_engine(engine.ident, {"t": P.CHUNK, "cmd": cmd.cmd_id})

    def interrupt(self, engine: EngineState, cmd: Command, why: str) -> None:
        """Ask the engine's heartbeat thread to interrupt ``cmd`` (or, if it has not
        started it, to answer it unrun)."""
        self.outbox.to_heartbeat(engine.ident, {"t": P.INTERRUPT, "cmd": cmd.cmd_id, "why": why})

    # ------------------------------------------------------------ clients

    def reply_value(self, client: bytes, msg_id: Any, value: Any) -> None:
        self.outbox.to_client(client, {"t": P.VALUE, "id": msg_id}, pack(value))

    def reply_error(self, client: bytes, msg_id: Any, ename: str, evalue: str) -> None:
        header = {"t": P.ERROR, "id": msg_id, "ename": ename, "evalue": evalue}
        self.outbox.to_client(client, header)

    # ------------------------------------------------------------ wait_started
    def wait_started(self, key: StartKey, client: bytes, msg_id: Any) -> None:
        """Answer ``client`` once the job or task ``key`` starts running (or ends)."""
        self.start_waiters.setdefault(key, []).append((client, msg_id))

    def ended(self, key: StartKey) -> None:
        """The job or task ended (possibly without ever running): answer its waiters."""
        if self.start_waiters:
            for client, msg_id in self.start_waiters.pop(key, ()):
                self.reply_value(client, msg_id, P.DONE)

    def _started(self, cmd: Command, engine: EngineState, now: float = 0.0, what: str = "") -> None:
        now = now or time.time()
        self.timeline.record(engine.id, what or what_of(cmd), START, cmd.desc, now)
        cmd.started = now
        if cmd.job is not None:
            if cmd.job.started is None:
                cmd.job.started = now
        else:  # a task: its start time is part of its record
            if self.on_task_start is not None:
                self.on_task_start(cmd)
        if self.start_waiters:
            for client, msg_id in self.start_waiters.pop(cmd.start_key, ()):
                self.reply_value(client, msg_id, P.RUNNING)


def what_of(cmd: Command) -> str:
    """How the timeline names a command: ``task 7`` or ``job 3``."""
    if cmd.task is not None:
        return f"task {cmd.task.tid}"
    return cmd.job.what if cmd.job is not None else "job ?"
