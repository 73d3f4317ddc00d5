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
started. No thread polls: the core's I/O thread reads the answers, and the Futures'
done-callbacks run on the client's delivery thread. A task Future is completed there
too; a MultiEngine call's Future is completed by the I/O thread itself, which unpickles
nothing (its value is decoded by the first thread that asks), so the caller of
``result()`` is woken directly (:class:`MultiEngineExecutor`).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from concurrent.futures import wait as wait_futures
from typing import TYPE_CHECKING, Any

from ..errors import InvalidDeferredID
from ..wire import protocol as P
from ..wire.message import Message, unpack
from .answers import raise_direct
from .core import ClientCore
from .drive import Call, send
from .results import PendingResult
from .taskcalls import SUBMIT_BATCH, parse_results
from .tasks import MapTask

if TYPE_CHECKING:
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
        Future.add_done_callback(fut, self._untrack)  # at once, on the completing thread

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
    """Every call runs on each target engine; the result is the list of their results.

    A call is one ``submit`` that names the id under which the controller sends its
    result as soon as it ends (``fetch_id``, as a blocking ``fetch`` sent with it would
    get it); the submit's answer (``ack``) brings the job id, which ``cancel()`` needs,
    and whether the call has started (the Future is then *running*; a call queued behind
    others asks ``wait_started``). So a quick call costs one round trip through the
    controller and the engine. The answers are handled where they are read, on the I/O
    thread, and run no user code there: the Future's done-callbacks run on the delivery
    thread, and its value is unpickled by the first thread that asks for it, so the
    caller of ``result()`` is woken by the thread that read the answer.
    """

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
        core = self._core
        fut = _AppliedFuture(core)
        self._track(fut)
        if type(op) is not Call:  # large arguments through shared memory: several steps
            self._follow(fut, self.client._run(op))
            return fut
        request = op.request
        # straight to an engine of this host, if it can go (its live output too)
        sent = core.request_direct(
            request.header, request.content, request.buffers, request.listener
        )
        if sent is not None:
            fut.job = sent[1]
            fut.set_running_or_notify_cancel()  # (it is the engine's now)
            sent[0].add_done_callback(lambda done: self._arrived(fut, done))
            fut._answer = sent[0]
            return fut
        request.header["fetch_id"], result = core.expect(request.listener is not None)
        ack = send(core, request, background=True, companions=(result,))
        ack.add_done_callback(lambda done: self._acked(fut, done, result))
        result.add_done_callback(lambda done: self._arrived(fut, done))
        return fut

    def _follow(self, fut: _AppliedFuture, pr: PendingResult[Any]) -> None:
        """Follow a call submitted the usual way (answered ``ack``): ask when it starts
        and for its result."""
        fut.job = pr.result_id
        if pr.called:  # no engines to run on: already done
            _settle(fut, pr._value)
            return
        self._watch_start(fut, pr.result_id)
        result = pr._fetch(block=True, background=True)
        result.add_done_callback(lambda done: self._arrived(fut, done))

    def _watch_start(self, fut: Future[Any], job: str) -> None:
        started = self._core.request({"t": P.WAIT_STARTED, "job": job}, background=True)
        started.add_done_callback(lambda done: self._started(fut, done))

    def _acked(self, fut: _AppliedFuture, done: Future[Message], result: Future[Message]) -> None:
        """The submit's answer: its job id and whether it started, or why nothing runs."""
        try:
            msg = done.result()
            raise_direct(msg)
            fut.job = job = str(msg.header["job"])
        except BaseException as e:  # bad targets, or the controller is gone
            self._core.forget(result)  # nothing will come under its id
            _settle(fut, e)
            return
        if fut.cancelled():  # cancelled before the job id came
            fut.take_back()
        elif msg.header.get("started"):
            if not fut.done() and not fut.running():
                fut.set_running_or_notify_cancel()
        elif not fut.done():  # queued behind other work: hear when it starts
            self._watch_start(fut, job)

    @staticmethod
    def _started(fut: Future[Any], done: Future[Message]) -> None:
        try:
            msg = done.result()
            raise_direct(msg)
            running = unpack(msg.content) == P.RUNNING
        except InvalidDeferredID:
            # The job was acked, so it existed: it ended and its result went out (to the
            # fetch that follows it) before this question came. That answer settles
            # ``fut``; failing it here would race the result, which is decoded on the
            # delivery thread.
            return
        except BaseException as e:
            _settle(fut, e)
            return
        if running and not fut.done() and not fut.running():
            fut.set_running_or_notify_cancel()

    def _arrived(self, fut: _AppliedFuture, done: Future[Message]) -> None:
        """The result: kept undecoded when every engine succeeded; a failure is decoded
        on the delivery thread, so that a wait for the first exception sees one."""
        fut._answer = None  # (it refers to this callback, which refers to fut: no cycle)
        try:
            msg = done.result()
            raise_direct(msg)
        except BaseException as e:
            _settle(fut, e)
            return
        core = self._core
        if all(P.PartHeader.from_wire(p).status == P.STATUS_OK for p in msg.header["parts"]):
            fut.arrive(functools.partial(_decode_apply, core, msg))
        else:
            core.call_soon(lambda: fut.settle_decoded(_decode_apply(core, msg)))

    def _fail(self, done: Future[Message], e: BaseException) -> None:
        with self._lock:
            outstanding = list(self._outstanding)
        for fut in outstanding:
            _settle(fut, e)


def _decode_apply(core: ClientCore, msg: Message) -> tuple[Any, list[dict[str, Any]]]:
    """The outcome of an ``apply`` result (its value, or the exception) and its metadata."""
    pr: PendingResult[Any] = PendingResult(core, msg.header.get("job") or "", "apply")
    try:
        outcome = pr._finish(msg)
    except BaseException as e:
        outcome = e
    return outcome, pr.metadata


_UNDECODED: Any = object()  # the value of an _AppliedFuture whose answer is not unpickled yet


class _AppliedFuture(Future[Any]):
    """The Future of a MultiEngineExecutor call.

    The thread that reads its answer completes it without unpickling anything
    (:meth:`arrive`); the first thread that asks for its value, its exception or its
    metadata decodes the answer. Its done-callbacks run on the client's delivery
    thread, whichever thread completes it. ``cancel()`` takes the call back from the
    controller (once its job id is known). It refers to no executor, so that it is
    freed as soon as its holder drops it (no reference cycle).
    """

    def __init__(self, core: ClientCore) -> None:
        super().__init__()
        self._core = core
        self.job: str | None = None  # the job id, once the submit's ack brings it
        self._decode: Callable[[], tuple[Any, list[dict[str, Any]]]] | None = None
        self._decode_lock = threading.Lock()
        self._outcome: Any = None
        self._meta: list[dict[str, Any]] = []
        # a direct call's answer, which a thread that asks for the result reads itself
        # (ClientCore.wait) rather than wait for the I/O thread to hand it over
        self._answer: Future[Message] | None = None

    def _read_answer(self, timeout: float | None) -> float | None:
        """Read a direct call's answer on this thread, if it has not come yet; what is
        left of ``timeout``."""
        answer = self._answer
        if answer is None or self.done():
            return timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            self._core.wait(answer, timeout)
        except Exception:  # noqa: BLE001 - a timeout, or the answer's failure: the
            pass  # Future's own wait below raises it, or it settled the Future
        # (an interrupt, Ctrl-C, goes to the caller: the call goes on without it)
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    def cancel(self) -> bool:
        if not super().cancel():
            return False
        self.set_running_or_notify_cancel()  # now done: wait() and as_completed() see it
        self.take_back()
        return True

    def take_back(self) -> None:
        """The controller drops the call's queued commands (once the job id is known:
        else when the ack brings it)."""
        if self.job is not None:
            self._core.request({"t": P.CANCEL, "job": self.job}, background=True)

    def add_done_callback(self, fn: Callable[[Future[Any]], object]) -> None:
        core = self._core

        def later(fut: Future[Any]) -> None:
            core.call_soon(lambda: fn(fut))  # type: ignore[arg-type]

        super().add_done_callback(later)

    def arrive(self, decode: Callable[[], tuple[Any, list[dict[str, Any]]]]) -> None:
        """Complete it with an answer that ``decode()`` turns into (outcome, metadata)."""
        self._decode = decode
        _settle(self, _UNDECODED)

    def settle_decoded(self, decoded: tuple[Any, list[dict[str, Any]]]) -> None:
        self._outcome, self._meta = decoded
        _settle(self, self._outcome)

    def _decoded(self) -> Any:
        """The outcome (value or exception), decoding the answer if no thread has yet."""
        with self._decode_lock:
            if self._decode is not None:
                decode, self._decode = self._decode, None
                self._outcome, self._meta = decode()
        return self._outcome

    def result(self, timeout: float | None = None) -> Any:
        value = super().result(self._read_answer(timeout))
        if value is not _UNDECODED:
            return value
        outcome = self._decoded()
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def exception(self, timeout: float | None = None) -> BaseException | None:
        e = super().exception(self._read_answer(timeout))
        if e is not None or not self.done() or self.cancelled():
            return e
        outcome = self._decoded()
        return outcome if isinstance(outcome, BaseException) else None

    @property
    def metadata(self) -> list[dict[str, Any]]:
        """One dict per engine: where and when the call ran, what it printed."""
        if self.done() and not self.cancelled():
            self._decoded()
        return self._meta

    @property
    def engine_ids(self) -> list[int]:
        return [m["engine_id"] for m in self.metadata]

    @property
    def stdout(self) -> str:
        return "".join(m["stdout"] for m in self.metadata)

    @property
    def stderr(self) -> str:
        return "".join(m["stderr"] for m in self.metadata)
