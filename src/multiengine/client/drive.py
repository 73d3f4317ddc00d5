"""One definition of every client call, run two ways: blocking, or awaited.

A call is written once as a generator (an *operation*) that yields the
:class:`Request`\\ s it needs and receives their answers; it never waits itself. The
blocking clients drive it with :func:`run` (the calling thread waits, and reads the
answer itself: ``ClientCore.wait``); the asyncio clients with :func:`arun` (the core's
I/O thread reads, the coroutine awaits the core's future: no thread per call). An
operation that produces a stream of values (``imap``) also yields :class:`Item`\\ s,
which :func:`iterate` and :func:`aiterate` hand to the caller.

An operation may keep one request in flight while it waits for another: a request's
``ahead`` is sent just before it and not waited for; the operation yields that request
again later (its ``sent`` now set) to take its answer. A map sends its next submission
this way, beside the request for results, instead of waiting for the submission's
answer first.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ..wire import protocol as P
from ..wire.message import Message, unpack
from .core import ClientCore, OutputHook
from .progress import DELAY, bar

__all__ = [
    "Call",
    "Item",
    "Op",
    "Request",
    "Steps",
    "Stream",
    "arun",
    "aiterate",
    "iterate",
    "run",
    "send",
]

T = TypeVar("T")


@dataclass(slots=True)
class Request:
    """A message an operation sends, and how its answer is waited for."""

    header: dict[str, Any]
    content: Any = b""
    buffers: Sequence[Any] = ()
    pieces: Sequence[tuple[int, Any]] = ()
    listener: OutputHook | None = None  # live output, shown on the delivery thread
    keep_listening: bool = False  # the output comes after the answer (a non-blocking call)
    behind_output: bool = False  # answered after the live output that came before it
    progress: bool | None = None  # a bar for a long blocking wait (the client's setting)
    progress_label: str = ""  # what a bar says: "{label} on {total or 'all'} engines"
    progress_total: int | None = None
    sent: Future[Message] | None = None  # already sent: only wait for its answer
    ahead: Request | None = None  # sent just before this one; its answer is taken later
    chain_parts: bool = False  # the parts are joined into one list (see ClientCore.request)


@dataclass
class Item:
    """A value a streaming operation hands to its caller."""

    value: Any


class Call(Generic[T]):
    """An operation of exactly one request: what to send, and what to make of the answer.

    Most calls are one request; as a plain object (not a generator) they cost a few
    microseconds less per call, and ``yield from call`` still works inside longer
    operations.
    """

    __slots__ = ("request", "finish")

    def __init__(self, request: Request, finish: Callable[[Message], T]) -> None:
        self.request = request
        self.finish = finish

    def __iter__(self) -> Generator[Request, Message, T]:
        msg = yield self.request
        return self.finish(msg)


Steps = Generator[Request, Message, T]  # an operation of several requests
Op = Steps[T] | Call[T]
Stream = Generator["Request | Item", "Message | None", None]


def send(
    core: ClientCore, req: Request, background: bool, companions: Sequence[Future[Message]] = ()
) -> Future[Message]:
    """Send ``req``: the Future of its answer (``companions``: see ClientCore.request)."""
    return core.request(
        req.header,
        req.content,
        req.buffers,
        req.pieces,
        req.listener,
        background=background,
        output_after=req.keep_listening,
        behind_output=req.behind_output,
        companions=companions,
        chain_parts=req.chain_parts,
    )


def _wait(core: ClientCore, req: Request) -> Message:
    """Send ``req`` and wait for its answer on this thread (with a bar past two seconds)."""
    if req.ahead is not None:
        req.ahead.sent = send(core, req.ahead, background=req.ahead.keep_listening)
    # a call whose output follows its answer is read by the I/O thread
    fut = req.sent or send(core, req, background=req.keep_listening)
    try:
        if req.progress is False or req.progress_label == "":
            return core.wait(fut)
        try:
            return core.wait(fut, DELAY)
        except TimeoutError:
            pass
        total = req.progress_total
        if total is None:  # "all": how many there are now (asked once the bar is due)
            total = _engine_count(core)
        label = f"{req.progress_label} on {total if total is not None else 'all'} engines"
        progress = bar(req.progress, total, label, "engine", delay=0)
        mid = getattr(fut, "mid", -1)
        core.follow_progress(mid, lambda done, _total: _advance(progress, done))
        try:
            msg = core.wait(fut)
            _advance(progress, total or 0)
            return msg
        finally:
            core.follow_progress(mid, None)
            progress.close()
    finally:
        if req.listener is not None and not req.keep_listening:
            core.unlisten(getattr(fut, "mid", -1))


def _advance(progress: Any, done: int) -> None:
    """Show ``done`` engines answered at once (tqdm would wait out its mininterval)."""
    if done > progress.n:
        progress.update(done - progress.n)
        progress.refresh()


def _engine_count(core: ClientCore) -> int | None:
    try:
        msg = core.wait(core.request({"t": P.GET_IDS}), DELAY)
    except TimeoutError:
        return None
    return len(unpack(msg.content)) if msg.type == P.VALUE else None


async def _await(core: ClientCore, req: Request) -> Message:
    if req.sent is not None:
        if core.is_background(req.sent):  # sent ahead by this coroutine
            return await asyncio.wrap_future(req.sent)
        # a blocking request sent earlier: a thread waits for it
        return await asyncio.to_thread(core.wait, req.sent)
    if req.ahead is not None:
        req.ahead.sent = send(core, req.ahead, background=True)
    fut = send(core, req, background=True)
    try:
        return await asyncio.wrap_future(fut)
    finally:
        if req.listener is not None and not req.keep_listening:
            core.unlisten(getattr(fut, "mid", -1))


def run(core: ClientCore, op: Op[T]) -> T:
    """Drive ``op`` on this thread: send each request and wait for its answer."""
    if type(op) is Call:
        return op.finish(_wait(core, op.request))
    assert not isinstance(op, Call)
    try:
        req = next(op)
        while True:
            req = op.send(_wait(core, req))
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    finally:
        op.close()


async def arun(core: ClientCore, op: Op[T]) -> T:
    """Drive ``op`` in a coroutine: the core's I/O thread reads, the event loop waits."""
    if type(op) is Call:
        return op.finish(await _await(core, op.request))
    assert not isinstance(op, Call)
    try:
        req = next(op)
        while True:
            req = op.send(await _await(core, req))
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    finally:
        op.close()


def iterate(core: ClientCore, op: Stream) -> Iterator[Any]:
    """Drive a streaming operation; yield its items as it produces them."""
    try:
        step = next(op)
        while True:
            if isinstance(step, Item):
                value = step.value
                del step
                yield value
                step = op.send(None)
            else:
                step = op.send(_wait(core, step))
    except StopIteration:
        return
    finally:
        op.close()


async def aiterate(core: ClientCore, op: Stream) -> AsyncIterator[Any]:
    """Drive a streaming operation from a coroutine: an async iterator of its items."""
    try:
        step = next(op)
        while True:
            if isinstance(step, Item):
                value = step.value
                del step
                yield value
                step = op.send(None)
            else:
                step = op.send(await _await(core, step))
    except StopIteration:
        return
    finally:
        op.close()
