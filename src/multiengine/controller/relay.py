"""The controller: its sockets, its loop, and what it does with each message.

::

    clients (DEALER) ──► client ROUTER ─┐                ┌─► engine ROUTER ──► engines (DEALER,
                                        │   Controller   │                     main thread)
                        answers  ◄──────┤ jobs, results  ├◄── replies
                                        │  ┌──────────┐  │
                                        │  │ Dispatch │◄─┼── TaskScheduler, Transfers
                                        │  └──────────┘  │
                                        └─ heartbeat ROUTER ◄─► engines' heartbeat thread

One thread runs a ``zmq.Poller`` loop that drains each ready socket (measured in
shared/spec/limits.md to cost half the CPU per message of zmq.asyncio). The hot path
parses the small msgpack header, checks the signature and forwards the frames; it
never unpickles what clients and engines send each other. Each channel has a table
from message type to handler.

The :class:`Controller` is the hub: it owns the sockets (behind an
:class:`~.dispatch.Outbox`), turns MultiEngine calls into jobs (one command per target,
queued in ``Dispatch``), collects their answers, and handles engines joining and
leaving. The task scheduler and the large-transfer relay are satellites that see only
``Dispatch``; the hub hands them what is theirs.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import zmq

from ..cluster.paths import pid_alive
from ..wire import curve
from ..wire import protocol as P
from ..wire.message import Message, Signer, WireError, pack
from ..wire.protocol import TaskFlags, Xfer
from .dispatch import Dispatch
from .endpoints import bind
from .engines import Command, EngineState
from .jobs import Job, JobIds, Part, error_part
from .results import ResultDesk
from .scheduler import TaskScheduler
from .targets import BadTargets, per_target_payloads, resolve_targets
from .transfers import Transfers

__all__ = ["Controller", "SocketOutbox"]

log = logging.getLogger("multiengine.controller")

DRAIN = 64  # messages taken from one socket per wakeup before looking at the others
# Commands that first drop what is queued on the engine (the seed's reset and kill).
CLEARS_FIRST = frozenset({"reset", "kill"})

ClientHandler = Callable[[bytes, Message], None]
EngineHandler = Callable[[bytes, "EngineState | None", Message], None]


class SocketOutbox:
    """The :class:`~.dispatch.Outbox` of a running controller: signs and sends."""

    def __init__(
        self,
        signer: Signer,
        clients: zmq.Socket[Any],
        engines: zmq.Socket[Any],
        heartbeat: zmq.Socket[Any],
    ) -> None:
        self._frames = signer.frames
        self._clients = clients
        self._engines = engines
        self._heartbeat = heartbeat

    def to_client(
        self, client: bytes, header: dict[str, Any], content: Any = b"", buffers: Any = ()
    ) -> None:
        frames = self._frames(header, content, buffers, (client,))
        self._clients.send_multipart(frames, copy=False)

    def to_engine(
        self, ident: bytes, header: dict[str, Any], content: Any = b"", buffers: Any = ()
    ) -> None:
        self._engines.send_multipart(self._frames(header, content, buffers, (ident,)), copy=False)

    def to_heartbeat(self, ident: bytes, header: dict[str, Any]) -> None:
        self._heartbeat.send_multipart(self._frames(header, b"", (), (ident,)))


class Controller:
    def __init__(
        self,
        key: bytes,
        ip: str = "127.0.0.1",
        ports: tuple[int, int, int] | None = None,
        heartbeat_period: float = 0.5,
        heartbeat_timeout: float = 3.0,
        context: zmq.Context[Any] | None = None,
        parent_pid: int | None = None,
        task_failure_penalty: float = 1.0,
        task_timeout: float = 30.0,
        curve_secret: bytes | None = None,
    ) -> None:
        self.parent_pid = parent_pid
        self.curve_secret = curve_secret
        self.signer = Signer(key)
        self.ctx = context or zmq.Context.instance()
        self.hb_period = heartbeat_period
        self.hb_timeout = heartbeat_timeout
        self.clients = self._router()
        self.engine_sock = self._router()
        self.hb = self._router()
        named = {"client": self.clients, "engine": self.engine_sock, "heartbeat": self.hb}
        self.ports, self.ipc = bind(named, ip, ports)
        self.outbox = SocketOutbox(self.signer, self.clients, self.engine_sock, self.hb)
        self.dispatch = Dispatch(self.outbox)
        self.job_ids = JobIds()
        self.desk = ResultDesk(self.dispatch)
        self.scheduler = TaskScheduler(self.dispatch, task_failure_penalty, task_timeout)
        self.transfers = Transfers(self.dispatch)
        self._running = True
        self._exit_at: float | None = None
        self.started = time.time()
        self.dropped = 0  # messages that failed verification
        self.client_handlers: dict[str, ClientHandler] = {
            P.SUBMIT: self._on_submit,
            P.CHUNK: self.transfers.client_piece,
            P.FETCH: self._on_fetch,
            P.PING: self._on_ping,
            P.GET_IDS: lambda c, m: self.dispatch.reply_value(c, m.header.get("id"), self.ids()),
            P.CONNECT: self._on_connect,
            P.FLUSH: self._on_flush,
            P.STATUS: lambda c, m: self.dispatch.reply_value(c, m.header.get("id"), self.status()),
            P.INTERRUPT: self._on_interrupt,
            P.WAIT_STARTED: self._on_wait_started,
            **self.scheduler.handlers,
        }
        self.engine_handlers: dict[str, EngineHandler] = {
            P.REPLY: self._on_reply,
            P.OUTPUT: self._on_output,
            P.CHUNK: self._on_engine_piece,
            P.REGISTER: self._on_register,
            P.BYE: self._on_bye,
        }

    def _router(self) -> zmq.Socket[Any]:
        s = self.ctx.socket(zmq.ROUTER)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.ROUTER_HANDOVER, 1)  # an engine reconnecting keeps its identity
        s.setsockopt(zmq.SNDHWM, 0)
        s.setsockopt(zmq.RCVHWM, 0)
        if self.curve_secret:
            curve.make_server(s, self.curve_secret)
        return s

    @property
    def engines(self) -> dict[int, EngineState]:
        return self.dispatch.engines

    def ids(self) -> list[int]:
        return sorted(self.dispatch.engines)

    # ------------------------------------------------------------------ the loop
    def run(self) -> None:
        poller = zmq.Poller()
        readers = {
            self.clients: ("client", self._on_client),
            self.engine_sock: ("engine", self._on_engine),
            self.hb: ("heartbeat", self._on_heartbeat),
        }
        for s in readers:
            poller.register(s, zmq.POLLIN)
        next_sweep = time.monotonic() + self.hb_period
        while self._running:
            wake = self.scheduler.next_wakeup()
            until = next_sweep if wake is None else min(next_sweep, wake)
            for sock, _ in poller.poll(int(max(0.0, until - time.monotonic()) * 1000)):
                channel, handle = readers[sock]
                for _ in range(DRAIN):
                    try:
                        frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    try:
                        msg = self.signer.parse(frames)
                    except WireError as e:
                        self.dropped += 1
                        log.warning("dropped a message on the %s channel: %s", channel, e)
                        continue
                    try:
                        handle(msg)
                    except Exception:
                        log.exception("error handling %r message; the controller goes on", msg.type)
            self.scheduler.flush()
            now = time.monotonic()
            if wake is not None and now >= wake:
                self.scheduler.schedule()
            if now >= next_sweep:
                self._sweep(now)
                next_sweep = now + self.hb_period
            if self._exit_at is not None and now >= self._exit_at:
                self._running = False
        log.info("controller stopping")

    def stop(self) -> None:
        """Leave the loop (from a signal handler or another thread)."""
        self._running = False

    def close(self) -> None:
        for s in (self.clients, self.engine_sock, self.hb):
            s.close(linger=0)
        for url in self.ipc.values():
            try:
                os.unlink(url[len("ipc://") :])
            except OSError:
                pass

    # ------------------------------------------------------------------ clients
    def _on_client(self, msg: Message) -> None:
        client = _client_of(msg)
        handler = self.client_handlers.get(msg.type)
        if handler is None:
            log.warning("unknown client message type %r", msg.type)
            evalue = f"unknown message type {msg.type!r}"
            self.dispatch.reply_error(client, msg.header.get("id"), "ProtocolError", evalue)
            return
        handler(client, msg)

    def _on_connect(self, client: bytes, msg: Message) -> None:
        value = {"engines": self.ids(), "pid": os.getpid()}
        self.dispatch.reply_value(client, msg.header.get("id"), value)

    def _on_ping(self, client: bytes, msg: Message) -> None:
        self.dispatch.to_client(client, {"t": P.PONG, "id": msg.header.get("id")})

    def _on_fetch(self, client: bytes, msg: Message) -> None:
        h = msg.header
        self.desk.fetch(client, h.get("id"), h.get("job"), bool(h.get("block", True)))

    def _on_flush(self, client: bytes, msg: Message) -> None:
        self.desk.flush(_owner_of(msg, client))
        self.dispatch.reply_value(client, msg.header.get("id"), None)

    def _on_wait_started(self, client: bytes, msg: Message) -> None:
        h = msg.header
        if h.get("tid") is not None:
            self.scheduler.wait_started(client, h.get("id"), h["tid"])
        else:
            self.desk.wait_started(client, h.get("id"), h.get("job"))

    def _on_interrupt(self, client: bytes, msg: Message) -> None:
        """Interrupt what runs on some engines (MultiEngine commands or tasks)."""
        h = msg.header
        try:
            targets = resolve_targets(h.get("targets", "all"), self.dispatch.engines)
        except BadTargets as e:
            self.dispatch.reply_error(client, h.get("id"), e.ename, e.evalue)
            return
        for eid in targets:
            engine = self.dispatch.engines[eid]
            if engine.current is not None:
                self.dispatch.interrupt(engine, engine.current, P.WHY_INTERRUPT)
        self.dispatch.reply_value(client, h.get("id"), [None] * len(targets))

    def _on_submit(self, client: bytes, msg: Message) -> None:
        """A MultiEngine call: one job, one command per target in each target's queue."""
        h = msg.header
        try:
            targets = resolve_targets(h.get("targets", "all"), self.dispatch.engines)
        except BadTargets as e:
            self.dispatch.reply_error(client, h.get("id"), e.ename, e.evalue)
            return
        name = str(h["cmd"])
        block = bool(h.get("block", True))
        job = Job(self.job_ids.next(), client, h.get("id"), name, list(targets), block)
        job.owner = _owner_of(msg, client)
        job.kill_controller = bool(h.get("controller")) and name == "kill"
        if not block:
            self.desk.add(job)
            self.dispatch.to_client(client, {"t": P.ACK, "id": h.get("id"), "job": job.job_id})
        if not targets:
            self._complete(job)
            return
        engines = self.dispatch.engines
        if name in P.CONTROLLER_COMMANDS:
            for i, eid in enumerate(targets):
                self._answer_locally(job, i, engines[eid])
            return
        splits = h.get("parts")
        try:
            per_target = per_target_payloads(msg.content, msg.buffers, splits, len(targets))
            xfers = [Xfer.from_wire(x) for x in h["xfer"]] if h.get("xfer") else None
        except (BadTargets, P.ProtocolViolation) as e:
            self._fail_job(job, "ProtocolError", str(e))
            return
        if name in CLEARS_FIRST:  # once per engine, so reset(targets=[0, 0]) runs twice
            for eid in set(targets):
                self._clear_queue(engines[eid])
        desc = str(h.get("desc") or name)
        live = bool(h.get("live"))
        by_part: dict[int, list[Command]] = {}
        for i, eid in enumerate(targets):
            content, buffers = per_target[i]
            cmd_id = self.dispatch.new_cmd_id()
            cmd = Command(job, i, name, desc, content, buffers, cmd_id, live=live)
            if xfers:
                p = i if splits is not None else 0
                cmd.xfer = xfers[p]
                by_part.setdefault(p, []).append(cmd)
            engines[eid].queue.append(cmd)
        if xfers:
            self.transfers.expect(client, h.get("id"), by_part, sum(x.n for x in xfers))
        for eid in set(targets):
            self.dispatch.dispatch(engines[eid])

    def _fail_job(self, job: Job, ename: str, evalue: str) -> None:
        for i in range(len(job.targets)):
            if job.set_part(i, error_part(ename, evalue, job.targets[i])):
                self._complete(job)

    def _answer_locally(self, job: Job, index: int, engine: EngineState) -> None:
        if job.method == "queue_status":
            pending = engine.current.desc if engine.current else None
            value: Any = [engine.id, {"queue": engine.queued_descs(), "pending": pending}]
        else:  # clear_queue
            self._clear_queue(engine)
            value = None
        if job.set_part(index, Part(engine.id, P.STATUS_OK, P.MSGPACK, [pack(value)])):
            self._complete(job)

    def _clear_queue(self, engine: EngineState) -> None:
        """Drop every queued (not running) command on ``engine`` with QueueCleared."""
        queued, engine.queue = engine.queue, type(engine.queue)()
        for cmd in queued:
            if cmd.task is not None:
                self.scheduler.requeue(cmd.task)  # a task is not cleared: it goes back to wait
                continue
            assert cmd.job is not None
            if cmd.job.set_part(cmd.index, error_part("QueueCleared", cmd.desc, engine.id)):
                self._complete(cmd.job)

    def _complete(self, job: Job) -> None:
        self.desk.complete(job)
        if job.kill_controller:
            log.info("kill(controller=True): stopping after the reply")
            self._exit_at = time.monotonic() + 0.2

    # ------------------------------------------------------------------ engines
    def _on_engine(self, msg: Message) -> None:
        ident = msg.idents[0]
        engine = self.dispatch.by_ident.get(ident)
        if engine is not None:
            engine.last_seen = time.monotonic()
        handler = self.engine_handlers.get(msg.type)
        if handler is None:
            log.warning("unknown engine message type %r", msg.type)
            return
        handler(ident, engine, msg)

    def _on_register(self, ident: bytes, engine: EngineState | None, msg: Message) -> None:
        h = msg.header
        if engine is None:
            desired = h.get("desired_id")
            wanted = desired if isinstance(desired, int) and not isinstance(desired, bool) else None
            engine = self.dispatch.add_engine(
                ident, int(h.get("pid", -1)), str(h.get("host", "?")), wanted
            )
            log.info("Engine Info: %d %s %d", engine.id, engine.host, engine.pid)
        reply = {
            "t": P.REGISTERED,
            "id": engine.id,
            "hb_period": self.hb_period,
            "hb_timeout": self.hb_timeout,
        }
        self.outbox.to_engine(ident, reply)
        self.scheduler.engine_has_room(engine)

    def _on_bye(self, ident: bytes, engine: EngineState | None, msg: Message) -> None:
        if engine is not None:
            self._unregister(engine, "the engine shut down")

    def _on_output(self, ident: bytes, engine: EngineState | None, msg: Message) -> None:
        """Live stdout/stderr: on to the client that asked for it."""
        cmd = engine.current if engine is not None else None
        if engine is None or cmd is None or cmd.job is None or cmd.cmd_id != msg.header.get("cmd"):
            return
        header = {
            "t": P.OUTPUT,
            "id": cmd.job.msg_id,
            "engine": engine.id,
            "name": msg.header.get("name"),
        }
        self.dispatch.to_client(cmd.job.client, header, msg.content)

    def _on_reply(self, ident: bytes, engine: EngineState | None, msg: Message) -> None:
        if engine is None:
            log.warning("reply from an unregistered engine dropped")
            return
        cmd = engine.current
        h = msg.header
        if cmd is None or cmd.cmd_id != h.get("cmd"):
            log.warning(
                "engine %d answered command %r, which it was not running", engine.id, h.get("cmd")
            )
            return
        if h.get("xfer"):  # the buffers follow in pieces
            self.transfers.reply_announced(engine, cmd, h, msg.content)
            return
        part = Part(
            engine.id,
            str(h.get("status", P.STATUS_OK)),
            str(h.get("enc", P.PICKLE)),
            [msg.content, *msg.buffers],
            flags=TaskFlags.from_wire(h["task"]) if h.get("task") else None,
            elapsed=h.get("elapsed"),
        )
        self._finish_reply(engine, cmd, part)

    def _on_engine_piece(self, ident: bytes, engine: EngineState | None, msg: Message) -> None:
        if engine is None or engine.incoming is None or not msg.buffers:
            return
        cmd = engine.current
        part = self.transfers.engine_piece(engine, msg.buffers[0])
        if part is not None and cmd is not None:
            self._finish_reply(engine, cmd, part)

    def _finish_reply(self, engine: EngineState, cmd: Command, part: Part) -> None:
        """``engine`` answered ``cmd``: record it, and send the engine what comes next."""
        self.dispatch.advance(engine)
        if cmd.detached:  # taken back before it ran; the task went elsewhere
            self.dispatch.dispatch(engine)
            self.scheduler.engine_has_room(engine)
            return
        failed = part.status != P.STATUS_OK
        if cmd.task is not None:  # a task's failure clears nothing
            self.scheduler.on_reply(engine, cmd.task, part)
            self.dispatch.dispatch(engine)
            self.scheduler.engine_has_room(engine, failed)
            return
        assert cmd.job is not None
        if failed:
            self._clear_queue(engine)  # later commands usually depend on the failed one
        if cmd.job.set_part(cmd.index, part):
            self._complete(cmd.job)
        if cmd.name == "kill" and not failed:
            self._unregister(engine, "killed")
            return
        self.dispatch.dispatch(engine)
        if engine.idle:
            self.scheduler.engine_has_room(engine)

    def _unregister(self, engine: EngineState, why: str) -> None:
        """Forget an engine; what ran or waited on it fails or goes back to wait."""
        if not self.dispatch.remove_engine(engine):
            return
        log.info("engine %d unregistered: %s", engine.id, why)
        current = engine.current
        if current is not None and current.job is not None:
            if engine.incoming is not None and engine.incoming.stream:
                current.job.streamed = False  # the client gets the error as a whole result
        unstarted = [*engine.ahead, *engine.queue]
        engine.current = None
        engine.incoming = None
        engine.ahead.clear()
        engine.queue.clear()
        self.scheduler.on_engine_lost(engine.id, why, current, unstarted)
        for cmd in [current, *unstarted]:
            if cmd is None or cmd.job is None:
                continue
            lost = f"engine {engine.id} was lost ({why}) with {cmd.desc} on it"
            if cmd.job.set_part(cmd.index, error_part("EngineError", lost, engine.id)):
                self._complete(cmd.job)
        self.scheduler.schedule()

    def _on_heartbeat(self, msg: Message) -> None:
        ident = msg.idents[0]
        engine = self.dispatch.by_ident.get(ident)
        if engine is None:
            if msg.type == P.PING:
                self.outbox.to_heartbeat(ident, {"t": P.UNKNOWN})
            return
        engine.last_seen = time.monotonic()
        if msg.type == P.PING:
            self.outbox.to_heartbeat(ident, {"t": P.PONG})
        elif msg.type == P.REVOKED:
            self.scheduler.on_revoked(engine, msg.header.get("cmd"), bool(msg.header.get("ok")))
        else:
            log.warning("unknown heartbeat message type %r", msg.type)

    def _sweep(self, now: float) -> None:
        parent = self.parent_pid
        if parent and os.getppid() != parent and not pid_alive(parent):
            log.warning("the process that started this controller (%d) has gone: stopping", parent)
            self._running = False
        limit = now - self.hb_timeout
        for engine in [e for e in self.dispatch.engines.values() if e.last_seen < limit]:
            self._unregister(engine, f"no heartbeat for {self.hb_timeout:g} s")
        self.scheduler.sweep(now)

    # ------------------------------------------------------------------ status
    def status(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "uptime": time.time() - self.started,
            "engines": [
                {
                    "id": e.id,
                    "pid": e.pid,
                    "host": e.host,
                    "queue": len(e.queue),
                    "running": e.current.desc if e.current else None,
                }
                for e in sorted(self.dispatch.engines.values(), key=lambda e: e.id)
            ],
            "pending_results": len(self.desk.store),
            "pending_bytes": self.desk.store.nbytes,
            "dropped_messages": self.dropped,
            "tasks": self.scheduler.status(False),
        }


def _client_of(msg: Message) -> bytes:
    """Where answers to a client message go: the socket it names in ``rt``, else the sender."""
    rt = msg.header.get("rt")
    return rt if isinstance(rt, bytes) else msg.idents[0]


def _owner_of(msg: Message, client: bytes) -> bytes:
    """Which client a stored result belongs to (for ``flush``): ``cid``, else ``client``."""
    cid = msg.header.get("cid")
    return cid if isinstance(cid, bytes) else client
