"""The engine channel for engines of the controller's host: Unix streams, not ZeroMQ.

Beside the engine channel's IPC endpoint the controller listens on a Unix stream socket
(``<endpoint>.s``, wire/stream.py: ``stream.beside``); an engine of its host connects
there instead (engine/link.py), and its commands and replies go over that connection.
A round trip through libzmq wakes six threads, over a stream two: at 128 engines a
signed fan-out and its answers measured 3.7-6.3 ms a round against 10.4-13.8 ms through
ZeroMQ, and the engines' CPU a third (benchmarks/engine_floor.py, ``unix``).

A stream has no routing identities: the first message on a connection must be a
``register`` whose ``ident`` names the engine (its ZeroMQ identity, which its
heartbeat connection carries), and every later message on it is taken as that
engine's. The hub sees the same messages as from the ZeroMQ socket (relay.py gives
them the identity) and sends through the same outbox, which picks the stream for an
engine that has one. A connection that ends is a closed engine connection (the hub's
``on_disconnect``, by its descriptor, as libzmq's monitors report theirs).
"""

from __future__ import annotations

import logging
from typing import Any

from ..wire import stream

__all__ = ["EngineStreams"]

log = logging.getLogger("multiengine.controller")


class EngineStreams:
    """The listening socket and the engines' connections (read by the loop's thread)."""

    def __init__(self, path: str) -> None:
        self.listener = stream.Listener(path)
        self.connections: dict[int, stream.Connection] = {}  # fd -> connection
        self.ident_of: dict[int, bytes] = {}  # fd -> the engine on it (after its register)
        self.by_ident: dict[bytes, stream.Connection] = {}
        self.backlogged: set[stream.Connection] = set()  # sent to, with something queued

    def accept(self) -> list[stream.Connection]:
        """The connections waiting to be taken."""
        taken = []
        while (conn := self.listener.accept()) is not None:
            self.connections[conn.fd] = conn
            taken.append(conn)
        return taken

    def name(self, conn: stream.Connection, ident: bytes) -> None:
        """``conn`` is engine ``ident``'s from now on (its first ``register``)."""
        old = self.by_ident.get(ident)
        if old is not None and old is not conn:
            self.ident_of.pop(old.fd, None)  # (its own closing is read in its turn)
        self.by_ident[ident] = conn
        self.ident_of[conn.fd] = ident

    def drop(self, conn: stream.Connection) -> int:
        """Forget a connection that ended, and close it: its descriptor, for the hub."""
        fd = conn.fd
        self.connections.pop(fd, None)
        ident = self.ident_of.pop(fd, None)
        if ident is not None and self.by_ident.get(ident) is conn:
            del self.by_ident[ident]
        self.backlogged.discard(conn)
        conn.close()
        return fd

    def send(self, ident: bytes, frames: Any, framed: tuple[bytes, int] | None = None) -> bool:
        """Send to engine ``ident`` on its stream; False when it has none. ``framed``:
        the message's ``stream.frame_head``, made once for a fan-out."""
        conn = self.by_ident.get(ident)
        if conn is None:
            return False
        conn.send(frames, framed=framed)
        if conn.wants_write:
            self.backlogged.add(conn)
        return True

    def close(self) -> None:
        # (nothing queued matters now: the shutdown notices go on the heartbeat channel)
        for conn in list(self.connections.values()):
            conn.close()
        self.connections.clear()
        self.by_ident.clear()
        self.ident_of.clear()
        self.listener.close()
