"""``concurrent.futures`` executors over a cluster.

* ``tc.executor()``: each ``submit(fn, *args, **kwargs)`` is a load-balanced task; its
  Future gets the return value or the exception.
* ``mec.executor(targets)``: each ``submit`` runs the call on every target engine; its
  Future gets the list of per-engine results (or the CompositeError).

Once done, a Future also has ``metadata`` (one dict per engine: where and when the call
ran, and what it printed), ``engine_ids``, ``stdout`` and ``stderr``.

Both follow the standard: a Future is *running* from the moment its call starts on an
engine (the controller says so: ``wait_started``), and from then on ``cancel()``
returns False; before that, ``cancel()`` takes the call back from the controller so it
never runs. ``map(..., timeout=)`` raises TimeoutError when a result is late and
cancels the rest; ``shutdown(cancel_futures=True)`` cancels only calls that have not
started. No thread polls: the core's I/O thread reads the answers, and the Futures are
completed (and their done-callbacks run) on the client's delivery thread.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from concurrent.futures import wait as wait_futures
from typing import TYPE_CHECKING, Any

from ..wire import protocol as P
from ..wire.message import Message, unpack
from .answers import raise_direct
from .results import PendingResult
from .taskcalls import SUBMIT_BATCH, parse_results
from .tasks import MapTask

if TYPE_CHECKING:
    from .core import ClientCore
    from .multiengine import MultiEngineClient
    from .taskclient import TaskClient

__all__ = ["TaskExecutor", "MultiEngineExecutor"]


class _CallFuture(Future[Any]):
    """A Future whose ``cancel()`` also takes its call back from the controller."""

    def __init__(self, take_back: Callable[[], None]) -> None:
        super().__init__()
        self._take_back = take_back

    def cancel(self) -> bool:
        if not super().cancel():
            return False
        self.set_running_or_notify_cancel()  # now done: wait() and as_completed() see it
        self._take_back()
        return True


class _Base(Executor):
    def __init__(self, core: ClientCore) -> None:
        self._core = core
        self._lock = threading.Lock()
        self._shutdown = False
        self._outstanding: set[Future[Any]] = set()

    def _check_open(self) -> None:
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")

    def _track(self, fut: Future[Any]) -> None:
        with self._lock:
            self._outstanding.add(fut)
        fut.add_done_callback(self._untrack)

    def _untrack(self, fut: Future[Any]) -> None:
        with self._lock:
            self._outstanding.discard(fut)

    def _then(self, request: Future[Message], step: Callable[[Message], None]) -> None:
        """Run ``step`` with the answer to ``request``, on the delivery thread."""

        def hand_over(done: Future[Message]) -> None:
            self._core.call_soon(lambda: self._step(done, step))

        request.add_done_callback(hand_over)

    def _step(self, done: Future[Message], step: Callable[[Message], None]) -> None:
        try:
            msg = done.result()
        except BaseException as e:  # the controller is gone: the calls fail with it
            self._fail(done, e)
            return
        step(msg)

    def _fail(self, done: Future[Message], e: BaseException) -> None:  # overridden
        raise e

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            outstanding = list(self._outstanding)
        if cancel_futures:
            for fut in outstanding:
                fut.cancel()  # only calls that have not started: running ones go on
        if wait:
            wait_futures(outstanding)


def _settle(fut: Future[Any], outcome: Any) -> None:
    """Complete ``fut`` with a value or an exception (running first, if it never was)."""
    if fut.done():  # cancelled, or already settled
        return
    if not fut.running() and not fut.set_running_or_notify_cancel():
        return
    if isinstance(outcome, BaseException):
        fut.set_exception(outcome)
    else:
        fut.set_result(outcome)


def _describe(fut: Future[Any], metadata: list[dict[str, Any]]) -> None:
    """Give an executor's Future its call's metadata: ``metadata`` (one dict per engine),
    ``engine_ids``, ``stdout`` and ``stderr`` (a task's: its one engine's text)."""
    f: Any = fut
    f.metadata = metadata
    f.engine_ids = [m["engine_id"] for m in metadata]
    f.stdout = "".join(m["stdout"] for m in metadata)
    f.stderr = "".join(m["stderr"] for m in metadata)


class TaskExecutor(_Base):
    """Load-balanced: every call is a MapTask on whichever engine is free."""

    def __init__(self, client: TaskClient, **task_options: Any) -> None:
        super().__init__(client._core)
        self.client = client
        self.task_options = task_options
        self._futures: dict[int, Future[Any]] = {}

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        return self._submit_many([MapTask(fn, args, kwargs, **self.task_options)])[0]

    def _submit_many(self, tasks: list[MapTask]) -> list[Future[Any]]:
        self._check_open()
        tids = self.client._run(self.client._calls.submit(tasks))
        futures: list[Future[Any]] = []
        for tid in tids:
            fut = _CallFuture(functools.partial(self._abort, tid))
            fut.task_id = tid  # type: ignore[attr-defined]
            self._futures[tid] = fut
            self._track(fut)
            self._watch(tid)
            futures.append(fut)
        return futures

    def _watch(self, tid: int) -> None:
        request = self._core.request({"t": P.WAIT_STARTED, "tid": tid}, background=True)
        self._then(request, lambda msg: self._started(tid, msg))

    def _started(self, tid: int, msg: Message) -> None:
        fut = self._futures.get(tid)
        if fut is None or fut.cancelled():
            return
        if msg.type == P.VALUE and unpack(msg.content) == P.RUNNING:
            if not fut.set_running_or_notify_cancel():
                return  # cancelled just before: its abort is on the way
        request = self._core.request(
            {"t": P.TASK_RESULT, "ids": [tid], "mode": P.ALL}, background=True
        )
        self._then(request, lambda answer: self._finished(tid, answer))

    def _finished(self, tid: int, msg: Message) -> None:
        fut = self._futures.pop(tid, None)
        if fut is None:
            return
        meta: dict[int, dict[str, Any]] = {}
        try:
            ((_, _, outcome),) = parse_results(msg, meta)
        except BaseException as e:
            outcome = e
        if tid in meta:  # where and when it ran, what it printed: before callbacks see it
            _describe(fut, [meta[tid]])
        _settle(fut, outcome)

    def _fail(self, done: Future[Message], e: BaseException) -> None:
        for tid in list(self._futures):
            fut = self._futures.pop(tid)
            _settle(fut, e)

    def _abort(self, tid: int) -> None:
        """Take a cancelled call back: the controller aborts the task (not waited for)."""
        self._futures.pop(tid, None)
        self._core.request({"t": P.TASK_ABORT, "tid": tid}, background=True)

    def map(
        self,
        fn: Callable[..., Any],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
    ) -> Iterator[Any]:
        """``map(fn, *iterables)``, each call (or ``chunksize`` calls) a task.

        The iterables are read at once and the tasks submitted, as the standard says;
        results come in order. With ``timeout``, a result not there ``timeout`` seconds
        after this call raises TimeoutError, and the calls not yet started are cancelled.
        """
        if not isinstance(chunksize, int) or chunksize < 1:
            raise ValueError(f"chunksize must be a positive int, not {chunksize!r}")
        deadline = None if timeout is None else time.monotonic() + timeout
        items = list(zip(*iterables))
        if chunksize == 1:
            tasks = [MapTask(fn, item, **self.task_options) for item in items]
        else:
            tasks = [
                MapTask(_run_chunk, (fn, items[i : i + chunksize]), **self.task_options)
                for i in range(0, len(items), chunksize)
            ]
        futures: list[Future[Any]] = []
        for i in range(0, len(tasks), SUBMIT_BATCH):
            futures.extend(self._submit_many(tasks[i : i + SUBMIT_BATCH]))
        return _results_in_order(futures, deadline, chunked=chunksize > 1)


def _run_chunk(fn: Callable[..., Any], items: list[tuple[Any, ...]]) -> list[Any]:
    return [fn(*item) for item in items]


def _results_in_order(
    futures: list[Future[Any]], deadline: float | None, chunked: bool
) -> Iterator[Any]:
    """Yield each future's result in order, keeping no reference to those yielded."""
    futures.reverse()
    try:
        while futures:
            fut = futures.pop()
            left = None if deadline is None else deadline - time.monotonic()
            try:
                value = fut.result(left)
            finally:
                fut.cancel()
                del fut
            if chunked:
                yield from value
            else:
                yield value
            del value
    finally:
        for fut in futures:
            fut.cancel()


class MultiEngineExecutor(_Base):
    """Every call runs on each target engine; the result is the list of their results."""

    def __init__(self, client: MultiEngineClient, targets: Any = None) -> None:
        super().__init__(client._core)
        self.client = client
        self.targets = client._calls.find_targets(targets)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self._check_open()
        name = getattr(fn, "__name__", "call")
        op = self.client._calls.submit(
            "apply", (fn, args, kwargs), self.targets, False, f"apply({name})"
        )
        pr: PendingResult[Any] = self.client._run(op)
        fut = _CallFuture(lambda: self._cancel_job(pr.result_id))
        self._track(fut)
        if pr.called:  # no engines to run on: already done
            _settle(fut, pr._value)
            return fut
        # Both questions go at once: when the call starts (the Future is *running*), and
        # its result (a blocking fetch, answered when it ends, or with QueueCleared when
        # the Future is cancelled first). A quick call then costs one round trip after
        # the submit, not two.
        started = self._core.request({"t": P.WAIT_STARTED, "job": pr.result_id}, background=True)
        self._then(started, lambda msg: self._started(fut, msg))
        result = pr._fetch(block=True, background=True)
        self._then(result, lambda answer: self._finished(pr, fut, answer))
        return fut

    def _started(self, fut: Future[Any], msg: Message) -> None:
        try:
            raise_direct(msg)
            running = unpack(msg.content) == P.RUNNING
        except BaseException as e:
            _settle(fut, e)
            return
        if running and not fut.done() and not fut.running():
            fut.set_running_or_notify_cancel()

    def _finished(self, pr: PendingResult[Any], fut: Future[Any], msg: Message) -> None:
        try:
            outcome = pr._finish(msg)
        except BaseException as e:
            outcome = e
        _describe(fut, pr.metadata)
        _settle(fut, outcome)

    def _fail(self, done: Future[Message], e: BaseException) -> None:
        with self._lock:
            outstanding = list(self._outstanding)
        for fut in outstanding:
            _settle(fut, e)

    def _cancel_job(self, job_id: str) -> None:
        """Take a cancelled call back: the controller drops its queued commands."""
        self._core.request({"t": P.CANCEL, "job": job_id}, background=True)
