"""The client's side of the direct path: small commands straight to engines of its host.

::

    blocking call ──► a Unix stream connection ──► engine's direct socket (unix://)
                  ┆   (one per engine)  ◄────────┘ runs it, between its other commands,
                  ┆                                answers on the same connection (then
                  └┄► out ──► controller           reports it to the controller)
                      (direct_job, only if the answer is late)

A call goes direct when all of these hold (:meth:`DirectPath.send`), else through the
controller exactly as before:

* it is a blocking ``submit`` of ``execute``, ``apply``, ``map`` or ``pull``
  (``P.DIRECT_COMMANDS``), or an executor's call (``ClientCore.request_direct``: its
  ``result`` is read by the thread that asks for it, else by the I/O thread), to one
  engine, with small arguments (no pieces, no shared memory);
* that engine offers a direct socket (``register`` ``direct``) on this client's host
  (the client reaches the controller over IPC, so its endpoints are on this host);
* this client has **nothing outstanding**: no request unanswered, and no non-blocking
  call whose result it has not received. So a direct command never overtakes an
  earlier command of this client, and a later one, through the controller, waits in
  the controller behind it (anything the client sends the controller while a direct
  command is unanswered goes after that command's ``direct_job``, on the *out* socket).

The controller hears of a direct command only when its answer is ANNOUNCE_AFTER late
(``direct_job``, signed when it is announced: :meth:`DirectPath.announce`); its
engine reports every one afterwards (wire/direct.py says why).

The answer and the command's live output come back on the connection (wire/stream.py
frames them); while a direct command is unanswered, the thread that reads the *fg*
socket waits on that socket and on the connections in one ``poll()``
(:meth:`DirectPath.wait`, from ``ClientCore._read_until``). The controller answers
only if the engine is lost first (``EngineError``): the first answer counts, a later
one is dropped (``ClientCore._route``: an unknown request id). A connection that closes
is an engine that has gone: it is forgotten, and the controller is asked again where
that engine is. docs/protocol.md §6, "A direct path on one host", has the rest.
"""

from __future__ import annotations

import itertools
import logging
import os
import select
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import zmq

from ..wire import direct, stream
from ..wire import protocol as P
from ..wire.direct import ANNOUNCE_AFTER
from ..wire.message import Signer, send_frames, unpack

if TYPE_CHECKING:
    from .core import ClientCore, _Request

__all__ = ["DirectPath", "ASK_AGAIN_AFTER"]

log = logging.getLogger("multiengine.client")

# an engine not known to take direct commands is asked about again after this long
ASK_AGAIN_AFTER = 2.0
_IN = select.POLLIN
_OUT = select.POLLOUT


class DirectPath:
    """The engines of this host this client sends to directly, and its connections."""

    def __init__(self, core: ClientCore) -> None:
        self._core = core
        self._routes: dict[int, tuple[stream.Connection, str]] = {}  # id -> (connection, url)
        self._engine_of: dict[int, int] = {}  # a connection's fd -> its engine id
        self._asked: dict[int, float] = {}  # engines without a direct socket: when asked
        self._heard: dict[int, str] = {}  # endpoints the controller listed, not connected yet
        self._tag = uuid.uuid4().hex[:16]  # the last 16 digits of its job ids
        self._jobs = itertools.count(1)
        self.taken = 0  # calls that went direct (what a test looks at)
        # request ids of the direct commands sent and not answered (the fg reader polls
        # the connections while there are any: ClientCore._read_until)
        self.open_calls: set[int] = set()
        # request id -> (direct_job, when it is due) of a direct command not yet
        # answered, nor announced to the controller (announce(); wire/direct.py says why)
        self.unannounced: dict[int, tuple[dict[str, Any], float]] = {}
        # Notices are signed when they are announced (most never are), under the core's
        # send lock, in sessions of their own: a notice signed after a request that a
        # thread signed earlier and sends later would, in one session, get that request
        # dropped by the controller's replay guard.
        self._notice_signer = Signer(core.info.key)
        # the fg reader's poll of the fg socket's ZMQ_FD and the connections, made again
        # when they change (_changes counts the changes; the reader keeps its own count)
        self._changes = 0
        self._poll: tuple[int, Any] | None = None
        self._fg_fd = int(core.answer_socket().getsockopt(zmq.FD))

    @staticmethod
    def possible(core: ClientCore) -> bool:
        """Whether this client can use the direct path at all (the setting is on, and
        the controller is on this host: reached over IPC)."""
        return core.url.startswith("ipc://") and direct.enabled()

    def target(self, header: dict[str, Any], pieces: Sequence[Any], blocking: bool = True) -> Any:
        """The one engine id a request may go to directly, else None (cheap checks).
        ``blocking``: only a blocking ``submit`` (a non-blocking one is answered with
        an ``ack`` and fetched later; the executor asks with False: it takes a
        ``result`` as it comes)."""
        if (
            pieces
            or header["t"] != P.SUBMIT
            or header.get("cmd") not in P.DIRECT_COMMANDS
            or (blocking and header.get("block") is not True)
            or "xfer" in header
            or "fetch_id" in header
            or "progress" in header
        ):
            return None
        targets = header.get("targets")
        if type(targets) is list and len(targets) == 1:
            targets = targets[0]
        if type(targets) is not int:
            return None
        parts = header.get("parts")
        if parts is not None and (type(parts) is not list or len(parts) != 1):
            return None
        return targets

    def route(self, eid: int) -> stream.Connection | None:
        """The connection to engine ``eid``'s direct socket, learning where it is from
        the controller and connecting if need be; None when it has none (or not on
        this host), or cannot be reached."""
        known = self._routes.get(eid)
        if known is not None:
            return known[0]
        url = self._heard.pop(eid, None)
        if url is None:
            asked = self._asked.get(eid)
            if asked is not None and time.monotonic() - asked < ASK_AGAIN_AFTER:
                return None
            self._learn()
            url = self._heard.pop(eid, None)
        conn = None if url is None else self._connect(eid, url)
        if conn is None:
            self._asked[eid] = time.monotonic()
        return conn

    def _learn(self) -> None:
        """Ask the controller where its engines take direct commands (each is connected
        to when first used)."""
        core = self._core
        try:
            msg = core.wait(core.request({"t": P.DIRECT_ADDRS}), 10.0)
        except (TimeoutError, zmq.ZMQError):
            return
        if msg.type != P.VALUE:
            return
        for eid, url in unpack(msg.content):
            if type(eid) is not int or type(url) is not str:
                continue
            path = stream.path_of(url)
            if path is None or not os.path.exists(path):
                continue  # not on this host
            old = self._routes.get(eid)
            if old is not None and old[1] == url:
                continue
            if old is not None:
                self.forget(eid)
            self._heard[eid] = url

    def _connect(self, eid: int, url: str) -> stream.Connection | None:
        try:
            conn = stream.connect(url)
        except OSError as e:
            log.info("engine %d's direct socket cannot be reached (%s)", eid, e)
            return None
        self._routes[eid] = (conn, url)
        self._engine_of[conn.fd] = eid
        self._asked.pop(eid, None)
        self._changes += 1
        return conn

    def forget(self, eid: int) -> None:
        """Engine ``eid`` is gone (or moved): close the connection to where it was."""
        known = self._routes.pop(eid, None)
        if known is None:
            return
        conn = known[0]
        self._engine_of.pop(conn.fd, None)
        self._changes += 1
        conn.close()

    def send(
        self,
        req: _Request,
        eid: int,
        conn: stream.Connection,
        header: dict[str, Any],
        content: Any,
        buffers: Sequence[Any],
    ) -> str | None:
        """Send ``header``'s command to engine ``eid`` directly, and tell the controller:
        the job id it goes under. Called under the core's send lock, with nothing
        outstanding; None (nothing sent) when the engine's connection has closed."""
        core = self._core
        if header.get("parts") is not None:  # one part: its content, then its buffers
            content, buffers = buffers[0], buffers[1:]
        cmd_id = f"{core.identity[2:14].decode()}-{req.mid}"
        job = P.job_id(next(self._jobs), self._tag)
        cid = header.get("cid", core.identity)
        desc = header.get("desc", header["cmd"])
        order: dict[str, Any] = {
            "t": P.DIRECT,
            "id": req.mid,
            "rt": header["rt"],
            "cmd": cmd_id,
            "name": header["cmd"],
            "job": job,
            "cid": cid,  # (for the engine's report to the controller)
            "desc": desc,
        }
        if buffers:
            order["raw"] = True
        if header.get("live"):
            order["live"] = True  # the engine sends what it prints, as output
        if not conn.send(core.signer.frames(order, content, buffers)):
            self.forget(eid)  # its process has ended: ask again next time
            return None
        notice = {
            "t": P.DIRECT_JOB,
            "id": req.mid,
            "rt": header["rt"],
            "cid": cid,
            "cmd": cmd_id,
            "name": header["cmd"],
            "engine": eid,
            "job": job,
            "desc": desc,
            "url": self._routes[eid][1],
        }
        self.taken += 1
        self.open_calls.add(req.mid)
        self.unannounced[req.mid] = (notice, time.monotonic() + ANNOUNCE_AFTER)
        return job

    def wait(self, timeout: float) -> list[list[Any]]:
        """Wait up to ``timeout`` seconds for the fg socket or a connection (by the fg
        reader only): the messages the connections brought (frame lists), or none when
        the fg socket is what woke it (the caller reads it: its ZMQ_FD only says that
        something changed). Sends what waits to go; forgets an engine whose connection
        closed."""
        # (a copy: a thread that sends may connect to another engine meanwhile)
        routes = list(self._routes.values())
        writing = any(c.wants_write for c, _ in routes)
        if self._poll is None or self._poll[0] != self._changes or writing:
            p = select.poll()
            p.register(self._fg_fd, _IN)
            for conn, _ in routes:
                p.register(conn.fd, _IN | _OUT if conn.wants_write else _IN)
            self._poll = (-1 if writing else self._changes, p)
        got: list[list[Any]] = []
        for fd, ev in self._poll[1].poll(timeout * 1000):
            eid = self._engine_of.get(fd)
            known = None if eid is None else self._routes.get(eid)
            if eid is None or known is None:
                continue
            conn = known[0]
            if ev & _OUT:
                conn.flush()
            if ev & ~_OUT:
                try:
                    got += conn.read()
                except stream.Closed:
                    log.info("engine %d's direct connection closed: it has gone", eid)
                    self.forget(eid)
                except (stream.StreamError, OSError) as e:
                    log.warning("engine %d's direct connection: %s", eid, e)
                    self.forget(eid)
        return got

    def announce_due(self) -> float | None:
        """Seconds until the first direct command still unanswered must be announced
        (0: now), or None when there is none."""
        if not self.unannounced:
            return None
        waiting = list(self.unannounced.values())  # (a copy: other threads change it)
        if not waiting:
            return None
        return max(0.0, waiting[0][1] - time.monotonic())  # (the first sent is first due)

    def announce(self) -> None:
        """Tell the controller of the direct commands sent and not yet answered
        (``direct_job``): before anything else this client sends it, and when an answer
        is ANNOUNCE_AFTER late. Called under the core's send lock."""
        notices = self.unannounced
        for mid in list(notices):  # (in the order they were sent)
            entry = notices.pop(mid, None)
            if entry is not None:  # (else answered meanwhile: the engine reports it)
                send_frames(self._core.out_socket(), self._notice_signer.frames(entry[0]))

    def close(self) -> None:
        for eid in list(self._routes):
            self.forget(eid)
