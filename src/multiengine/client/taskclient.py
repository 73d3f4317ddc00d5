"""The blocking Task client: load-balanced tasks, as the seed's TaskClient.

``run`` hands a task to the controller's scheduler and returns its id;
``get_task_result`` fetches the outcome. ``map`` and ``imap`` spread a function over
sequences, one task per item or per ``chunksize`` items, submitting in batches and
collecting results as they complete.
"""

from __future__ import annotations

import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .. import errors
from ..wire.message import Message, unpack
from ..wire.serialize import dumps, loads
from .connected import Connected
from .progress import bar
from .results import _rebuild_error, raise_direct
from .tasks import BaseTask, MapTask, TaskResult

if TYPE_CHECKING:
    from .executor import TaskExecutor

__all__ = ["TaskClient", "TaskMapper"]

SUBMIT_BATCH = 500  # tasks per submit message
WAIT_BATCH = 2000  # task ids per result request


class TaskClient(Connected):
    """Load-balanced tasks on a cluster's engines (``profile``/``cluster_dir``/``connection_file``).

    ``progress`` (True, False, or None for automatic) shows a bar when ``map`` or
    ``barrier`` waits longer than two seconds.
    """

    progress: bool | None = None

    # ------------------------------------------------------------ plumbing
    def _value(self, header: dict[str, Any]) -> Any:
        return unpack(self._request(header).content)

    def _submit(self, tasks: Sequence[BaseTask]) -> list[int]:
        header: dict[str, Any] = {"t": "task_submit", "tasks": []}
        frames: list[Any] = []
        raw: list[int] = []
        for task in tasks:
            if not isinstance(task, BaseTask):
                raise TypeError(f"a task must be a StringTask or a MapTask, not {task!r}")
            chain = []
            for link in task.chain():
                content, bufs = dumps((link._engine_spec(),))
                info = link._sched_info()
                info["nbuf"] = len(bufs)
                chain.append(info)
                frames.append(content)
                raw.extend(range(len(frames), len(frames) + len(bufs)))
                frames.extend(bufs)
            header["tasks"].append(chain)
        if raw:
            header["raw"] = raw
        msg = self._request(header, b"", frames)
        return unpack(msg.content)  # type: ignore[no-any-return]

    def _results(self, ids: list[int], mode: str) -> list[tuple[int, str, Any]]:
        """(task id, state, outcome) per id; outcome is a value, a TaskResult or an exception."""
        return self._parse_results(self._request({"t": "task_result", "ids": ids, "mode": mode}))

    def _parse_results(self, msg: Message) -> list[tuple[int, str, Any]]:
        raise_direct(msg)
        out = []
        frames = msg.buffers
        pos = 0
        for item in msg.header["items"]:
            tid, state = item[0], item[1]
            if len(item) <= 2:
                out.append((tid, state, None))
                continue
            kind, engine_id, status, enc, nbuf, submitted, completed, duration, sizes, piece = item[
                2:12
            ]
            content = frames[pos]
            bufs = frames[pos + 1 : pos + 1 + nbuf]
            pos += 1 + nbuf
            if sizes is not None:
                from ..wire import chunks

                bufs = chunks.assemble(sizes, bufs, piece)
            if status == "ok":
                value = loads(content, bufs)
                outcome: Any = value
                if kind == "string":
                    outcome = TaskResult(
                        value, engine_id, tid, None, submitted, completed, duration
                    )
            else:
                exc = _rebuild_error(engine_id, enc, content, "task")
                if kind == "string" and not isinstance(
                    exc, (errors.TaskAborted, errors.TaskTimeout)
                ):
                    outcome = TaskResult(None, engine_id, tid, exc, submitted, completed, duration)
                else:
                    outcome = exc
            out.append((tid, state, outcome))
        return out

    @staticmethod
    def _deliver(outcome: Any) -> Any:
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    # ------------------------------------------------------------ the seed's methods
    def run(self, task: BaseTask, block: bool = False) -> Any:
        """Submit ``task``; its id, or with ``block=True`` its result."""
        tid = self._submit([task])[0]
        return self.get_task_result(tid, block=True) if block else tid

    def get_task_result(self, taskid: int, block: bool = False) -> Any:
        """The task's result (TaskResult for a StringTask, the value for a MapTask).

        A failed MapTask raises its exception; a failed StringTask returns a TaskResult
        with ``failure`` set; aborted and timed-out tasks raise TaskAborted/TaskTimeout.
        Not finished and ``block=False``: None.
        """
        ((tid, state, outcome),) = self._results([taskid], "all" if block else "none")
        if state == "unknown":
            raise IndexError(f"task ID not registered: {taskid}")
        if state not in ("succeeded", "failed"):
            return None
        return self._deliver(outcome)

    def abort(self, taskid: int) -> None:
        """Abort a waiting task, or interrupt a running one (it ends with TaskAborted)."""
        if not isinstance(taskid, int) or isinstance(taskid, bool):
            raise TypeError(f"an integer task id expected: {taskid!r}")
        problem = self._value({"t": "task_abort", "tid": taskid})
        if problem:
            raise IndexError(problem)

    def barrier(self, taskids: int | Iterable[int]) -> None:
        """Wait until every task has finished (errors are not raised here)."""
        waiting = [taskids] if isinstance(taskids, int) else list(taskids)
        progress = bar(self.progress, len(waiting), "barrier")
        try:
            while waiting:
                done = {
                    tid
                    for tid, state, _ in self._results(waiting[:WAIT_BATCH], "any")
                    if state in ("succeeded", "failed", "unknown")
                }
                progress.update(len(done))
                waiting = [t for t in waiting if t not in done]
        finally:
            progress.close()

    def get_ids(self) -> list[int]:
        """The ids of the registered engines."""
        return self._value({"t": "get_ids"})  # type: ignore[no-any-return]

    def spin(self) -> bool:
        """Ask the scheduler to hand out waiting tasks now; True if it did."""
        return bool(self._value({"t": "task_spin"}))

    def queue_status(self, verbose: bool = False) -> dict[str, Any]:
        """Counts (or, verbose, ids) of tasks scheduled, pending, succeeded and failed."""
        return self._value({"t": "task_status", "verbose": bool(verbose)})  # type: ignore[no-any-return]

    def clear(self) -> None:
        """Forget every finished task's result."""
        self._value({"t": "task_clear"})

    # ------------------------------------------------------------ map
    @staticmethod
    def _map_tasks(
        func: Callable[..., Any],
        items: Iterable[tuple[Any, ...]],
        chunksize: int,
        options: dict[str, Any],
    ) -> Iterator[MapTask]:
        """One MapTask per ``chunksize`` items; the function is pickled once for all."""
        data, bufs = dumps(func)
        fpickle = data if not bufs else None
        chunk: list[tuple[Any, ...]] = []
        for item in items:
            chunk.append(item)
            if len(chunk) == chunksize:
                yield _map_task(func, chunk, chunksize, options, fpickle)
                chunk = []
        if chunk:
            yield _map_task(func, chunk, chunksize, options, fpickle)

    def map(
        self, func: Callable[..., Any], *sequences: Any, chunksize: int = 1, **options: Any
    ) -> list[Any]:
        """``map(func, *sequences)`` load balanced: one task per ``chunksize`` items.

        Results come in order; the first failing item's exception is raised.
        Task options (retries, priority, time_limit...) apply to every task.
        """
        lengths = {len(s) for s in sequences}
        if len(lengths) > 1:
            raise ValueError("all sequences must have equal length")
        progress = bar(self.progress, lengths.pop() if lengths else 0, "map", "item")
        try:
            out = []
            for value in self.imap(func, *sequences, chunksize=chunksize, **options):
                out.append(value)
                progress.update(1)
            return out
        finally:
            progress.close()

    def imap(
        self,
        func: Callable[..., Any],
        *iterables: Iterable[Any],
        chunksize: int = 1,
        ordered: bool = True,
        window: int | None = None,
        **options: Any,
    ) -> Iterator[Any]:
        """A lazy load-balanced map: works on unbounded iterables.

        At most ``window`` tasks (default 1024) are submitted and not yet consumed at
        any time. Results are yielded in input order, or as they complete with
        ``ordered=False``. A failing item raises its exception when it is reached.
        """
        if not callable(func):
            raise TypeError(f"func must be callable, not {func!r}")
        if not isinstance(chunksize, int) or chunksize < 1:
            raise ValueError(f"chunksize must be a positive int, not {chunksize!r}")
        window = window or 1024
        tasks = self._map_tasks(func, zip(*iterables), chunksize, options)
        return self._imap(tasks, window, ordered, chunksize > 1)

    def _imap(
        self, tasks: Iterator[MapTask], window: int, ordered: bool, chunked: bool
    ) -> Iterator[Any]:
        inflight: deque[int] = deque()
        done: dict[int, Any] = {}
        exhausted = False
        while True:
            if not exhausted and len(inflight) + len(done) < window:
                batch = []
                for task in tasks:
                    batch.append(task)
                    if len(batch) >= min(SUBMIT_BATCH, window - len(inflight) - len(done)):
                        break
                else:
                    exhausted = True
                if batch:
                    inflight.extend(self._submit(batch))
            if not inflight and not done:
                return
            waiting = [t for t in inflight if t not in done]
            if waiting and (not ordered or inflight[0] not in done):
                for tid, state, outcome in self._results(waiting[:WAIT_BATCH], "any"):
                    if state in ("succeeded", "failed"):
                        done[tid] = outcome
            if ordered:
                while inflight and inflight[0] in done:
                    yield from self._unchunk(self._deliver(done.pop(inflight.popleft())), chunked)
            else:
                for tid in [t for t in inflight if t in done]:
                    inflight.remove(tid)
                    yield from self._unchunk(self._deliver(done.pop(tid)), chunked)

    @staticmethod
    def _unchunk(value: Any, chunked: bool) -> Iterator[Any]:
        if chunked:
            yield from value
        else:
            yield value

    def executor(self, **task_options: Any) -> TaskExecutor:
        """A ``concurrent.futures.Executor``: each ``submit`` is a load-balanced task."""
        from .executor import TaskExecutor

        return TaskExecutor(self, **task_options)

    def mapper(
        self,
        clear_before: bool = False,
        clear_after: bool = False,
        retries: int = 0,
        recovery_task: BaseTask | None = None,
        depend: Callable[..., bool] | None = None,
        block: bool = True,
    ) -> TaskMapper:
        return TaskMapper(self, clear_before, clear_after, retries, recovery_task, depend, block)

    def parallel(
        self,
        clear_before: bool = False,
        clear_after: bool = False,
        retries: int = 0,
        recovery_task: BaseTask | None = None,
        depend: Callable[..., bool] | None = None,
        block: bool = True,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """A decorator: ``f(seq)`` maps ``f`` over ``seq`` as load-balanced tasks."""
        mapper = self.mapper(clear_before, clear_after, retries, recovery_task, depend, block)

        def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
            def call_function(*sequences: Any) -> Any:
                return mapper.map(func, *sequences)

            call_function.__name__ = getattr(func, "__name__", "parallel_function")
            call_function.__doc__ = getattr(func, "__doc__", None)
            return call_function

        return decorate


def _map_task(
    func: Callable[..., Any],
    chunk: list[tuple[Any, ...]],
    chunksize: int,
    options: dict[str, Any],
    fpickle: bytes | None,
) -> MapTask:
    if chunksize == 1:
        task = MapTask(func, chunk[0], **options)
    else:
        task = MapTask(func, **options)
        task._chunk = list(chunk)
    task._function_pickle = fpickle
    return task


class TaskMapper:
    """``map`` with fixed task options; ``block=False`` returns the task ids."""

    def __init__(
        self,
        task_controller: TaskClient,
        clear_before: bool = False,
        clear_after: bool = False,
        retries: int = 0,
        recovery_task: BaseTask | None = None,
        depend: Callable[..., bool] | None = None,
        block: bool = True,
    ) -> None:
        self.task_controller = task_controller
        self.clear_before = clear_before
        self.clear_after = clear_after
        self.retries = retries
        self.recovery_task = recovery_task
        self.depend = depend
        self.block = block

    def map(self, func: Callable[..., Any], *sequences: Any) -> Any:
        if len({len(s) for s in sequences}) > 1:
            raise ValueError("all sequences must have equal length")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # depend: warned once, at mapper()
            options: dict[str, Any] = dict(
                clear_before=self.clear_before,
                clear_after=self.clear_after,
                retries=self.retries,
                recovery_task=self.recovery_task,
                depend=self.depend,
            )
            tc = self.task_controller
            if self.block:
                return tc.map(func, *sequences, **options)
            return tc._submit(list(tc._map_tasks(func, zip(*sequences), 1, options)))
