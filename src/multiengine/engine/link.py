"""The engine's command connection to the controller: a Unix stream on its host, else ZeroMQ.

An engine on the controller's host reaches the controller's engine channel over a Unix
stream socket beside its IPC endpoint (wire/stream.py: a round trip wakes two threads
there, against six through libzmq's I/O threads); any other engine, or one whose
controller offers no such socket, over a ZeroMQ DEALER as before (TCP, IPC, Curve).
Both carry the same signed messages; :class:`CommandLink` gives the engine one
interface to either: send (from any thread, under the engine's send lock), receive with
a timeout, ask whether a message waits, and the descriptor to poll.

The heartbeat channel stays on ZeroMQ whatever this is (libzmq answers the controller's
pings without Python). A stream that ends is the loss of the controller, as a closed
ZeroMQ connection is (the engine's monitor says so for those): the link tells the
engine (``on_lost``) and waits for it to connect again (:meth:`CommandLink.connect`,
when it registers again); meanwhile what is sent is dropped and nothing comes.
"""

from __future__ import annotations

import logging
import select
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import zmq

from ..config import ENGINE_STREAM, env_switch
from ..wire import curve, stream
from ..wire.connection import ConnectionInfo
from ..wire.message import pending, recv_frames, send_frames

__all__ = ["CommandLink", "make_dealer", "stream_enabled", "ENV_ENGINE_STREAM"]

ENV_ENGINE_STREAM = "MULTIENGINE_ENGINE_STREAM"

log = logging.getLogger("multiengine.engine")

_IN = select.POLLIN
_OUT = select.POLLOUT


class CommandLink:
    """The command channel: a Unix stream to the controller when it offers one beside
    the engine channel's IPC endpoint, else the ZeroMQ DEALER ``sock`` (which the engine
    made, and monitors for closed connections).

    ``on_lost()`` is called (once per stream) when the stream ends; ``on_fd(fd)`` when the
    descriptor to poll changes (None: nothing to poll until it connects again)."""

    def __init__(
        self,
        sock: zmq.Socket[Any],
        on_lost: Callable[[], None],
        on_fd: Callable[[int | None], None],
    ) -> None:
        self.sock = sock
        self.url = ""  # the engine channel's address it was last connected for
        self.conn: stream.Connection | None = None  # the stream, when there is one
        self._ready: deque[list[Any]] = deque()  # read from the stream, not yet taken
        self._zmq_fd = int(sock.getsockopt(zmq.FD))
        self._zmq_url = ""  # where the DEALER is connected ("": nowhere)
        self._on_lost = on_lost
        self._on_fd = on_fd
        self._poll = select.poll()
        self._lost = False  # the stream has ended (told once)

    @property
    def fd(self) -> int | None:
        """What to poll for readability (a ZMQ_FD says only that something changed: ask
        :meth:`pending` before each wait); None while a stream that ended is not
        replaced."""
        if self.conn is None:
            return self._zmq_fd
        return None if self._lost else self.conn.fd

    @property
    def connected(self) -> bool:
        """Whether it is connected: a stream that has not ended, or the DEALER (which
        ZeroMQ keeps connected, and connects again)."""
        return (self.conn is not None and not self._lost) or bool(self._zmq_url)

    def connect(self, url: str) -> None:
        """Connect for the controller's engine channel at ``url``, unless connected
        there already: to its stream when it offers one (an IPC endpoint with a stream
        beside it), else the DEALER to ``url``; not at all while the controller is not
        up (its IPC endpoint takes no connection: ask again). It never moves from one to
        the other while connected (what was on its way over one would be lost): only
        after :meth:`reset`, which the engine does when it lost the controller."""
        if url == self.url and self.connected:
            return
        conn = None
        use_zmq = True
        address = stream.beside(url) if stream_enabled() else None
        if address is not None:
            try:
                conn = stream.connect(address)
            except OSError:
                # no stream: the controller is down (its IPC endpoint says so too), or
                # offers none (then ZeroMQ over IPC, as before)
                use_zmq = stream.listening(url[len("ipc://") :])
        if self.conn is not None:
            self.conn.close()
            self._ready.clear()
        self.conn, self._lost, self.url = conn, False, url
        if conn is None and use_zmq:
            if self._zmq_url != url:
                self._disconnect_zmq()
                self.sock.connect(url)
                self._zmq_url = url
        else:
            self._disconnect_zmq()
        self._poll = select.poll()
        fd = self.fd
        if fd is not None:
            self._poll.register(fd, _IN)
        self._on_fd(fd)

    def reset(self) -> None:
        """Let go of a stream (the controller was lost): :meth:`connect` then chooses
        afresh. The DEALER stays as it is (ZeroMQ connects it again by itself, and a
        disconnection would read as another loss of the controller, its monitor's)."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None
            self._ready.clear()
            self._lost = False
            self.url = ""
            self._on_fd(self.fd)

    def _disconnect_zmq(self) -> None:
        if self._zmq_url:
            try:
                self.sock.disconnect(self._zmq_url)
            except zmq.ZMQError:
                pass
            self._zmq_url = ""

    def send(self, frames: Sequence[Any]) -> None:
        """Send a message (under the engine's send lock). On the stream, what the kernel
        does not take at once is queued, and goes while the engine waits (:meth:`poll`,
        :meth:`recv`); once the stream has ended it is dropped (the engine is
        registering again, and drops what it would answer)."""
        conn = self.conn
        if conn is not None:
            conn.send(frames)
        elif self._zmq_url:
            send_frames(self.sock, frames)
        # (else not connected: registering again, which drops what it would answer)

    def queued(self) -> int:
        """Bytes waiting in the stream's queue for the controller to read them."""
        return self.conn.queued if self.conn is not None else 0

    def wants_write(self) -> bool:
        """Whether the stream has something queued to send (poll for POLLOUT)."""
        return self.conn is not None and self.conn.wants_write

    def pending(self) -> bool:
        """Whether a message waits to be received (on ZeroMQ without a system call; on
        the stream, one already read)."""
        return bool(self._ready) if self.conn is not None else pending(self.sock)

    def poll(self, timeout_ms: float) -> bool:
        """Wait up to ``timeout_ms`` for a message; True when one waits."""
        if self.conn is None:
            return bool(self.sock.poll(int(timeout_ms)))
        if not self._ready:
            self._read_some(timeout_ms)
        return bool(self._ready)

    def recv(self, timeout_ms: int) -> list[Any]:
        """The next message's frames, waiting up to ``timeout_ms`` (on ZeroMQ: the
        socket's own RCVTIMEO); raises zmq.Again when none came."""
        if self.conn is None:
            return recv_frames(self.sock)
        if not self._ready:
            self._read_some(timeout_ms)
            if not self._ready:
                raise zmq.Again
        return self._ready.popleft()

    def take_ready(self) -> None:
        """Read what the stream has now (its descriptor woke a poll), without waiting."""
        if self.conn is not None and not self._lost:
            self._read(self.conn)

    def _read_some(self, timeout_ms: float) -> None:
        """Wait up to ``timeout_ms`` for the stream, sending what is queued meanwhile,
        then read what came."""
        conn = self.conn
        assert conn is not None
        if self._lost:
            time.sleep(max(0.0, min(timeout_ms, 500)) / 1000)  # (registering again soon)
            return
        if timeout_ms != 0 or conn.wants_write:
            self._poll.modify(conn.fd, _IN | _OUT if conn.wants_write else _IN)
            events = self._poll.poll(timeout_ms)
            if not events:
                return
            if conn.wants_write and any(ev & _OUT for _, ev in events):
                conn.flush()
        self._read(conn)

    def _read(self, conn: stream.Connection) -> None:
        try:
            self._ready.extend(conn.read())
        except (stream.Closed, stream.StreamError, OSError) as e:
            if not isinstance(e, stream.Closed):
                log.warning("the controller's stream: %s", e)
            conn.close()
            self._lost = True
            self._on_fd(None)
            self._on_lost()

    def flush(self) -> None:
        """Send what waits in the stream's queue, as much as it takes now."""
        if self.conn is not None and self.conn.wants_write:
            self.conn.flush()

    def close(self, linger: int) -> None:
        """Close, sending what is queued first (for up to ``linger`` ms, as ZeroMQ's)."""
        if self.conn is not None:
            self.conn.drain(linger / 1000)
            self.conn.close()
        self.sock.close(linger=linger)


def stream_enabled(env: Mapping[str, str] | None = None) -> bool:
    """Whether an engine takes a stream its controller offers: ``$MULTIENGINE_ENGINE_STREAM``
    of ``env`` (this process's environment by default), else the default; ConfigError
    if it is not on/off."""
    return env_switch(ENV_ENGINE_STREAM, ENGINE_STREAM, env)


def make_dealer(ctx: zmq.Context[Any], ident: bytes, info: ConnectionInfo) -> zmq.Socket[Any]:
    """The engine's ZeroMQ command socket (its identity is the engine's)."""
    sock: zmq.Socket[Any] = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.IDENTITY, ident)
    sock.setsockopt(zmq.LINGER, 2000)
    sock.setsockopt(zmq.IPV6, 1)
    curve.make_client(sock, info.curve_serverkey)
    return sock
