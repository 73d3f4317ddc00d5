"""Results as users see them: ResultList, ResultNS, PendingResult, and the decoding of
answers into values and exceptions."""

from __future__ import annotations

import sys
from collections.abc import Callable, Generator
from concurrent.futures import Future
from typing import Any, Generic, TypeVar, overload

from .. import errors
from ..wire import chunks
from ..wire import protocol as P
from ..wire.message import Message, unpack
from ..wire.protocol import ErrorReport, PartHeader
from ..wire.serialize import loads
from .core import ClientCore

__all__ = [
    "PendingResult",
    "ResultList",
    "ResultNS",
    "check",
    "decode_part",
    "decode_parts",
    "raise_direct",
]

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


class ResultList(list[Any]):
    """The results of ``execute``/``get_result``: a list that prints like the seed's."""

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


# ---------------------------------------------------------------- decoding answers
def rebuild_error(engine_id: int, content: Any, method: str) -> BaseException:
    """The exception an error part stands for, with a RemoteTraceback as its cause."""
    report = ErrorReport.from_bytes(content)
    exc: BaseException | None = None
    if report.traceback is None:  # made by the controller: it names an error class
        exc = errors.BY_NAME.get(report.ename, errors.KernelError)(report.evalue)
        if not isinstance(exc, errors.EngineError):
            return exc  # the seed's "[Engine Exception]QueueCleared: ..." has no engine
    elif report.exc is not None:
        try:
            exc = loads(report.exc)
        except Exception:
            exc = None
    if not isinstance(exc, BaseException):
        exc = errors.RemoteError(report.ename, report.evalue, report.traceback or "")
    where = report.engine_id if report.engine_id is not None else engine_id
    exc.__cause__ = errors.RemoteTraceback(where, report.method or method, report.traceback)
    if not hasattr(exc, "_render_traceback_"):  # IPython shows the engine's traceback
        try:
            exc._render_traceback_ = errors.render_remote_traceback(exc)  # type: ignore[attr-defined]
        except AttributeError:
            pass
    return exc


def decode_part(part: PartHeader, content: Any, buffers: list[Any], method: str) -> Any:
    """One engine's value; a failure becomes its exception."""
    if part.sizes is not None:
        buffers = chunks.assemble(part.sizes, buffers, part.piece)
    if part.status == P.STATUS_ERROR:
        return rebuild_error(part.engine_id, content, method)
    if part.enc == P.MSGPACK:
        return unpack(content)
    try:
        return loads(content, buffers)
    except Exception as e:
        err = errors.SerializationError(
            f"cannot unpickle the result of engine {part.engine_id}: {e}"
        )
        err.__cause__ = errors.RemoteTraceback(part.engine_id, method)
        return err


def decode_parts(msg: Message, method: str) -> list[Any]:
    """The per-target values of a result message; failures become exceptions."""
    wire = msg.header["parts"]
    if len(wire) == 1:  # one engine: the most common answer, decoded without the loop
        part = PartHeader.from_wire(wire[0])
        ((content, buffers),) = P.split_parts([part.nframes], msg.buffers)
        return [decode_part(part, content, buffers, method)]
    parts = [PartHeader.from_wire(p) for p in wire]
    frames = P.split_parts([p.nframes for p in parts], msg.buffers)
    return [decode_part(p, c, b, method) for p, (c, b) in zip(parts, frames, strict=True)]


def raise_direct(msg: Message) -> None:
    """Raise the error a controller answered directly (bad targets, unknown ids...)."""
    if msg.type == P.ERROR:
        ename = msg.header.get("ename", "")
        cls: type[Exception] = (
            IndexError if ename == "IndexError" else errors.BY_NAME.get(ename, errors.KernelError)
        )
        raise cls(msg.header.get("evalue", ""))


def check(values: list[Any], method: str) -> list[Any]:
    return errors.collect_exceptions(values, method)


# ---------------------------------------------------------------- PendingResult
_NOT_READY: Any = object()


class PendingResult(Generic[T]):
    """A result that may not be ready yet (from a call made with ``block=False``).

    ``get_result(default, block)`` fetches it once from the controller and caches it
    (or the exception, re-raised on every later call); ``.r`` blocks; ``await pr``
    waits without blocking an event loop. ``done()`` and ``wait(timeout)`` ask without
    raising. Callbacks added with ``add_callback`` run in order, on the thread (or in
    the coroutine) that first retrieves the result, and may use the client.
    """

    def __init__(
        self,
        core: ClientCore | None,
        result_id: str,
        method: str,
        post: Callable[[list[Any]], T] | None = None,
        value: Any = _NOT_READY,
    ) -> None:
        self.core = core
        self.result_id = result_id
        self.method = method
        self._post = post
        self.callbacks: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = []
        self.called = value is not _NOT_READY
        self.raised = False
        self.result: Any = None if value is _NOT_READY else value
        self._inflight: Future[Message] | None = None

    def __repr__(self) -> str:
        state = "done" if self.called else "pending"
        return f"<PendingResult {self.method} {self.result_id} {state}>"

    def __lt__(self, other: PendingResult[Any]) -> bool:
        return self.result_id < other.result_id

    def _finish(self, msg: Message) -> T:
        try:
            raise_direct(msg)
            value: Any = check(decode_parts(msg, self.method), self.method)
            if self._post is not None:
                value = self._post(value)
            for f, args, kwargs in self.callbacks:
                value = f(value, *args, **kwargs)
        except BaseException as e:  # kept, so .r re-raises it rather than fetching again
            self.result = e
            self.raised = True
            self.called = True
            raise
        self.result = value
        self.called = True
        return value  # type: ignore[no-any-return]

    def _cached(self) -> T:
        if self.raised:
            raise self.result
        return self.result  # type: ignore[no-any-return]

    def _fetch(self, block: bool, background: bool = False) -> Future[Message]:
        assert self.core is not None
        header = {"t": P.FETCH, "job": self.result_id, "block": block}
        return self.core.request(header, background=background)

    @overload
    def get_result(self, default: None = None, block: bool = True) -> T | None: ...
    @overload
    def get_result(self, default: D, block: bool = True) -> T | D: ...
    def get_result(self, default: Any = None, block: bool = True) -> Any:
        """The result (``block=True`` waits for it); ``default`` if not ready and not block."""
        if self.called:
            return self._cached()
        assert self.core is not None
        if self._inflight is None:
            if not block:
                msg = self.core.wait(self._fetch(block=False))
                if msg.type == P.ERROR and msg.header.get("ename") == "ResultNotCompleted":
                    return default
                return self._finish(msg)
            self._inflight = self._fetch(block=True)
        try:
            msg = self.core.wait(self._inflight, None if block else 0)
        except TimeoutError:
            return default
        return self._finish(msg)

    @property
    def r(self) -> T:
        return self.get_result(block=True)  # type: ignore[return-value]

    def __await__(self) -> Generator[Any, None, T]:
        """``await pr``: the result, without blocking the event loop."""
        return self._await().__await__()

    async def _await(self) -> T:
        import asyncio

        if self.called:
            return self._cached()
        if self._inflight is not None:  # a blocking fetch is already waiting: wait for it
            return await asyncio.to_thread(lambda: self.r)
        self._inflight = self._fetch(block=True, background=True)
        msg = await asyncio.wrap_future(self._inflight)
        return self._finish(msg) if not self.called else self._cached()

    def add_callback(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        if not callable(f):
            raise TypeError("callbacks must be callable")
        self.callbacks.append((f, args, kwargs))

    def done(self) -> bool:
        """True once the result (or its error) has arrived; never raises it."""
        if not self.called:
            try:
                self.get_result(_NOT_READY, block=False)
            except BaseException:
                pass
        return self.called

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds; True when the result has arrived."""
        if self.called:
            return True
        assert self.core is not None
        if self._inflight is None:
            self._inflight = self._fetch(block=True)
        try:
            self.core.wait(self._inflight, timeout)
        except TimeoutError:
            return False
        except BaseException:
            pass
        try:
            self.get_result()
        except BaseException:
            pass
        return True
