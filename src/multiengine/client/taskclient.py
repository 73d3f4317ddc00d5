"""The blocking Task client: load-balanced tasks, as the seed's TaskClient.

``run`` hands a task to the controller's scheduler and returns its id;
``get_task_result`` fetches the outcome. ``map`` and ``imap`` spread a function over
sequences, one task per item or per ``chunksize`` items, submitting in batches and
collecting results as they complete. The calls are defined once in ``taskcalls.py``;
this class runs them on the calling thread.
"""

from __future__ import annotations

import datetime
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from ..wire import protocol as P
from .connected import Connected
from .drive import Op, iterate, run
from .live import LiveOutputSettings
from .taskcalls import TaskCalls
from .tasks import BaseTask

if TYPE_CHECKING:
    from .executor import TaskExecutor

__all__ = ["TaskClient", "TaskMapper"]


class TaskClient(Connected, LiveOutputSettings):
    """Load-balanced tasks on a cluster's engines (``profile``/``cluster_dir``/``connection_file``).

    ``progress`` (True, False, or None for automatic) shows a bar when ``map`` or
    ``barrier`` waits longer than two seconds.
    """

    _calls: TaskCalls

    def _make_calls(self) -> TaskCalls:
        return TaskCalls()

    def _run(self, op: Op[Any]) -> Any:
        return run(self._core, op)

    @property
    def progress(self) -> bool | None:
        return self._calls.progress

    @progress.setter
    def progress(self, value: bool | None) -> None:
        self._calls.progress = value

    # ------------------------------------------------------------ the seed's methods
    def run(self, task: BaseTask, block: bool = False) -> Any:
        """Submit ``task``; its id, or with ``block=True`` its result."""
        return self._run(self._calls.run(task, block))

    def get_task_result(self, taskid: int, block: bool = False) -> Any:
        """The task's result (TaskResult for a StringTask, the value for a MapTask).

        A failed MapTask raises its exception; a failed StringTask returns a TaskResult
        with ``failure`` set; aborted and timed-out tasks raise TaskAborted/TaskTimeout.
        Not finished and ``block=False``: None.
        """
        return self._run(self._calls.get_task_result(taskid, block))

    def abort(self, taskid: int) -> None:
        """Abort a waiting task, or interrupt a running one (it ends with TaskAborted)."""
        self._run(self._calls.abort(taskid))

    def barrier(self, taskids: int | Iterable[int]) -> None:
        """Wait until every task has finished (errors are not raised here)."""
        self._run(self._calls.barrier(taskids))

    def get_ids(self) -> list[int]:
        """The ids of the registered engines."""
        return self._run(self._calls.ask({"t": P.GET_IDS}))  # type: ignore[no-any-return]

    def spin(self) -> bool:
        """Ask the scheduler to hand out waiting tasks now; True if it did."""
        return bool(self._run(self._calls.ask({"t": P.TASK_SPIN})))

    def queue_status(self, verbose: bool = False) -> dict[str, Any]:
        """Counts (or, verbose, ids) of tasks scheduled, pending, succeeded and failed."""
        header = {"t": P.TASK_STATUS, "verbose": bool(verbose)}
        return self._run(self._calls.ask(header))  # type: ignore[no-any-return]

    def _repr_html_(self) -> str:
        from .view import status_html

        title = f"TaskClient {self._core.url}"
        try:
            return status_html(title, self._run(self._calls.ask({"t": P.STATUS})))
        except Exception as e:  # a notebook's display must not raise
            return status_html(title, None, f"{type(e).__name__}: {e}")

    def clear(self) -> None:
        """Forget every finished task's result."""
        self._run(self._calls.ask({"t": P.TASK_CLEAR}))

    def history(
        self,
        status: str | None = None,
        engine: int | None = None,
        since: float | datetime.datetime | None = None,
        limit: int | None = None,
        kind: str | None = None,
    ) -> list[dict[str, Any]]:
        """Records of finished tasks and MultiEngine calls, newest first.

        Each is a dict: ``kind`` (``'task'`` or ``'job'``), ``id``, ``description``,
        ``engines``, ``status`` (``'succeeded'``/``'failed'``), ``submitted``,
        ``started``, ``completed`` (seconds since the epoch), ``duration``, ``retries``
        and ``error`` (the exception's type name). Filters: ``status``, ``engine`` (ran
        there), ``since`` (completed at or after; a datetime or epoch seconds),
        ``limit`` (the newest N), ``kind``. The controller keeps the newest
        ``history_limit`` records in results.db.
        """
        return self._run(self._calls.history(status, engine, since, limit, kind))  # type: ignore[no-any-return]

    def resubmit(self, task_ids: int | Iterable[int]) -> list[int]:
        """Run finished tasks again, under new ids (returned in the same order)."""
        return self._run(self._calls.resubmit(task_ids))  # type: ignore[no-any-return]

    # ------------------------------------------------------------ map
    def map(
        self, func: Callable[..., Any], *sequences: Any, chunksize: int = 1, **options: Any
    ) -> list[Any]:
        """``map(func, *sequences)`` load balanced: one task per ``chunksize`` items.

        Results come in order; the first failing item's exception is raised.
        Task options (retries, priority, time_limit...) apply to every task.
        """
        return self._run(self._calls.map(func, sequences, chunksize, options))  # type: ignore[no-any-return]

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
        stream = self._calls.imap(func, iterables, chunksize, ordered, window, options)
        return iterate(self._core, stream)

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
            tasks = list(TaskCalls.map_tasks(func, zip(*sequences), 1, options))
            return tc._run(tc._calls.submit(tasks))
