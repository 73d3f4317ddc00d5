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
from ..wire import protocol as P
from ..wire.message import Message, unpack
from ..wire.protocol import TaskItem, TaskLink
from ..wire.serialize import dumps
from .connected import Connected
from .progress import bar
from .results import decode_part, raise_direct
from .tasks import BaseTask, MapTask, TaskResult, encode

Encoded = list[tuple[TaskLink, bytes, list[Any]]]  # a task chain as it travels (tasks.encode)

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

    def _submit(self, tasks: Sequence[BaseTask | Encoded]) -> list[int]:
        """Submit tasks (or chains already encoded by a map); their ids."""
        chains = [encode(t) if isinstance(t, BaseTask) else t for t in tasks]
        for t in tasks:
            if not isinstance(t, (BaseTask, list)):
                raise TypeError(f"a task must be a StringTask or a MapTask, not {t!r}")
        links = [link for chain in chains for link in chain]
        _, frames, raw = P.pack_parts((content, buffers) for _, content, buffers in links)
        header: dict[str, Any] = {
            "t": P.TASK_SUBMIT,
            "tasks": [[info.to_wire() for info, _, _ in chain] for chain in chains],
        }
        if raw:
            header["raw"] = raw
        msg = self._request(header, b"", frames)
        return unpack(msg.content)  # type: ignore[no-any-return]

    def _results(self, ids: list[int], mode: str) -> list[tuple[int, str, Any]]:
        """(task id, state, outcome) per id; outcome is a value, a TaskResult or an exception."""
        return self._parse_results(self._request({"t": P.TASK_RESULT, "ids": ids, "mode": mode}))

    def _parse_results(self, msg: Message) -> list[tuple[int, str, Any]]:
        raise_direct(msg)
        items = [TaskItem.from_wire(i) for i in msg.header["items"]]
        parts = iter(P.split_parts([i.part.nframes for i in items if i.part], msg.buffers))
        out = []
        for item in items:
            if item.part is None:
                out.append((item.tid, item.state, None))
                continue
            content, bufs = next(parts)
            value = decode_part(item.part, content, bufs, "task")
            times = (item.submitted, item.completed, item.elapsed)
            outcome: Any = value
            if item.kind == P.STRING_TASK and not isinstance(
                value, (errors.TaskAborted, errors.TaskTimeout)
            ):
                if isinstance(value, BaseException):
                    outcome = TaskResult(None, item.part.engine_id, item.tid, value, *times)
                else:
                    outcome = TaskResult(value, item.part.engine_id, item.tid, None, *times)
            out.append((item.tid, item.state, outcome))
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
        ((tid, state, outcome),) = self._results([taskid], P.ALL if block else P.NOW)
        if state == P.UNKNOWN_TASK:
            raise IndexError(f"task ID not registered: {taskid}")
        if state not in P.FINISHED_STATES:
            return None
        return self._deliver(outcome)

    def abort(self, taskid: int) -> None:
        """Abort a waiting task, or interrupt a running one (it ends with TaskAborted)."""
        if not isinstance(taskid, int) or isinstance(taskid, bool):
            raise TypeError(f"an integer task id expected: {taskid!r}")
        problem = self._value({"t": P.TASK_ABORT, "tid": taskid})
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
                    for tid, state, _ in self._results(waiting[:WAIT_BATCH], P.ANY)
                    if state in (P.SUCCEEDED, P.FAILED, P.UNKNOWN_TASK)
                }
                progress.update(len(done))
                waiting = [t for t in waiting if t not in done]
        finally:
            progress.close()

    def get_ids(self) -> list[int]:
        """The ids of the registered engines."""
        return self._value({"t": P.GET_IDS})  # type: ignore[no-any-return]

    def spin(self) -> bool:
        """Ask the scheduler to hand out waiting tasks now; True if it did."""
        return bool(self._value({"t": P.TASK_SPIN}))

    def queue_status(self, verbose: bool = False) -> dict[str, Any]:
        """Counts (or, verbose, ids) of tasks scheduled, pending, succeeded and failed."""
        return self._value({"t": P.TASK_STATUS, "verbose": bool(verbose)})  # type: ignore[no-any-return]

    def clear(self) -> None:
        """Forget every finished task's result."""
        self._value({"t": P.TASK_CLEAR})

    # ------------------------------------------------------------ map
    @staticmethod
    def _map_tasks(
        func: Callable[..., Any],
        items: Iterable[tuple[Any, ...]],
        chunksize: int,
        options: dict[str, Any],
    ) -> Iterator[Encoded]:
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
        self, tasks: Iterator[Encoded], window: int, ordered: bool, chunked: bool
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
                for tid, state, outcome in self._results(waiting[:WAIT_BATCH], P.ANY):
                    if state in P.FINISHED_STATES:
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
