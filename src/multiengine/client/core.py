"""The client's I/O core, shared by every thread of a client.

Two DEALER sockets reach the controller: one sends (any thread, under a short lock),
the other receives; the controller sends replies to the receiving socket's identity
(``header["rt"]``). There is no hand-off to a background thread on the hot path: a
thread waiting for a reply becomes the *reader* while it holds the receive lock,
reads whatever arrives, and completes the matching :class:`concurrent.futures.Future`
of whichever thread asked. Other waiting threads sleep on their futures and take over
the reading when the reader leaves. The core never unpickles anything and never runs
user callbacks.

While a reader waits it pings the controller every second of silence; if the
controller says nothing for ``dead_after`` seconds, every outstanding future fails
with :class:`~multiengine.errors.ControllerConnectionError`.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import zmq

from ..errors import ControllerConnectionError
from ..wire import chunks, curve
from ..wire import protocol as P
from ..wire.connection import ConnectionInfo
from ..wire.message import Message, Signer, WireError, unpack
from ..wire.protocol import PartHeader

__all__ = ["ClientCore"]

log = logging.getLogger("multiengine.client")

MAX_LISTENERS = 256  # requests whose live output is still shown
PING_EVERY = 1.0  # seconds of silence before a waiting reader pings the controller
READ_SLICE = 0.1  # longest single poll of a reader, so it notices a dead controller
FOLLOW_SLICE = 0.002  # how often a waiting non-reader checks whether it can read


class ClientCore:
    def __init__(
        self, info: ConnectionInfo, timeout: float = 10.0, dead_after: float = 6.0
    ) -> None:
        self.info = info
        self.url = info.url("client")
        self.signer = Signer(info.key)
        self.dead_after = dead_after
        self.ctx: zmq.Context[Any] = zmq.Context.instance()
        self.identity = b"c-" + uuid.uuid4().hex.encode()
        self._futures: dict[int, Future[Message]] = {}
        self._streams: dict[
            Any, tuple[Message, chunks.Assembler]
        ] = {}  # results arriving in pieces
        self._listeners: dict[
            int, Callable[[int, str, str], None]
        ] = {}  # request id -> live-output callback
        self._seq = itertools.count(1)
        self._send_lock = threading.Lock()
        self._recv_lock = threading.Lock()
        self._closed = False
        self._last_heard = time.monotonic()
        self._last_ping = 0.0
        self._out = self.ctx.socket(zmq.DEALER)
        self._out.setsockopt(zmq.LINGER, 1000)
        self._in = self.ctx.socket(zmq.DEALER)
        self._in.setsockopt(zmq.IDENTITY, self.identity)
        self._in.setsockopt(zmq.LINGER, 0)
        for s in (self._in, self._out):
            s.setsockopt(zmq.IPV6, 1)  # harmless for IPv4 addresses
            curve.make_client(s, info.curve_serverkey)
        self._in.connect(self.url)
        self._out.connect(self.url)
        self._ping = self.signer.frames({"t": P.PING, "id": 0, "rt": self.identity})
        self.controller: dict[str, Any] = self._handshake(timeout)

    def _handshake(self, timeout: float) -> dict[str, Any]:
        # The receiving socket's connection may complete after the sending one's, and
        # the controller drops replies to identities it does not know yet: ask again.
        # A peer that never completes the connection (a plaintext client of an encrypting
        # controller, or the reverse) leaves no pipe to queue on: sends would block.
        deadline = time.monotonic() + timeout
        while True:
            self._out.setsockopt(
                zmq.SNDTIMEO, max(1, int(min(0.25, deadline - time.monotonic()) * 1000))
            )
            try:
                fut = self.request({"t": P.CONNECT})
            except zmq.Again:
                fut = None
            try:
                if fut is not None:
                    reply = self.wait(fut, min(0.25, max(0.01, deadline - time.monotonic())))
                    self._out.setsockopt(zmq.SNDTIMEO, -1)
                    return unpack(reply.content)  # type: ignore[no-any-return]
            except TimeoutError:
                self.forget(fut)  # type: ignore[arg-type]
            if time.monotonic() >= deadline:
                self.close()
                raise ControllerConnectionError(
                    f"no answer from the controller at {self.url} within {timeout:g} s: "
                    "it is not running, not reachable, or the connection file's key is wrong "
                    "(a controller drops messages it cannot verify)"
                )

    # ------------------------------------------------------------------ requests
    def request(
        self,
        header: dict[str, Any],
        content: Any = b"",
        buffers: Any = (),
        pieces: list[tuple[int, Any]] | None = None,
        listener: Callable[[int, str, str], None] | None = None,
    ) -> Future[Message]:
        """Send a message (then the ``(part, piece)`` chunks it announced);
        the future gets the reply."""
        if self._closed:
            raise ControllerConnectionError("this client is closed")
        mid = next(self._seq)
        header["id"] = mid
        header["rt"] = self.identity
        if not self._futures:
            self._last_heard = time.monotonic()  # silence while idle does not count
        if listener is not None:
            self.listen(mid, listener)
        fut: Future[Message] = Future()
        fut.mid = mid  # type: ignore[attr-defined]
        self._futures[mid] = fut
        frames = self.signer.frames(header, content, buffers)
        with self._send_lock:
            try:
                self._out.send_multipart(frames, copy=False)
            except BaseException:
                self._futures.pop(mid, None)
                raise
            for part, piece in pieces or ():
                chunk = self.signer.frames(
                    {"t": P.CHUNK, "x": mid, "p": part, "rt": self.identity, "raw": True},
                    b"",
                    (piece,),
                )
                self._out.send_multipart(chunk, copy=False)
        return fut

    def forget(self, fut: Future[Message]) -> None:
        """Stop waiting for ``fut``'s reply (a reply that comes later is dropped)."""
        self._futures.pop(getattr(fut, "mid", -1), None)

    def wait(self, fut: Future[Message], timeout: float | None = None) -> Message:
        """Wait for ``fut``, reading the socket for every thread while it does.

        ``timeout=0`` still reads what has already arrived before giving up.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if fut.done():
                return fut.result()
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if self._recv_lock.acquire(blocking=False):
                try:
                    self._read(READ_SLICE if left is None else min(READ_SLICE, left), fut)
                finally:
                    self._recv_lock.release()
            else:
                try:
                    return fut.result(FOLLOW_SLICE if left is None else min(FOLLOW_SLICE, left))
                except TimeoutError:
                    pass
            if fut.done():
                return fut.result()
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError

    def _read(self, slice_: float, mine: Future[Message]) -> None:
        if self._closed:
            raise ControllerConnectionError("this client is closed")
        sock = self._in
        if sock.poll(slice_ * 1000):
            while True:
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                try:
                    msg = self.signer.parse(frames)
                except WireError as e:
                    log.warning("dropped a message from the controller: %s", e)
                    continue
                self._last_heard = time.monotonic()
                if msg.type == P.OUTPUT:
                    self._on_output(msg)
                    continue
                whole = self._gather_stream(msg)
                if whole is None:
                    continue
                fut = self._futures.pop(whole.header.get("id"), None)  # type: ignore[arg-type]
                if fut is not None and not fut.done():
                    fut.set_result(whole)
                if mine.done():
                    return
            return
        now = time.monotonic()
        silent = now - self._last_heard
        if silent > self.dead_after:
            self._fail_all(
                ControllerConnectionError(
                    f"lost the controller at {self.url}: no answer for {self.dead_after:g} s. "
                    "It was probably stopped or restarted; try recreating the client."
                )
            )
        elif silent >= PING_EVERY and now - self._last_ping >= PING_EVERY:
            with self._send_lock:
                self._out.send_multipart(self._ping)
            self._last_ping = now

    def listen(self, mid: int, callback: Callable[[int, str, str], None]) -> None:
        """Call ``callback(engine_id, name, text)`` for live output of request ``mid``.

        It runs on the thread reading the socket (a thread waiting for a reply).
        """
        self._listeners[mid] = callback
        while len(self._listeners) > MAX_LISTENERS:
            self._listeners.pop(next(iter(self._listeners)))

    def unlisten(self, mid: int) -> None:
        self._listeners.pop(mid, None)

    def _on_output(self, msg: Message) -> None:
        callback = self._listeners.get(msg.header.get("id"))  # type: ignore[arg-type]
        if callback is None:
            return
        text = bytes(msg.content.buffer if hasattr(msg.content, "buffer") else msg.content).decode(
            "utf-8", "replace"
        )
        try:
            callback(int(msg.header.get("engine", -1)), str(msg.header.get("name", "stdout")), text)
        except Exception:
            log.exception("a live-output callback failed")

    def _gather_stream(self, msg: Message) -> Message | None:
        """Hold a result that arrives piece by piece until its last piece is in.

        The pieces are copied into place as they come; the held message then looks
        like a whole result whose part has its buffers already assembled.
        """
        mid = msg.header.get("id")
        if msg.type == P.CHUNK:
            held = self._streams.get(mid)
            if held is None or not msg.buffers:
                return None
            head, asm = held
            asm.add(msg.buffers[0])
            if not asm.done:
                return None
            del self._streams[mid]
            head.buffers.extend(asm.buffers)
            part = PartHeader.from_wire(head.header["parts"][0])
            head.header["parts"][0] = part._replace(
                nframes=len(asm.buffers), sizes=None, piece=None
            ).to_wire()
            return head
        self._streams.pop(mid, None)  # a whole message replaces a broken-off stream
        if msg.type == P.RESULT and msg.header.get("stream"):
            part = PartHeader.from_wire(msg.header["parts"][0])
            self._streams[mid] = (msg, chunks.Assembler(part.sizes or [], part.piece))
            return None
        return msg

    def _fail_all(self, err: BaseException) -> None:
        for mid in list(self._futures):
            f = self._futures.pop(mid, None)
            if f is not None and not f.done():
                f.set_exception(err)
        self._last_heard = time.monotonic()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._fail_all(ControllerConnectionError("the client was closed"))
        with self._send_lock, self._recv_lock:
            self._out.close(linger=200)
            self._in.close(linger=0)
