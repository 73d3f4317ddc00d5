"""The engine's direct socket: small commands from clients of its host, answered to them.

A Unix stream socket listening beside the controller's endpoints (a 0700 directory),
offered at ``register`` (``direct``, a ``unix://`` address). A client connects, and
sends ``direct`` messages on its connection (wire/stream.py frames them); the engine
runs each command between the controller's commands, as one of them, answers the client
with a ``result`` on the same connection, then reports it to the controller on its
command socket: a quick success with others later (``direct_dones``, held here:
:meth:`DirectSocket.hold_report`), anything else at once (``direct_done``)
(docs/protocol.md §6, "A direct path on one host").

The engine's main thread waits on the controller's socket and on these in one
``poll()`` (:meth:`DirectSocket.wait`): it takes new connections, reads whole messages,
sends what an answer left queued, and closes a connection whose client has gone.

Every message is verified as on the controller's socket (its own replay guard: the
main thread reads these connections only); a forged, garbled or replayed one is dropped
and counted with the others (``Interpreter.dropped_messages``), and bytes that are not
a message stream close their connection (counted too).
"""

from __future__ import annotations

import logging
import os
import select
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..wire import direct, stream
from ..wire import protocol as P
from ..wire.direct import REPORT_AT_MOST, REPORT_WITHIN
from ..wire.message import Message, ReplayGuard, Signer, WireError

__all__ = ["DirectCommand", "DirectSocket", "ANSWER_WAIT", "OUTPUT_QUEUE_AT_MOST"]

log = logging.getLogger("multiengine.engine")

# How long an answer that the client's connection does not take at once (a large one)
# is sent here before the engine goes on; the rest goes while the engine waits for its
# next command (a client that stopped reading costs the engine no more than this).
ANSWER_WAIT = 1.0
# Live output waits as long at most, then stays queued; past this many bytes queued for
# one connection, more output for it is dropped (a client that stopped reading).
OUTPUT_WAIT = 0.25
OUTPUT_QUEUE_AT_MOST = 64 << 20
RECENT = 256  # direct commands answered lately, remembered for interrupts that come late
_IN = select.POLLIN
_OUT = select.POLLOUT
_GONE = select.POLLHUP | select.POLLERR | select.POLLNVAL


@dataclass(slots=True)
class DirectCommand:
    """Where a direct command's answer goes: the client's connection, its request, job."""

    conn: stream.Connection
    rt: bytes  # the client's fg socket: where the controller would send the answer
    request: Any
    job: Any
    cmd_id: str
    name: str = ""  # execute, apply, map or pull
    cid: bytes = b""  # its client (who owns the record), for the controller's books
    desc: str = ""  # what it runs, as the history shows it
    ename: str = ""  # the exception it raised, for the controller's history


class DirectSocket:
    """The listening socket clients of this host connect to, and their connections."""

    def __init__(
        self,
        signer: Signer,
        path: str,
        dropped: Callable[[str, WireError], None],
        command_fd: int | None,
    ) -> None:
        self.listener = stream.Listener(path)
        self.url = self.listener.url
        self.signer = signer
        self._dropped = dropped
        self.guard = ReplayGuard()  # read by the main thread only
        self.recent: deque[str] = deque(maxlen=RECENT)
        self.connections: dict[int, stream.Connection] = {}  # fd -> connection
        self.ready: deque[tuple[Message, DirectCommand]] = deque()  # read, not yet run
        # reports of quick direct commands, sent to the controller several at a time
        # (hold_report; the engine sends them: Engine._send_reports)
        self.reports: list[dict[str, Any]] = []
        self.reports_due = 0.0  # (monotonic) when the first of them must go
        self._poll = select.poll()
        self._poll.register(self.listener.fd, _IN)
        self._writing: set[int] = set()  # connections polled for POLLOUT too
        # the command connection's descriptor (engine/link.py), polled beside these, and
        # what it said at the last wait (0: nothing)
        self._command_fd: int | None = None
        self._command_events = 0  # what it is polled for
        self.command_woke = 0
        self.watch_command(command_fd)

    @classmethod
    def open(
        cls,
        signer: Signer,
        controller_url: str,
        dropped: Callable[[str, WireError], None],
        command_fd: int | None,
    ) -> DirectSocket | None:
        """A direct socket in the directory of the controller's IPC endpoint (a Unix
        stream socket, not ZeroMQ: wire/stream.py); None when the setting
        is off, the controller is not reached over IPC, or the bind fails."""
        if not direct.enabled():
            return None
        url = direct.endpoint_beside(controller_url, f"{os.getpid()}-{uuid.uuid4().hex[:8]}-d")
        path = None if url is None else stream.path_of(url)
        if path is None:
            return None
        try:
            return cls(signer, path, dropped, command_fd)
        except OSError as e:
            log.info("no direct socket (%s): clients go through the controller", e)
            return None

    def knocking(self) -> bool:
        """Whether a client has connected (or is connecting) and is not yet read."""
        return bool(self.connections) or self.listener.knocking()

    def watch_command(self, fd: int | None) -> None:
        """Poll ``fd`` (the command connection's; None: none now) beside the clients."""
        if self._command_fd is not None:
            try:
                self._poll.unregister(self._command_fd)
            except KeyError:
                pass
        self._command_fd = fd
        self._command_events = _IN
        if fd is not None:
            self._poll.register(fd, _IN)

    def wait(self, timeout_ms: float, command_out: bool = False) -> bool:
        """Wait up to ``timeout_ms`` for the command connection or a client: take new
        connections, read what came (commands to :attr:`ready`), send what waits to
        go; False when nothing happened. What the command connection said is left in
        :attr:`command_woke` for the caller (``command_out``: it has something to
        send, so it is polled for POLLOUT too)."""
        self._want_writes()
        fd = self._command_fd
        if fd is not None and command_out != (self._command_events != _IN):
            self._command_events = _IN | _OUT if command_out else _IN
            self._poll.modify(fd, self._command_events)
        self.command_woke = 0
        events = self._poll.poll(timeout_ms)
        for fd, ev in events:
            if fd == self._command_fd:
                self.command_woke = ev  # (the caller reads the connection itself)
                continue
            if fd == self.listener.fd:
                self._accept()
                continue
            conn = self.connections.get(fd)
            if conn is None:
                continue
            if ev & _OUT:
                conn.flush()
            if ev & (_IN | _GONE):
                self._read(conn)
        return bool(events)

    def _want_writes(self) -> None:
        """Poll for POLLOUT exactly the connections with something queued."""
        if not self._writing and not any(c.wants_write for c in self.connections.values()):
            return
        for fd, conn in self.connections.items():
            want = conn.wants_write
            if want != (fd in self._writing):
                self._poll.modify(fd, _IN | _OUT if want else _IN)
                if want:
                    self._writing.add(fd)
                else:
                    self._writing.discard(fd)

    def _accept(self) -> None:
        while (conn := self.listener.accept()) is not None:
            self.connections[conn.fd] = conn
            self._poll.register(conn.fd, _IN)

    def _read(self, conn: stream.Connection) -> None:
        try:
            batches = conn.read()
        except stream.Closed:
            self._drop_connection(conn)
            return
        except (stream.StreamError, OSError) as e:
            self._drop_connection(conn)
            self._dropped(f"a message on the {P.DIRECT_CHANNEL} channel", WireError(str(e)))
            return
        for frames in batches:
            got = self._parse(frames, conn)
            if got is not None:
                self.ready.append(got)

    def _drop_connection(self, conn: stream.Connection) -> None:
        self.connections.pop(conn.fd, None)
        self._writing.discard(conn.fd)
        try:
            self._poll.unregister(conn.fd)
        except KeyError:
            pass
        conn.close()

    def _parse(
        self, frames: list[Any], conn: stream.Connection
    ) -> tuple[Message, DirectCommand] | None:
        """A direct command, as a ``cmd`` message and where to answer it; None when
        what came is dropped."""
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
            conn,
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
        """Send the ``result`` to the client; False if its connection has closed."""
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
        if to.conn.send(self.signer.frames(header, b"", frames), ANSWER_WAIT):
            return True
        log.warning("a direct answer could not go to its client: its connection has closed")
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
        dropped when its connection has closed, or holds OUTPUT_QUEUE_AT_MOST unsent."""
        if to.conn.queued > OUTPUT_QUEUE_AT_MOST:
            log.info("live output of a direct command dropped: its client does not read")
            return
        header = {"t": P.OUTPUT, "id": to.request, "engine": engine_id, "name": name}
        frames = self.signer.frames(header, text.encode("utf-8", "replace"))
        if not to.conn.send(frames, OUTPUT_WAIT):
            log.info("live output of a direct command dropped: its client has gone")

    def close(self) -> None:
        for conn in list(self.connections.values()):
            conn.close()
        self.connections.clear()
        self.listener.close()
