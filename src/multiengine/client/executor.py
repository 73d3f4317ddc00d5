"""``concurrent.futures`` executors over a cluster.

* ``tc.executor()``: each ``submit(fn, *args, **kwargs)`` is a load-balanced task; its
  Future gets the return value or the exception. ``map`` streams through ``imap``.
* ``mec.executor(targets)``: each ``submit`` runs the call on every target engine; its
  Future gets the list of per-engine results (or the CompositeError).

One daemon thread per executor completes the Futures; user callbacks run on it, never
on a thread reading the client's sockets.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from typing import TYPE_CHECKING, Any

from .tasks import MapTask

if TYPE_CHECKING:
    from .multiengine import MultiEngineClient
    from .results import PendingResult
    from .taskclient import TaskClient

__all__ = ["TaskExecutor", "MultiEngineExecutor"]

POLL = 0.05  # how often the waiting thread looks for newly submitted work while it waits


class _Base(Executor):
    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._shutdown = False
        self._thread: threading.Thread | None = None

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._run, name=f"multiengine-{type(self).__name__}", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:  # overridden
        raise RuntimeError

    def _check_open(self) -> None:
        if self._shutdown:
            raise RuntimeError("cannot submit after shutdown")

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            if cancel_futures:
                self._cancel_waiting()
            self._lock.notify_all()
        if wait and self._thread is not None:
            self._thread.join()

    def _cancel_waiting(self) -> None:
        pass


class TaskExecutor(_Base):
    """Load-balanced: every call is a MapTask on whichever engine is free."""

    def __init__(self, client: TaskClient, **task_options: Any) -> None:
        super().__init__()
        self.client = client
        self.task_options = task_options
        self._pending: dict[int, Future[Any]] = {}
        self._generation = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self._check_open()
        fut: Future[Any] = Future()
        tid = self.client.run(MapTask(fn, args, kwargs, **self.task_options))  # not under the lock
        fut.task_id = tid  # type: ignore[attr-defined]
        with self._lock:
            self._pending[tid] = fut
            self._generation += 1
            self._start()
            self._lock.notify_all()
        return fut

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
    ) -> Iterator[Any]:
        self._check_open()
        return self.client.imap(fn, *iterables, chunksize=chunksize, **self.task_options)

    def _cancel_waiting(self) -> None:
        for tid, fut in list(self._pending.items()):
            if fut.cancel():
                try:
                    self.client.abort(tid)
                except IndexError:
                    pass
                del self._pending[tid]

    def _run(self) -> None:
        core = self.client._core
        while True:
            with self._lock:
                while not self._pending and not self._shutdown:
                    self._lock.wait()
                if not self._pending:
                    return
                ids = sorted(self._pending)
                generation = self._generation
            request = core.request({"t": "task_result", "ids": ids, "mode": "any"})
            while True:
                try:
                    core.wait(request, POLL)
                    break
                except TimeoutError:
                    if self._generation != generation:  # new work: ask again, with it included
                        core.forget(request)
                        request = None  # type: ignore[assignment]
                        break
                except Exception as e:  # the controller is gone: fail everything
                    self._fail_all(e)
                    return
            if request is None:
                continue
            for tid, state, outcome in self.client._parse_results(request.result()):
                if state not in ("succeeded", "failed"):
                    continue
                with self._lock:
                    fut = self._pending.pop(tid, None)
                if fut is None or not fut.set_running_or_notify_cancel():
                    continue
                if isinstance(outcome, BaseException):
                    fut.set_exception(outcome)
                else:
                    fut.set_result(outcome)

    def _fail_all(self, e: BaseException) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        for fut in pending.values():
            if fut.set_running_or_notify_cancel():
                fut.set_exception(e)


class MultiEngineExecutor(_Base):
    """Every call runs on each target engine; the result is the list of their results."""

    def __init__(self, client: MultiEngineClient, targets: Any = None) -> None:
        super().__init__()
        self.client = client
        self.targets = client._find_targets(targets)
        self._queue: deque[tuple[PendingResult, Future[Any]]] = deque()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        with self._lock:
            self._check_open()
            fut: Future[Any] = Future()
            name = getattr(fn, "__name__", "call")
            pr = self.client._submit(
                "apply", (fn, args, kwargs), self.targets, False, f"apply({name})"
            )
            self._queue.append((pr, fut))
            self._start()
            self._lock.notify_all()
        return fut

    def _cancel_waiting(self) -> None:
        for _, fut in self._queue:
            fut.cancel()

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._shutdown:
                    self._lock.wait()
                if not self._queue:
                    return
                pr, fut = self._queue.popleft()
            # commands on the same engines finish in submission order: wait for them in it
            try:
                value = pr.get_result(block=True)
            except BaseException as e:
                if fut.set_running_or_notify_cancel():
                    fut.set_exception(e)
            else:
                if fut.set_running_or_notify_cancel():
                    fut.set_result(value)
