"""Results as users see them: ResultList, ResultNS, PendingResult, and the decoding of
answers into values and exceptions.

How the controller's answers become values and exceptions is :mod:`.answers`.

A result knows where and when it ran (:class:`Timing`): per engine, the engine id, its
status, when the call was submitted (the controller's clock, from the job id), started
and completed (the controller's clock, from the result's ``PartHeader``), how long the
engine ran it, and what it printed. ``PendingResult`` is a
:class:`concurrent.futures.Future`.
"""

from __future__ import annotations

import html
import sys
import threading
import time
from collections.abc import Callable, Generator, Sequence
from concurrent.futures import CancelledError, Future
from typing import Any, TypeVar, overload

from ..wire import protocol as P
from ..wire.message import Message, unpack
from .answers import check, decode_result, metadata, raise_direct, submitted_at
from .core import ClientCore

__all__ = ["PendingResult", "ResultList", "ResultNS", "Timing", "wait_interactive"]

T = TypeVar("T")
D = TypeVar("D")


class ResultNS:
    """Names pulled by a task, by attribute or by key: ``ns.a``, ``ns['a']``.

    >>> ResultNS({'a': 17, 'foo': list(range(3))})
    NS{'a': 17, 'foo': [0, 1, 2]}
    """

    def __init__(self, dikt: dict[str, Any]) -> None:
        self.__dict__.update(dikt)

    def __repr__(self) -> str:
        return "NS" + repr(self.__dict__)

    def __getitem__(self, key: str) -> Any:
        return self.__dict__[key]

    def __contains__(self, key: object) -> bool:
        return key in self.__dict__


def _colors() -> tuple[str, str, str, str]:
    if sys.platform != "win32" and hasattr(sys.stdout, "isatty") and sys.stdout.isatty():
        return "\x1b[0;34m", "\x1b[0m", "\x1b[0;31m", "\x1b[0;32m"
    return "", "", "", ""


class Timing:
    """Where and when a call ran, from its per-engine ``metadata``.

    ``metadata`` is a list with one dict per engine, in target order: ``engine_id``,
    ``status`` (``"ok"`` or ``"error"``), ``submitted``, ``started``, ``completed``
    (Unix times; ``None`` when not known), ``duration`` (seconds the engine ran it),
    ``stdout`` and ``stderr`` (what it printed, ``""`` when nothing).
    """

    metadata: list[dict[str, Any]] = []
    result_id: str = ""

    @property
    def engine_ids(self) -> list[int]:
        return [m["engine_id"] for m in self.metadata]

    @property
    def submitted(self) -> float | None:
        """When the call reached the controller (Unix time, to the millisecond)."""
        return submitted_at(self.result_id)

    @property
    def started(self) -> list[float | None]:
        return [m["started"] for m in self.metadata]

    @property
    def completed(self) -> list[float | None]:
        return [m["completed"] for m in self.metadata]

    @property
    def stdout(self) -> list[str]:
        return [m["stdout"] for m in self.metadata]

    @property
    def stderr(self) -> list[str]:
        return [m["stderr"] for m in self.metadata]

    @property
    def serial_time(self) -> float:
        """Seconds the engines spent running it, added up."""
        return sum(m["duration"] or 0.0 for m in self.metadata)

    @property
    def wall_time(self) -> float | None:
        """Seconds from submission to the last engine's completion (None until done)."""
        done = [c for c in self.completed if c is not None]
        first = self.submitted
        if not done or len(done) < len(self.metadata) or not self.metadata:
            return None
        if first is None:
            started = [s for s in self.started if s is not None]
            first = min(started) if started else max(done)
        return max(0.0, max(done) - first)

    @property
    def elapsed(self) -> float | None:
        """Seconds since submission: up to now while it runs, ``wall_time`` once done."""
        wall = self.wall_time
        if wall is not None:
            return wall
        first = self.submitted
        return None if first is None else max(0.0, time.time() - first)


class ResultList(list[Any], Timing):
    """The results of ``execute``/``get_result``: a list that prints like the seed's.

    It carries the call's :class:`Timing` (``metadata``, ``engine_ids``, ``elapsed``...).
    """

    def _repr_html_(self) -> str:
        return html_table(list(self), self.metadata)

    def __repr__(self) -> str:
        blue, normal, red, green = _colors()
        out = ["<Results List>\n"]
        for cmd in self:
            if not isinstance(cmd, dict):
                out.append(f"{cmd!r}\n")
                continue
            target = cmd.get("id", -1)
            num = cmd.get("number", -1)
            text = cmd.get("input", {}).get("translated", "No Input")
            out.append(f"{green}[{target}]{blue} In [{num}]:{normal} {text}\n")
            if cmd.get("stdout"):
                stdout = cmd["stdout"].rstrip(chr(10))
                out.append(f"{green}[{target}]{red} Out[{num}]:{normal} {stdout}\n")
            if cmd.get("stderr"):
                out.append(f"{green}[{target}]{red} Err[{num}]:\n{normal} {cmd['stderr']}")
        return "".join(out)

    __str__ = __repr__


# ---------------------------------------------------------------- a compact HTML table
def _cell(value: Any, limit: int = 200) -> str:
    text = value if isinstance(value, str) else repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return html.escape(text)


def html_table(values: list[Any] | None, meta: list[dict[str, Any]], state: str = "") -> str:
    """Engine, status, value or error, and time, one row per engine (for Jupyter)."""
    rows = []
    for i, m in enumerate(meta):
        value = values[i] if values is not None and i < len(values) else None
        shown: Any
        if isinstance(value, BaseException):
            shown = f"{type(value).__name__}: {value}"
        elif type(value) is dict and "input" in value:  # an execute result dict
            shown = value.get("stdout") or (value.get("display") or {}).get("repr", "")
        else:
            shown = value
        took = f"{m['duration']:.3g} s" if m.get("duration") is not None else ""
        rows.append(
            f"<tr><td>{m['engine_id']}</td><td>{_cell(m['status'])}</td>"
            f"<td style='text-align:left'><pre style='margin:0'>{_cell(shown)}</pre></td>"
            f"<td>{took}</td></tr>"
        )
    caption = f"<caption>{html.escape(state)}</caption>" if state else ""
    return (
        f"<table>{caption}<thead><tr><th>engine</th><th>status</th><th>value</th>"
        f"<th>time</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


# ---------------------------------------------------------------- PendingResult
_NOT_READY: Any = object()


class _Waiters(list[Any]):
    """A Future's ``_waiters``: ``concurrent.futures.wait``/``as_completed`` add theirs,
    which is when a PendingResult must start fetching its result by itself."""

    __slots__ = ("on_add",)

    def __init__(self, on_add: Callable[[], None]) -> None:
        super().__init__()
        self.on_add = on_add

    def append(self, waiter: Any) -> None:
        super().append(waiter)
        self.on_add()


class PendingResult(Future[T], Timing):
    """A result that may not be ready yet (from a call made with ``block=False``).

    ``get_result(default, block)`` fetches it once from the controller and caches it
    (or the exception, re-raised on every later call); ``.r`` blocks; ``await pr``
    waits without blocking an event loop. ``done()`` and ``wait(timeout)`` ask without
    raising. Callbacks added with ``add_callback`` run in order, on the thread (or in
    the coroutine) that first retrieves the result, and may use the client.

    It is a :class:`concurrent.futures.Future`: ``result(timeout)``,
    ``exception(timeout)``, ``add_done_callback`` (run on the client's delivery
    thread), ``concurrent.futures.wait`` and ``as_completed`` work on it. It fetches
    its result by itself once one of those needs it, and only then (the controller
    hands a result out once: ``get_pending_deferred`` of an id whose PendingResult is
    being waited for fails). ``cancel()`` takes back the call if none of it has started.
    Once done it carries the call's :class:`Timing` and each engine's ``stdout`` and
    ``stderr``.
    """

    def __init__(
        self,
        core: ClientCore | None,
        result_id: str,
        method: str,
        post: Callable[[list[Any]], T] | None = None,
        value: Any = _NOT_READY,
        live: bool = False,
    ) -> None:
        super().__init__()
        self._waiters: list[Any] = _Waiters(self._watch)
        self.core = core
        self.result_id = result_id
        self.method = method
        self._post = post
        self.callbacks: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = []
        self.called = False
        self.raised = False
        self._value: Any = None
        self.metadata: list[dict[str, Any]] = []
        self._inflight: Future[Message] | None = None
        self._lock = threading.RLock()  # (add_callback callbacks may use this result)
        self._watching = False
        self.live = live  # its call streams live output: shown before the result is
        self.values: list[Any] | None = None  # per engine, as they came (errors included)
        if value is not _NOT_READY:
            self._settle(value, False)

    def __repr__(self) -> str:
        state = "done" if self.called else ("cancelled" if self.cancelled() else "pending")
        return f"<PendingResult {self.method} {self.result_id} {state}>"

    def __lt__(self, other: PendingResult[Any]) -> bool:
        return self.result_id < other.result_id

    def _settle(self, value: Any, raised: bool) -> None:
        if self.cancelled():  # what a cancelled call left behind is not its result
            return
        self._value = value
        self.raised = raised
        self.called = True
        if raised:
            self.set_exception(value)
        else:
            self.set_result(value)

    def _finish(self, msg: Message) -> T:
        with self._lock:  # the caller's thread and the delivery thread may both get here
            if self.called:
                return self._cached()
            try:
                raise_direct(msg)
                values, parts, outputs = decode_result(msg, self.method)
                self.values = values
                self.metadata = metadata(self.result_id, parts, outputs, values)
                value: Any = check(values, self.method)
                if self._post is not None:
                    value = self._post(value)
                if isinstance(value, ResultList):
                    value.metadata = self.metadata
                    value.result_id = self.result_id
                for f, args, kwargs in self.callbacks:
                    value = f(value, *args, **kwargs)
            except BaseException as e:  # kept, so .r re-raises it rather than fetching again
                self._settle(e, True)
                raise
            self._settle(value, False)
            return value  # type: ignore[no-any-return]

    def _cached(self) -> T:
        if self.raised:
            raise self._value
        return self._value  # type: ignore[no-any-return]

    def _fetch(self, block: bool, background: bool = False) -> Future[Message]:
        assert self.core is not None
        header = {"t": P.FETCH, "job": self.result_id, "block": block}
        return self.core.request(header, background=background, behind_output=self.live)

    def _waiting(self, background: bool = False) -> Future[Message]:
        """The blocking fetch of this result (sent now if it has not been)."""
        with self._lock:
            if self._inflight is None:
                self._inflight = self._fetch(block=True, background=background)
            return self._inflight

    @overload
    def get_result(self, default: None = None, block: bool = True) -> T | None: ...
    @overload
    def get_result(self, default: D, block: bool = True) -> T | D: ...
    def get_result(self, default: Any = None, block: bool = True) -> Any:
        """The result (``block=True`` waits for it); ``default`` if not ready and not block."""
        if self.called:
            return self._cached()
        if self.cancelled():
            raise CancelledError(f"{self!r} was cancelled")
        assert self.core is not None
        if self._inflight is None and not block:
            msg = self.core.wait(self._fetch(block=False))
            if msg.type == P.ERROR and msg.header.get("ename") == "ResultNotCompleted":
                return default
            return self._finish(msg)
        inflight = self._waiting()
        try:
            msg = self.core.wait(inflight, None if block else 0)
        except TimeoutError:
            return default
        return self._finish(msg)

    @property
    def r(self) -> T:
        return self.get_result(block=True)  # type: ignore[return-value]

    # ------------------------------------------------------------ the Future interface
    def result(self, timeout: float | None = None) -> T:
        """The value, waiting at most ``timeout`` seconds (TimeoutError past it)."""
        if self.called:
            return self._cached()
        if timeout is None:
            return self.r
        if self.cancelled():
            raise CancelledError(f"{self!r} was cancelled")
        assert self.core is not None
        msg = self.core.wait(self._waiting(background=True), timeout)
        return self._finish(msg)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The exception the call failed with, or None (waits like ``result``)."""
        try:
            self.result(timeout)
        except TimeoutError:
            if not self.called:
                raise
        except CancelledError:
            raise
        except BaseException:  # noqa: BLE001 - it is what we return
            pass
        return self._value if self.raised else None

    def add_done_callback(self, fn: Callable[[Future[T]], object]) -> None:
        """Call ``fn(self)`` once the result is in, on the client's delivery thread."""
        core = self.core
        if core is None:
            super().add_done_callback(fn)
            return

        def later(fut: Future[T]) -> None:
            core.call_soon(lambda: fn(fut))  # type: ignore[arg-type]

        super().add_done_callback(later)
        self._watch()

    def cancel(self) -> bool:
        """Take the call back if none of it has started: True then (and it is
        cancelled); False once some of it runs or ran (what had not started is then
        dropped, failing with QueueCleared)."""
        if self.called or self.cancelled() or self.core is None or not self.result_id:
            return super().cancel() if not self.called else False
        msg = self.core.wait(self.core.request({"t": P.CANCEL, "job": self.result_id}))
        if msg.type != P.VALUE or not unpack(msg.content):
            return False
        if not super().cancel():
            return False
        self.set_running_or_notify_cancel()
        self._waiting(background=True)  # the controller drops the result once fetched
        return True

    def _watch(self) -> None:
        """Fetch the result in the background: it completes this Future by itself."""
        if self.called or self.cancelled() or self.core is None or self._watching:
            return
        self._watching = True
        core = self.core
        inflight = self._waiting(background=True)

        def answered(done: Future[Message]) -> None:
            core.call_soon(lambda: self._from_watch(done))

        if core.is_background(inflight):
            inflight.add_done_callback(answered)
        else:  # a blocking wait was cut short: some thread must read its answer
            threading.Thread(target=self._read_for_watch, args=(inflight,), daemon=True).start()

    def _read_for_watch(self, inflight: Future[Message]) -> None:
        assert self.core is not None
        try:
            self.core.wait(inflight)
        except BaseException:  # noqa: BLE001 - the future holds it
            pass
        self.core.call_soon(lambda: self._from_watch(inflight))

    def _from_watch(self, done: Future[Message]) -> None:
        try:
            msg = done.result()
        except BaseException as e:  # the controller is gone: the result fails with it
            with self._lock:
                if not self.called:
                    self._settle(e, True)
            return
        try:
            self._finish(msg)
        except BaseException:  # noqa: BLE001 - kept in the Future
            pass

    # ------------------------------------------------------------ asyncio, waiting
    def __await__(self) -> Generator[Any, None, T]:
        """``await pr``: the result, without blocking the event loop."""
        return self._await().__await__()

    async def _await(self) -> T:
        import asyncio

        if self.called:
            return self._cached()
        if self._inflight is not None and not (
            self.core is not None and self.core.is_background(self._inflight)
        ):  # a blocking fetch is already waiting: wait for it
            return await asyncio.to_thread(lambda: self.r)
        msg = await asyncio.wrap_future(self._waiting(background=True))
        return self._finish(msg) if not self.called else self._cached()

    def add_callback(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        if not callable(f):
            raise TypeError("callbacks must be callable")
        self.callbacks.append((f, args, kwargs))

    def done(self) -> bool:
        """True once the result (or its error) has arrived; never raises it."""
        if not self.called and not self.cancelled():
            try:
                self.get_result(_NOT_READY, block=False)
            except BaseException:
                pass
        return self.called or self.cancelled()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds; True when the result has arrived."""
        if self.called or self.cancelled():
            return True
        assert self.core is not None
        inflight = self._waiting(background=timeout is not None)
        try:
            self.core.wait(inflight, timeout)
        except TimeoutError:
            return False
        except BaseException:
            pass
        try:
            self.get_result()
        except BaseException:
            pass
        return True

    def wait_interactive(self, timeout: float | None = None) -> None:
        """Wait for the result with a progress bar (see :func:`wait_interactive`)."""
        wait_interactive([self], timeout, self.method)

    def _repr_html_(self) -> str:
        if not self.called:
            return f"<code>{html.escape(repr(self))}</code>"
        return html_table(self.values, self.metadata, repr(self))


def wait_interactive(
    futures: Sequence[Future[Any]], timeout: float | None = None, desc: str = "results"
) -> None:
    """Wait for ``futures`` (PendingResults, executor Futures...) with a progress bar
    that counts those done (``done/total``, at once, whatever ``progress`` says).
    TimeoutError after ``timeout`` seconds; errors are not raised here."""
    from concurrent.futures import as_completed

    from .progress import bar

    progress = bar(True, len(futures), desc, "result", delay=0)
    try:
        for _ in as_completed(futures, timeout):
            progress.update(1)
        progress.refresh()  # the last count is shown, however fast it came
    finally:
        progress.close()
