"""What the controller knows of every task, and how clients read it.

:class:`TaskTable` holds the tasks (their chain, state, attempts, result) and answers
``task_result``, ``task_status``, ``task_clear`` and ``wait_started``: at once, or once
the tasks a client waits for have ended. Where tasks run is the scheduler's business
(``scheduler.py``); it records each task here and calls :meth:`TaskTable.finish` when
one ends. Results stay until a client calls ``clear``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..wire import protocol as P
from ..wire.message import Message
from ..wire.protocol import TaskItem, TaskLink
from .dispatch import Dispatch
from .engines import Command
from .jobs import Part

__all__ = ["Spec", "Task", "TaskTable"]


@dataclass(eq=False)
class Spec:
    """One link of a task's chain (the task itself, then its recovery tasks)."""

    content: Any
    buffers: list[Any]
    link: TaskLink


@dataclass(eq=False)
class Task:
    tid: int
    client: bytes
    chain: list[Spec]
    seq: int
    level: int = 0
    retries_left: int = 0
    state: str = P.SCHEDULED
    engine_id: int | None = None
    submitted: float = field(default_factory=time.time)
    started: float | None = None
    completed: float | None = None
    result: Part | None = None
    failed_on: set[int] = field(default_factory=set)
    penalty: dict[int, float] = field(default_factory=dict)  # engine id -> not before
    unmet: set[int] = field(default_factory=set)  # engines whose depend was false
    unmet_since: float | None = None
    aborting: bool = False
    cmd: Command | None = None  # the attempt on an engine, while it is pending
    taken_for: int | None = None  # being taken back from a busy engine for this one

    @property
    def link(self) -> TaskLink:
        return self.chain[self.level].link

    @property
    def done(self) -> bool:
        return self.state in P.FINISHED_STATES


class TaskTable:
    """Every task by id, the answers waiting for tasks to end, and those answers."""

    def __init__(self, dispatch: Dispatch) -> None:
        self.dispatch = dispatch
        self.tasks: dict[int, Task] = {}
        self._waiters: dict[int, list[_Waiter]] = {}  # tid -> answers waiting for it
        self._due: dict[int, tuple[_Waiter, list[int]]] = {}  # "any" answers of this turn
        self.handlers: dict[str, Callable[[bytes, Message], None]] = {
            P.TASK_RESULT: self._on_result,
            P.TASK_STATUS: self._on_status,
            P.TASK_CLEAR: self._on_clear,
        }

    def add(self, task: Task) -> None:
        self.tasks[task.tid] = task

    def get(self, tid: Any) -> Task | None:
        return self.tasks.get(tid) if isinstance(tid, int) else None

    # ------------------------------------------------------------ client requests
    def _on_result(self, client: bytes, msg: Message) -> None:
        h = msg.header
        ids = h.get("ids")
        mode = h.get("mode", P.ALL)
        if not isinstance(ids, list) or mode not in (P.NOW, P.ALL, P.ANY):
            self.dispatch.reply_error(
                client, h.get("id"), "ProtocolError", "task_result needs a list of ids and a mode"
            )
            return
        self.results(client, h.get("id"), ids, mode)

    def _on_status(self, client: bytes, msg: Message) -> None:
        value = self.status(bool(msg.header.get("verbose")))
        self.dispatch.reply_value(client, msg.header.get("id"), value)

    def _on_clear(self, client: bytes, msg: Message) -> None:
        self.clear()
        self.dispatch.reply_value(client, msg.header.get("id"), None)

    def results(self, client: bytes, msg_id: Any, ids: list[Any], mode: str) -> None:
        """Answer with the results of ``ids``: now, or once any or all are done."""
        tasks = self.tasks
        unknown = [t for t in ids if t not in tasks]
        done = [t for t in ids if t in tasks and tasks[t].done]
        if mode == P.ANY and done and not unknown:
            self._send_results(client, msg_id, done)  # only what is done: the rest still runs
            return
        if mode == P.NOW or unknown or len(done) == len(ids):
            self._send_results(client, msg_id, ids)
            return
        waiter = _Waiter(client, msg_id, ids, mode)
        for t in ids:
            if not tasks[t].done:
                self._waiters.setdefault(t, []).append(waiter)

    def wait_started(self, client: bytes, msg_id: Any, tid: Any) -> None:
        """Answer once task ``tid`` runs on an engine (or has ended)."""
        task = self.tasks.get(tid) if isinstance(tid, int) else None
        if task is None:
            self.dispatch.reply_error(client, msg_id, "IndexError", f"No task #{tid}")
        elif task.done:
            self.dispatch.reply_value(client, msg_id, P.DONE)
        elif task.cmd is not None and task.cmd.started is not None:
            self.dispatch.reply_value(client, msg_id, P.RUNNING)
        else:
            self.dispatch.wait_started(("task", task.tid), client, msg_id)

    def status(self, verbose: bool) -> dict[str, Any]:
        states = (P.SCHEDULED, P.PENDING, P.SUCCEEDED, P.FAILED)
        buckets: dict[str, list[int]] = {s: [] for s in states}
        for t in self.tasks.values():
            buckets[t.state].append(t.tid)
        if verbose:
            return buckets
        return {k: len(v) for k, v in buckets.items()}

    def clear(self) -> None:
        """Forget every finished task."""
        for tid in [t.tid for t in self.tasks.values() if t.done]:
            del self.tasks[tid]

    # ------------------------------------------------------------ ends and answers
    def finish(self, task: Task, part: Part, failed: bool) -> None:
        """The task ended (for good): keep its result and answer whoever waits for it."""
        task.state = P.FAILED if failed else P.SUCCEEDED
        task.result = part
        task.completed = time.time()
        task.cmd = None
        self.dispatch.ended(("task", task.tid))
        for waiter in self._waiters.pop(task.tid, ()):
            if waiter.sent:
                continue
            if waiter.mode == P.ANY:  # answered once per turn, with all that finished in it
                self._due.setdefault(id(waiter), (waiter, []))[1].append(task.tid)
            elif all(self.tasks[t].done for t in waiter.ids if t in self.tasks):
                waiter.sent = True
                self._send_results(waiter.client, waiter.msg_id, waiter.ids)

    def flush(self) -> None:
        """Send the answers gathered during this turn of the controller's loop."""
        if not self._due:
            return
        due, self._due = self._due, {}
        for waiter, tids in due.values():
            waiter.sent = True
            self._send_results(waiter.client, waiter.msg_id, tids)

    def _send_results(self, client: bytes, msg_id: Any, ids: list[Any]) -> None:
        items: list[Any] = []
        parts: list[tuple[Any, list[Any]]] = []
        for tid in ids:
            task = self.tasks.get(tid)
            if task is None:
                items.append(TaskItem(tid, P.UNKNOWN_TASK).to_wire())
                continue
            p = task.result
            if not task.done or p is None:
                items.append(TaskItem(tid, task.state).to_wire())
                continue
            started = task.started or task.submitted
            elapsed = p.elapsed if p.elapsed is not None else (task.completed or started) - started
            item = TaskItem(
                tid,
                task.state,
                task.link.kind,
                task.submitted,
                task.started,
                task.completed,
                elapsed,
                p.header(),
            )
            items.append(item.to_wire())
            parts.append((p.frames[0], p.frames[1:]))
        _, frames, raw = P.pack_parts(parts)
        header: dict[str, Any] = {"t": P.TASK_RESULTS, "id": msg_id, "items": items}
        if raw:
            header["raw"] = raw
        self.dispatch.to_client(client, header, b"", frames)


@dataclass(eq=False)
class _Waiter:
    """A ``task_result`` request waiting for tasks to finish."""

    client: bytes
    msg_id: Any
    ids: list[Any]
    mode: str
    sent: bool = False
