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
from ..wire.protocol import ErrorReport, TaskItem, TaskLink
from .dispatch import Dispatch
from .engines import Command
from .jobs import Part
from .store import HistoryRow, ResultStore, Stored

__all__ = ["Spec", "SUBMITTED", "TASK", "Task", "TaskTable", "UNFINISHED"]

TASK = "t:"  # store key prefix of a task's result
# store key prefixes of tasks not finished yet (for a restored controller): a submission's
# tasks, one row for all (kept once they have all finished, until they are cleared: a
# finished task's row names it for its chain); and a task's progress, once it changed and
# the task had not finished by the next write
SUBMITTED = "s:"
UNFINISHED = "q:"


# A task's engines to avoid, until it has some: shared, never mutated (a task replaces
# them; most tasks never fail, and sets of their own would cost every task two objects
# for the garbage collector to walk as long as it is kept; an empty dict costs none)
NO_ENGINES: frozenset[int] = frozenset()


@dataclass(eq=False, slots=True)
class Spec:
    """One link of a task's chain (the task itself, then its recovery tasks)."""

    content: Any
    buffers: list[Any]
    link: TaskLink


@dataclass(eq=False, slots=True)
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
    failed_on: frozenset[int] = NO_ENGINES  # engines where it failed
    penalty: dict[int, float] = field(default_factory=dict)  # engine id -> not before
    unmet: frozenset[int] = NO_ENGINES  # engines whose depend was false
    unmet_since: float | None = None
    aborting: bool = False
    cmd: Command | None = None  # the attempt on an engine, while it is pending
    taken_for: int | None = None  # being taken back from a busy engine for this one
    attempts: int = 0  # times it was handed to an engine and ran (retries + 1)
    progress: str | None = None  # its state as last written to disk (progress_of)
    live_id: Any = None  # the submit's request id, when its output streams to the client
    # its engine died while it was in a batch whose replies the engine may have held
    # back: which of them ran is unknown, so it goes to engines on its own from now on
    alone: bool = False
    item: tuple[Any, ...] | None = None  # its TaskItem on the wire, once it has finished
    row: str | None = None  # the store row holding it until it finishes (its submission's)
    progress_row: bool = False  # a row of its progress was written (``q:``)

    @property
    def link(self) -> TaskLink:
        return self.chain[self.level].link

    @property
    def done(self) -> bool:
        return self.state in P.FINISHED_STATES


class TaskTable:
    """Every task by id, the answers waiting for tasks to end, and those answers.

    A finished task's result is kept in the :class:`~.store.ResultStore` (on disk, and
    in memory while the budget allows); a task whose result has left memory is no
    longer in :attr:`tasks`, and is read back from disk when asked for.
    """

    def __init__(self, dispatch: Dispatch, store: ResultStore) -> None:
        self.dispatch = dispatch
        self.store = store
        self.tasks: dict[int, Task] = {}
        self._rows: dict[str, set[int]] = {}  # submission row -> its unfinished tasks
        self._row_len: dict[str, int] = {}  # submission row -> how many tasks it holds
        # submission rows all of whose tasks have ended: kept on disk for their chains
        # (their results' rows name them) until the tasks are cleared
        self.ended_rows: set[str] = set()
        self._dirty: dict[int, Task] = {}  # tasks whose progress changed since the last write
        store.before_handover = self._write_progress
        self._waiters: dict[int, list[_Waiter]] = {}  # tid -> answers waiting for it
        self._due: dict[int, tuple[_Waiter, list[int]]] = {}  # "any" answers of this turn
        self.handlers: dict[str, Callable[[bytes, Message], None]] = {
            P.TASK_RESULT: self._on_result,
            P.TASK_STATUS: self._on_status,
            P.TASK_CLEAR: self._on_clear,
        }
        store.on_evict(TASK, self._evicted)

    def add(self, task: Task) -> None:
        self.tasks[task.tid] = task

    # ------------------------------------------------------------ unfinished, on disk
    def persist(self, tasks: list[Task]) -> None:
        """Write new tasks to disk, one row for them all, until they finish: a restored
        controller runs them (``ResultStore.leftovers``)."""
        if not tasks:
            return
        key = f"{SUBMITTED}{tasks[0].tid}"
        for task in tasks:
            task.row = key
            task.progress = progress_of(task)
        self._rows[key] = {task.tid for task in tasks}
        self._write_row(key, tasks)

    def _write_row(self, key: str, tasks: list[Task]) -> None:
        chains: list[list[Any]] = []
        nframes: list[int] = []
        frames: list[Any] = []
        for task in tasks:
            chains.append([spec.link.to_wire() for spec in task.chain])
            before = len(frames)
            for spec in task.chain:
                frames.append(spec.content)
                frames += spec.buffers
            nframes.append(len(frames) - before)
        tids = [task.tid for task in tasks]
        meta = {"tids": tids, "chains": chains, "nframes": nframes, "sub": tasks[0].submitted}
        self._row_len[key] = len(tasks)
        self.store.persist(key, Stored(meta, frames, None, None))

    def restored(self, task: Task, row: str | None, progress: str | None) -> None:
        """A task taken up from disk: ``row`` holds it (None: a row of its own, as an
        older controller wrote), ``progress`` its progress as written (None: never)."""
        self.tasks[task.tid] = task
        if row is None:
            task.row = f"{UNFINISHED}{task.tid}"
            return
        task.row = row
        task.progress_row = progress is not None
        self._rows.setdefault(row, set()).add(task.tid)
        self._row_len[row] = -1  # how many it holds is not known: written again at a clear

    def progressed(self, task: Task) -> None:
        """The task waits again, or started on an engine: say so on disk, if it has not
        finished by the next write (a tiny task's start is never written)."""
        if not self._dirty:
            self.store.call_before_handover()
        self._dirty[task.tid] = task

    def _write_progress(self) -> None:
        dirty, self._dirty = self._dirty, {}
        for task in dirty.values():
            if task.done:
                continue
            progress = progress_of(task)
            if progress == task.progress:
                continue
            task.progress = progress
            key = f"{UNFINISHED}{task.tid}"
            if task.row == key:  # its own row (an older controller's): its state changes
                self.store.mark(key, progress)
            else:
                self.store.persist(key, Stored({}, [], None, progress))
                task.progress_row = True

    def _unpersist(self, task: Task) -> None:
        """The task finished: its row of progress goes. Its submission's row stays, for
        its chain, until the tasks are cleared (:meth:`clear`)."""
        self._dirty.pop(task.tid, None)
        key = f"{UNFINISHED}{task.tid}"
        if task.progress_row or task.row == key:
            self.store.unpersist(key)
        members = self._rows.get(task.row) if task.row is not None else None
        if members is not None:
            members.discard(task.tid)
            if not members:
                del self._rows[task.row]  # type: ignore[arg-type]
                del self._row_len[task.row]  # type: ignore[arg-type]
                self.ended_rows.add(task.row)  # type: ignore[arg-type]

    def get(self, tid: Any) -> Task | None:
        return self.tasks.get(tid) if isinstance(tid, int) else None

    def _evicted(self, key: str) -> None:
        self.tasks.pop(int(key[len(TASK) :]), None)  # on disk only from now on

    def chain_of(self, tid: Any) -> list[Spec] | None:
        """The chain (task and recovery tasks) of a finished task, to run it again."""
        task = self.get(tid)
        if task is not None:
            return task.chain if task.done else None
        stored = self.stored(tid)
        if stored is None:
            return None
        row = stored.meta.get("row")
        if row is None:  # its chain is in its own row (a task of no submission's row)
            rest = stored.frames[1 + _nframes(stored.meta["item"]) :]
            wires = stored.meta["chain"]
        else:  # its chain is in its submission's row
            sub = self.store.load(row)
            if sub is None or tid not in sub.meta["tids"]:
                return None
            i = sub.meta["tids"].index(tid)
            start = sum(sub.meta["nframes"][:i])
            rest = sub.frames[start : start + sub.meta["nframes"][i]]
            wires = sub.meta["chains"][i]
        links = [TaskLink.from_wire(w) for w in wires]
        laid = P.split_parts([link.nbuf for link in links], rest)
        return [Spec(c, b, link) for (c, b), link in zip(laid, links, strict=True)]

    def stored(self, tid: Any) -> Stored | None:
        """A finished task whose result has left memory (None if there is none)."""
        if not isinstance(tid, int) or isinstance(tid, bool) or tid in self.tasks:
            return None
        return self.store.load(f"{TASK}{tid}")

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
        """Answer with the results of ``ids``: now, or once any or all are done.

        Tasks not in memory count as done when their result is on disk, else unknown.
        """
        tasks = self.tasks
        waiting = [t for t in ids if t in tasks and not tasks[t].done]
        if mode == P.ANY and len(waiting) < len(ids):
            unknown = [t for t in ids if t not in tasks and self.stored(t) is None]
            if not unknown:  # only what is done: the rest still runs
                still = set(waiting)
                self._send_results(client, msg_id, [t for t in ids if t not in still])
                return
        if mode == P.NOW or not waiting:
            self._send_results(client, msg_id, ids)
            return
        if any(t not in tasks and self.stored(t) is None for t in ids):
            self._send_results(client, msg_id, ids)  # an unknown id: answer now
            return
        waiter = _Waiter(client, msg_id, ids, mode)
        for t in waiting:
            self._waiters.setdefault(t, []).append(waiter)

    def wait_started(self, client: bytes, msg_id: Any, tid: Any) -> None:
        """Answer once task ``tid`` runs on an engine (or has ended)."""
        task = self.tasks.get(tid) if isinstance(tid, int) else None
        if task is None:
            if self.stored(tid) is not None:
                self.dispatch.reply_value(client, msg_id, P.DONE)
            else:
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
        for key, state in self.store.states(TASK):  # finished, and out of memory
            buckets[state or P.FAILED].append(int(key[len(TASK) :]))
        if verbose:
            return {k: sorted(v) for k, v in buckets.items()}
        return {k: len(v) for k, v in buckets.items()}

    def clear(self) -> None:
        """Forget every finished task, in memory and on disk."""
        done = [t.tid for t in self.tasks.values() if t.done]
        for tid in done:
            del self.tasks[tid]
        # a submission row still names finished tasks, which are known to be finished
        # by their results: those go (in the same commit as the results), so the row is
        # written again without them, and a row of finished tasks alone goes
        for key, members in self._rows.items():
            if len(members) != self._row_len[key]:
                self._write_row(key, [self.tasks[tid] for tid in sorted(members)])
        for key in self.ended_rows:
            self.store.unpersist(key)
        self.ended_rows.clear()
        self.store.delete_prefix(TASK)

    # ------------------------------------------------------------ ends and answers
    def finish(self, task: Task, part: Part, failed: bool) -> None:
        """The task ended (for good): keep its result and answer whoever waits for it."""
        task.state = P.FAILED if failed else P.SUCCEEDED
        task.result = part
        task.completed = time.time()
        task.cmd = None
        if self.dispatch.start_waiters:
            self.dispatch.ended(("task", task.tid))
        item = task.item = self._item(task)  # (final: made once)
        # where its chain is, so resubmit works after it has left memory: the row of its
        # submission, which holds it already and stays until the task is cleared (a
        # tiny task's chain is most of what is written for it: written once, not twice)
        frames = part.frames
        nbytes = _size(frames)
        for spec in task.chain:  # (in memory with the task: counted against the budget)
            nbytes += len(spec.content) + _size(spec.buffers)
        row = task.row
        if row is not None and row.startswith(SUBMITTED):
            meta: dict[str, Any] = {"item": item, "row": row}
        else:  # (a task of an older controller's own row: its chain goes in its result's)
            meta = {"item": item, "chain": [s.link.to_wire() for s in task.chain]}
            frames = [*frames]
            for spec in task.chain:
                frames += [spec.content, *spec.buffers]
        self.store.put(f"{TASK}{task.tid}", Stored(meta, frames, state=task.state), nbytes)
        self._unpersist(task)
        self.store.record(_history(task, item))
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

    @staticmethod
    def _item(task: Task) -> tuple[Any, ...]:
        """The finished task's ``TaskItem`` as it goes on the wire, made directly as a
        tuple: one is kept for every finished task, and a tuple of plain values is no
        object for the garbage collector to walk (a list or a TaskItem would be)."""
        p = task.result
        assert p is not None
        started = task.started or task.submitted
        elapsed = p.elapsed if p.elapsed is not None else (task.completed or started) - started
        part = tuple(p.wire_header())  # (PartHeader.to_wire)
        return (
            task.tid,
            task.state,
            task.link.kind,
            task.submitted,
            task.started,
            task.completed,
            elapsed,
            part,
        )

    def _send_results(self, client: bytes, msg_id: Any, ids: list[Any]) -> None:
        # once the results are on disk: a result a client has seen survives a crash
        self.store.when_written(lambda: self._send_results_now(client, msg_id, ids))

    def _send_results_now(self, client: bytes, msg_id: Any, ids: list[Any]) -> None:
        items: list[Any] = []
        parts: list[tuple[Any, list[Any]]] = []
        for tid in ids:
            task = self.tasks.get(tid) if isinstance(tid, int) else None
            if task is None:
                stored = self.stored(tid)
                if stored is None:
                    items.append(TaskItem(tid, P.UNKNOWN_TASK).to_wire())
                    continue
                item = stored.meta["item"]
                items.append(item)
                nframes = _nframes(item)
                parts.append((stored.frames[0], stored.frames[1 : 1 + nframes]))
                continue
            p = task.result
            if not task.done or p is None:
                items.append(TaskItem(tid, task.state).to_wire())
                continue
            items.append(task.item if task.item is not None else self._item(task))
            parts.append((p.frames[0], p.frames[1:]))
        _, frames, raw = P.pack_parts(parts)
        header: dict[str, Any] = {"t": P.TASK_RESULTS, "id": msg_id, "items": items}
        if raw:
            header["raw"] = raw
        self.dispatch.to_client(client, header, b"", frames)


def progress_of(task: Task) -> str:
    """A task's state as written to disk: ``waiting|running <level> <retries left>
    <attempts> [<engine>]`` (what a restored controller needs to take it up)."""
    running = task.state == P.PENDING and task.cmd is not None and task.cmd.started is not None
    where = f" {task.engine_id}" if running else ""
    word = "running" if running else "waiting"
    return f"{word} {task.level} {task.retries_left} {task.attempts}{where}"


def _nframes(item: Any) -> int:
    """How many frames follow the content of a finished task item's part."""
    part = TaskItem.from_wire(item).part
    return part.nframes if part is not None else 0


def _size(frames: list[Any]) -> int:
    return sum(map(len, frames))


def _history(task: Task, item: tuple[Any, ...]) -> HistoryRow:
    part = task.result
    error = None
    if part is not None and part.status == P.STATUS_ERROR:
        try:
            error = ErrorReport.from_bytes(part.frames[0]).ename
        except Exception:  # noqa: BLE001 - a history record never fails a task
            error = "?"
    # (made as the tuple it is: one made per finished task, without NamedTuple's __new__)
    return tuple.__new__(
        HistoryRow,
        (
            "task",
            str(task.tid),
            task.link.desc,
            str(task.engine_id) if task.engine_id is not None else "",
            task.state,
            task.submitted,
            task.started,
            task.completed,
            item[6],
            task.attempts - 1 if task.attempts else 0,
            error,
        ),
    )


@dataclass(eq=False)
class _Waiter:
    """A ``task_result`` request waiting for tasks to finish."""

    client: bytes
    msg_id: Any
    ids: list[Any]
    mode: str
    sent: bool = False
