"""Signed multipart messages.

A message on any multiengine socket is, after the ZeroMQ routing identities::

    b"ME/3" + signature + header      content      buffer_0 ... buffer_k

* The first frame starts with ``b"ME/3"``, which separates routing identities from
  the message and names the protocol version; then come the 32-byte signature and
  the header, a msgpack map whose ``"t"`` is the message type. Routing fields
  (targets, ids) live in the header so that the controller never unpickles user data.
  (One frame rather than three: each frame costs about 1.5 µs per send and receive.)
* ``content`` is opaque to the relay: a pickle made by a client or an engine, or
  msgpack made by the controller (the header says which).
* ``buffer_i`` are out-of-band pickle buffers (numpy arrays, large ``bytes``), sent
  zero-copy as their own frames.
* The signature is HMAC-SHA256 under the cluster key over the header, then the length
  and bytes of the content and of every buffer, except that of the buffers the header
  lists as raw data (``header["raw"]``: ``True`` for all, or their indices) only the
  byte length is covered. Raw buffers are out-of-band pickle buffers: bytes that a signed pickle
  stream places, never code; hashing them would halve large-transfer throughput
  (docs/protocol.md explains this choice). Pickle streams are always hashed, or else
  digested: a header with ``"dg"`` (one SHA-256 digest per buffer) covers its buffers
  by their length and their digests, and the receiver checks each buffer against its
  digest; the controller leaves that check of an engine's ``chunk`` to the client it
  relays it to (:meth:`Signer.parse`, ``deferred``), so the slices of a long list
  are hashed twice on their way rather than four times. ``"cdg"`` does the same for the
  content frame (a ``cmd`` whose pickle is a part of a client's digested ``submit``:
  the parts of a ``scatter`` reach the engines hashed twice, never by the controller).

* **Replay protection.** Every header carries a stamp: ``sid``, a random session id
  of the sending thread's use of this :class:`Signer`, ``seq``, that session's message
  counter (1, 2, ...), and ``ts``, the sender's clock (Unix time). A
  :class:`ReplayGuard` on the receiving side accepts from each session only counters
  above the highest it has seen (messages of one sender on one ZeroMQ pipe arrive in
  the order they were signed), and only timestamps within :data:`REPLAY_WINDOW` of its
  own clock, so a message of a session it has forgotten cannot be replayed either.
  Sessions idle for :data:`SESSION_KEEP` are forgotten; at most :data:`MAX_SESSIONS`
  are kept. A session is a (Signer, thread) pair: a thread that sends on several sockets
  to one receiver must use one Signer per socket (ordering holds only on one pipe).

A frame list that fails any check raises :class:`WireError`; receivers log and drop it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import struct
import threading
import time
import weakref
from collections.abc import Collection, Sequence
from itertools import chain
from typing import Any

import msgpack
import zmq

from .protocol import check_header

__all__ = [
    "DELIM",
    "DIGEST_SIZE",
    "MAX_SESSIONS",
    "REPLAY_WINDOW",
    "SESSION_KEEP",
    "Message",
    "ReplayGuard",
    "Signer",
    "check_digests",
    "check_message_digests",
    "digests",
    "WireError",
    "owned",
    "pending",
    "readable",
    "recv_frames",
    "send_frames",
    "send_to_each",
]

# With MULTIENGINE_CHECK_PROTOCOL=1 (the test suite sets it) every header sent is checked
# against the table in protocol.py: a field or type that is not declared there raises.
_CHECK = os.environ.get("MULTIENGINE_CHECK_PROTOCOL", "") not in ("", "0")
DELIM = b"ME/3"  # the protocol version; ME/2 had no replay stamp, ME/1 other header fields
_LEN = struct.Struct("<Q")
DIGEST_SIZE = 32  # a SHA-256 digest (header "dg": one per buffer; "cdg": the content's)
# Frames below this size are joined before they are hashed (Signer.signature).
JOIN_BELOW = 16384
# From this many buffers on, a message whose frames are all small bytes or zmq Frames is
# hashed by one join made in C loops (Signer.signature).
MANY_FRAMES = 8
_JOINABLE = frozenset({bytes, zmq.Frame})
_HEAD = len(DELIM) + 32  # delimiter + HMAC-SHA256 digest

REPLAY_WINDOW = 300.0  # seconds a message's ``ts`` may be off the receiver's clock, either way
SESSION_KEEP = 2 * REPLAY_WINDOW + 60.0  # an idle session is forgotten after this
MAX_SESSIONS = 65536  # sessions a receiver remembers at most (the oldest idle go first)
SWEEP_EVERY = 60.0  # seconds between looks for idle sessions
_time = time.time


class WireError(Exception):
    """A message that is malformed, unsigned or signed with another key."""


class Message:
    """A parsed, verified message."""

    __slots__ = ("idents", "header", "content", "buffers", "type")

    def __init__(
        self, idents: list[bytes], header: dict[str, Any], content: Any, buffers: list[Any]
    ) -> None:
        self.idents = idents
        self.header = header
        self.content = content  # bytes or zmq.Frame
        self.buffers = buffers  # zmq.Frame or bytes-like
        self.type: str = header["t"]  # the message type (read on every hop: an attribute)


def _nbytes(buf: Any) -> int:
    if isinstance(buf, (bytes, bytearray, zmq.Frame)):
        # (a Frame's len is its size; asking it for a missing attribute costs 2.4 µs,
        # pyzmq's getsockopt-style attribute lookup: a few of those per message)
        return len(buf)
    nbytes = getattr(buf, "nbytes", None)
    if nbytes is not None:
        return int(nbytes)
    mv = memoryview(buf)
    return mv.nbytes


class ReplayGuard:
    """What a receiver remembers of the sessions it has heard, to drop replays.

    Per session (``sid``): the highest ``seq`` accepted, when it was last heard (this
    host's clock) and the latest ``ts`` it carried. A message is accepted when its
    ``ts`` is within :data:`REPLAY_WINDOW` of this host's clock and its ``seq`` is above
    its session's highest; a session not heard for :data:`SESSION_KEEP` is forgotten,
    which is safe because every message it accepted had a ``ts`` that is by then more
    than :data:`REPLAY_WINDOW` in the past. Past :data:`MAX_SESSIONS` the sessions heard
    least recently are forgotten early, and new sessions must then carry a ``ts`` later
    than any of theirs (``floor``). One guard serves one thread.
    """

    __slots__ = ("_sessions", "_next_sweep", "floor", "limit", "window", "keep")

    def __init__(
        self,
        window: float = REPLAY_WINDOW,
        keep: float | None = None,
        limit: int = MAX_SESSIONS,
    ) -> None:
        self._sessions: dict[int, list[Any]] = {}  # sid -> [highest seq, heard at, latest ts]
        self.window = window
        self.keep = 2 * window + 60.0 if keep is None else keep
        self.limit = limit
        self.floor = float("-inf")  # new sessions need a later ts (sessions forgotten early)
        self._next_sweep = _time() + SWEEP_EVERY

    def __len__(self) -> int:
        return len(self._sessions)

    def check(self, header: dict[str, Any]) -> None:
        """Raise :class:`WireError` unless ``header``'s stamp is fresh; remember it."""
        sid = header.get("sid")
        seq = header.get("seq")
        ts = header.get("ts")
        if type(seq) is not int or type(ts) is not float or type(sid) is not int:
            raise WireError("no valid replay stamp (sid, seq, ts) in the header")
        now = _time()
        if not -self.window <= ts - now <= self.window:
            raise WireError(
                f"stale message: its time is {ts - now:+.0f} s from this host's clock "
                f"(replayed, or clocks more than {self.window:g} s apart)"
            )
        s = self._sessions.get(sid)
        if s is not None and seq > s[0] and now < self._next_sweep:  # (most messages)
            s[0] = seq
            s[1] = now
            if ts > s[2]:
                s[2] = ts
            return
        if now >= self._next_sweep:
            self._sweep(now)
            s = self._sessions.get(sid)
        if s is None:
            if ts <= self.floor:
                raise WireError("stale message of a forgotten session (replayed?)")
            self._sessions[sid] = [seq, now, ts]
            if len(self._sessions) > self.limit:
                self._sweep(now)
            return
        if seq <= s[0]:
            raise WireError(
                f"replayed message: {header['t']!r} #{seq} of a session already at #{s[0]}"
            )
        s[0] = seq
        s[1] = now
        if ts > s[2]:
            s[2] = ts

    def _sweep(self, now: float) -> None:
        """Forget idle sessions; past the limit, the least recently heard half early."""
        self._next_sweep = now + SWEEP_EVERY
        idle = now - self.keep
        sessions = self._sessions
        for sid in [sid for sid, s in sessions.items() if s[1] < idle]:
            del sessions[sid]
        if len(sessions) > self.limit:
            by_age = sorted(sessions.items(), key=lambda item: item[1][1])
            for sid, s in by_age[: len(sessions) - self.limit // 2]:
                self.floor = max(self.floor, s[2])
                del sessions[sid]


class Signer:
    """Signs and verifies messages with one cluster key.

    Each thread that signs with it is its own replay session (see the module's text);
    :meth:`parse` checks stamps with :attr:`guard` unless given another guard.
    """

    def __init__(self, key: bytes) -> None:
        if not key:
            raise ValueError("a signing key is required")
        base = hmac.new(key, digestmod=hashlib.sha256)
        # The HMAC object of OpenSSL under hmac.HMAC's Python wrapper, where there is one
        # (CPython's ``_hmac``): the same copy/update/digest without a Python call per
        # method, which signing and checking make on every message.
        self._base = getattr(base, "_hmac", base)
        self._local = threading.local()  # this thread's session: sid, seq
        self.guard = ReplayGuard()
        _signers.add(self)

    def signature(
        self,
        header: bytes,
        content: Any,
        buffers: Sequence[Any],
        raw: Any = None,
        digested_content: bool = False,
    ) -> bytes:
        """HMAC over the header, then each later frame's length and bytes (the content,
        every buffer); of the buffers that ``raw`` names (``True``: all of them) only the
        length is covered, and of the content too when ``digested_content`` (the header
        carries its digest, ``cdg``). The lengths keep bytes from moving between frames
        and frames (empty ones too) from being added or removed."""
        # Small frames are hashed joined with what comes before them: one update call
        # instead of two per frame (a batch of 32 tiny tasks is 32 content frames); a
        # large frame is hashed in place, never copied. The bytes hashed are the same.
        h = self._base.copy()
        pack = _LEN.pack
        view: Any
        if digested_content:
            pass  # (rare, and large: the general loop below)
        elif not buffers:  # most messages: a header and a small content, hashed in one go
            if type(content) is bytes:
                view, n = content, len(content)
            elif type(content) is zmq.Frame:
                view, n = content.buffer, len(content)
            else:
                view, n = _view(content), _nbytes(content)
            if n < JOIN_BELOW:
                h.update(b"".join((header, pack(n), view)))
                return h.digest()
        elif not raw and len(buffers) >= MANY_FRAMES and set(map(type, buffers)) <= _JOINABLE:
            # many small frames (an answer of 128 engines): lengths and bytes joined in
            # C loops, without a step of Python per frame
            frames = (content, *buffers)
            sizes = list(map(len, frames))
            if type(content) in _JOINABLE and max(sizes) < JOIN_BELOW:
                h.update(b"".join([header, *chain.from_iterable(zip(map(pack, sizes), frames))]))
                return h.digest()
        pieces: list[Any] = [header]
        all_raw = raw is True
        skip = set(raw) if raw and not all_raw else ()
        for i, b in enumerate((content, *buffers) if buffers else (content,)):
            if type(b) is bytes:
                n = len(b)
                view = b
            elif isinstance(b, zmq.Frame):
                n = len(b)
                view = b.buffer
            else:
                n = _nbytes(b)
                view = _view(b)
            pieces.append(pack(n))
            if (i and (all_raw or i - 1 in skip)) or (not i and digested_content):
                continue  # a raw buffer (or a digested content): its length only
            if n < JOIN_BELOW:
                pieces.append(view)
            else:
                h.update(b"".join(pieces))
                h.update(view)
                pieces = []
        if pieces:
            h.update(b"".join(pieces))
        return h.digest()

    def frames(
        self,
        header: dict[str, Any],
        content: Any = b"",
        buffers: Sequence[Any] = (),
        idents: Sequence[bytes] = (),
    ) -> list[Any]:
        """Build the frame list of a message."""
        if _CHECK:
            check_header(header)
        try:
            session = self._local.session  # (one lookup of the thread's state)
        except AttributeError:  # this thread's first message: a new session
            # [sid, last seq, the thread's own Packer] (msgpack.packb makes one per
            # call, a third of the packing's cost; a Packer serves one thread at a time)
            session = self._local.session = [secrets.randbits(63), 0, msgpack.Packer()]
        seq = session[1] = session[1] + 1
        header["sid"] = session[0]
        header["seq"] = seq
        header["ts"] = _time()
        hbytes = session[2].pack(header)
        raw = True if header.get("dg") is not None else header.get("raw")  # (digested)
        sig = self.signature(hbytes, content, buffers, raw, header.get("cdg") is not None)
        return [*idents, DELIM + sig + hbytes, content, *buffers]

    def parse(
        self,
        frames: list[Any],
        guard: ReplayGuard | None = None,
        deferred: Collection[str] = (),
    ) -> Message:
        """Split, verify and decode a received frame list (bytes or zmq.Frame); its
        stamp is checked against ``guard`` (this signer's own by default), and its
        frames against the digests its header carries (``dg``, ``cdg``), except those of
        the message types ``deferred`` names: the controller passes an engine's ``chunk``
        and a client's ``submit`` on with their digests, and the receiver checks them (or
        it does, with :func:`check_message_digests`, if it keeps them instead); an engine
        checks a ``cmd``'s itself, to fail that command rather than drop it unanswered."""
        # (the common path first: a DEALER's message starts with the delimiter, a
        # ROUTER's has one routing identity before it; no raw, digested or odd fields)
        n = len(frames)
        try:
            b = frames[0]
        except IndexError:
            raise _no_delimiter(frames) from None
        if type(b) is not bytes:
            b = b.bytes
        if b[:4] == DELIM:
            i = 0
            idents: list[bytes] = []
        else:
            idents = [b]
            i = 1
            while i < n:
                b = frames[i]
                if type(b) is not bytes:
                    b = b.bytes
                if b[:4] == DELIM:
                    break
                idents.append(b)
                i += 1
            else:
                raise _no_delimiter(frames)
        if n - i < 2 or len(b) < _HEAD:
            raise WireError("truncated message")
        hbytes = b[_HEAD:]
        content = frames[i + 1]
        buffers = frames[i + 2 :] if n > i + 2 else ()
        # The header is decoded before the check because it says which buffers are raw
        # data; msgpack decoding runs no code, and nothing acts on the header unless
        # the signature matches.
        try:
            header = msgpack.unpackb(hbytes)
        except Exception:
            header = None
        if type(header) is dict:
            raw = header.get("raw")
            dg = header.get("dg")
            cdg = header.get("cdg")
            if raw is not None or dg is not None or cdg is not None:
                raw = _checked_raw(raw, dg, cdg, len(buffers))
        else:
            raw = dg = cdg = None
        expected = self.signature(hbytes, content, buffers, raw, cdg is not None)
        if not hmac.compare_digest(b[4:_HEAD], expected):
            raise WireError("bad signature (forged, garbled, or signed with another key)")
        if type(header) is not dict or type(header.get("t")) is not str:
            raise WireError("header is not a map with a message type")
        (self.guard if guard is None else guard).check(header)
        if (dg is not None or cdg is not None) and header["t"] not in deferred:
            check_message_digests(header, content, buffers)
        return Message(idents, header, content, list(buffers) if buffers else [])


def _no_delimiter(frames: list[Any]) -> WireError:
    """The error for a frame list without the protocol delimiter: another version's, or
    not a multiengine message at all."""
    other = next((f for f in map(_bytes, frames) if f[:3] == b"ME/" and len(f) > 4), None)
    if other is not None:
        return WireError(
            f"protocol {other[:4].decode(errors='replace')} is not this side's "
            f"{DELIM.decode()} (different multiengine versions?)"
        )
    return WireError("no protocol delimiter (not a multiengine message?)")


def _checked_raw(raw: Any, dg: Any, cdg: Any, nbuf: int) -> Any:
    """Which buffers a header's ``raw``, ``dg`` and ``cdg`` leave to their lengths (for
    :meth:`Signer.signature`); WireError when one of them is malformed."""
    if not (
        raw is None or raw is True or (isinstance(raw, list) and all(type(i) is int for i in raw))
    ):
        raise WireError("malformed raw-buffer list in the header")
    if dg is not None:
        if not (
            type(dg) is list
            and len(dg) == nbuf
            and all(type(d) is bytes and len(d) == DIGEST_SIZE for d in dg)
        ):
            raise WireError("malformed digest list in the header")
        raw = True  # the buffers are covered by their lengths and their digests
    if cdg is not None and not (type(cdg) is bytes and len(cdg) == DIGEST_SIZE):
        raise WireError("malformed content digest in the header")
    return raw


def digests(buffers: Sequence[Any]) -> list[bytes]:
    """The SHA-256 digest of each buffer (bytes-like or zmq.Frame), for a header's
    ``dg``."""
    return [hashlib.sha256(_view(b)).digest() for b in buffers]


def check_digests(dg: Sequence[bytes], buffers: Sequence[Any]) -> None:
    """Raise :class:`WireError` unless each buffer has the digest ``dg`` gives it."""
    for d, b in zip(dg, buffers, strict=True):
        if not hmac.compare_digest(hashlib.sha256(_view(b)).digest(), d):
            raise WireError("a buffer does not match its digest (changed on its way)")


def check_message_digests(header: dict[str, Any], content: Any, buffers: Sequence[Any]) -> None:
    """Raise :class:`WireError` unless the content and the buffers of a verified
    message have the digests its header gives them (``cdg``, ``dg``: either may be
    absent)."""
    cdg = header.get("cdg")
    if cdg is not None and not hmac.compare_digest(hashlib.sha256(_view(content)).digest(), cdg):
        raise WireError("the content does not match its digest (changed on its way)")
    dg = header.get("dg")
    if dg is not None:
        check_digests(dg, buffers)


# libzmq reads a connection in 8 KB batches and hands out the messages under that size as
# views into the batch: one small frame kept alive keeps its whole batch alive.
SHARED_BELOW = 8192


def owned(frame: Any) -> Any:
    """``frame`` fit to be kept for long (a task, a stored result): a small received
    frame is copied out of libzmq's receive batch (it would pin 8 KB of it); a large one
    has its own memory and is kept as it is."""
    if type(frame) is bytes:
        return frame
    if isinstance(frame, zmq.Frame):
        return frame.bytes if len(frame) < SHARED_BELOW else frame
    if isinstance(frame, bytes) or _nbytes(frame) >= SHARED_BELOW:
        return frame
    return bytes(_view(frame))


_signers: weakref.WeakSet[Signer] = weakref.WeakSet()


def _new_sessions_in_child() -> None:
    # a forked child must not continue its parent's sessions (the receiver would take
    # its messages for replays): every thread of it starts new ones
    for signer in list(_signers):
        signer._local = threading.local()


os.register_at_fork(after_in_child=_new_sessions_in_child)


def _view(b: Any) -> Any:
    """Something hashlib can read: zmq Frames expose their memory as ``.buffer``."""
    if type(b) is bytes:  # the common case, without a failing attribute lookup
        return b
    return b.buffer if hasattr(b, "buffer") and not isinstance(b, memoryview) else b


def _bytes(f: Any) -> bytes:
    return f if isinstance(f, bytes) else f.bytes


# ------------------------------------------------------------------ sending and receiving
# pyzmq's Python layer (``send_multipart``, ``recv_multipart``, ``poll``) costs more than
# libzmq on the hot path. Best of 5 (benchmarks/wire_calls.py), a 3-part message: sending
# 8.7 µs (a zmq.Frame per part with copy=False) against 3.3 µs through pyzmq's compiled
# base class; receiving 4.7 against 3.4 µs; an empty socket answers a receive with a
# raised zmq.Again in 4.0 µs, asking it for EVENTS takes 1.5 µs.
_base_send = zmq.backend.Socket.send
_base_recv = zmq.backend.Socket.recv
_base_get = zmq.backend.Socket.get
_zmq_poll = zmq.zmq_poll
_SNDMORE = int(zmq.SNDMORE)
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
# Parts smaller than this are copied into libzmq's message (as pyzmq itself does below its
# copy threshold); larger ones go zero-copy, which needs a zmq.Frame to hold them.
COPY_BELOW = 65536


def send_frames(sock: zmq.Socket[Any], frames: Sequence[Any], flags: int = 0) -> None:
    """Send a multipart message: small ``bytes`` parts copied, the rest zero-copy."""
    last = len(frames) - 1
    more = flags | _SNDMORE
    for f in frames[:last]:
        _base_send(sock, f, more, type(f) is bytes and len(f) < COPY_BELOW, False)
    f = frames[last]
    _base_send(sock, f, flags, type(f) is bytes and len(f) < COPY_BELOW, False)


def send_to_each(sock: zmq.Socket[Any], idents: Sequence[bytes], frames: Sequence[Any]) -> None:
    """Send one message (``frames``, signed once) to each routing identity of ``idents``
    on a ROUTER: how each part goes (copied or not) is decided once, not per identity."""
    if not frames:
        raise ValueError("a message has at least one frame")
    *body, last = [(f, type(f) is bytes and len(f) < COPY_BELOW) for f in frames]
    for ident in idents:
        _base_send(sock, ident, _SNDMORE, True, False)
        for f, copy in body:
            _base_send(sock, f, _SNDMORE, copy, False)
        _base_send(sock, last[0], 0, last[1], False)


def recv_frames(sock: zmq.Socket[Any], flags: int = 0) -> list[zmq.Frame]:
    """Receive a multipart message as zmq.Frames (raises zmq.Again as ``recv`` does)."""
    f = _base_recv(sock, flags, False, False)
    frames = [f]
    while f.more:
        f = _base_recv(sock, 0, False, False)  # the rest of a message is already in
        frames.append(f)
    return frames


def readable(sock: zmq.Socket[Any], timeout_ms: int) -> bool:
    """Wait up to ``timeout_ms`` (-1: for ever) for a message on ``sock``."""
    return bool(_zmq_poll([(sock, _POLLIN)], timeout_ms))


def pending(sock: zmq.Socket[Any]) -> bool:
    """Whether a message waits on ``sock`` (cheaper than a receive that raises zmq.Again)."""
    events: int = _base_get(sock, _EVENTS)  # type: ignore[assignment]
    return bool(events & _POLLIN)


pack = msgpack.packb


def unpack(data: Any) -> Any:
    return msgpack.unpackb(_view(data))
