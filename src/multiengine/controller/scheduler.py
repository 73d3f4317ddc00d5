"""The load-balanced task scheduler, inside the controller.

Tasks wait here, highest ``priority`` first and in submission order among equals,
until an engine is idle (no command running or queued on it); then one task goes into
that engine's FIFO queue, the same queue MultiEngine commands use. A task that fails
is retried while it has retries left, on another engine whenever one is free: the
engine it failed on is not offered it again for ``failure_penalty`` seconds. After the
retries, its recovery task (if any) runs under the same id. A task whose ``depend``
predicate is false on every engine for ``idle_timeout`` seconds fails with
TaskTimeout, as in the seed. Results stay until a client calls ``clear``.

The scheduler never unpickles a task: the client sends, beside each pickled task, the
few fields scheduling needs (priority, retries, time limit, kind).
"""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..wire.message import Message
from .engines import Command, EngineState
from .jobs import Part, error_part

if TYPE_CHECKING:
    from .relay import Controller

__all__ = ["TaskScheduler", "Task", "Spec"]

log = logging.getLogger("multiengine.controller")


@dataclass(eq=False)
class Spec:
    """One link of a task's chain: the task itself, then its recovery tasks."""

    content: Any
    buffers: list[Any]
    raw: Any
    kind: str  # "string" or "map"
    priority: int
    retries: int
    time_limit: float | None
    retry_lost: bool  # retry when the engine dies under it
    desc: str


@dataclass(eq=False)
class Task:
    tid: int
    client: bytes
    chain: list[Spec]
    seq: int
    level: int = 0
    retries_left: int = 0
    state: str = "scheduled"  # scheduled | pending | succeeded | failed
    engine_id: int | None = None
    submitted: float = field(default_factory=time.time)
    started: float | None = None
    completed: float | None = None
    result: Part | None = None
    failed_on: set[int] = field(default_factory=set)
    penalty: dict[int, float] = field(default_factory=dict)  # engine id -> not before (monotonic)
    unmet: set[int] = field(default_factory=set)  # engines whose depend was false
    unmet_since: float | None = None
    aborting: bool = False
    cmd: Command | None = None

    @property
    def spec(self) -> Spec:
        return self.chain[self.level]

    @property
    def done(self) -> bool:
        return self.state in ("succeeded", "failed")


class TaskScheduler:
    def __init__(self, ctl: Controller, failure_penalty: float, idle_timeout: float) -> None:
        self.ctl = ctl
        self.failure_penalty = failure_penalty
        self.idle_timeout = idle_timeout
        self.tasks: dict[int, Task] = {}
        self._ready: list[tuple[int, int, int]] = []  # (-priority, seq, tid)
        self._next_tid = 0
        self._seq = 0
        self._waiters: dict[int, list[list[Any]]] = {}  # tid -> waiters [client, msg_id, ids, mode]
        self._due: dict[
            int, tuple[list[Any], list[int]]
        ] = {}  # answers to send at the end of this turn
        self._penalties: list[
            tuple[float, int]
        ] = []  # (until, tid): when a penalized task may go again

    # ------------------------------------------------------------ from clients
    def handle(self, client: bytes, msg: Message) -> None:
        """A client's ``task_*`` request."""
        h = msg.header
        t = h["t"]
        answer = self.ctl.reply_value
        if t == "task_submit":
            answer(msg, self.submit(client, h, msg.buffers))
        elif t == "task_result":
            ids = h.get("ids")
            if isinstance(ids, list):
                self.results(client, h.get("id"), ids, str(h.get("mode", "all")))
            else:
                self.ctl.reply_error(
                    client, h.get("id"), "ProtocolError", "task_result needs a list of ids"
                )
        elif t == "task_abort":
            answer(msg, self.abort(h.get("tid")))
        elif t == "task_status":
            answer(msg, self.status(bool(h.get("verbose"))))
        elif t == "task_clear":
            self.clear()
            answer(msg, None)
        elif t == "task_spin":
            answer(msg, self.schedule())
        else:
            self.ctl.reply_error(
                client, h.get("id"), "ProtocolError", f"unknown message type {t!r}"
            )

    def submit(self, client: bytes, header: dict[str, Any], frames: list[Any]) -> list[int]:
        tids = []
        pos = 0
        raw = set(header.get("raw") or ())
        for chain_info in header["tasks"]:
            chain = []
            for info in chain_info:
                nbuf = int(info.get("nbuf", 0))
                content = frames[pos]
                buffers = frames[pos + 1 : pos + 1 + nbuf]
                # buffers the client marked raw stay raw on the way to the engine
                spec_raw = (
                    True if nbuf and all(i in raw for i in range(pos + 1, pos + 1 + nbuf)) else None
                )
                pos += 1 + nbuf
                tl = info.get("tl")
                chain.append(
                    Spec(
                        content,
                        list(buffers),
                        spec_raw,
                        str(info.get("kind", "map")),
                        int(info.get("pri", 0)),
                        max(0, int(info.get("retries", 0))),
                        float(tl) if tl else None,
                        bool(info.get("rl", True)),
                        str(info.get("desc", "task")),
                    )
                )
            tid = self._next_tid
            self._next_tid += 1
            self._seq += 1
            task = Task(tid, client, chain, self._seq, retries_left=chain[0].retries)
            self.tasks[tid] = task
            self._push(task)
            tids.append(tid)
        self.schedule()
        return tids

    def abort(self, tid: Any) -> str | None:
        """Abort a task; the text of an IndexError when it cannot be."""
        task = self.tasks.get(tid)
        if task is None:
            return f"No task #{tid}"
        if task.done:
            return "Task Already Aborted" if task.aborting else "Task Already Completed"
        if task.aborting:
            return "Task Already Aborted"
        task.aborting = True
        if task.state == "scheduled":
            self._finish(task, error_part("TaskAborted", f"task {tid} was aborted"), failed=True)
        elif task.cmd is not None:
            engine = self.ctl.engines.get(task.engine_id if task.engine_id is not None else -1)
            if engine is not None and (engine.current is task.cmd or task.cmd in engine.ahead):
                # running: interrupted; sent ahead: the engine answers without running it
                self.ctl.interrupt_engine(engine, task.cmd.cmd_id, "abort")
            elif engine is not None and task.cmd in engine.queue:
                engine.queue.remove(task.cmd)
                self._finish(
                    task, error_part("TaskAborted", f"task {tid} was aborted"), failed=True
                )
        return None

    def results(self, client: bytes, msg_id: Any, ids: list[Any], mode: str) -> None:
        """Answer with the results of ``ids``: now (mode "none"), or once any or all are done."""
        tasks = self.tasks
        unknown = [t for t in ids if t not in tasks]
        done = [t for t in ids if t in tasks and tasks[t].done]
        if mode == "any" and done and not unknown:
            self._send_results(client, msg_id, done)  # only what is done: the rest is still pending
            return
        if mode == "none" or unknown or len(done) == len(ids):
            self._send_results(client, msg_id, ids)
            return
        waiter = [client, msg_id, ids, mode]
        for t in ids:
            if not tasks[t].done:
                self._waiters.setdefault(t, []).append(waiter)

    def status(self, verbose: bool) -> dict[str, Any]:
        buckets: dict[str, list[int]] = {
            "scheduled": [],
            "pending": [],
            "succeeded": [],
            "failed": [],
        }
        for t in self.tasks.values():
            buckets[t.state].append(t.tid)
        if verbose:
            return buckets
        return {k: len(v) for k, v in buckets.items()}

    def clear(self) -> None:
        """Forget every finished task."""
        for tid in [t.tid for t in self.tasks.values() if t.done]:
            del self.tasks[tid]

    # ------------------------------------------------------------ scheduling
    def _push(self, task: Task) -> None:
        task.state = "scheduled"
        task.engine_id = None
        task.cmd = None
        heapq.heappush(self._ready, (-task.spec.priority, task.seq, task.tid))

    def schedule(self, engines: Iterable[EngineState] | None = None) -> bool:
        """Hand waiting tasks to engines with room (all, or those given); True if any went.

        Idle engines come first; a busy engine running only tasks takes up to
        ``PREFETCH`` more, least loaded first.
        """
        if not self._ready:
            return False
        from .relay import PREFETCH

        candidates = self.ctl.engines.values() if engines is None else engines
        free = [e for e in candidates if e.load <= PREFETCH and e.only_tasks()]
        if not free:
            return False
        now = time.monotonic()
        skipped = []
        handed = False
        while self._ready and free:
            entry = heapq.heappop(self._ready)
            task = self.tasks.get(entry[2])
            if task is None or task.state != "scheduled":
                continue
            free.sort(key=lambda e: (e.load, e.last_task))
            engine = self._pick(task, free, now)
            if engine is None:
                skipped.append(entry)
                continue
            self._assign(task, engine)
            handed = True
            if engine.load > PREFETCH:
                free.remove(engine)
        for entry in skipped:
            heapq.heappush(self._ready, entry)
        return handed

    def _pick(self, task: Task, free: list[EngineState], now: float) -> EngineState | None:
        fallback = None
        for e in free:
            if e.id in task.unmet or task.penalty.get(e.id, 0.0) > now:
                continue
            if e.id not in task.failed_on:
                return e
            fallback = fallback or e
        return fallback

    def _assign(self, task: Task, engine: EngineState) -> None:
        spec = task.spec
        self.ctl.next_cmd_id += 1
        cmd = Command(
            None, 0, "task", spec.desc, spec.content, spec.buffers, self.ctl.next_cmd_id, task=task
        )
        extra: dict[str, Any] = {}
        if spec.time_limit:
            extra["tl"] = spec.time_limit
        if spec.raw:
            extra["raw"] = True
        cmd.extra = extra or None
        task.state = "pending"
        task.engine_id = engine.id
        task.cmd = cmd
        task.started = time.time()
        engine.last_task = time.monotonic()
        engine.queue.append(cmd)
        self.ctl.dispatch(engine)

    def next_wakeup(self) -> float | None:
        """When the next penalty ends (monotonic), so a penalized task can go again."""
        heap = self._penalties
        now = time.monotonic()
        while heap:
            until, tid = heap[0]
            task = self.tasks.get(tid)
            if task is not None and task.state == "scheduled" and until > now - 1.0:
                return until
            heapq.heappop(heap)
        return None

    def _penalize(self, task: Task, engine_id: int) -> None:
        until = time.monotonic() + self.failure_penalty
        task.penalty[engine_id] = until
        heapq.heappush(self._penalties, (until, task.tid))

    def sweep(self, now: float) -> None:
        """Idle timeouts of tasks no engine will take; then try to schedule again."""
        engines = set(self.ctl.engines)
        for _, _, tid in list(self._ready):
            task = self.tasks.get(tid)
            if task is None or task.state != "scheduled" or not task.unmet:
                continue
            if engines and not engines <= task.unmet:
                task.unmet_since = None
                continue
            task.unmet_since = task.unmet_since or now
            if now - task.unmet_since >= self.idle_timeout:
                msg = (
                    f"task {tid} failed to execute due to unmet dependencies "
                    f"for {self.idle_timeout:g} seconds"
                )
                self._finish(task, error_part("TaskTimeout", msg), failed=True)
        self.schedule()

    # ------------------------------------------------------------ from engines
    def on_reply(self, engine: EngineState, task: Task, part: Part) -> None:
        if task.cmd is None or task.state != "pending":
            return
        task.cmd = None
        if task.aborting:
            self._finish(
                task,
                error_part("TaskAborted", f"task {task.tid} was aborted", engine.id),
                failed=True,
            )
            return
        if part.status == "ok":
            self._finish(task, part, failed=False)
            return
        flags = part.flags or {}
        why = flags.get("why")
        if why == "revoked":  # taken back before it ran: not an attempt
            self._push(task)
            return
        if why == "unmet":
            task.unmet.add(engine.id)
            self._penalize(task, engine.id)
            self._push(task)
            return
        for cmd in engine.ahead:  # a failure here: what was sent ahead goes back to wait
            self.ctl.interrupt_engine(engine, cmd.cmd_id, "revoke")
        if why in ("reject", None) and flags.get("retry", why == "reject"):
            self._retry_or_fail(task, engine.id, part)
            return
        self._recover_or_fail(task, part)

    def on_lost(self, task: Task, engine_id: int, why: str) -> None:
        """The engine died with the task on it (running or queued)."""
        if task.done:
            return
        task.cmd = None
        part = error_part(
            "EngineError",
            f"engine {engine_id} was lost ({why}) while running task {task.tid}",
            engine_id,
        )
        if task.aborting:
            self._finish(
                task,
                error_part("TaskAborted", f"task {task.tid} was aborted", engine_id),
                failed=True,
            )
        elif task.spec.retry_lost:
            self._retry_or_fail(task, engine_id, part)
        else:
            self._recover_or_fail(task, part)

    def requeue(self, task: Task) -> None:
        """A task taken back from an engine's queue before it ran (not an attempt)."""
        if not task.done:
            self._push(task)

    def _retry_or_fail(self, task: Task, engine_id: int, part: Part) -> None:
        task.failed_on.add(engine_id)
        if task.retries_left > 0:
            task.retries_left -= 1
            self._penalize(task, engine_id)
            self._push(task)
        else:
            self._recover_or_fail(task, part)

    def _recover_or_fail(self, task: Task, part: Part) -> None:
        if task.level + 1 < len(task.chain):
            task.level += 1
            task.retries_left = task.spec.retries
            task.failed_on.clear()
            task.penalty.clear()
            task.unmet.clear()
            self._push(task)
        else:
            self._finish(task, part, failed=True)

    def _finish(self, task: Task, part: Part, failed: bool) -> None:
        task.state = "failed" if failed else "succeeded"
        task.result = part
        task.completed = time.time()
        task.cmd = None
        for waiter in self._waiters.pop(task.tid, ()):
            mode = waiter[3]
            if mode == "sent":
                continue
            if mode == "any":  # answered once per turn of the loop, with all that finished in it
                self._due.setdefault(id(waiter), (waiter, []))[1].append(task.tid)
            elif all(self.tasks[t].done for t in waiter[2] if t in self.tasks):
                waiter[3] = "sent"
                self._send_results(waiter[0], waiter[1], waiter[2])

    def flush(self) -> None:
        """Send the answers gathered during this turn of the controller's loop."""
        if not self._due:
            return
        due, self._due = self._due, {}
        for waiter, tids in due.values():
            waiter[3] = "sent"
            self._send_results(waiter[0], waiter[1], tids)

    # ------------------------------------------------------------ answers
    def _send_results(self, client: bytes, msg_id: Any, ids: list[Any]) -> None:
        items = []
        frames: list[Any] = []
        raw: list[int] = []
        for tid in ids:
            task = self.tasks.get(tid)
            if task is None:
                items.append([tid, "unknown"])
                continue
            if not task.done or task.result is None:
                items.append([tid, task.state])
                continue
            p = task.result
            started = task.started or task.submitted
            run_time = (
                p.run_time
                if isinstance(p.run_time, (int, float))
                else (task.completed or started) - started
            )
            items.append(
                [
                    tid,
                    task.state,
                    task.spec.kind,
                    p.engine_id,
                    p.status,
                    p.enc,
                    len(p.frames) - 1,
                    task.submitted,
                    task.completed,
                    run_time,
                    p.sizes,
                    p.piece,
                ]
            )
            raw.extend(range(len(frames) + 1, len(frames) + len(p.frames)))
            frames.extend(p.frames)
        header: dict[str, Any] = {"t": "task_results", "id": msg_id, "items": items}
        if raw:
            header["raw"] = raw
        self.ctl.send_to_client(client, header, b"", frames)
