"""The Task interface, once: every call as an operation (see ``drive.py``).

``TaskClient`` runs these blocking, ``AsyncTaskClient`` awaits them, and the executors
and the joblib backend build on them. A map is a stream: it submits tasks in batches
and yields results as they complete, holding at most a window of them.
"""

from __future__ import annotations

import datetime
import itertools
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from .. import errors
from ..wire import protocol as P
from ..wire.message import Message, unpack
from ..wire.protocol import TaskItem, TaskLink
from ..wire.serialize import dumps, loads
from .answers import decode_part, raise_direct, unwrap
from .core import OutputHook
from .drive import Call, Item, Request, Steps, Stream
from .live import print_output
from .live import wanted as live_wanted
from .progress import bar
from .tasks import BaseTask, MapTask, TaskResult, encode

__all__ = ["Encoded", "TaskCalls", "deliver"]

SUBMIT_BATCH = 500  # tasks per submit message
WAIT_BATCH = 2000  # task ids per result request
DEFAULT_WINDOW = 1024  # tasks a map keeps submitted and not yet consumed

Encoded = list[tuple[TaskLink, bytes, list[Any]]]  # a task chain as it travels (tasks.encode)
Outcome = tuple[int, str, Any]  # (task id, state, value / TaskResult / exception / None)


def _value(msg: Message) -> Any:
    raise_direct(msg)
    return unpack(msg.content)


def _history_records(msg: Message) -> list[dict[str, Any]]:
    """History rows as users get them: engines as a list of ids, task ids as ints."""
    rows: list[dict[str, Any]] = _value(msg)
    for row in rows:
        row["engines"] = [int(e) for e in row["engines"].split(",")] if row["engines"] else []
        if row["kind"] == "task":
            row["id"] = int(row["id"])
    return rows


def parse_results(msg: Message, meta: dict[int, dict[str, Any]] | None = None) -> list[Outcome]:
    """(task id, state, outcome) per task of a ``task_results`` answer.

    The outcome of a finished task is its value (MapTask), a TaskResult (StringTask), or
    the exception it failed with; None while it has not finished. ``meta``, if given,
    gets each finished task's metadata (:func:`task_metadata`) by id.
    """
    raise_direct(msg)
    items = [TaskItem.from_wire(i) for i in msg.header["items"]]
    parts = iter(P.split_parts([i.part.nframes for i in items if i.part], msg.buffers))
    out: list[Outcome] = []
    for item in items:
        if item.part is None:
            out.append((item.tid, item.state, None))
            continue
        content, bufs = next(parts)
        value, printed = unwrap(decode_part(item.part, content, bufs, "task"))
        outcome: Any = value
        if item.kind == P.STRING_TASK and not isinstance(
            value, (errors.TaskAborted, errors.TaskTimeout)
        ):
            engine, times = item.part.engine_id, (item.submitted, item.completed, item.elapsed)
            if isinstance(value, BaseException):
                outcome = TaskResult(None, engine, item.tid, value, *times)
            else:
                outcome = TaskResult(value, engine, item.tid, None, *times)
            outcome.started = item.started
            if printed is not None:
                outcome.stdout, outcome.stderr = printed
        if meta is not None:
            meta[item.tid] = task_metadata(item, printed)
        out.append((item.tid, item.state, outcome))
    return out


def task_metadata(item: TaskItem, printed: tuple[str, str] | None) -> dict[str, Any]:
    """Where and when a finished task ran, and what it printed (as a result's metadata)."""
    assert item.part is not None
    return {
        "engine_id": item.part.engine_id,
        "status": item.part.status,
        "submitted": item.submitted,
        "started": item.started,
        "completed": item.completed,
        "duration": item.elapsed,
        "stdout": printed[0] if printed else "",
        "stderr": printed[1] if printed else "",
    }


def deliver(outcome: Any) -> Any:
    """A finished task's outcome as its caller gets it: a failure is raised."""
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


class TaskCalls:
    """A Task client's settings, and its calls as operations."""

    def __init__(self) -> None:
        self.progress: bool | None = None  # a bar for long map/barrier waits
        self.live_output: bool | None = None  # None: on at an interactive prompt
        self.output_hook: OutputHook = print_output

    # ------------------------------------------------------------ plumbing
    def submit(self, tasks: Sequence[BaseTask | Encoded]) -> Steps[list[int]]:
        """Submit tasks (or chains a map already encoded); their ids."""
        return _value((yield self.submission(tasks)))  # type: ignore[no-any-return]

    def submission(self, tasks: Sequence[BaseTask | Encoded]) -> Request:
        """The request that submits tasks (its answer: their ids)."""
        for t in tasks:
            if not isinstance(t, (BaseTask, list)):
                raise TypeError(f"a task must be a StringTask or a MapTask, not {t!r}")
        chains = [encode(t) if isinstance(t, BaseTask) else t for t in tasks]
        links = [link for chain in chains for link in chain]
        _, frames, raw = P.pack_parts((content, buffers) for _, content, buffers in links)
        header: dict[str, Any] = {
            "t": P.TASK_SUBMIT,
            "tasks": [[info.to_wire() for info, _, _ in chain] for chain in chains],
        }
        if raw:
            header["raw"] = raw
        listener = None
        if live_wanted(self.live_output):  # what the tasks print comes after the answer
            header["live"] = True
            listener = self.output_hook
        return Request(header, b"", frames, listener=listener, keep_listening=listener is not None)

    def results(self, ids: list[int], mode: str) -> Call[list[Outcome]]:
        # with live output on, what the tasks printed before they ended is shown first
        request = Request(
            {"t": P.TASK_RESULT, "ids": ids, "mode": mode},
            behind_output=live_wanted(self.live_output),
        )
        return Call(request, parse_results)

    def ask(self, header: dict[str, Any]) -> Call[Any]:
        return Call(Request(header), _value)

    # ------------------------------------------------------------ the seed's calls
    def run(self, task: BaseTask, block: bool) -> Steps[Any]:
        (tid,) = yield from self.submit([task])
        if not block:
            return tid
        return (yield from self.get_task_result(tid, True))

    def get_task_result(self, taskid: int, block: bool) -> Steps[Any]:
        ((_, state, outcome),) = yield from self.results([taskid], P.ALL if block else P.NOW)
        if state == P.UNKNOWN_TASK:
            raise IndexError(f"task ID not registered: {taskid}")
        if state not in P.FINISHED_STATES:
            return None
        return deliver(outcome)

    def abort(self, taskid: int) -> Steps[None]:
        if not isinstance(taskid, int) or isinstance(taskid, bool):
            raise TypeError(f"an integer task id expected: {taskid!r}")
        problem = yield from self.ask({"t": P.TASK_ABORT, "tid": taskid})
        if problem:
            raise IndexError(problem)

    def barrier(self, taskids: int | Iterable[int]) -> Steps[None]:
        waiting = [taskids] if isinstance(taskids, int) else list(taskids)
        progress = bar(self.progress, len(waiting), "barrier")
        try:
            while waiting:
                answered = yield from self.results(waiting[:WAIT_BATCH], P.ANY)
                ended = (P.SUCCEEDED, P.FAILED, P.UNKNOWN_TASK)
                done = {tid for tid, state, _ in answered if state in ended}
                progress.update(len(done))
                waiting = [t for t in waiting if t not in done]
        finally:
            progress.close()

    def history(
        self,
        status: str | None,
        engine: int | None,
        since: float | datetime.datetime | None,
        limit: int | None,
        kind: str | None,
    ) -> Call[list[dict[str, Any]]]:
        if status not in (None, P.SUCCEEDED, P.FAILED):
            raise ValueError(f"status must be 'succeeded', 'failed' or None, not {status!r}")
        if kind not in (None, "task", "job"):
            raise ValueError(f"kind must be 'task', 'job' or None, not {kind!r}")
        if engine is not None and (not isinstance(engine, int) or isinstance(engine, bool)):
            raise TypeError(f"engine must be an engine id, not {engine!r}")
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise ValueError(f"limit must be a non-negative int, not {limit!r}")
        if isinstance(since, datetime.datetime):
            since = since.timestamp()
        header: dict[str, Any] = {"t": P.HISTORY}
        for name, value in (
            ("status", status),
            ("engine", engine),
            ("since", since),
            ("limit", limit),
            ("kind", kind),
        ):
            if value is not None:
                header[name] = value
        return Call(Request(header), _history_records)

    def resubmit(self, task_ids: int | Iterable[int]) -> Call[list[int]]:
        ids = [task_ids] if isinstance(task_ids, int) else list(task_ids)
        return Call(Request({"t": P.TASK_RESUBMIT, "ids": ids}), _value)

    # ------------------------------------------------------------ map
    @staticmethod
    def map_tasks(
        func: Callable[..., Any],
        items: Iterable[tuple[Any, ...]],
        chunksize: int,
        options: dict[str, Any],
    ) -> Iterator[Encoded]:
        """One task per ``chunksize`` items; the function is pickled once for all, and the
        task's options are checked and encoded once for all."""
        data, bufs = dumps(func)
        if bufs:  # a function holding large buffers: each task pickles it itself
            yield from _each_task(func, items, chunksize, options)
            return
        template = encode(MapTask(func, **options), function_pickle=data)
        link, head, _ = template[0]
        recovery = template[1:]
        spec = loads(head)[0]  # the head task's dict, without args: filled in per task
        chunk: list[tuple[Any, ...]] = []
        for item in items:
            chunk.append(item)
            if len(chunk) == chunksize:
                yield _with_items(spec, link, recovery, chunk, chunksize)
                chunk = []
        if chunk:
            yield _with_items(spec, link, recovery, chunk, chunksize)

    def imap(
        self,
        func: Callable[..., Any],
        iterables: Sequence[Iterable[Any]],
        chunksize: int = 1,
        ordered: bool = True,
        window: int | None = None,
        options: dict[str, Any] | None = None,
    ) -> Stream:
        """A lazy load-balanced map over (possibly unbounded) iterables.

        At most ``window`` tasks are submitted and not yet consumed at any time. Results
        come in input order, or as they complete with ``ordered=False``; a failing item
        raises its exception when it is reached.
        """
        if not callable(func):
            raise TypeError(f"func must be callable, not {func!r}")
        if not isinstance(chunksize, int) or chunksize < 1:
            raise ValueError(f"chunksize must be a positive int, not {chunksize!r}")
        tasks = self.map_tasks(func, zip(*iterables), chunksize, options or {})
        return self._imap(tasks, window or DEFAULT_WINDOW, ordered, chunksize > 1)

    def _imap(self, tasks: Iterator[Encoded], window: int, ordered: bool, chunked: bool) -> Stream:
        order: deque[int] = deque()  # submitted, in input order (when ordered)
        waiting: dict[int, None] = {}  # submitted and not finished, oldest first
        done: dict[int, Any] = {}  # finished and not handed out yet
        exhausted = False
        while True:
            held = len(waiting) + len(done)
            submission = None
            if not exhausted and held < window:
                batch = []
                for task in tasks:
                    batch.append(task)
                    if len(batch) >= min(SUBMIT_BATCH, window - held):
                        break
                else:
                    exhausted = True
                if batch:
                    submission = self.submission(batch)
            if not waiting and submission is not None:  # nothing to ask for yet
                self._submitted((yield from Call(submission, _value)), waiting, order, ordered)
                submission = None
            if not waiting and not done:
                return
            if waiting and (not ordered or order[0] not in done):
                asked = list(itertools.islice(waiting, WAIT_BATCH))
                results = self.results(asked, P.ANY)
                # the next submission goes out with it, so engines are fed while this waits
                results.request.ahead = submission
                for tid, state, outcome in (yield from results):
                    if state in P.FINISHED_STATES or state == P.UNKNOWN_TASK:
                        lost = IndexError(f"task ID not registered: {tid} (cleared?)")
                        done[tid] = outcome if state != P.UNKNOWN_TASK else lost
                        del waiting[tid]
            if submission is not None:  # its answer is in by now, or soon
                self._submitted((yield from Call(submission, _value)), waiting, order, ordered)
            ready: list[int] = []
            if ordered:
                while order and order[0] in done:
                    ready.append(order.popleft())
            else:
                ready = list(done)
            for tid in ready:
                value = deliver(done.pop(tid))
                for v in value if chunked else (value,):
                    yield Item(v)
                del value

    @staticmethod
    def _submitted(
        tids: list[int], waiting: dict[int, None], order: deque[int], ordered: bool
    ) -> None:
        waiting.update(dict.fromkeys(tids))
        if ordered:
            order.extend(tids)

    def map(
        self,
        func: Callable[..., Any],
        sequences: Sequence[Any],
        chunksize: int,
        options: dict[str, Any],
    ) -> Steps[list[Any]]:
        lengths = {len(s) for s in sequences}
        if len(lengths) > 1:
            raise ValueError("all sequences must have equal length")
        progress = bar(self.progress, lengths.pop() if lengths else 0, "map", "item")
        out: list[Any] = []
        stream = self.imap(func, sequences, chunksize, options=options)
        try:
            step = next(stream)
            while True:
                if isinstance(step, Item):
                    out.append(step.value)
                    progress.update(1)
                    step = stream.send(None)
                else:
                    step = stream.send((yield step))
        except StopIteration:
            return out
        finally:
            stream.close()
            progress.close()


def _with_items(
    spec: dict[str, Any],
    link: TaskLink,
    recovery: Encoded,
    chunk: list[tuple[Any, ...]],
    chunksize: int,
) -> Encoded:
    """One task of a map: the map's task with these items (one call when ``chunksize`` is 1)."""
    spec = dict(spec)
    if chunksize > 1:
        spec["chunk"] = list(chunk)
    elif chunk[0]:
        spec["args"] = chunk[0]
    content, buffers = dumps((spec,))
    if buffers:
        link = link._replace(nbuf=len(buffers))
    return [(link, content, buffers), *recovery]


def _each_task(
    func: Callable[..., Any],
    items: Iterable[tuple[Any, ...]],
    chunksize: int,
    options: dict[str, Any],
) -> Iterator[Encoded]:
    chunk: list[tuple[Any, ...]] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == chunksize:
            yield _map_task(func, chunk, chunksize, options, None)
            chunk = []
    if chunk:
        yield _map_task(func, chunk, chunksize, options, None)


def _map_task(
    func: Callable[..., Any],
    chunk: list[tuple[Any, ...]],
    chunksize: int,
    options: dict[str, Any],
    fpickle: bytes | None,
) -> Encoded:
    """One task of a map: ``chunk`` holds its items (a single call when ``chunksize`` is 1)."""
    if chunksize == 1:
        return encode(MapTask(func, chunk[0], **options), function_pickle=fpickle)
    return encode(MapTask(func, **options), function_pickle=fpickle, chunk=list(chunk))
