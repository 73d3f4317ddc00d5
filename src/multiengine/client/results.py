"""Results as users see them: ResultList, PendingResult, and decoding of replies."""

from __future__ import annotations

import sys
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from .. import errors
from ..wire import chunks
from ..wire import protocol as P
from ..wire.message import Message, unpack
from ..wire.protocol import ErrorReport, PartHeader
from ..wire.serialize import loads

if TYPE_CHECKING:
    from .multiengine import MultiEngineClient

__all__ = ["ResultList", "ResultNS", "PendingResult", "decode_parts", "raise_direct"]


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
                out.append(
                    f"{green}[{target}]{red} Out[{num}]:{normal} {cmd['stdout'].rstrip(chr(10))}\n"
                )
            if cmd.get("stderr"):
                out.append(f"{green}[{target}]{red} Err[{num}]:\n{normal} {cmd['stderr']}")
        return "".join(out)

    __str__ = __repr__


def _rebuild_error(engine_id: int, enc: str, content: Any, method: str) -> BaseException:
    report = ErrorReport.from_bytes(content)
    if report.traceback is None:  # made by the controller
        cls = errors.BY_NAME.get(report.ename, errors.KernelError)
        exc: BaseException = cls(report.evalue)
        if cls is errors.EngineError:
            exc._multiengine_engine_info = {"engineid": engine_id, "method": method}  # type: ignore[attr-defined]
        return exc
    exc_obj = None
    if report.exc is not None:
        try:
            exc_obj = loads(report.exc)
        except Exception:
            exc_obj = None
    if not isinstance(exc_obj, BaseException):
        exc_obj = errors.RemoteError(report.ename, report.evalue, report.traceback)
    exc_obj._multiengine_traceback_text = report.traceback  # type: ignore[attr-defined]
    exc_obj._multiengine_engine_info = {  # type: ignore[attr-defined]
        "engineid": report.engine_id if report.engine_id is not None else engine_id,
        "method": report.method or method,
    }
    return exc_obj


def decode_part(part: PartHeader, content: Any, buffers: list[Any], method: str) -> Any:
    """One engine's value; a failure becomes its exception."""
    if part.sizes is not None:
        buffers = chunks.assemble(part.sizes, buffers, part.piece)
    if part.status == P.STATUS_ERROR:
        return _rebuild_error(part.engine_id, part.enc, content, method)
    if part.enc == P.MSGPACK:
        return unpack(content)
    try:
        return loads(content, buffers)
    except Exception as e:
        err = errors.SerializationError(
            f"cannot unpickle the result of engine {part.engine_id}: {e}"
        )
        err._multiengine_engine_info = {"engineid": part.engine_id, "method": method}  # type: ignore[attr-defined]
        return err


def decode_parts(msg: Message, method: str) -> list[Any]:
    """The per-target values of a result message; failures become exceptions."""
    parts = [PartHeader.from_wire(p) for p in msg.header["parts"]]
    frames = P.split_parts([p.nframes for p in parts], msg.buffers)
    return [decode_part(p, c, b, method) for p, (c, b) in zip(parts, frames, strict=True)]


def raise_direct(msg: Message) -> None:
    """Raise the error a controller answered directly (bad targets, unknown ids...)."""
    if msg.type == P.ERROR:
        cls = errors.BY_NAME.get(msg.header.get("ename", ""), errors.KernelError)
        raise cls(msg.header.get("evalue", ""))


def check(values: list[Any], method: str) -> list[Any]:
    return errors.collect_exceptions(values, method)


_NOT_READY = object()


class PendingResult:
    """A result that may not be ready yet (from a call made with ``block=False``).

    ``get_result(default, block)`` fetches it once from the controller and caches it
    (or the exception, re-raised on every later call); ``.r`` blocks. ``done()`` and
    ``wait(timeout)`` ask without raising. Callbacks added with ``add_callback`` run
    in order on the caller's thread when the result is first retrieved.
    """

    def __init__(
        self,
        client: MultiEngineClient,
        result_id: str,
        method: str,
        post: Callable[[list[Any]], Any] | None = None,
        value: Any = _NOT_READY,
    ) -> None:
        self.client = client
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

    def __lt__(self, other: PendingResult) -> bool:
        return self.result_id < other.result_id

    def _finish(self, msg: Message) -> Any:
        try:
            raise_direct(msg)
            value = check(decode_parts(msg, self.method), self.method)
            if self._post is not None:
                value = self._post(value)
        except BaseException as e:
            self.result = e
            self.raised = True
            self.called = True
            raise
        try:
            for f, args, kwargs in self.callbacks:
                value = f(value, *args, **kwargs)
        except BaseException as e:  # kept, so .r re-raises it rather than fetching again
            self.result = e
            self.raised = True
            self.called = True
            raise
        self.result = value
        self.called = True
        return value

    def _cached(self) -> Any:
        if self.raised:
            raise self.result
        return self.result

    def get_result(self, default: Any = None, block: bool = True) -> Any:
        if self.called:
            return self._cached()
        if self._inflight is None:
            if not block:
                msg = self.client._wait(self.client._fetch(self.result_id, block=False))
                if msg.type == P.ERROR and msg.header.get("ename") == "ResultNotCompleted":
                    return default
                return self._finish(msg)
            self._inflight = self.client._fetch(self.result_id, block=True)
        try:
            msg = self.client._wait(self._inflight, None if block else 0)
        except TimeoutError:
            return default
        return self._finish(msg)

    @property
    def r(self) -> Any:
        return self.get_result(block=True)

    def __await__(self) -> Any:
        """``await pr``: the result, without blocking the event loop."""
        import asyncio

        return asyncio.to_thread(self.get_result).__await__()

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
        if self._inflight is None:
            self._inflight = self.client._fetch(self.result_id, block=True)
        try:
            self.client._wait(self._inflight, timeout)
        except TimeoutError:
            return False
        except BaseException:
            pass
        try:
            self.get_result()
        except BaseException:
            pass
        return True
