"""The engine's direct socket: small commands from clients of its host, answered to them.

A ROUTER bound on IPC beside the controller's endpoints (a 0700 directory), offered at
``register`` (``direct``). A client sends ``direct`` on it; the engine runs the command
between the controller's commands, as one of them, answers the client with a
``result`` on this socket (to the client's *fg* socket, named in ``rt``, which connects
here), then reports it to the controller on its command socket: a quick success with
others later (``direct_dones``, held here: :meth:`DirectSocket.hold_report`), anything
else at once (``direct_done``) (docs/protocol.md §6, "A direct path on one host").

Every message is verified as on the controller's socket (its own replay guard: the
main thread reads this socket only); a forged, garbled or replayed one is dropped and
counted with the others (``Interpreter.dropped_messages``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import zmq

from ..wire import direct
from ..wire import protocol as P
from ..wire.direct import REPORT_AT_MOST, REPORT_WITHIN
from ..wire.message import Message, ReplayGuard, Signer, WireError, recv_frames, send_frames

__all__ = ["DirectCommand", "DirectSocket", "ANSWER_WAIT"]

log = logging.getLogger("multiengine.engine")

# How long an answer waits for its client's fg socket to connect here (it connects just
# before it sends, so it is there within a millisecond; past this the answer goes to the
# controller in the ``direct_done``, which passes it on: a client that has exited costs
# the engine no more than this).
ANSWER_WAIT = 0.25
RECENT = 256  # direct commands answered lately, remembered for interrupts that come late


@dataclass(slots=True)
class DirectCommand:
    """Where a direct command's answer goes: the client socket, its request and job."""

    rt: bytes
    request: Any
    job: Any
    cmd_id: str
    name: str = ""  # execute, apply, map or pull
    cid: bytes = b""  # its client (who owns the record), for the controller's books
    desc: str = ""  # what it runs, as the history shows it
    ename: str = ""  # the exception it raised, for the controller's history


class DirectSocket:
    """The ROUTER clients of this host send direct commands to."""

    def __init__(
        self,
        ctx: zmq.Context[Any],
        signer: Signer,
        url: str,
        dropped: Callable[[str, WireError], None],
    ) -> None:
        self.url = url
        self.signer = signer
        self._dropped = dropped
        self.guard = ReplayGuard()  # read by the main thread only
        self.recent: deque[str] = deque(maxlen=RECENT)
        # reports of quick direct commands, sent to the controller several at a time
        # (hold_report; the engine sends them: Engine._send_reports)
        self.reports: list[dict[str, Any]] = []
        self.reports_due = 0.0  # (monotonic) when the first of them must go
        self._send_lock = threading.Lock()  # answers (main thread), live output (its thread)
        self.sock = ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # an unknown rt raises: see answer()
        self.sock.bind(url)

    @classmethod
    def open(
        cls,
        ctx: zmq.Context[Any],
        signer: Signer,
        controller_url: str,
        dropped: Callable[[str, WireError], None],
    ) -> DirectSocket | None:
        """A direct socket beside the controller's IPC endpoint; None when the setting
        is off, the controller is not reached over IPC, or the bind fails."""
        if not direct.enabled():
            return None
        url = direct.endpoint_beside(controller_url, f"{os.getpid()}-{uuid.uuid4().hex[:8]}-d")
        if url is None:
            return None
        try:
            return cls(ctx, signer, url, dropped)
        except zmq.ZMQError as e:
            log.info("no direct socket (%s): clients go through the controller", e)
            return None

    def read(self) -> tuple[Message, DirectCommand] | None:
        """The next direct command waiting, as a ``cmd`` message and where to answer it;
        None when nothing waits, or what came was dropped."""
        try:
            frames = recv_frames(self.sock, zmq.NOBLOCK)
        except zmq.Again:
            return None
        try:
            msg = self.signer.parse(frames, self.guard)
        except WireError as e:
            self._dropped(f"a message on the {P.DIRECT_CHANNEL} channel", e)
            return None
        h = msg.header
        cmd_id, name, rt = h.get("cmd"), h.get("name"), h.get("rt")
        if (
            msg.type != P.DIRECT
            or type(cmd_id) is not str
            or name not in P.DIRECT_COMMANDS
            or type(rt) is not bytes
        ):
            log.warning("dropped a malformed direct message of type %r", msg.type)
            return None
        header: dict[str, Any] = {"t": P.CMD, "cmd": cmd_id, "name": name}
        if h.get("raw"):
            header["raw"] = True
        if h.get("live"):
            header["live"] = True
        cmd = Message(msg.idents, header, msg.content, msg.buffers)
        cid, desc = h.get("cid"), h.get("desc")
        to = DirectCommand(
            rt,
            h.get("id"),
            h.get("job"),
            cmd_id,
            name,
            cid if type(cid) is bytes else rt,
            desc if type(desc) is str else name,
        )
        return cmd, to

    def answer(
        self,
        to: DirectCommand,
        engine_id: int,
        status: str,
        enc: str,
        content: Any,
        buffers: list[Any],
        elapsed: float,
        started: float,
    ) -> bool:
        """Send the ``result`` to the client; False if its socket never connected here."""
        self.recent.append(to.cmd_id)
        part = P.PartHeader(
            engine_id, status, enc, len(buffers), None, None, started, time.time(), elapsed
        )
        _, frames, raw = P.pack_parts([(content, buffers)])
        header: dict[str, Any] = {
            "t": P.RESULT,
            "id": to.request,
            "job": to.job,
            "parts": [part.to_wire()],
        }
        if raw:
            header["raw"] = raw
        if self._send(self.signer.frames(header, b"", frames, (to.rt,))):
            return True
        log.warning("a direct answer could not go to its client: it is not connected")
        return False

    def hold_report(self, done: dict[str, Any]) -> bool:
        """Keep a command's report to send with others; True when they must go now
        (REPORT_AT_MOST of them)."""
        if not self.reports:
            self.reports_due = time.monotonic() + REPORT_WITHIN
        self.reports.append(done)
        return len(self.reports) >= REPORT_AT_MOST

    def output(self, to: DirectCommand, engine_id: int, name: str, text: str) -> None:
        """Live output of a direct command, to its client (from the output thread too);
        dropped if the client's socket never connects (as output to a gone client is)."""
        header = {"t": P.OUTPUT, "id": to.request, "engine": engine_id, "name": name}
        if not self._send(
            self.signer.frames(header, text.encode("utf-8", "replace"), (), (to.rt,))
        ):
            log.info("live output of a direct command dropped: its client is not connected")

    def _send(self, frames: list[Any]) -> bool:
        """Send to the client socket the frames start with, waiting up to ANSWER_WAIT for
        it to connect; False if it never does."""
        deadline = time.monotonic() + ANSWER_WAIT
        while True:
            try:
                with self._send_lock:
                    send_frames(self.sock, frames)
                return True
            except zmq.ZMQError as e:
                if e.errno != zmq.EHOSTUNREACH or time.monotonic() > deadline:
                    return False
            time.sleep(0.001)

    def close(self) -> None:
        self.sock.close(linger=0)
