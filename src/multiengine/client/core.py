"""The client's I/O core: one background thread per client owns the socket.

Callers on any thread build a signed message and hand it to the I/O thread over an
inproc pipe; the reply completes a :class:`concurrent.futures.Future` that the caller
waits on. Replies are matched by the request's ``id``. The I/O thread never
unpickles anything and never runs user callbacks.

While requests are outstanding the thread pings the controller; when the controller
has been silent for ``dead_after`` seconds, every outstanding future fails with
:class:`~multiengine.errors.ControllerConnectionError`.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import uuid
from concurrent.futures import Future
from typing import Any

import zmq

from ..errors import ControllerConnectionError
from ..wire.connection import ConnectionInfo
from ..wire.message import Message, Signer, WireError

__all__ = ["ClientCore"]

log = logging.getLogger("multiengine.client")

PING_EVERY = 1.0


class ClientCore:
    def __init__(self, info: ConnectionInfo, timeout: float = 10.0, dead_after: float = 6.0) -> None:
        self.info = info
        self.url = info.addresses["client"]
        self.signer = Signer(info.key)
        self.dead_after = dead_after
        self.ctx = zmq.Context.instance()
        self._futures: dict[int, Future[Message]] = {}
        self._seq = itertools.count(1)
        self._lock = threading.Lock()
        self._closed = False
        pipe = f"inproc://multiengine-client-{uuid.uuid4().hex}"
        self._pipe_in = self.ctx.socket(zmq.PULL)
        self._pipe_in.bind(pipe)
        self._pipe_out = self.ctx.socket(zmq.PUSH)
        self._pipe_out.setsockopt(zmq.LINGER, 0)
        self._pipe_out.connect(pipe)
        self._sock = self.ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.connect(self.url)
        self._thread = threading.Thread(target=self._run, name="multiengine-client-io", daemon=True)
        self._thread.start()
        self.controller: dict[str, Any] = {}
        try:
            reply = self.request({"t": "connect"}).result(timeout)
        except TimeoutError:
            self.close()
            raise ControllerConnectionError(
                f"no answer from the controller at {self.url} within {timeout:g} s: it is not running, "
                "not reachable, or the connection file's key is wrong (a controller drops messages it "
                "cannot verify)"
            ) from None
        from ..wire.message import unpack

        self.controller = unpack(reply.content)

    # ------------------------------------------------------------------ requests
    def request(self, header: dict[str, Any], content: Any = b"", buffers: Any = ()) -> Future[Message]:
        """Send a message; the returned future completes with the reply."""
        if self._closed:
            raise ControllerConnectionError("this client is closed")
        mid = next(self._seq)
        header["id"] = mid
        fut: Future[Message] = Future()
        self._futures[mid] = fut
        frames = self.signer.frames(header, content, buffers)
        with self._lock:
            self._pipe_out.send_multipart(frames, copy=False)
        return fut

    def expect_more(self, fut: Future[Message], header: dict[str, Any]) -> Future[Message]:
        """Re-arm a request id for a second reply (an ack is followed by a result)."""
        nxt: Future[Message] = Future()
        self._futures[header["id"]] = nxt
        return nxt

    def forget(self, mid: int) -> None:
        self._futures.pop(mid, None)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._lock:
            try:
                self._pipe_out.send_multipart([b"__close__"])
            except zmq.ZMQError:
                pass
        self._thread.join(5)
        self._pipe_out.close(0)

    # ------------------------------------------------------------------ I/O thread
    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        poller.register(self._pipe_in, zmq.POLLIN)
        last_heard = time.monotonic()
        last_ping = 0.0
        ping = None
        running = True
        while running:
            events = dict(poller.poll(250))
            if self._pipe_in in events:
                while True:
                    try:
                        frames = self._pipe_in.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    if len(frames) == 1 and frames[0].bytes == b"__close__":
                        running = False
                        break
                    self._sock.send_multipart(frames, copy=False)
            if self._sock in events:
                while True:
                    try:
                        frames = self._sock.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    try:
                        msg = self.signer.parse(frames)
                    except WireError as e:
                        log.warning("dropped a message from the controller: %s", e)
                        continue
                    last_heard = time.monotonic()
                    fut = self._futures.pop(msg.header.get("id"), None)  # type: ignore[arg-type]
                    if fut is not None and not fut.done():
                        fut.set_result(msg)
            now = time.monotonic()
            outstanding = [f for f in list(self._futures.values()) if not f.done()]
            if not outstanding:
                last_heard = max(last_heard, now - PING_EVERY)
                continue
            if now - last_ping >= PING_EVERY and now - last_heard >= PING_EVERY:
                ping = ping or self.signer.frames({"t": "ping", "id": 0})
                self._sock.send_multipart(ping)
                last_ping = now
            if now - last_heard > self.dead_after:
                err = ControllerConnectionError(
                    f"lost the controller at {self.url}: no answer for {self.dead_after:g} s. It was "
                    "probably stopped or restarted; try recreating the client."
                )
                for mid, f in list(self._futures.items()):
                    self._futures.pop(mid, None)
                    if not f.done():
                        f.set_exception(err)
        for f in self._futures.values():
            if not f.done():
                f.set_exception(ControllerConnectionError("the client was closed"))
        self._futures.clear()
        self._sock.close(0)
        self._pipe_in.close(0)
