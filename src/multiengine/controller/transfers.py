"""Relaying large buffers piece by piece (see ``multiengine.wire.chunks``).

From a client: the ``submit`` announces the pieces (``xfer``) and they follow as
``chunk`` messages; each piece goes to the engine at once if its command is running
there, or waits with the command, which sends it right behind itself when it is
dispatched (``Dispatch``). From an engine: a ``reply`` announces its pieces; for a
blocking single-engine call they stream straight on to the client, otherwise they are
kept with the result.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ..wire import protocol as P
from ..wire.message import Message
from ..wire.protocol import PartHeader, TaskFlags, Xfer
from .dispatch import Dispatch
from .engines import Command, EngineState, IncomingReply
from .jobs import Part

__all__ = ["Transfers"]

log = logging.getLogger("multiengine.controller")


class Transfers:
    def __init__(self, dispatch: Dispatch) -> None:
        self.dispatch = dispatch
        # (client, submit id) -> [commands by part, pieces still to come]
        self._expected: dict[tuple[bytes, Any], tuple[dict[int, list[Command]], list[int]]] = {}

    # ------------------------------------------------------------ client -> engines
    def expect(
        self, client: bytes, msg_id: Any, by_part: dict[int, list[Command]], count: int
    ) -> None:
        self._expected[(client, msg_id)] = (by_part, [count])

    def client_piece(self, client: bytes, msg: Message) -> None:
        """A piece from a client: to the engine now, or kept until its command is sent."""
        key = (client, msg.header.get("x"))
        state = self._expected.get(key)
        if state is None or not msg.buffers:
            log.warning("dropped a piece of an unknown transfer")
            return
        by_part, left = state
        piece = msg.buffers[0]
        for cmd in by_part.get(msg.header.get("p", 0), []):
            if not cmd.streaming:
                if cmd.pieces is None:
                    cmd.pieces = []
                cmd.pieces.append(piece)
                continue
            engine = self._engine_running(cmd)
            if engine is not None:
                self.dispatch.send_piece(engine, cmd, piece)
        left[0] -= 1
        if left[0] <= 0:
            del self._expected[key]

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
        stream = job is not None and job.block and len(job.targets) == 1 and not job.discarded
        engine.incoming = IncomingReply(
            status, enc, content, xfer, flags, stream, header.get("elapsed"), left=xfer.n
        )
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

    def engine_piece(self, engine: EngineState, piece: Any) -> Part | None:
        """A piece of the reply arriving from ``engine``; the whole Part after the last."""
        inc = engine.incoming
        cmd = engine.current
        if inc is None or cmd is None:
            return None
        if inc.stream and cmd.job is not None:
            header = {"t": P.CHUNK, "id": cmd.job.msg_id, "raw": True}
            self.dispatch.to_client(cmd.job.client, header, b"", [piece])
        else:
            inc.pieces.append(piece)
        inc.left -= 1
        if inc.left > 0:
            return None
        engine.incoming = None
        frames = [inc.content, *inc.pieces]
        part = Part(engine.id, inc.status, inc.enc, frames, inc.xfer.sizes, inc.xfer.piece)
        part.flags = inc.flags
        part.elapsed = inc.elapsed
        return part
