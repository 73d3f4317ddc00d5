"""The client's I/O core, shared by every thread and every coroutine of one client.

::

      any thread ──► out (DEALER) ───────────────────────────► controller
                                                                  │
      blocking calls ◄── fg (DEALER, identity c-…) ◄──────────────┤ answers go to the
        (read by a thread that waits)                             │ socket named in "rt"
      asyncio, executors, ◄── bg (DEALER, identity c-…-b) ◄───────┘
      live output          (read by the I/O thread)
                                  │
                                  └──► delivery thread: every user callback

**Why two receiving sockets.** A blocking call's answer is read by the thread that waits
for it (whichever waiting thread holds the reader role reads for all of them), so the
answer reaches its caller with no hand-off between threads. Handing every answer over
from an I/O thread measured about 0.1 ms more per round trip (``get_ids``: 0.24 ms read
by the waiting thread, 0.34 ms handed over by the I/O thread; benchmarks/client_core.py):
on two cores a thread hop costs as much as the controller's work. Everything that has no
waiting thread (awaited by asyncio, completing executor Futures, the live output of a
call that did not block) names the second socket in ``rt``, and one I/O thread,
started when first needed, reads it. ``docs/client.md`` ("How the client works") has
the measurements.

**User code never runs where it can block I/O.** Live-output hooks and the callbacks of
executors run on one delivery thread, in arrival order, never on a thread that holds a
socket. A blocking call with live output returns only once its output has been shown;
a hook may itself call the client (its request is read by whichever thread waits).

**Liveness.** A reader pings the controller after a second of silence; if the
controller says nothing for ``dead_after`` seconds, every outstanding request fails
with :class:`~multiengine.errors.ControllerConnectionError`. The core never unpickles.

**A controller that restarts** (``--restore``) refuses requests until a client connects
again; a refusal, or a ``pong`` with another run tag, makes the core connect again and
then send again what was refused, and what was lost if it is safe to send twice; the
rest fails with :class:`~multiengine.errors.ControllerRestarted` (docs/protocol.md,
"A controller that restarts").

It is long because everything here shares one set of sockets, requests and locks: the
reader roles, routing answers, liveness, reconnection after a restart and the delivery
thread; a direct call (client/direct.py: straight to an engine of this host) is decided
and registered here, under the same send lock, because whether it may go depends on
every outstanding request. What a call sends and how its answer is decoded lives in
calls.py and taskcalls.py; the direct path's sockets and addresses in direct.py.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Any

import zmq

from ..errors import ControllerConnectionError, ControllerRestarted
from ..wire import chunks, curve, slices
from ..wire import protocol as P
from ..wire.connection import ConnectionInfo
from ..wire.direct import ANNOUNCE_AFTER
from ..wire.message import (
    Message,
    ReplayGuard,
    Signer,
    WireError,
    pending,
    recv_frames,
    send_frames,
    unpack,
)
from ..wire.protocol import ErrorReport, PartHeader, Xfer
from .direct import DirectPath

__all__ = ["ClientCore", "OutputHook"]

log = logging.getLogger("multiengine.client")

OutputHook = Callable[[int, str, str], None]  # (engine id, "stdout"/"stderr", text)

MAX_LISTENERS = 4096  # requests whose live output is still shown (one per executor task)
PING_EVERY = 1.0  # seconds of silence before a reader pings the controller
READ_SLICE = 0.1  # longest single poll of a reader, so it notices a dead controller
# how often the I/O thread looks for the answer of an executor's direct call that no
# thread waits for (request_direct)
UNWAITED_SLICE = 0.002
CONNECT_AGAIN_AFTER = 0.25  # seconds before an unanswered reconnection connect goes again
FOLLOW_SLICE = 0.05  # longest wait of a non-reader before it looks again (it is woken)


@dataclass(eq=False, slots=True)
class _Request:
    mid: int
    future: Future[Message]
    background: bool
    listener: OutputHook | None
    answered: bool = False  # its answer has been read (the future may still be pending)
    behind_output: bool = False  # complete it after the live output delivered before it
    chain_parts: bool = False  # its parts' long lists go into one list (slices.Chain)
    # what was sent: sent again if the controller restarts before it answers
    sent: tuple[dict[str, Any], Any, Sequence[Any], Sequence[tuple[int, Any]]] | None = None
    # requests with no message of their own that this one's header names (expect()):
    # they share its fate when the controller restarts
    companions: tuple[_Request, ...] = ()
    direct: bool = False  # sent straight to an engine (direct.py): the engine answers it


@dataclass(eq=False)
class _Reconnect:
    """A controller restart under way: the ``connect`` requests sent to the new run, and
    the requests that were outstanding when they went out."""

    connects: list[_Request]
    before: list[_Request]
    sent: float  # when the connects last went out (monotonic)


@dataclass(eq=False)
class _Socket:
    """A receiving socket, and what its reader keeps."""

    sock: zmq.Socket[Any]
    identity: bytes
    guard: ReplayGuard = field(default_factory=ReplayGuard)  # each reader checks its own
    streams: dict[Any, tuple[Message, chunks.Assembler | slices.Pieces]] = field(
        default_factory=dict
    )
    # the parts of a result whose buffers come ahead of it: (request id, part) -> pieces
    ahead: dict[tuple[Any, int], chunks.Assembler | slices.Pieces] = field(default_factory=dict)
    # the parts of a gather whose slices go into one list: request id -> chain
    chains: dict[Any, slices.Chain] = field(default_factory=dict)
    last_ping: float = 0.0
    rcvtimeo: int = -1  # the socket's ZMQ_RCVTIMEO (ms) now: set only when it changes


class ClientCore:
    """Sockets, requests and their futures, the readers, and the delivery thread."""

    def __init__(
        self, info: ConnectionInfo, timeout: float = 10.0, dead_after: float = 6.0
    ) -> None:
        self.info = info
        self.url = info.url("client")
        self.signer = Signer(info.key)
        self.dead_after = dead_after
        self.ctx: zmq.Context[Any] = zmq.Context.instance()
        self.identity = b"c-" + uuid.uuid4().hex.encode()
        self._requests: dict[int, _Request] = {}
        self._listeners: dict[int, OutputHook] = {}  # request id -> live-output hook
        self._progress: dict[int, Callable[[int, int], None]] = {}  # request id -> bar
        self._seq = itertools.count(1)
        self._send_lock = threading.Lock()
        self._fg_lock = threading.Lock()  # the reader role on the fg socket
        self._fg_cv = threading.Condition()  # waiting non-readers sleep here
        self._following = 0  # how many sleep there (changed under _fg_cv)
        self._closed = False
        self._last_heard = time.monotonic()
        self._io_thread: threading.Thread | None = None
        self._io_lock = threading.Lock()
        self._deliveries: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._restart_lock = threading.Lock()
        self._reconnect: _Reconnect | None = None  # a controller restart being handled
        self._refused: list[_Request] = []  # requests the restarted controller did not run
        self._delivery_thread: threading.Thread | None = None
        # non-blocking calls acknowledged whose results have not come (job ids): while
        # there are any, or any request is unanswered, no call goes direct
        self._open_jobs: set[Any] = set()
        # executors' direct calls unanswered: the I/O thread reads fg for them when no
        # thread does (request_direct)
        self._unwaited: set[int] = set()
        self._direct: DirectPath | None = None
        self._out = self._socket(linger=1000)
        self._fg = _Socket(self._socket(self.identity), self.identity)
        self._bg = _Socket(self._socket(self.identity + b"-b"), self.identity + b"-b")
        self._out.connect(self.url)
        try:
            self.controller: dict[str, Any] = self._handshake(timeout)
        except BaseException:
            self.close()
            raise
        self.run = self.controller.get("run")  # the controller's run tag
        if DirectPath.possible(self):
            self._direct = DirectPath(self)

    @property
    def direct_calls(self) -> int:
        """How many calls went straight to an engine (the direct path, client/direct.py)."""
        return self._direct.taken if self._direct is not None else 0

    def answer_socket(self) -> zmq.Socket[Any]:
        """The fg socket (the direct path waits on it beside its connections)."""
        return self._fg.sock

    def out_socket(self) -> zmq.Socket[Any]:
        """The socket requests go out on (send under the send lock)."""
        return self._out

    def _socket(self, identity: bytes | None = None, linger: int = 0) -> zmq.Socket[Any]:
        s: zmq.Socket[Any] = self.ctx.socket(zmq.DEALER)
        if identity is not None:
            s.setsockopt(zmq.IDENTITY, identity)
        s.setsockopt(zmq.LINGER, linger)
        s.setsockopt(zmq.IPV6, 1)  # harmless for IPv4 addresses
        curve.make_client(s, self.info.curve_serverkey)
        if identity is not None:
            s.connect(self.url)
        return s

    def _handshake(self, timeout: float) -> dict[str, Any]:
        # A receiving socket's connection may complete after the sending one's, and the
        # controller drops answers to identities it does not know yet: ask again until
        # both sockets have had an answer. A peer that never completes the connection (a
        # plaintext client of an encrypting controller, or the reverse) leaves no pipe
        # to queue on, so sends time out instead of blocking.
        deadline = time.monotonic() + timeout
        answer: dict[str, Any] = {}
        for sock in (self._fg, self._bg):
            while True:
                left = deadline - time.monotonic()
                self._out.setsockopt(zmq.SNDTIMEO, max(1, int(min(0.25, left) * 1000)))
                try:
                    req = self._new_request(sock is self._bg, None)
                    header = {"t": P.CONNECT, "id": req.mid, "rt": sock.identity}
                    with self._send_lock:
                        self._out.send_multipart(self.signer.frames(header))
                except zmq.Again:
                    self._requests.pop(req.mid, None)
                else:
                    if self._read_until(sock, req, min(0.25, max(0.01, left))):
                        answer = unpack(req.future.result().content)
                        break
                    self._requests.pop(req.mid, None)
                if time.monotonic() >= deadline:
                    raise ControllerConnectionError(
                        f"no answer from the controller at {self.url} within {timeout:g} s: it "
                        "is not running, not reachable, or the connection file's key is wrong "
                        "(a controller drops messages it cannot verify), or it runs another "
                        "version of multiengine"
                    )
        self._out.setsockopt(zmq.SNDTIMEO, -1)
        return answer

    # ------------------------------------------------------------------ requests
    def _new_request(self, background: bool, listener: OutputHook | None) -> _Request:
        if self._closed:
            raise ControllerConnectionError("this client is closed")
        if not self._requests:
            self._last_heard = time.monotonic()  # silence while idle does not count
        req = _Request(next(self._seq), Future(), background, listener)
        req.future.mid = req.mid  # type: ignore[attr-defined]
        self._requests[req.mid] = req
        return req

    def request(
        self,
        header: dict[str, Any],
        content: Any = b"",
        buffers: Sequence[Any] = (),
        pieces: Sequence[tuple[int, Any]] = (),
        listener: OutputHook | None = None,
        background: bool = False,
        output_after: bool = False,
        behind_output: bool = False,
        companions: Sequence[Future[Message]] = (),
        chain_parts: bool = False,
    ) -> Future[Message]:
        """Send a message (then the ``(part, piece)`` chunks it announced).

        The returned future gets the answer. ``background`` requests are read by the I/O
        thread (for asyncio and callbacks); the others by a thread in :meth:`wait`.
        ``listener`` gets the request's live output, on the delivery thread; the answer
        is completed after the output that came before it, unless ``output_after`` (the
        output only follows the answer: a non-blocking call, a task submission), when
        it is completed at once, never waiting behind callbacks. ``behind_output``: the
        answer is completed after the live output that came before it, though this
        request has none of its own (the fetch of a non-blocking call's result).
        ``companions``: futures of :meth:`expect` whose ids the header names.
        ``chain_parts``: the answer's parts are joined into one list (a blocking
        ``gather``): long lists in slices are unpickled into one (``slices.Chain``).
        """
        if self._closed:
            raise ControllerConnectionError("this client is closed")
        direct = self._direct
        if direct is not None and not background:
            eid = direct.target(header, pieces)
            if eid is not None:
                sent = self._request_direct(
                    direct, eid, header, content, buffers, chain_parts, listener=listener
                )
                if sent is not None:
                    return sent[0]
        if not self._requests:
            self._last_heard = time.monotonic()  # silence while idle does not count
        mid = next(self._seq)
        req = _Request(mid, Future(), background, None if output_after else listener)
        req.behind_output = behind_output
        req.chain_parts = chain_parts
        req.future.mid = mid  # type: ignore[attr-defined]
        if companions:
            found = (self._requests.get(getattr(f, "mid", -1)) for f in companions)
            req.companions = tuple(r for r in found if r is not None)
        self._requests[mid] = req
        sock = self._bg if background else self._fg
        if listener is not None:
            self.listen(req.mid, listener)
        if background:
            self._start_io()
        header["id"] = req.mid
        header["rt"] = sock.identity
        if header["t"] == P.TASK_SUBMIT and "key" not in header:
            header["key"] = uuid.uuid4().hex  # sent again after a restart: not run twice
        req.sent = (header, content, buffers, pieces)
        frames = self.signer.frames(header, content, buffers)
        chunk_frames = [
            self.signer.frames(
                {"t": P.CHUNK, "x": req.mid, "p": part, "rt": sock.identity, "raw": True},
                b"",
                (piece,),
            )
            for part, piece in pieces
        ]
        try:
            with self._send_lock:
                self._announce_locked()  # the controller hears of them before this
                send_frames(self._out, frames)
                for f in chunk_frames:
                    send_frames(self._out, f)
        except BaseException:
            self._requests.pop(req.mid, None)
            raise
        return req.future

    def request_direct(
        self,
        header: dict[str, Any],
        content: Any,
        buffers: Sequence[Any],
        listener: OutputHook | None = None,
    ) -> tuple[Future[Message], str] | None:
        """A ``submit`` (blocking or not) straight to its one engine (client/direct.py):
        the Future of its ``result`` (completed after the live output before it, given to
        ``listener``) and its job id; None when it must go through the controller (the
        executor's calls). Its answer comes to the fg socket: a thread that waits for it
        (:meth:`wait`) reads it, as for a blocking call, and while none does the I/O
        thread looks for it every UNWAITED_SLICE (callbacks, ``as_completed``)."""
        direct = self._direct
        if direct is None or self._closed:
            return None
        eid = direct.target(header, (), blocking=False)
        if eid is None:
            return None
        sent = self._request_direct(
            direct, eid, header, content, buffers, False, listener=listener, unwaited=True
        )
        if sent is not None:
            self._start_io()
        return sent

    def _request_direct(
        self,
        direct: DirectPath,
        eid: int,
        header: dict[str, Any],
        content: Any,
        buffers: Sequence[Any],
        chain_parts: bool,
        background: bool = False,
        listener: OutputHook | None = None,
        unwaited: bool = False,
    ) -> tuple[Future[Message], str] | None:
        """Send a request straight to engine ``eid`` (client/direct.py): its Future and
        job id; None when it must go through the controller (something is outstanding,
        or the engine cannot be reached directly). ``unwaited``: perhaps no thread waits
        for its answer (an executor's call): the I/O thread looks for it."""
        conn = direct.route(eid)
        if conn is None:
            return None
        with self._send_lock:  # checked and sent under it: a request of another thread
            # is either seen here, or sent after this one's direct_job
            if self._requests or self._open_jobs or self._reconnect is not None:
                return None
            self._last_heard = time.monotonic()
            mid = next(self._seq)
            req = _Request(
                mid, Future(), background, listener, direct=True, chain_parts=chain_parts
            )
            req.future.mid = mid  # type: ignore[attr-defined]
            header["id"] = mid
            header["rt"] = (self._bg if background else self._fg).identity
            self._requests[mid] = req
            if listener is not None:
                self.listen(mid, listener)
            if unwaited:  # (before it is sent: its answer may come at once)
                self._unwaited.add(mid)
            try:
                job = direct.send(req, eid, conn, header, content, buffers)
            except BaseException:
                self._requests.pop(mid, None)
                self._unwaited.discard(mid)
                raise
            if job is None:
                self._requests.pop(mid, None)
                self._listeners.pop(mid, None)
                self._unwaited.discard(mid)
                return None
        if background:
            self._start_io()
        return req.future, job

    def expect(self, behind_output: bool = False) -> tuple[int, Future[Message]]:
        """An id, and a future for the answer the controller sends under it, though no
        message of its own asks for it: the request sent next names the id (a
        ``submit``'s ``fetch_id``) and lists the future in its ``companions``. Read by
        the I/O thread. ``behind_output``: completed after the live output that came
        before it."""
        req = self._new_request(True, None)
        req.behind_output = behind_output
        self._start_io()
        return req.mid, req.future

    def is_background(self, fut: Future[Message]) -> bool:
        """Whether ``fut``'s answer is read by the I/O thread (or already in)."""
        req = self._requests.get(getattr(fut, "mid", -1))
        return req is None or req.background or req.answered

    def forget(self, fut: Future[Message]) -> None:
        """Stop waiting for ``fut``'s answer (an answer that comes later is dropped)."""
        mid = getattr(fut, "mid", -1)
        self._requests.pop(mid, None)
        self._unwaited.discard(mid)
        if self._direct is not None:
            self._direct.open_calls.discard(mid)  # (its answer, if it comes, is dropped)

    def wait(self, fut: Future[Message], timeout: float | None = None) -> Message:
        """Wait for ``fut``: reading the fg socket for every thread while it does, if the
        request is a blocking one. ``timeout=0`` still reads what has already arrived."""
        deadline = None if timeout is None else time.monotonic() + timeout
        req = self._requests.get(getattr(fut, "mid", -1))
        # a direct command not answered within ANNOUNCE_AFTER is announced then
        announce_at = None
        if req is not None and req.direct and not req.background:
            announce_at = time.monotonic() + ANNOUNCE_AFTER
        while not fut.done():
            now = time.monotonic()
            left = None if deadline is None else max(0.0, deadline - now)
            if announce_at is not None:
                if now >= announce_at:
                    self._announce_direct()
                    announce_at = None
                else:
                    left = min(left, announce_at - now) if left is not None else announce_at - now
            if req is None or req.background or req.answered:
                self._wait_done(fut, left)  # another thread completes it
            elif self._fg_lock.acquire(blocking=False):
                try:
                    answered = self._read_until(
                        self._fg, req, READ_SLICE if left is None else min(READ_SLICE, left)
                    )
                finally:
                    self._fg_lock.release()
                    self._wake_followers()
                if answered and req.listener is None and not req.behind_output:
                    return fut.result()  # completed as it was read (_route): no look again
            else:
                with self._fg_cv:
                    self._following += 1
                    try:
                        if not fut.done() and not req.answered and self._fg_lock.locked():
                            slice_ = FOLLOW_SLICE if left is None else min(FOLLOW_SLICE, left)
                            self._fg_cv.wait(slice_)
                    finally:
                        self._following -= 1
            if announce_at is not None and deadline is not None and not fut.done():
                if time.monotonic() >= deadline:
                    self._announce_direct()  # (the caller stops waiting: it may not come back)
                    announce_at = None
            if not fut.done() and deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError
        return fut.result()

    def _announce_direct(self) -> None:
        """Tell the controller of the direct commands waiting for their answers."""
        if self._direct is not None and self._direct.unannounced:
            with self._send_lock:
                if not self._closed:
                    self._announce_locked()

    def _announce_locked(self) -> None:
        """Before anything else goes to the controller (under the send lock): the direct
        commands waiting for their answers (``DirectPath.announce``)."""
        direct = self._direct
        if direct is not None and direct.unannounced:
            direct.announce()

    def _wake_followers(self) -> None:
        # A follower counts itself before it checks its future, so one that will sleep
        # is seen here (and this notify waits for it to be asleep): no wake-up is lost.
        if self._following:
            with self._fg_cv:
                self._fg_cv.notify_all()

    def _wait_done(self, fut: Future[Message], left: float | None) -> None:
        """Wait for a future another thread completes; the delivery thread runs its queue."""
        if threading.current_thread() is self._delivery_thread:
            self._deliver_some(READ_SLICE if left is None else min(READ_SLICE, left))
            return
        try:
            fut.result(READ_SLICE if left is None else min(READ_SLICE, left))
        except TimeoutError:
            pass
        except BaseException:  # noqa: BLE001 - wait() returns or raises fut.result()
            pass

    # ------------------------------------------------------------------ reading
    def _read_until(self, sock: _Socket, req: _Request | None, slice_: float) -> bool:
        """Read ``sock`` for up to ``slice_`` seconds, or until ``req``'s answer is in.

        The first message is waited for by a receive with a timeout (``RCVTIMEO``, set
        only when the slice changes): libzmq then looks at the socket's mailbox once,
        where a readiness poll followed by a non-blocking receive looked three times
        (benchmarks/round_trip.py: about 10 µs of the client's CPU per call). What
        came with it is read without waiting. A receive interrupted by a signal raises
        what the signal's handler raised (Ctrl-C: KeyboardInterrupt), as the poll did.
        While a direct command is unanswered, the fg socket is read with the direct
        path's connections instead (:meth:`_read_direct`).
        """
        if self._closed:
            raise ControllerConnectionError("this client is closed")
        direct = self._direct
        if direct is not None and direct.open_calls and sock is self._fg:
            return self._read_direct(direct, req, slice_)
        ms = int(slice_ * 1000)
        if ms != sock.rcvtimeo:
            sock.sock.setsockopt(zmq.RCVTIMEO, ms)
            sock.rcvtimeo = ms
        try:
            frames = recv_frames(sock.sock)
        except zmq.Again:
            self._check_alive(sock)
            return False
        while True:
            self._take(sock, frames)
            if req is not None and req.answered:
                return True
            if not pending(sock.sock):
                return False
            try:
                frames = recv_frames(sock.sock, zmq.NOBLOCK)
            except zmq.Again:
                return False

    def _read_direct(self, direct: DirectPath, req: _Request | None, slice_: float) -> bool:
        """Read the fg socket and the direct path's connections (which bring the answers
        of direct commands and their live output) for up to ``slice_`` seconds, or until
        ``req``'s answer is in: waiting on them all in one ``poll()``
        (:meth:`DirectPath.wait`), the fg socket asked first each time round (its
        ZMQ_FD only says that something changed)."""
        fg = self._fg
        deadline = time.monotonic() + slice_
        while True:
            while pending(fg.sock):
                try:
                    frames = recv_frames(fg.sock, zmq.NOBLOCK)
                except zmq.Again:
                    break
                self._take(fg, frames)
            if req is not None and req.answered:
                return True
            left = deadline - time.monotonic()
            for frames in direct.wait(max(0.0, left)):
                self._take(fg, frames)
            if req is not None and req.answered:
                return True
            if not direct.open_calls:
                return False  # (the cheaper read again from now on)
            if left <= 0:
                self._check_alive(fg)
                return False

    def _take(self, sock: _Socket, frames: list[Any]) -> None:
        """One message read for ``sock``'s requests: verified, then routed."""
        try:
            msg = self.signer.parse(frames, sock.guard)
        except WireError as e:
            log.warning("dropped a message for this client: %s", e)
            return
        self._last_heard = time.monotonic()
        try:
            self._route(sock, msg)
        except (LookupError, TypeError, ValueError, P.ProtocolViolation) as e:
            log.warning("dropped a malformed %r message for this client: %r", msg.type, e)

    def _route(self, sock: _Socket, msg: Message) -> None:
        """One message from the controller: live output, a pong, or (part of) an answer."""
        t = msg.type
        if t == P.OUTPUT:
            self._on_output(msg)
            return
        if t == P.PROGRESS:
            hook = self._progress.get(msg.header.get("id"))  # type: ignore[arg-type]
            done, total = msg.header.get("done"), msg.header.get("total")
            if hook is not None and type(done) is int and type(total) is int:
                self._deliver(lambda: hook(done, total))
            return
        if t == P.PONG:
            run = msg.header.get("run")
            if run is not None and run != self.run and self._reconnect is None:
                self._restarted(None)
            return
        if t == P.ERROR and msg.header.get("ename") == P.CONNECT_AGAIN:
            refused = self._requests.get(msg.header.get("id"))  # type: ignore[arg-type]
            if refused is not None and refused.sent is not None:
                self._restarted(refused)
                return
        # every other type answers a request, whole or piece by piece
        whole = msg
        if (
            sock.streams
            or sock.ahead
            or t == P.CHUNK
            or (t == P.RESULT and ("stream" in msg.header or "ahead" in msg.header))
        ):
            held = self._gather_stream(sock, msg)
            if held is None:
                return
            whole = held
        if t == P.ACK:  # a non-blocking call: open until its result comes
            self._open_jobs.add(whole.header.get("job"))
        elif t == P.RESULT and self._open_jobs:
            self._open_jobs.discard(whole.header.get("job"))
        mid = whole.header.get("id")
        if t == P.ERROR:
            pending = self._requests.get(mid)  # type: ignore[arg-type]
            if pending is not None and pending.direct:
                return  # (a direct_job refused: the engine still answers the call)
        req = self._requests.pop(mid, None)  # type: ignore[arg-type]
        if req is None:
            return
        req.answered = True
        if req.direct and self._direct is not None:
            self._direct.unannounced.pop(req.mid, None)  # (its engine reports it)
            self._direct.open_calls.discard(req.mid)
            self._unwaited.discard(req.mid)
        if req.listener is not None or req.behind_output:  # after the output before it
            self._deliver(lambda: _complete(req.future, whole))
        else:
            _complete(req.future, whole)
        if not req.background:
            self._wake_followers()

    # ------------------------------------------------------------------ restarts
    def _restarted(self, refused: _Request | None) -> None:
        """The controller restarted (a refusal, or a pong from another run): connect
        again on both sockets; what to send again is decided once both are answered."""
        with self._restart_lock:
            if refused is not None:
                self._refused.append(refused)
            if self._reconnect is not None:
                return
            log.warning("the controller at %s restarted: connecting again", self.url)
            with self._send_lock:
                before = list(self._requests.values())  # their messages went out before
                self._announce_locked()
                connects = []
                for sock in (self._fg, self._bg):
                    req = self._new_request(sock is self._bg, None)
                    header = {"t": P.CONNECT, "id": req.mid, "rt": sock.identity}
                    req.sent = (header, b"", (), ())
                    self._out.send_multipart(self.signer.frames(header))
                    connects.append(req)
            self._reconnect = _Reconnect(connects, before, time.monotonic())
        for req in connects:
            req.future.add_done_callback(self._connect_answered)
        self._start_io()  # the bg socket's answer is read by the I/O thread

    def _connect_answered(self, fut: Future[Message]) -> None:
        with self._restart_lock:
            rc = self._reconnect
            if rc is None or not all(r.future.done() for r in rc.connects):
                return
            self._reconnect = None
            refused, self._refused = self._refused, []
            if any(r.future.exception() is not None for r in rc.connects):
                return  # lost again: the requests have failed with it
            self.run = unpack(rc.connects[0].future.result().content).get("run")
            gone = set(refused)  # sent again, with the answers they will bring
            gone.update(c for r in refused for c in r.companions)
            lost = [
                r
                for r in rc.before
                if r not in gone
                and not r.answered
                and not r.direct  # the engine answers it, not the controller
                and self._requests.get(r.mid) is r
            ]
        for req in refused:  # not run: send again as they were
            self._send_again(req, again=False)
        for req in lost:
            kind = req.sent[0]["t"] if req.sent is not None else None  # None: expect()
            if kind in P.SAFE_TO_RESEND or kind == P.TASK_SUBMIT:
                self._send_again(req, again=True)
            else:
                self._requests.pop(req.mid, None)
                if not req.future.done():
                    req.future.set_exception(
                        ControllerRestarted(
                            f"the controller at {self.url} restarted while this "
                            f"{kind or P.SUBMIT!r} request was on its way or running: it may "
                            "or may not have run (the engines kept their namespaces)"
                        )
                    )
        log.warning(
            "connected again to the restarted controller: %d requests sent again, %d failed",
            len(refused) + sum(1 for r in lost if not r.future.done()),
            sum(1 for r in lost if r.future.done()),
        )

    def _send_again(self, req: _Request, again: bool) -> None:
        assert req.sent is not None
        header, content, buffers, pieces = req.sent
        if again and header["t"] == P.TASK_SUBMIT:
            header = {**header, "again": True}
        rt = header["rt"]
        frames = [self.signer.frames(header, content, buffers)]
        frames += [
            self.signer.frames(
                {"t": P.CHUNK, "x": req.mid, "p": part, "rt": rt, "raw": True}, b"", (piece,)
            )
            for part, piece in pieces
        ]
        with self._send_lock:
            self._announce_locked()
            for f in frames:
                send_frames(self._out, f)

    def _connect_again(self, now: float) -> None:
        """A ``connect`` of a reconnection unanswered for a while: its socket had not
        reconnected yet when the controller answered (a ROUTER drops answers to an
        identity it does not know), so send it again, as the first handshake does."""
        with self._restart_lock:
            rc = self._reconnect
            if rc is None or now - rc.sent < CONNECT_AGAIN_AFTER:
                return
            rc.sent = now
            unanswered = [r for r in rc.connects if not r.future.done()]
        for req in unanswered:
            self._send_again(req, again=False)

    def _check_alive(self, sock: _Socket) -> None:
        if not self._requests:
            return  # idle: silence does not count
        now = time.monotonic()
        if self._reconnect is not None:
            self._connect_again(now)
        silent = now - self._last_heard
        if silent > self.dead_after:
            self._fail_all(
                ControllerConnectionError(
                    f"lost the controller at {self.url}: no answer for {self.dead_after:g} s. "
                    "It was probably stopped or restarted; try recreating the client."
                )
            )
        elif silent >= PING_EVERY and now - sock.last_ping >= PING_EVERY:
            with self._send_lock:
                self._announce_locked()
                self._out.send_multipart(
                    self.signer.frames({"t": P.PING, "id": 0, "rt": sock.identity})
                )
            sock.last_ping = now

    def _gather_stream(self, sock: _Socket, msg: Message) -> Message | None:
        """Hold a result that arrives piece by piece until its last piece is in.

        The pieces are copied into place as they come; the held message then looks
        like a whole result whose part has its buffers already assembled.
        """
        mid = msg.header.get("id")
        if msg.type == P.CHUNK and "p" in msg.header:
            self._piece_ahead(sock, msg)
            return None
        if msg.type == P.CHUNK:
            held = sock.streams.get(mid)
            if held is None or not msg.buffers:
                return None
            head, asm = held
            if type(asm) is slices.Pieces and msg.header.get("raw"):
                del sock.streams[mid]  # a slice is a pickle: never taken unsigned
                return _unsigned_slice(head)
            asm.add(msg.buffers[0])
            if not asm.done:
                return None
            del sock.streams[mid]
            head.buffers.extend(asm.buffers)
            part = PartHeader.from_wire(head.header["parts"][0])
            whole = part._replace(nframes=len(asm.buffers), sizes=None, piece=None)
            head.header["parts"][0] = whole.to_wire()
            return head
        sock.streams.pop(mid, None)  # a whole message replaces a broken-off stream
        if msg.type == P.RESULT and msg.header.get("stream"):
            part = PartHeader.from_wire(msg.header["parts"][0])
            if part.enc == P.SLICES:  # a list: its slices are unpickled as they come
                pieces = slices.Pieces(part.nframes, sock is self._fg)
                sock.streams[mid] = (msg, pieces)
            else:
                sock.streams[mid] = (msg, chunks.Assembler(part.sizes or [], part.piece))
            return None
        if sock.ahead:
            return self._with_parts_ahead(sock, msg)
        return msg

    def _piece_ahead(self, sock: _Socket, msg: Message) -> None:
        """A piece of one part of a result still to come (several engines answering)."""
        part = msg.header.get("p")
        if type(part) is not int:
            return
        key = (msg.header.get("id"), part)
        asm = sock.ahead.get(key)
        if asm is None:
            if "xfer" not in msg.header:
                return  # the start of its part was lost: the result will say what came
            try:
                xfer = Xfer.from_wire(msg.header["xfer"])
            except (P.ProtocolViolation, TypeError, ValueError) as e:
                log.warning("dropped a malformed piece of a result: %s", e)
                return
            if msg.header.get("enc") == P.SLICES:  # a list: unpickled slice by slice
                req = self._requests.get(key[0]) if type(key[0]) is int else None
                chain = None
                if req is not None and req.chain_parts:  # a gather: into one list
                    chain = sock.chains.get(key[0])
                    if chain is None:
                        chain = sock.chains[key[0]] = slices.Chain()
                asm = slices.Pieces(xfer.n, sock is self._fg, chain, part)
            else:
                asm = chunks.Assembler(xfer.sizes, xfer.piece)
            sock.ahead[key] = asm
        if not msg.buffers or asm.done:
            return
        if type(asm) is slices.Pieces and msg.header.get("raw"):
            log.warning("dropped an unsigned slice of a result")  # the part then fails
            return
        try:
            asm.add(msg.buffers[0])
        except ValueError as e:
            log.warning("dropped a piece of a result: %s", e)

    @staticmethod
    def _with_parts_ahead(sock: _Socket, msg: Message) -> Message:
        """``msg`` with the buffers that came ahead of it put in their parts (the
        result's ``ahead``); the pieces of its other parts, if any, are let go."""
        mid = msg.header.get("id")
        got = {p: sock.ahead.pop((i, p)) for i, p in list(sock.ahead) if i == mid}
        chain = sock.chains.pop(mid, None)
        ahead = msg.header.get("ahead")
        if msg.type != P.RESULT or not isinstance(ahead, list) or not ahead:
            return msg
        try:
            heads = [PartHeader.from_wire(p) for p in msg.header["parts"]]
            frames = P.split_parts([h.nframes for h in heads], msg.buffers)
        except (P.ProtocolViolation, KeyError, TypeError) as e:
            log.warning("dropped a malformed result: %s", e)
            return msg
        buffers: list[Any] = []
        for i, (head, (content, bufs)) in enumerate(zip(heads, frames, strict=True)):
            asm = got.get(i) if i in ahead else None
            if chain is not None and i in chain.parts and (asm is None or not asm.done):
                chain.cut(i)  # its items, and those of the parts after it, out of the list
            if asm is not None and asm.done:
                bufs = asm.buffers
                heads[i] = head._replace(nframes=len(bufs))
            elif i in ahead:  # pieces missing: the part cannot be rebuilt
                report = ErrorReport("SerializationError", "pieces of the answer were lost")
                content, bufs = report.to_bytes(), []
                heads[i] = head._replace(status=P.STATUS_ERROR, enc=P.MSGPACK, nframes=0)
            buffers += [content, *bufs]
        if chain is not None:
            chain.parts.clear()  # (its parts refer to it: no cycle to keep them alive)
        msg.header["parts"] = [h.to_wire() for h in heads]
        msg.buffers = buffers
        return msg

    # ------------------------------------------------------------------ the I/O thread
    def _start_io(self) -> None:
        if self._io_thread is not None:
            return
        with self._io_lock:
            if self._io_thread is None:
                t = threading.Thread(target=self._io_loop, name="multiengine-io", daemon=True)
                t.start()
                self._io_thread = t

    def _io_loop(self) -> None:
        while not self._closed:
            try:
                rc = self._reconnect
                if rc is not None and not rc.connects[0].future.done():
                    self._read_fg_for_reconnect()
                slice_ = READ_SLICE
                due = self._direct.announce_due() if self._direct is not None else None
                if due is not None:  # a direct call unanswered: announced when it is
                    if due == 0:  # due (at most a slice late)
                        self._announce_direct()
                    else:
                        slice_ = min(slice_, due)
                if self._unwaited:
                    slice_ = min(slice_, UNWAITED_SLICE)
                self._read_until(self._bg, None, slice_)
                if self._unwaited and self._fg_lock.acquire(blocking=False):
                    try:  # no thread waits for an executor's direct call: read it here
                        self._read_until(self._fg, None, 0.0)
                    finally:
                        self._fg_lock.release()
                        self._wake_followers()
            except ControllerConnectionError:
                return
            except zmq.ZMQError:
                if self._closed:
                    return
                raise

    def _read_fg_for_reconnect(self) -> None:
        """While connecting again, the fg socket's answer may have no thread waiting to
        read it: the I/O thread reads it then, if no waiting thread holds the reader role."""
        if self._fg_lock.acquire(blocking=False):
            try:
                self._read_until(self._fg, None, 0.01)
            finally:
                self._fg_lock.release()
                self._wake_followers()

    # ------------------------------------------------------------------ live output
    def listen(self, mid: int, hook: OutputHook) -> None:
        """Call ``hook(engine_id, name, text)`` for live output of request ``mid``, on the
        delivery thread."""
        self._listeners[mid] = hook
        while len(self._listeners) > MAX_LISTENERS:
            self._listeners.pop(next(iter(self._listeners)))

    def unlisten(self, mid: int) -> None:
        self._listeners.pop(mid, None)

    def follow_progress(self, mid: int, hook: Callable[[int, int], None] | None) -> None:
        """Call ``hook(done, total)`` on the delivery thread as the engines of blocking
        request ``mid`` answer (the controller's ``progress``); None stops it."""
        if hook is None:
            self._progress.pop(mid, None)
        else:
            self._progress[mid] = hook

    def _on_output(self, msg: Message) -> None:
        hook = self._listeners.get(msg.header.get("id"))  # type: ignore[arg-type]
        if hook is None:
            return
        content = msg.content
        text = bytes(content.buffer if hasattr(content, "buffer") else content).decode(
            "utf-8", "replace"
        )
        engine = int(msg.header.get("engine", -1))
        name = str(msg.header.get("name", "stdout"))
        self._deliver(lambda: hook(engine, name, text))

    # ------------------------------------------------------------------ the delivery thread
    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the delivery thread, after what is already queued there."""
        self._deliver(fn)

    def _deliver(self, fn: Callable[[], None]) -> None:
        self._deliveries.put(fn)
        if self._delivery_thread is None:
            with self._io_lock:
                if self._delivery_thread is None:
                    t = threading.Thread(
                        target=self._delivery_loop, name="multiengine-callbacks", daemon=True
                    )
                    self._delivery_thread = t
                    t.start()

    def _delivery_loop(self) -> None:
        while True:
            fn = self._deliveries.get()
            if fn is None:
                return
            _run_callback(fn)
            del fn  # what it refers to (an answer, a Future) is not kept until the next one

    def _deliver_some(self, timeout: float) -> None:
        """On the delivery thread, while a callback waits for the client: go on delivering."""
        try:
            fn = self._deliveries.get(timeout=timeout)
        except queue.Empty:
            return
        if fn is None:
            self._deliveries.put(None)  # closing: leave the sentinel for the loop
            return
        _run_callback(fn)

    # ------------------------------------------------------------------ closing
    def _fail_all(self, err: BaseException) -> None:
        if self._direct is not None:
            self._direct.unannounced.clear()  # (their engines report them)
            self._direct.open_calls.clear()
        self._unwaited.clear()
        for mid in list(self._requests):
            req = self._requests.pop(mid, None)
            if req is not None and not req.future.done():
                req.future.set_exception(err)
        self._last_heard = time.monotonic()
        with self._fg_cv:
            self._fg_cv.notify_all()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._fail_all(ControllerConnectionError("the client was closed"))
        if self._io_thread is not None and self._io_thread is not threading.current_thread():
            self._io_thread.join()
        if self._delivery_thread is not None:
            self._deliveries.put(None)
        with self._send_lock, self._fg_lock:
            self._out.close(linger=200)
            if self._direct is not None:
                self._direct.close()
            self._fg.sock.close(linger=0)
            self._bg.sock.close(linger=0)


def _complete(fut: Future[Message], msg: Message) -> None:
    try:  # one lock taken, where asking done() first took two
        fut.set_result(msg)
    except InvalidStateError:  # failed or cancelled meanwhile: that stands
        pass


def _run_callback(fn: Callable[[], None]) -> None:
    try:
        fn()
    except Exception:
        log.exception("a client callback failed")


def _unsigned_slice(head: Message) -> Message:
    """A streamed result whose slice came raw: the whole result as that failure."""
    part = PartHeader.from_wire(head.header["parts"][0])
    report = ErrorReport("SerializationError", "a slice of the answer came unsigned")
    failed = part._replace(status=P.STATUS_ERROR, enc=P.MSGPACK, nframes=0, sizes=None, piece=None)
    head.header["parts"] = [failed.to_wire()]
    head.header.pop("stream", None)
    head.buffers = [report.to_bytes()]
    return head
