"""Relaying large buffers piece by piece (see ``multiengine.wire.chunks``).

From a client: the ``submit`` announces the pieces (``xfer``) and they follow as
``chunk`` messages; each piece goes to the engine at once if its command has been
dispatched, or waits with the command until it is. From an engine: a ``reply``
announces its pieces; for a blocking single-engine call they stream straight on to
the client, otherwise they are kept with the result.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..wire.message import Message
from .engines import Command, EngineState
from .jobs import Part

if TYPE_CHECKING:
    from .relay import Controller

__all__ = ["Transfers"]

log = logging.getLogger("multiengine.controller")


class Transfers:
    def __init__(self, ctl: Controller) -> None:
        self.ctl = ctl
        self._expected: dict[
            tuple[bytes, Any], list[Any]
        ] = {}  # (client, msg id) -> [cmds by part, pieces left]

    # ------------------------------------------------------------ client -> engines
    def expect(
        self, client: bytes, msg_id: Any, by_part: dict[int, list[Command]], count: int
    ) -> None:
        self._expected[(client, msg_id)] = [by_part, count]

    def client_piece(self, client: bytes, msg: Message) -> None:
        """A piece from a client: to the engine now, or kept until its command is sent."""
        key = (client, msg.header.get("x"))
        state = self._expected.get(key)
        if state is None or not msg.buffers:
            log.warning("dropped a piece of an unknown transfer")
            return
        piece = msg.buffers[0]
        cmds: list[Command] = state[0].get(msg.header.get("p", 0), [])
        for cmd in cmds:
            if cmd.streaming and cmd.job is not None:
                engine = self.ctl.engines.get(cmd.job.targets[cmd.index])
                if engine is not None and engine.current is cmd:
                    self.send_piece(engine, cmd, piece)
            else:
                cmd.pieces.append(piece)
        state[1] -= 1
        if state[1] <= 0:
            del self._expected[key]

    def dispatched(self, engine: EngineState, cmd: Command) -> None:
        """The command has gone to the engine: send the pieces it holds;
        later ones follow directly."""
        for piece in cmd.pieces:
            self.send_piece(engine, cmd, piece)
        cmd.pieces = []
        cmd.streaming = True

    def send_piece(self, engine: EngineState, cmd: Command, piece: Any) -> None:
        ctl = self.ctl
        header = {"t": "chunk", "cmd": cmd.cmd_id, "raw": True}
        ctl.engine_sock.send_multipart(
            ctl.signer.frames(header, b"", (piece,), (engine.ident,)), copy=False
        )

    # ------------------------------------------------------------ engine -> client
    def reply_announced(
        self,
        engine: EngineState,
        cmd: Command,
        status: str,
        enc: str,
        flags: Any,
        xfer: dict[str, Any],
        content: Any,
    ) -> None:
        job = cmd.job
        stream = job is not None and job.block and len(job.targets) == 1 and not job.discarded
        engine.incoming = {
            "status": status,
            "enc": enc,
            "content": content,
            "sizes": xfer["sizes"],
            "piece": xfer.get("piece"),
            "left": xfer["n"],
            "pieces": [],
            "stream": stream,
            "flags": flags,
            "rt": None,
        }
        if stream and job is not None:
            job.streamed = True
            head = {
                "t": "result",
                "id": job.msg_id,
                "job": job.job_id,
                "stream": xfer["n"],
                "parts": [[engine.id, status, enc, xfer["n"], xfer["sizes"], xfer.get("piece")]],
            }
            self.ctl.send_to_client(job.client, head, b"", [content])

    def engine_piece(self, engine: EngineState, piece: Any) -> None:
        inc = engine.incoming
        cmd = engine.current
        if inc is None or cmd is None:
            return
        if inc["stream"] and cmd.job is not None:
            self.ctl.send_to_client(
                cmd.job.client, {"t": "chunk", "id": cmd.job.msg_id, "raw": True}, b"", [piece]
            )
        else:
            inc["pieces"].append(piece)
        inc["left"] -= 1
        if inc["left"] > 0:
            return
        engine.incoming = None
        self.ctl.next_current(engine)
        part = Part(
            engine.id,
            inc["status"],
            inc["enc"],
            [inc["content"], *inc["pieces"]],
            inc["sizes"],
            inc["piece"],
        )
        part.flags = inc["flags"] if isinstance(inc["flags"], dict) else None
        part.run_time = inc["rt"]
        self.ctl.finish_reply(engine, cmd, part)
