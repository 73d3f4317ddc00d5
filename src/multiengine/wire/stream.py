"""Signed messages over a Unix stream socket: the direct path's transport on one host.

A client sends a direct command to an engine of its own host, and the engine answers,
on one Unix stream connection between the two (wire/direct.py has the design). Not over
ZeroMQ: a ZeroMQ message crosses four threads (the sender's, its libzmq I/O thread, the
receiver's I/O thread, the receiver's), a round trip wakes six, and on a machine of
few cores each wake-up that crosses to another CPU is dear. A Unix socket's round trip
wakes two: 47 µs against 159-204 µs over ZeroMQ's IPC on this VM, 12 against 66-110
with every process on one CPU (benchmarks/round_trip.py, the ``unix`` row).

The messages are the same signed frame lists as on every other socket
(:meth:`Signer.frames`, checked by :meth:`Signer.parse` with a replay guard); this
module only frames them on the stream::

    n (u32, little-endian) | the n frames' lengths (u64 each) | the n frames' bytes

Nothing here blocks: a connection is non-blocking, what the kernel does not take at
once waits in the connection's queue (zero-copy views) until :meth:`Connection.flush`
sends it (its owner polls for ``POLLOUT`` while :attr:`Connection.wants_write`), and
:meth:`Connection.read` returns the messages that are whole so far, keeping a partial
one for the next read. The end of the stream, or a reset, is the loss of the peer
(:class:`Closed`); bytes that cannot be a message close the connection
(:class:`StreamError`): nothing after them can be trusted to start a message.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

__all__ = [
    "Closed",
    "StreamError",
    "Connection",
    "Listener",
    "beside",
    "frame_head",
    "connect",
    "listening",
    "SCHEME",
    "path_of",
]

SCHEME = "unix://"  # how an address of this transport is written (``unix:///path``)

_COUNT = struct.Struct("<I")
MAX_FRAMES = 4096  # more frames than this in one message: not one of ours
MAX_MESSAGE = 1 << 40  # bytes: a larger total is not one of ours
READ_SIZE = 262144  # one receive takes at most this much into the read buffer
# A message whose rest is longer than this is read into a buffer of its own, in place,
# instead of through the read buffer (a copy fewer for large answers); one longer than
# IN_PLACE_AT_MOST goes through the read buffer all the same, which grows only with
# what comes (no buffer of a size the peer merely claims).
DIRECT_READ_ABOVE = 1 << 20
IN_PLACE_AT_MOST = 1 << 30
SMALL = 65536  # frames under this are handed out as bytes; larger ones as memoryviews
IOV_AT_MOST = 512  # buffers per sendmsg (the kernel takes at most IOV_MAX, 1024)
_NOSIGNAL = getattr(socket, "MSG_NOSIGNAL", 0)
_GONE = (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.EBADF)
# One receive buffer per reading thread, not per connection: what a receive brings is
# copied out at once, and a controller with thousands of engines' streams would hold
# READ_SIZE for each of them.
_scratch = threading.local()


def _scratch_view() -> memoryview:
    try:
        view: memoryview = _scratch.view
    except AttributeError:
        view = _scratch.view = memoryview(bytearray(READ_SIZE))
    return view


class Closed(ConnectionError):
    """The peer closed the connection (or its process ended)."""


class StreamError(ValueError):
    """Bytes on a connection that cannot be a message: the connection is closed."""


def path_of(url: str) -> str | None:
    """The socket path of a ``unix://`` address; None for any other address."""
    if not url.startswith(SCHEME) or len(url) == len(SCHEME):
        return None
    return url[len(SCHEME) :]


def _nbytes(frame: Any) -> int:
    if type(frame) is bytes:
        return len(frame)
    with memoryview(frame) as view:
        return view.nbytes


def frame_head(frames: Sequence[Any]) -> tuple[bytes, int]:
    """A message's head on the stream (its frame count and their lengths), and how many
    bytes the message takes there, head included."""
    lens = [_nbytes(f) for f in frames]
    head = struct.pack(f"<I{len(lens)}Q", len(lens), *lens)
    return head, len(head) + sum(lens)


def _bytes_view(frame: Any) -> memoryview:
    view = memoryview(frame)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


class Connection:
    """One end of a connection: messages out (from any thread, under its lock), and
    messages in (read by one thread)."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.fd = sock.fileno()
        self.lock = threading.Lock()  # writers: the socket and the queue
        self.closed = False
        # the peer has gone (a write failed): nothing more is sent, and the socket stays
        # open until its owner, reading, sees the end too and closes it (a descriptor
        # its owner polls is never closed under it)
        self.broken = False
        self._out: deque[memoryview] = deque()  # what the kernel has not taken yet
        self.queued = 0  # bytes in the queue
        self._in = bytearray()  # received, not yet a whole message
        # a large message being read in place: (frame lengths, its body, bytes filled)
        self._big: tuple[tuple[int, ...], bytearray, int] | None = None

    @property
    def wants_write(self) -> bool:
        """Whether something waits in the queue for the socket to take it."""
        return bool(self._out)

    # ------------------------------------------------------------------ sending
    def send(
        self,
        frames: Sequence[Any],
        wait: float = 0.0,
        framed: tuple[bytes, int] | None = None,
    ) -> bool:
        """Send one message; False when the connection is closed (nothing is sent).

        What the kernel does not take at once is queued, and sent by :meth:`flush`
        (``wait`` > 0: for up to that long here, first). ``framed``: the message's
        :func:`frame_head`, when the caller made it once for several connections."""
        head, total = frame_head(frames) if framed is None else framed
        with self.lock:
            if self.closed or self.broken:
                return False
            sent = 0
            if not self._out and len(frames) < IOV_AT_MOST:
                try:
                    sent = self.sock.sendmsg([head, *frames], (), _NOSIGNAL)
                except BlockingIOError:
                    pass
                except OSError as e:
                    self._break_locked()
                    if e.errno in _GONE:
                        return False
                    raise
            if sent < total:
                self._queue(frames, head, sent)
                self._flush_locked()
                if self._out and wait > 0:
                    self._drain_locked(wait)
            return not (self.closed or self.broken)

    def _queue(self, frames: Sequence[Any], head: bytes, sent: int) -> None:
        """Queue what is left of a message ``sent`` bytes of which went."""
        for part in (head, *frames):
            view = _bytes_view(part)
            n = view.nbytes
            if sent >= n:
                sent -= n
                continue
            if sent:
                view = view[sent:]
                n -= sent
                sent = 0
            self._out.append(view)
            self.queued += n

    def flush(self) -> None:
        """Send what is queued, as much as the socket takes now."""
        with self.lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        out = self._out
        while out and not self.closed:
            batch = [out[i] for i in range(min(len(out), IOV_AT_MOST))]
            try:
                sent = self.sock.sendmsg(batch, (), _NOSIGNAL)
            except BlockingIOError:
                return
            except OSError as e:
                self._break_locked()
                if e.errno in _GONE:
                    return
                raise
            self.queued -= sent
            while sent:
                n = out[0].nbytes
                if sent >= n:
                    out.popleft()
                    sent -= n
                else:
                    out[0] = out[0][sent:]
                    sent = 0

    def drain(self, wait: float) -> None:
        """Wait up to ``wait`` seconds for the socket to take what is queued."""
        with self.lock:
            self._drain_locked(wait)

    def _drain_locked(self, wait: float) -> None:
        """Wait up to ``wait`` seconds for the socket to take the whole queue."""
        deadline = time.monotonic() + wait
        p = select.poll()
        p.register(self.fd, select.POLLOUT)
        while self._out and not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            p.poll(left * 1000)
            self._flush_locked()

    # ------------------------------------------------------------------ receiving
    def read(self) -> list[list[Any]]:
        """The messages whole so far (frame lists), reading what the socket has now.
        Raises :class:`Closed` when the peer has gone and nothing whole is left,
        :class:`StreamError` on bytes that cannot be a message (the connection is
        closed)."""
        messages: list[list[Any]] = []
        scratch = _scratch_view()
        while True:
            if self._big is not None:
                if not self._fill_big(messages):
                    return messages
                continue
            n = self._receive(scratch)
            if n is None:
                return messages
            if n == 0:
                self.close()
                if messages:
                    return messages  # (the next read says it has gone)
                raise Closed("the peer closed the connection")
            self._in += scratch[:n]
            self._split(messages)
            if n < READ_SIZE and self._big is None:
                return messages

    def _split(self, messages: list[list[Any]]) -> None:
        """Take the whole messages off the front of the read buffer."""
        buf = self._in
        pos = 0
        have = len(buf)
        while have - pos >= 4:
            (count,) = _COUNT.unpack_from(buf, pos)
            if count == 0 or count > MAX_FRAMES:
                self._bad(f"a message of {count} frames")
            head = 4 + 8 * count
            if have - pos < head:
                break
            lens = struct.unpack_from(f"<{count}Q", buf, pos + 4)
            body = sum(lens)
            if body > MAX_MESSAGE:
                self._bad(f"a message of {body} bytes")
            start = pos + head
            if have - start < body:
                if DIRECT_READ_ABOVE < body - (have - start) and body <= IN_PLACE_AT_MOST:
                    whole = bytearray(body)  # the rest: read in place
                    got = have - start
                    whole[:got] = buf[start:have]
                    self._big = (lens, whole, got)
                    pos = have
                break
            frames: list[Any] = []
            with memoryview(buf) as view:
                for n in lens:
                    frames.append(bytes(view[start : start + n]))
                    start += n
            messages.append(frames)
            pos = start
        if pos:
            del buf[:pos]

    def _fill_big(self, messages: list[list[Any]]) -> bool:
        """Read into the large message under way; True once it is whole (then in
        ``messages``), False when the socket has nothing more now."""
        assert self._big is not None
        lens, whole, got = self._big
        if got < len(whole):
            with memoryview(whole) as view:
                n = self._receive(view[got:])
            if n is None:
                return False
            if n == 0:
                self.close()
                raise Closed("the peer closed the connection in the middle of a message")
            got += n
            self._big = (lens, whole, got)
            if got < len(whole):
                return False
        self._big = None
        frames: list[Any] = []
        view = memoryview(whole)
        start = 0
        for n in lens:
            part = view[start : start + n]
            frames.append(bytes(part) if n < SMALL else part)
            start += n
        messages.append(frames)
        return True

    def _receive(self, into: memoryview) -> int | None:
        """Receive into ``into``: how many bytes, 0 at the stream's end (or a reset),
        None when nothing is there now."""
        try:
            return self.sock.recv_into(into)
        except BlockingIOError:
            return None
        except OSError as e:
            if e.errno not in _GONE:
                raise
            return 0

    def _bad(self, what: str) -> None:
        self.close()
        raise StreamError(f"{what} (not a multiengine message stream): connection closed")

    # ------------------------------------------------------------------ closing
    def _break_locked(self) -> None:
        self.broken = True
        self._out.clear()
        self.queued = 0

    def _close_locked(self) -> None:
        if not self.closed:
            self.closed = True
            self._out.clear()
            self.queued = 0
            self.sock.close()

    def close(self) -> None:
        with self.lock:
            self._close_locked()


class Listener:
    """A listening Unix socket at ``path`` (in a 0700 directory; the socket file 0600)."""

    def __init__(self, path: str, backlog: int = 128) -> None:
        self.path = path
        self.url = SCHEME + path
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            try:
                sock.bind(path)
            except OSError as e:  # a socket file left by a process that died: taken over
                if e.errno != errno.EADDRINUSE or listening(path):
                    raise
                os.unlink(path)
                sock.bind(path)
            os.chmod(path, 0o600)
            sock.listen(backlog)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.sock = sock
        self.fd = sock.fileno()

    def accept(self) -> Connection | None:
        """A connection waiting to be taken; None when there is none."""
        try:
            sock, _ = self.sock.accept()
        except (BlockingIOError, ConnectionAbortedError):
            return None
        return Connection(sock)

    def knocking(self) -> bool:
        """Whether a connection waits to be taken."""
        return bool(select.select([self.fd], [], [], 0)[0])

    def close(self) -> None:
        self.sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


def beside(url: str) -> str | None:
    """The ``unix://`` address of the stream socket the controller listens on beside its
    IPC endpoint ``url`` (the engine channel's: engine/link.py); None for any other."""
    if not url.startswith("ipc://"):
        return None
    return SCHEME + url[len("ipc://") :] + ".s"


def listening(path: str) -> bool:
    """Whether a process listens on the Unix socket at ``path`` (any: a ZeroMQ IPC
    endpoint too)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(0.5)
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def connect(url: str) -> Connection:
    """Connect to the listener at ``url`` (``unix://``); OSError when nothing listens
    there (FileNotFoundError, ConnectionRefusedError) or it takes no more connections."""
    path = path_of(url)
    if path is None:
        raise ValueError(f"not a {SCHEME} address: {url!r}")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(1.0)  # (a full backlog: a local connect waits, not for long)
        sock.connect(path)
    except OSError:
        sock.close()
        raise
    return Connection(sock)
