"""Relaying large buffers piece by piece (see ``multiengine.wire.chunks``).

From a client: the ``submit`` announces the pieces (``xfer``) and they follow as
``chunk`` messages; each piece goes to the engine at once if its command is running
there, or waits with the command, which sends it right behind itself when it is
dispatched (``Dispatch``). From an engine: a ``reply`` announces its pieces; for a
blocking single-engine call they stream straight on to the client, otherwise they are
kept with the result.

A client can die, or stop, in the middle of sending its pieces. Its transfer is then
*abandoned*: once the connection it came on has closed and no piece has followed for
:data:`CLOSED_GRACE` seconds (pieces already queued in the socket are still read), or
when no piece has come for :data:`STALL` seconds at all. The pieces kept for it are let
go, and each of its commands is told so with an empty ``chunk`` (no buffer) right
behind what it got: the engine fails that command at once and its namespace is left
as it was (docs/protocol.md §6).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ..wire import protocol as P
from ..wire.message import Message, WireError, check_digests
from ..wire.protocol import PartHeader, TaskFlags, Xfer
from .dispatch import Dispatch
from .engines import Command, EngineState, IncomingReply
from .jobs import Part, error_part

__all__ = ["CLOSED_GRACE", "STALL", "Transfers"]

log = logging.getLogger("multiengine.controller")

# seconds without a piece after which a transfer whose client connection closed is
# abandoned (the pieces it sent before closing are read in well under that)
CLOSED_GRACE = 0.5
# seconds without any piece after which a transfer is abandoned (as an engine does, §6)
STALL = 60.0


class _Incoming:
    """A client's transfer still arriving: its commands by part, and how it goes."""

    __slots__ = ("by_part", "left", "conn", "last", "closed")

    def __init__(
        self, by_part: dict[int, list[Command]], left: int, conn: int | None, now: float
    ) -> None:
        self.by_part = by_part
        self.left = left  # pieces still to come
        self.conn = conn  # the connection (fd) the submit came on, if known
        self.last = now  # when the last piece (or the submit) came
        self.closed = False  # its connection has closed


class Transfers:
    def __init__(self, dispatch: Dispatch, clock: Any = time.monotonic) -> None:
        self.dispatch = dispatch
        self.clock = clock
        # (client, submit id) -> the transfer still arriving
        self._expected: dict[tuple[bytes, Any], _Incoming] = {}
        self.abandoned = 0  # transfers given up because their client stopped sending
        self.changed = 0  # pieces kept that did not match their digest (dropped messages)

    # ------------------------------------------------------------ client -> engines
    def expect(
        self,
        client: bytes,
        msg_id: Any,
        by_part: dict[int, list[Command]],
        count: int,
        conn: int | None = None,
    ) -> None:
        self._expected[(client, msg_id)] = _Incoming(by_part, count, conn, self.clock())

    def client_piece(self, client: bytes, msg: Message) -> None:
        """A piece from a client: to the engine now, or kept until its command is sent."""
        key = (client, msg.header.get("x"))
        state = self._expected.get(key)
        if state is None or not msg.buffers:
            log.warning("dropped a piece of an unknown transfer")
            return
        state.last = self.clock()
        piece = msg.buffers[0]
        for cmd in state.by_part.get(msg.header.get("p", 0), []):
            if not cmd.streaming:
                if cmd.pieces is None:
                    cmd.pieces = []
                cmd.pieces.append(piece)
                continue
            engine = self._engine_running(cmd)
            if engine is not None:
                self.dispatch.send_piece(engine, cmd, piece)
        state.left -= 1
        if state.left <= 0:
            del self._expected[key]

    def connection_closed(self, conn: int) -> None:
        """A client connection closed: its transfers still arriving are abandoned unless
        their last pieces, already on the way, come within :data:`CLOSED_GRACE`."""
        for state in self._expected.values():
            if state.conn == conn:
                state.closed = True
                state.last = self.clock()

    def sweep(self, now: float) -> None:
        """Abandon the transfers whose client stopped sending (closed, or silent)."""
        for key, state in list(self._expected.items()):
            idle = now - state.last
            if (state.closed and idle >= CLOSED_GRACE) or idle >= STALL:
                del self._expected[key]
                self._abandon(state, "closed its connection" if state.closed else "went silent")

    def _abandon(self, state: _Incoming, why: str) -> None:
        self.abandoned += 1
        log.warning(
            "abandoned a transfer: its client %s with %d pieces still to come", why, state.left
        )
        for cmds in state.by_part.values():
            for cmd in cmds:
                cmd.pieces = None  # what was kept for it is let go
                cmd.abandoned = True
                if cmd.streaming:
                    engine = self._engine_running(cmd)
                    if engine is not None:
                        self.dispatch.send_abandon(engine, cmd)

    def _engine_running(self, cmd: Command) -> EngineState | None:
        if cmd.job is None:
            return None
        engine = self.dispatch.engines.get(cmd.job.targets[cmd.index])
        return engine if engine is not None and engine.current is cmd else None

    # ------------------------------------------------------------ engine -> client
    def reply_announced(
        self,
        engine: EngineState,
        cmd: Command,
        header: dict[str, Any],
        content: Any,
    ) -> None:
        """A reply whose buffers follow in pieces: stream them on, or collect them."""
        xfer = Xfer.from_wire(header["xfer"])
        status = str(header.get("status", P.STATUS_OK))
        enc = str(header.get("enc", P.PICKLE))
        flags = TaskFlags.from_wire(header["task"]) if header.get("task") else None
        job = cmd.job
        relay = job is not None and job.block and not job.discarded and cmd.task is None
        stream = relay and job is not None and len(job.targets) == 1
        engine.incoming = IncomingReply(
            status, enc, content, xfer, flags, stream, header.get("elapsed"), left=xfer.n
        )
        # A blocking call to several engines: each one's pieces go on to the client as
        # they come (``chunk`` with ``p``, the first with ``xfer``), ahead of the result,
        # which follows once every engine has answered (its parts in ``ahead``).
        engine.incoming.ahead = relay and not stream
        if stream and job is not None:
            job.streamed = True
            part = PartHeader(
                engine.id,
                status,
                enc,
                xfer.n,
                xfer.sizes,
                xfer.piece,
                cmd.started,
                time.time(),
                header.get("elapsed"),
            )
            head = {
                "t": P.RESULT,
                "id": job.msg_id,
                "job": job.job_id,
                "stream": xfer.n,
                "parts": [part.to_wire()],
            }
            self.dispatch.to_client(job.client, head, b"", [content])

    def engine_piece(
        self, engine: EngineState, piece: Any, raw: bool = True, dg: Any = None
    ) -> Part | None:
        """A piece of the reply arriving from ``engine`` (``raw``: it came signed by its
        length only; ``dg``: its digest, which the relay did not check); the whole Part
        after the last.

        A piece is relayed as ``raw`` exactly when it came so. The pieces of a list in
        slices (encoding ``SLICES``) are pickles: the client refuses to unpickle one
        that came raw, and a kept answer with such a piece becomes an error. A slice
        comes with its digest: relayed, the digest goes on with it and the client checks
        it; kept, it is checked here, and an answer with a slice that does not match
        becomes an error (counted in ``changed``).
        """
        inc = engine.incoming
        cmd = engine.current
        if inc is None or cmd is None:
            return None
        header: dict[str, Any]
        if inc.stream and cmd.job is not None:
            header = {"t": P.CHUNK, "id": cmd.job.msg_id}
            if raw:
                header["raw"] = True
            if dg is not None:
                header["dg"] = dg
            self.dispatch.to_client(cmd.job.client, header, b"", [piece])
        elif inc.ahead and cmd.job is not None:
            header = {"t": P.CHUNK, "id": cmd.job.msg_id, "p": cmd.index}
            if inc.sent == 0:
                header["xfer"] = inc.xfer.to_wire()
                if inc.enc == P.SLICES:
                    header["enc"] = P.SLICES
            if raw:
                header["raw"] = True
            if dg is not None:
                header["dg"] = dg
            inc.sent += 1
            self.dispatch.to_client(cmd.job.client, header, b"", [piece])
        else:
            if dg is not None and not inc.changed:
                try:
                    check_digests(dg, [piece])
                except WireError as e:
                    self.changed += 1
                    inc.changed = True
                    log.warning("dropped a piece of engine %d's answer: %s", engine.id, e)
            inc.pieces.append(piece)
            inc.unsigned = inc.unsigned or raw
        inc.left -= 1
        if inc.left > 0:
            return None
        engine.incoming = None
        if inc.ahead:
            part = Part(engine.id, inc.status, inc.enc, [inc.content], ahead=True)
        elif inc.enc == P.SLICES and inc.unsigned:
            log.warning("engine %d sent a slice of a list unsigned: its answer fails", engine.id)
            part = error_part(
                "SerializationError", "a slice of the answer came unsigned", engine.id
            )
        elif inc.changed:
            part = error_part(
                "SerializationError", "a piece of the answer was changed on its way", engine.id
            )
        elif inc.enc == P.SLICES:  # each piece is a whole slice: the part's buffers
            part = Part(engine.id, inc.status, inc.enc, [inc.content, *inc.pieces])
        else:
            frames = [inc.content, *inc.pieces]
            part = Part(engine.id, inc.status, inc.enc, frames, inc.xfer.sizes, inc.xfer.piece)
        part.flags = inc.flags
        part.elapsed = inc.elapsed
        return part
