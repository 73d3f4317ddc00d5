"""Signed multipart messages.

A message on any multiengine socket is, after the ZeroMQ routing identities::

    b"ME/2" + signature + header      content      buffer_0 ... buffer_k

* The first frame starts with ``b"ME/2"``, which separates routing identities from
  the message and names the protocol version; then come the 32-byte signature and
  the header, a msgpack map whose ``"t"`` is the message type. Routing fields
  (targets, ids) live in the header so that the controller never unpickles user data.
  (One frame rather than three: each frame costs about 1.5 µs per send and receive.)
* ``content`` is opaque to the relay: a pickle made by a client or an engine, or
  msgpack made by the controller (the header says which).
* ``buffer_i`` are out-of-band pickle buffers (numpy arrays, large ``bytes``), sent
  zero-copy as their own frames.
* The signature is HMAC-SHA256 under the cluster key over the header, the content and
  every buffer, except that of the buffers the header lists as raw data
  (``header["raw"]``: ``True`` for all, or their indices) only the byte length is
  covered. Raw buffers are out-of-band pickle buffers: bytes that a signed pickle
  stream places, never code; hashing them would halve large-transfer throughput
  (docs/protocol.md explains this choice). Pickle streams are always hashed.

A frame list that fails any check raises :class:`WireError`; receivers log and drop it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections.abc import Sequence
from typing import Any

import msgpack

from .protocol import check_header

__all__ = ["DELIM", "Signer", "WireError", "Message", "owned"]

# With MULTIENGINE_CHECK_PROTOCOL=1 (the test suite sets it) every header sent is checked
# against the table in protocol.py: a field or type that is not declared there raises.
_CHECK = os.environ.get("MULTIENGINE_CHECK_PROTOCOL", "") not in ("", "0")
DELIM = b"ME/2"  # the protocol version; ME/1 had other header fields
_LEN = struct.Struct("<Q")
_HEAD = len(DELIM) + 32  # delimiter + HMAC-SHA256 digest


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
    if isinstance(buf, (bytes, bytearray)):
        return len(buf)
    nbytes = getattr(buf, "nbytes", None)
    if nbytes is not None:
        return int(nbytes)
    mv = memoryview(buf)
    return mv.nbytes


class Signer:
    """Signs and verifies messages with one cluster key."""

    def __init__(self, key: bytes) -> None:
        if not key:
            raise ValueError("a signing key is required")
        self._base = hmac.new(key, digestmod=hashlib.sha256)

    def signature(
        self, header: bytes, content: Any, buffers: Sequence[Any], raw: Any = None
    ) -> bytes:
        """HMAC over the header, the content and every buffer; of the buffers that
        ``raw`` names (``True``: all of them) only the length is covered."""
        h = self._base.copy()
        h.update(header)
        h.update(_view(content))
        if buffers:
            if raw is True:
                h.update(b"".join(_LEN.pack(_nbytes(b)) for b in buffers))
            else:
                raw_set = set(raw) if raw else ()
                for i, b in enumerate(buffers):
                    h.update(_LEN.pack(_nbytes(b)) if i in raw_set else _view(b))
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
        hbytes = msgpack.packb(header)
        sig = self.signature(hbytes, content, buffers, header.get("raw"))
        return [*idents, DELIM + sig + hbytes, content, *buffers]

    def parse(self, frames: list[Any]) -> Message:
        """Split, verify and decode a received frame list (bytes or zmq.Frame)."""
        n = len(frames)
        i = 0
        idents: list[bytes] = []
        while i < n:
            b = _bytes(frames[i])
            if b[:4] == DELIM:
                break
            idents.append(b)
            i += 1
        else:
            other = next((f for f in map(_bytes, frames) if f[:3] == b"ME/" and len(f) > 4), None)
            if other is not None:
                raise WireError(
                    f"protocol {other[:4].decode(errors='replace')} is not this side's "
                    f"{DELIM.decode()} (different multiengine versions?)"
                )
            raise WireError("no protocol delimiter (not a multiengine message?)")
        if n - i < 2 or len(b) < _HEAD:
            raise WireError("truncated message")
        sig = b[4:_HEAD]
        hbytes = b[_HEAD:]
        content = frames[i + 1]
        buffers = frames[i + 2 :]
        # The header is decoded before the check because it says which buffers are raw
        # data; msgpack decoding runs no code, and nothing acts on the header unless
        # the signature matches.
        try:
            header = msgpack.unpackb(hbytes)
        except Exception:
            header = None
        raw = header.get("raw") if isinstance(header, dict) else None
        if not (
            raw is None
            or raw is True
            or (isinstance(raw, list) and all(type(i) is int for i in raw))
        ):
            raise WireError("malformed raw-buffer list in the header")
        expected = self.signature(hbytes, content, buffers, raw)
        if not hmac.compare_digest(sig, expected):
            raise WireError("bad signature (forged, garbled, or signed with another key)")
        if not isinstance(header, dict) or "t" not in header:
            raise WireError("header is not a map with a message type")
        return Message(idents, header, content, list(buffers))


# libzmq reads a connection in 8 KB batches and hands out the messages under that size as
# views into the batch: one small frame kept alive keeps its whole batch alive.
SHARED_BELOW = 8192


def owned(frame: Any) -> Any:
    """``frame`` fit to be kept for long (a task, a stored result): a small received
    frame is copied out of libzmq's receive batch (it would pin 8 KB of it); a large one
    has its own memory and is kept as it is."""
    if isinstance(frame, bytes) or _nbytes(frame) >= SHARED_BELOW:
        return frame
    return bytes(_view(frame))


def _view(b: Any) -> Any:
    """Something hashlib can read: zmq Frames expose their memory as ``.buffer``."""
    return b.buffer if hasattr(b, "buffer") and not isinstance(b, memoryview) else b


def _bytes(f: Any) -> bytes:
    return f if isinstance(f, bytes) else f.bytes


pack = msgpack.packb


def unpack(data: Any) -> Any:
    return msgpack.unpackb(_view(data))
