"""Load-balanced tasks: what a task is (StringTask, MapTask) and what it gives back
(TaskResult).

A task is turned into two things on submission (:func:`encode`): a plain dict the
engine runs (see ``multiengine.engine.tasks``), pickled, and the few fields the
controller's scheduler needs (:class:`~multiengine.wire.protocol.TaskLink`: priority,
retries, time limit, kind), sent beside it in the clear.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

from ..errors import EngineError
from ..wire.protocol import TaskLink
from ..wire.serialize import dumps
from .results import ResultNS

__all__ = ["BaseTask", "StringTask", "MapTask", "TaskResult", "encode"]

MAX_RECOVERY_DEPTH = 16


def _check_retry_on(retry_on: Any) -> tuple[tuple[type[BaseException], ...], bool]:
    """(exception types retried on the engine, whether engine loss is retried)."""
    if retry_on is None:
        return (Exception,), True
    if retry_on == "engine":
        return (), True
    classes = retry_on if isinstance(retry_on, tuple) else (retry_on,)
    if not classes or not all(
        isinstance(c, type) and issubclass(c, BaseException) for c in classes
    ):
        raise TypeError(f"retry_on must be None, 'engine', or exception classes, not {retry_on!r}")
    return classes, any(issubclass(EngineError, c) for c in classes)


class BaseTask:
    """What every task has: namespace clearing, retries, recovery, priority, limits."""

    kind = "map"

    def __init__(
        self,
        clear_before: bool = False,
        clear_after: bool = False,
        retries: int = 0,
        recovery_task: BaseTask | None = None,
        depend: Callable[[dict[Any, Any]], bool] | None = None,
        *,
        priority: int = 0,
        time_limit: float | None = None,
        retry_on: Any = None,
    ) -> None:
        if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
            raise TypeError(f"retries must be a non-negative int, not {retries!r}")
        if recovery_task is not None and not isinstance(recovery_task, BaseTask):
            raise TypeError(f"recovery_task must be a task, not {recovery_task!r}")
        if depend is not None:
            if not callable(depend):
                raise TypeError(f"depend must be callable, not {depend!r}")
            warnings.warn(
                "depend= (engine properties) is deprecated: "
                "raise TaskRejectError in the task instead",
                DeprecationWarning,
                stacklevel=3,
            )
        if not isinstance(priority, int) or isinstance(priority, bool):
            raise TypeError(f"priority must be an int, not {priority!r}")
        if time_limit is not None and (
            isinstance(time_limit, bool)
            or not isinstance(time_limit, (int, float))
            or time_limit <= 0
        ):
            raise TypeError(
                f"time_limit must be a positive number of seconds or None, not {time_limit!r}"
            )
        self.retry_classes, self.retry_lost = _check_retry_on(retry_on)
        self.clear_before = bool(clear_before)
        self.clear_after = bool(clear_after)
        self.retries = retries
        self.recovery_task = recovery_task
        self.depend = depend
        self.priority = priority
        self.time_limit = time_limit
        self.retry_on = retry_on

    def _engine_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"kind": self.kind}
        if self.clear_before:
            spec["clear_before"] = True
        if self.clear_after:
            spec["clear_after"] = True
        if self.depend is not None:
            spec["depend"] = self.depend
        if self.retry_classes != (Exception,):
            spec["retry_on"] = self.retry_classes
        return spec

    def _desc(self) -> str:
        return type(self).__name__

    def chain(self) -> list[BaseTask]:
        """This task, then its recovery task, and so on."""
        out: list[BaseTask] = []
        t: BaseTask | None = self
        while t is not None:
            if len(out) >= MAX_RECOVERY_DEPTH or any(t is o for o in out):
                raise ValueError("recovery tasks form a loop (or a chain over 16 deep)")
            out.append(t)
            t = t.recovery_task
        return out


class StringTask(BaseTask):
    """Push names, execute an expression, pull names back, on whichever engine is free."""

    kind = "string"

    def __init__(
        self, expression: str, pull: Any = None, push: dict[str, Any] | None = None, **options: Any
    ) -> None:
        if not isinstance(expression, str):
            raise TypeError("a task expression must be a string")
        if pull is not None:
            if isinstance(pull, str):
                pull = [pull]
            elif not (isinstance(pull, (list, tuple)) and all(isinstance(k, str) for k in pull)):
                raise TypeError("pull must be str or a sequence of strs")
        if push is not None and not isinstance(push, dict):
            raise TypeError("push must be a dict")
        super().__init__(**options)
        self.expression = expression
        self.pull = list(pull) if pull is not None else None
        self.push = push

    def _engine_spec(self) -> dict[str, Any]:
        return {
            **super()._engine_spec(),
            "expression": self.expression,
            "pull": self.pull,
            "push": self.push,
        }

    def _desc(self) -> str:
        text = self.expression if len(self.expression) <= 60 else self.expression[:57] + "..."
        return f"StringTask({text!r})"


class MapTask(BaseTask):
    """Call ``function(*args, **kwargs)`` on whichever engine is free."""

    kind = "map"

    def __init__(
        self,
        function: Callable[..., Any],
        args: Any = None,
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> None:
        if not callable(function) or isinstance(function, (str, type(None))):
            raise TypeError("a task function must be callable (a FunctionType, lambda, builtin...)")
        if args is not None and not isinstance(args, (list, tuple)):
            raise TypeError("a task's args must be a list or tuple")
        if kwargs is not None and not isinstance(kwargs, dict):
            raise TypeError("a task's kwargs must be a dict")
        super().__init__(**options)
        self.function = function
        self.args = tuple(args or ())
        self.kwargs = dict(kwargs or {})

    def _engine_spec(self) -> dict[str, Any]:
        spec = super()._engine_spec()
        spec["function"] = self.function
        if self.args:
            spec["args"] = self.args
        if self.kwargs:
            spec["kwargs"] = self.kwargs
        return spec

    def _desc(self) -> str:
        return f"MapTask({getattr(self.function, '__name__', repr(self.function))})"


def encode(
    task: BaseTask,
    *,
    function_pickle: bytes | None = None,
    chunk: list[tuple[Any, ...]] | None = None,
) -> list[tuple[TaskLink, bytes, list[Any]]]:
    """A task's chain (the task, then its recovery tasks) as it travels: per link, the
    scheduler's fields and the pickled dict the engine runs, with its buffers.

    A map passes ``function_pickle`` (its function, pickled once for all its tasks) and,
    when it groups items, ``chunk`` (many calls of the head MapTask's function).
    """
    if not isinstance(task, BaseTask):
        raise TypeError(f"a task must be a StringTask or a MapTask, not {task!r}")
    out = []
    for i, link in enumerate(task.chain()):
        spec = link._engine_spec()
        if i == 0 and function_pickle is not None:
            del spec["function"]
            spec["function_pickle"] = function_pickle
        if i == 0 and chunk is not None:
            spec["chunk"] = chunk
        content, buffers = dumps((spec,))
        time_limit = float(link.time_limit) if link.time_limit else None
        info = TaskLink(
            link.kind,
            link.retries,
            link._desc(),
            len(buffers),
            link.priority,
            time_limit,
            link.retry_lost,
        )
        out.append((info, content, buffers))
    return out


def _stamp(t: float | None) -> str | None:
    return time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(t)) if t else None


class TaskResult:
    """The outcome of a StringTask: the pulled names, or the failure.

    ``results``/``keys``/``ns`` give the pulled values (``ns.a`` or ``tr['a']``); on a
    failure they re-raise it, and ``raise_exception()`` does too. ``engineid``,
    ``submitted`` and ``completed`` (as the seed's text stamps), ``started`` (Unix
    time), ``duration`` (seconds the engine ran it), ``stdout`` and ``stderr`` say
    where, when and what it printed.
    """

    def __init__(
        self,
        results: dict[str, Any] | None,
        engineid: int | None,
        taskid: int | None = None,
        failure: BaseException | None = None,
        submitted: float | None = None,
        completed: float | None = None,
        duration: float | None = None,
    ) -> None:
        self.failure = failure
        self.results = {} if failure is not None or results is None else dict(results)
        self.keys = list(self.results)
        self.engineid = engineid
        self.taskid = taskid
        self.submitted = _stamp(submitted)
        self.completed = _stamp(completed)
        self.started: float | None = None  # Unix time, on the controller's clock
        self.duration = duration
        self.stdout = ""  # what the task printed (or logged) on its engine
        self.stderr = ""

    @property
    def ns(self) -> ResultNS:
        self.raise_exception()
        return ResultNS(self.results)

    def __getitem__(self, key: str) -> Any:
        self.raise_exception()
        return self.results[key]

    def raise_exception(self) -> None:
        if self.failure is not None:
            raise self.failure

    def __repr__(self) -> str:
        body = (
            repr(self.results)
            if self.failure is None
            else f"failure={type(self.failure).__name__}: {self.failure}"
        )
        return f"TaskResult[ID:{self.taskid}]:{body}"
