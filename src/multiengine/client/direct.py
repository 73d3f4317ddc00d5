"""The client's side of the direct path: small commands straight to engines of its host.

::

    blocking call ──► sender (ROUTER) ──────────► engine's direct ROUTER (IPC)
                  ┆                                 │ runs it, between its other commands
                  └┄► out ──► controller            │ (then reports it to the controller)
                      (direct_job, only if the answer is late)
    fg (DEALER) ◄───────────────────────────────────┘ result, to rt (fg connects there too)

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

The engine answers to ``rt`` as the controller would; the controller answers only if
the engine is lost first (``EngineError``): the first answer counts, a later one is
dropped (``ClientCore._route``: an unknown request id). docs/protocol.md §6, "A direct
path on one host", has the rest.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import zmq
from zmq.utils.monitor import parse_monitor_message

from ..wire import direct
from ..wire import protocol as P
from ..wire.direct import ANNOUNCE_AFTER
from ..wire.message import Signer, pending, send_frames, unpack

if TYPE_CHECKING:
    from .core import ClientCore, _Request

__all__ = ["DirectPath", "ASK_AGAIN_AFTER"]

log = logging.getLogger("multiengine.client")

# an engine not known to take direct commands is asked about again after this long
ASK_AGAIN_AFTER = 2.0
# an engine connected to this long ago that cannot be reached has gone (its process ended)
CONNECT_GRACE = 1.0


class DirectPath:
    """The engines of this host this client sends to directly, and the socket it uses."""

    def __init__(self, core: ClientCore) -> None:
        self._core = core
        self._sender: zmq.Socket[Any] | None = None
        self._closed_events: zmq.Socket[Any] | None = None  # the sender's closed connections
        self._routes: dict[int, tuple[bytes, str, float]] = {}  # id -> (routing id, url, since)
        self._asked: dict[int, float] = {}  # engines without a direct socket: when asked
        self._heard: dict[int, str] = {}  # endpoints the controller listed, not connected yet
        self._rids = itertools.count(1)
        self._tag = uuid.uuid4().hex[:16]  # the last 16 digits of its job ids
        self._jobs = itertools.count(1)
        self.taken = 0  # calls that went direct (what a test looks at)
        # request id -> (direct_job, when it is due) of a direct command not yet
        # answered, nor announced to the controller (announce(); wire/direct.py says why)
        self.unannounced: dict[int, tuple[dict[str, Any], float]] = {}
        # Notices are signed when they are announced (most never are), under the core's
        # send lock, in sessions of their own: a notice signed after a request that a
        # thread signed earlier and sends later would, in one session, get that request
        # dropped by the controller's replay guard.
        self._notice_signer = Signer(core.info.key)

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

    def route(self, eid: int) -> bytes | None:
        """The routing id of engine ``eid``'s direct socket, learning it from the
        controller if need be; None when it has none (or not on this host)."""
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
        if url is None:
            self._asked[eid] = time.monotonic()
        else:
            self._connect(eid, url)
        return None  # (connected just now: this call goes through the controller, and
        # the connections are up by the next one)

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
            if type(eid) is not int or type(url) is not str or not url.startswith("ipc://"):
                continue
            if not os.path.exists(url[len("ipc://") :]):
                continue  # not on this host
            old = self._routes.get(eid)
            if old is not None and old[1] == url:
                continue
            if old is not None:
                self.forget(eid)
            self._heard[eid] = url

    def _connect(self, eid: int, url: str) -> None:
        core = self._core
        if self._sender is None:
            s: zmq.Socket[Any] = core.ctx.socket(zmq.ROUTER)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.ROUTER_MANDATORY, 1)  # an engine not (yet) reachable raises
            # An engine that died leaves its routing id in place (libzmq keeps the queue
            # for a reconnection to its endpoint, which never comes: a restarted engine
            # binds another one): its closed connection is heard here (send).
            self._closed_events = s.get_monitor_socket(zmq.EVENT_DISCONNECTED)
            self._sender = s
        rid = b"d%d" % next(self._rids)
        self._sender.setsockopt(zmq.CONNECT_ROUTING_ID, rid)
        self._sender.connect(url)
        for sock in core.answer_sockets():  # the engine answers to rt, as the controller
            sock.connect(url)
        self._routes[eid] = (rid, url, time.monotonic())
        self._asked.pop(eid, None)

    def forget(self, eid: int) -> None:
        """Engine ``eid`` is gone (or moved): disconnect from where it was."""
        known = self._routes.pop(eid, None)
        if known is None:
            return
        url = known[1]
        for sock in (self._sender, *self._core.answer_sockets()):
            if sock is None:
                continue
            try:
                sock.disconnect(url)
            except zmq.ZMQError:
                pass

    def send(
        self,
        req: _Request,
        eid: int,
        rid: bytes,
        header: dict[str, Any],
        content: Any,
        buffers: Sequence[Any],
    ) -> str | None:
        """Send ``header``'s command to engine ``eid`` directly, and tell the controller:
        the job id it goes under. Called under the core's send lock, with nothing
        outstanding; None (nothing sent) when the engine's socket cannot be reached."""
        core = self._core
        assert self._sender is not None
        if self._closed_events is not None and pending(self._closed_events):
            self._forget_closed()
            if eid not in self._routes:
                return None  # its engine has gone: through the controller, and ask again
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
            order["live"] = True  # the engine sends what it prints to rt, as output
        signer = core.signer
        try:
            send_frames(self._sender, signer.frames(order, content, buffers, (rid,)))
        except zmq.ZMQError as e:
            if e.errno != zmq.EHOSTUNREACH:
                raise
            known = self._routes.get(eid)
            if known is not None and time.monotonic() - known[2] > CONNECT_GRACE:
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
        self.unannounced[req.mid] = (notice, time.monotonic() + ANNOUNCE_AFTER)
        return job

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

    def _forget_closed(self) -> None:
        """Forget the engines whose connection to the sender has closed (their process
        ended: a restarted engine is asked for again)."""
        assert self._closed_events is not None
        gone: set[str] = set()
        while pending(self._closed_events):
            try:
                event = parse_monitor_message(self._closed_events.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                break
            gone.add(event["endpoint"].decode(errors="replace"))
        for eid, (_, url, _) in list(self._routes.items()):
            if url in gone:
                self.forget(eid)

    def close(self) -> None:
        if self._sender is not None:
            if self._closed_events is not None:
                self._sender.disable_monitor()
                self._closed_events.close(linger=0)
            self._sender.close(linger=0)
