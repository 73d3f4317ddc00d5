"""The load-balanced task scheduler, inside the controller.

Tasks wait here, highest ``priority`` first and in submission order among equals,
until an engine has room; then one task goes into that engine's FIFO queue, the same
queue MultiEngine commands use. Idle engines come first; an engine running only tasks
also takes up to ``PREFETCH`` more (``PREFETCH_DEEP`` while its tasks are tiny: its
``depth``), sent ahead so it never waits for the controller.

* **Load balance holds.** When an engine goes idle and nothing waits here, a task sent
  ahead to a busy engine is taken back (``revoke``: the engine's heartbeat thread
  answers at once whether it had started it) and runs on the idle engine instead.
* **Retries.** A task that fails is retried while it has retries left, on another
  engine whenever one is free: the engine it failed on is not offered it again for
  ``failure_penalty`` seconds. After the retries, its recovery task (if any) runs
  under the same id. A failing task takes back the tasks sent ahead to its engine.
* **Depend.** A task whose ``depend`` predicate is false on every engine for
  ``idle_timeout`` seconds fails with TaskTimeout, as in the seed.
* **Results** are kept in the :class:`~.tasktable.TaskTable`, which answers clients.

The scheduler never unpickles a task: the client sends, beside each pickled task, the
few fields scheduling needs (:class:`~multiengine.wire.protocol.TaskLink`). It sees the
rest of the controller only through :class:`~.dispatch.Dispatch`, so it is tested
without processes (tests/controller/test_scheduler.py).
"""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from ..wire import protocol as P
from ..wire.message import Message, owned
from ..wire.protocol import TaskLink
from .dispatch import Dispatch
from .engines import Command, EngineState
from .jobs import Part, error_part
from .store import ResultStore
from .tasktable import NO_ENGINES, Spec, Task, TaskTable

__all__ = ["TaskScheduler"]

log = logging.getLogger("multiengine.controller")


class TaskScheduler:
    """Waiting tasks, their attempts on engines, and their results.

    ``clock`` is the monotonic clock penalties and timeouts are measured on (a test
    passes its own).
    """

    def __init__(
        self,
        dispatch: Dispatch,
        store: ResultStore,
        failure_penalty: float,
        idle_timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.dispatch = dispatch
        self.failure_penalty = failure_penalty
        self.idle_timeout = idle_timeout
        self.clock = clock
        self.store = store
        self.table = TaskTable(dispatch, store)
        self.tasks = self.table.tasks  # the same dict: every task by id
        self.ready: list[tuple[int, int, int]] = []  # waiting tasks: heap of (-priority, seq, tid)
        self._next_tid = 0
        self._seq = 0
        self._penalties: list[tuple[float, int]] = []  # heap of (until, tid)
        self._taking_for: set[int] = set()  # idle engines a task is being taken back for
        dispatch.on_task_start = self._started
        self.handlers: dict[str, Callable[[bytes, Message], None]] = {
            P.TASK_SUBMIT: self._on_submit,
            P.TASK_ABORT: self._on_abort,
            P.TASK_SPIN: self._on_spin,
            P.TASK_RESUBMIT: self._on_resubmit,
            **self.table.handlers,
        }

    # ------------------------------------------------------------ client requests
    def _on_submit(self, client: bytes, msg: Message) -> None:
        h = msg.header
        key = h.get("key")
        if key is not None and not isinstance(key, str):
            raise P.ProtocolViolation("a task_submit key is a string")
        # sent again (the client lost the controller before the answer): the same ids, if
        # the first one was taken; a submission is answered only once it is on disk
        tids = self.store.submitted_as(key) if key is not None and h.get("again") else None
        if tids is None:
            tids = self.submit(client, h, msg.buffers)
            self.store.remember_submit(key, tids, self._next_tid)
        self._answer_when_written(client, h.get("id"), tids)

    def _answer_when_written(self, client: bytes, msg_id: Any, tids: list[int]) -> None:
        self.store.when_written(lambda: self.dispatch.reply_value(client, msg_id, tids))

    def _on_abort(self, client: bytes, msg: Message) -> None:
        self.dispatch.reply_value(client, msg.header.get("id"), self.abort(msg.header.get("tid")))

    def _on_spin(self, client: bytes, msg: Message) -> None:
        self.dispatch.reply_value(client, msg.header.get("id"), self.schedule())

    def submit(self, client: bytes, header: dict[str, Any], frames: list[Any]) -> list[int]:
        """Take the tasks of a ``task_submit``; their ids, in order."""
        seen: dict[Any, TaskLink] = {}  # one TaskLink for the identical links of a map
        chains = [[_link(item, seen) for item in chain] for chain in header["tasks"]]
        parts = iter(P.split_parts([link.nbuf for chain in chains for link in chain], frames))
        specs = []
        for links in chains:
            if not links:
                raise P.ProtocolViolation("a task with an empty chain")
            specs.append([_spec(*next(parts), link) for link in links])
        # live: what the tasks print goes to the client as ``output`` of this request
        live_id = header.get("id") if header.get("live") else None
        return self._add(client, specs, live_id)

    def _add(self, client: bytes, chains: list[list[Spec]], live_id: Any = None) -> list[int]:
        """New tasks, written to disk, waiting; then scheduled. Their ids."""
        tasks = []
        for chain in chains:
            self._next_tid += 1
            self._seq += 1
            task = Task(
                self._next_tid - 1, client, chain, self._seq, retries_left=chain[0].link.retries
            )
            task.live_id = live_id
            self.table.add(task)
            self._push(task)
            tasks.append(task)
        self.table.persist(tasks)  # (after _push: nothing to say of their progress yet)
        self.schedule()
        return [task.tid for task in tasks]

    def _started(self, cmd: Command) -> None:
        if cmd.task is not None and cmd.task.cmd is cmd:
            self.table.progressed(cmd.task)

    def restore(
        self,
        tasks: list[tuple[int, str | None, Any, list[bytes]]],
        next_tid: int,
        ended_rows: list[str],
    ) -> None:
        """Take up the unfinished tasks of a controller that stopped (``results.db``):
        those that waited wait again; those that were running lost that attempt (the
        controller cannot know its outcome) and run again if their retries allow.
        ``ended_rows``: its submission rows whose tasks had all ended (cleared with
        them)."""
        self._next_tid = max(self._next_tid, next_tid)
        self.table.ended_rows.update(ended_rows)
        for tid, progress, meta, frames in tasks:
            links = [TaskLink.from_wire(w) for w in meta["chain"]]
            laid = P.split_parts([link.nbuf for link in links], frames)
            chain = [Spec(c, b, link) for (c, b), link in zip(laid, links, strict=True)]
            written = progress or f"waiting 0 {chain[0].link.retries} 0"  # as submitted
            word, level, retries, attempts, *where = written.split()
            self._seq += 1
            task = Task(tid, b"", chain, self._seq, int(level), int(retries))
            task.submitted = meta.get("sub", task.submitted)
            task.attempts = int(attempts)
            task.progress = written
            self.table.restored(task, meta.get("row"), progress)
            if word != "running":
                self._push(task)
                continue
            engine_id = int(where[0]) if where else -1
            task.attempts += 1
            lost = (
                f"the controller restarted while task {tid} ran on engine {engine_id}; "
                "its outcome is unknown"
            )
            part = error_part("EngineError", lost, engine_id)
            if task.link.retry_lost:  # the engine did nothing wrong: no penalty there
                self._retry_or_fail(task, -1, part)
            else:
                self._recover_or_fail(task, part)
        if tasks:
            log.info("restored %d unfinished tasks", len(tasks))
        self.schedule()

    def _on_resubmit(self, client: bytes, msg: Message) -> None:
        ids = msg.header.get("ids")
        if not isinstance(ids, list):
            raise P.ProtocolViolation("task_resubmit needs a list of task ids")
        chains = []
        for tid in ids:
            chain = self.table.chain_of(tid)
            if chain is None:
                self.dispatch.reply_error(
                    client,
                    msg.header.get("id"),
                    "IndexError",
                    f"task {tid!r} is not a finished task this controller still knows",
                )
                return
            chains.append(chain)
        tids = self._add(client, chains)
        self.store.remember_submit(None, tids, self._next_tid)
        self._answer_when_written(client, msg.header.get("id"), tids)

    def abort(self, tid: Any) -> str | None:
        """Abort a task; the text of an IndexError when it cannot be."""
        task = self.table.get(tid)
        if task is None:
            stored = self.table.stored(tid)
            if stored is not None:  # finished, and out of memory
                return "Task Already Completed"
            return f"No task #{tid}"
        if task.done:
            return "Task Already Aborted" if task.aborting else "Task Already Completed"
        if task.aborting:
            return "Task Already Aborted"
        task.aborting = True
        cmd = task.cmd
        engine = self._engine_of(task)
        if task.state == P.SCHEDULED:
            self.table.finish(task, _aborted(task), failed=True)
        elif cmd is not None and engine is not None:
            if cmd is engine.current or cmd in engine.ahead:
                # running: interrupted; sent ahead: the engine says at once that it will
                # not run it, and answers it unrun when it gets there
                self.dispatch.interrupt(engine, cmd, P.WHY_ABORT)
            elif cmd in engine.queue:
                engine.queue.remove(cmd)
                self.table.finish(task, _aborted(task), True)
        return None

    # ------------------------------------------------------------ scheduling
    def _push(self, task: Task) -> None:
        if task.taken_for is not None:  # back to wait: no longer being taken for that engine
            self._taking_for.discard(task.taken_for)
            task.taken_for = None
        task.state = P.SCHEDULED
        task.engine_id = None
        task.cmd = None
        if task.progress is not None:
            self.table.progressed(task)
        heapq.heappush(self.ready, (-task.link.priority, task.seq, task.tid))

    def schedule(self, engines: Iterable[EngineState] | None = None) -> bool:
        """Hand waiting tasks to engines with room (all, or those given); True if any went.

        Idle engines come first; a busy engine running only tasks takes up to
        its ``depth`` more, least loaded first.
        """
        if not self.ready:
            return False
        candidates = self.dispatch.engines.values() if engines is None else engines
        free = [e for e in candidates if e.load <= e.depth and e.only_tasks()]
        if not free:
            return False
        now = self.clock()
        skipped = []
        handed = False
        while self.ready and free:
            entry = heapq.heappop(self.ready)
            task = self.tasks.get(entry[2])
            if task is None or task.state != P.SCHEDULED:
                continue
            if len(free) > 1:
                free.sort(key=lambda e: (e.load, e.last_task))
            engine = self._pick(task, free, now)
            if engine is None:
                skipped.append(entry)
                continue
            self._assign(task, engine, now)
            handed = True
            if engine.load > engine.depth:
                free.remove(engine)
        for entry in skipped:
            heapq.heappush(self.ready, entry)
        return handed

    def engine_has_room(self, engine: EngineState, failed: bool = False) -> None:
        """``engine`` answered a command or registered: give it work.

        After a failure the task may go to any engine; else only this one has new room.
        When nothing waits and the engine is idle, take a task back from a busy engine.
        """
        if self.ready:
            self.schedule(None if failed else [engine])
        elif self.dispatch.prefetching and engine.idle:
            self._take_back_for(engine)

    def _pick(self, task: Task, free: list[EngineState], now: float) -> EngineState | None:
        fallback = None
        for e in free:
            if e.id in task.unmet or task.penalty.get(e.id, 0.0) > now:
                continue
            if task.alone and e.load:  # only to an idle engine: all it ran before is known
                continue
            current = e.current
            if current is not None and current.task is not None and current.task.alone:
                continue  # nothing goes behind a task that runs alone
            if e.id not in task.failed_on:
                return e
            fallback = fallback or e
        return fallback

    def _assign(self, task: Task, engine: EngineState, now: float) -> None:
        spec = task.chain[task.level]
        cmd = Command(
            None,
            0,
            "task",
            spec.link.desc,
            spec.content,
            spec.buffers,
            self.dispatch.new_cmd_id(),
            task=task,
            time_limit=spec.link.time_limit,
            live=task.live_id is not None,
        )
        task.state = P.PENDING
        task.engine_id = engine.id
        task.cmd = cmd
        engine.last_task = now
        self._taking_for.discard(engine.id)
        self.dispatch.enqueue(engine, cmd)

    def _take_back_for(self, idle: EngineState) -> None:
        """Take the newest task sent ahead to the busiest engine back, for ``idle``."""
        if idle.id in self._taking_for:
            return
        now = self.clock()
        busiest = sorted(
            (self.dispatch.engines[i] for i in self.dispatch.prefetching),
            key=lambda e: len(e.ahead),
            reverse=True,
        )
        for engine in busiest:
            for cmd in reversed(engine.ahead):
                task = cmd.task
                if (
                    cmd.detached
                    or task is None
                    or task.cmd is not cmd
                    or task.taken_for is not None
                ):
                    continue
                if task.aborting or self._pick(task, [idle], now) is None:
                    continue
                task.taken_for = idle.id
                self._taking_for.add(idle.id)
                self.dispatch.interrupt(engine, cmd, P.WHY_REVOKE)
                return

    def on_revoked(self, engine: EngineState, cmd_id: Any, unrun: bool) -> None:
        """The engine's answer to a revoke or abort: whether it will leave ``cmd_id`` unrun."""
        cmd = next((c for c in (engine.current, *engine.ahead) if c and c.cmd_id == cmd_id), None)
        task = cmd.task if cmd is not None else None
        if cmd is None or task is None:
            return
        if task.taken_for is not None:
            self._taking_for.discard(task.taken_for)
            task.taken_for = None
        if not unrun or task.cmd is not cmd:  # it runs (or its answer came first)
            return
        cmd.detached = True  # the engine answers it unrun later: that answer is dropped
        task.cmd = None
        if task.aborting:
            self.table.finish(task, _aborted(task), True)
        else:
            self._push(task)
            self.schedule()

    def next_wakeup(self) -> float | None:
        """When the next penalty ends (on ``clock``), so a penalized task can go again."""
        heap = self._penalties
        now = self.clock()
        while heap:
            until, tid = heap[0]
            task = self.tasks.get(tid)
            if task is not None and task.state == P.SCHEDULED and until > now - 1.0:
                return until
            heapq.heappop(heap)
        return None

    def _penalize(self, task: Task, engine_id: int) -> None:
        until = self.clock() + self.failure_penalty
        task.penalty[engine_id] = until
        heapq.heappush(self._penalties, (until, task.tid))

    def sweep(self, now: float) -> None:
        """Idle timeouts of tasks no engine will take; then try to schedule again."""
        engines = set(self.dispatch.engines)
        for _, _, tid in list(self.ready):
            task = self.tasks.get(tid)
            if task is None or task.state != P.SCHEDULED or not task.unmet:
                continue
            if engines and not engines <= task.unmet:
                task.unmet_since = None
                continue
            task.unmet_since = task.unmet_since or now
            if now - task.unmet_since >= self.idle_timeout:
                msg = (
                    f"task {tid} failed to execute due to unmet dependencies for "
                    f"{self.idle_timeout:g} seconds"
                )
                self.table.finish(task, error_part("TaskTimeout", msg), failed=True)
        self.schedule()

    def _engine_of(self, task: Task) -> EngineState | None:
        return self.dispatch.engines.get(task.engine_id) if task.engine_id is not None else None

    # ------------------------------------------------------------ engine answers
    def on_reply(self, engine: EngineState, task: Task, part: Part) -> None:
        """An engine answered an attempt of ``task``."""
        if task.cmd is None or task.state != P.PENDING:
            return
        task.started = task.cmd.started
        task.cmd = None
        if task.aborting:
            aborted = _aborted(task, engine.id)
            self.table.finish(task, aborted, failed=True)
            return
        if flags_why(part) not in ("revoked", "unmet"):
            task.attempts += 1
        if part.status == P.STATUS_OK:
            self.table.finish(task, part, failed=False)
            return
        flags = part.flags or P.TaskFlags(None, False)
        if flags.why == "revoked":  # taken back before it ran: not an attempt
            self._push(task)
            return
        if flags.why == "unmet":
            task.unmet = task.unmet | {engine.id}
            self._penalize(task, engine.id)
            self._push(task)
            return
        for cmd in engine.ahead:  # a failure here: what was sent ahead goes back to wait
            if not cmd.detached:
                self.dispatch.interrupt(engine, cmd, P.WHY_REVOKE)
        if flags.why in ("reject", None) and flags.retry:
            self._retry_or_fail(task, engine.id, part)
            return
        self._recover_or_fail(task, part)

    def on_engine_lost(
        self, engine_id: int, why: str, running: Command | None, unstarted: list[Command]
    ) -> None:
        """An engine died: the task it ran is retried or fails; tasks queued or sent ahead
        to it go back to wait (they never started). ``why`` says what happened, after
        "engine N": ``was lost (no heartbeat for 3 s)``, ``died (killed by SIGKILL)``."""
        self._taking_for.discard(engine_id)
        if running is not None and running.batch:
            # It came in a batch: the engine held back the replies of the tasks of that
            # batch it had run, so the one that ran when it died is this one or one sent
            # ahead in the same batch; the controller cannot tell which. None of them
            # counts as an attempt: each waits again, and from now on goes alone to an
            # idle engine, with nothing behind it, so a task that kills its engine is
            # found out (it is then what the engine ran, as without batches).
            doubtful = [running, *(c for c in unstarted if c.batch == running.batch)]
            for cmd in doubtful:
                task = cmd.task
                if task is not None and not cmd.detached and task.cmd is cmd:
                    task.alone = True
            unstarted = [running, *unstarted]
            running = None
        for cmd in unstarted:
            task = cmd.task
            if task is not None and not cmd.detached and task.cmd is cmd:
                if task.taken_for is not None:
                    self._taking_for.discard(task.taken_for)
                    task.taken_for = None
                self.requeue(task)
        task = running.task if running is not None and not running.detached else None
        if task is None or task.done or task.cmd is not running:
            return
        task.started = running.started if running is not None else None
        task.attempts += 1
        task.cmd = None
        lost = f"engine {engine_id} {why} while running task {task.tid}"
        part = error_part("EngineError", lost, engine_id)
        if task.aborting:
            aborted = _aborted(task, engine_id)
            self.table.finish(task, aborted, failed=True)
        elif task.link.retry_lost:
            self._retry_or_fail(task, engine_id, part)
        else:
            self._recover_or_fail(task, part)

    def requeue(self, task: Task) -> None:
        """A task taken back from an engine's queue before it ran (not an attempt)."""
        if not task.done:
            self._push(task)

    def _retry_or_fail(self, task: Task, engine_id: int, part: Part) -> None:
        task.failed_on = task.failed_on | {engine_id}
        if task.retries_left > 0:
            task.retries_left -= 1
            self._penalize(task, engine_id)
            self._push(task)
        else:
            self._recover_or_fail(task, part)

    def _recover_or_fail(self, task: Task, part: Part) -> None:
        if task.level + 1 < len(task.chain):
            task.level += 1
            task.retries_left = task.link.retries
            task.failed_on = task.unmet = NO_ENGINES
            task.penalty.clear()
            self._push(task)
        else:
            self.table.finish(task, part, failed=True)


def _link(item: Any, seen: dict[Any, TaskLink]) -> TaskLink:
    """``TaskLink.from_wire(item)``, shared with the links of the same submission that
    came the same (every task of a map: one object kept, not one per task)."""
    try:
        key = (*item, *map(type, item))  # (True == 1: the types tell them apart)
        link = seen.get(key)
    except TypeError:  # not a list, or not hashable: from_wire says what is wrong
        return TaskLink.from_wire(item)
    if link is None:
        link = seen[key] = TaskLink.from_wire(item)
    return link


def _spec(content: Any, buffers: list[Any], link: TaskLink) -> Spec:
    """A link of a task as kept until the task is cleared (its frames owned)."""
    return Spec(owned(content), [owned(b) for b in buffers], link)


def _aborted(task: Task, engine_id: int = -1) -> Part:
    return error_part("TaskAborted", f"task {task.tid} was aborted", engine_id)


def flags_why(part: Part) -> str | None:
    return part.flags.why if part.flags is not None else None
