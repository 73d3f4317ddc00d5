"""The controller's event loop.

::

    clients (DEALER) ──► client ROUTER ─┐                 ┌─► engine ROUTER ──► engines (DEALER,
                                        │   Controller    │                      main thread)
                        answers  ◄──────┤  queues, jobs,  ├◄── replies
                                        │  results        │
                                        └─ heartbeat ROUTER ◄─► engines' heartbeat thread

One thread runs a ``zmq.Poller`` loop that drains each ready socket (measured in
shared/spec/limits.md to cost half the CPU per message of zmq.asyncio). The hot path
parses the small msgpack header, checks the signature and forwards the frames; it
never unpickles what clients and engines send each other.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Any

import zmq

from ..config import ControllerConfig
from ..runtime import pid_alive
from ..wire import curve
from ..wire.message import Message, Signer, WireError, pack
from .endpoints import bind
from .engines import Command, EngineState, IdAllocator
from .jobs import Job, JobIds, Part, error_part
from .results import ResultDesk
from .scheduler import TaskScheduler
from .targets import BadTargets, per_target_payloads, resolve_targets
from .transfers import Transfers

__all__ = ["Controller"]

log = logging.getLogger("multiengine.controller")

DRAIN = 64  # messages taken from one socket per wakeup before looking at the others
# Commands that first drop what is queued on the engine (the seed's reset and kill).
CLEARS_FIRST = frozenset({"reset", "kill"})
CONTROLLER_LOCAL = frozenset({"queue_status", "clear_queue"})
# Tasks sent to a busy engine ahead of time, so it never waits for the controller
# between two tasks. Only tasks, only behind tasks, and only this many: a failing task
# takes the ones sent ahead back (they return to the scheduler), and priorities keep
# ordering what still waits in the controller.
PREFETCH = 2


class Controller:
    def __init__(
        self,
        config: ControllerConfig,
        *,
        key: bytes,
        ports: tuple[int, int, int] | None = None,
        curve_secret: bytes | None = None,
        context: zmq.Context[Any] | None = None,
    ) -> None:
        self.config = config
        self.parent_pid = config.parent_pid
        self.curve_secret = curve_secret
        self.signer = Signer(key)
        self.ctx = context or zmq.Context.instance()
        self.hb_period = config.heartbeat_period
        self.hb_timeout = config.heartbeat_timeout
        self.clients = self._router()
        self.engine_sock = self._router()
        self.hb = self._router()
        named = {"client": self.clients, "engine": self.engine_sock, "heartbeat": self.hb}
        self.ports, self.ipc = bind(named, config.ip, ports)
        self.engines: dict[int, EngineState] = {}
        self.by_ident: dict[bytes, EngineState] = {}
        self.ids = IdAllocator()
        self.job_ids = JobIds()
        self.desk = ResultDesk(self.send_to_client, self.reply_error)
        self.scheduler = TaskScheduler(self, config.task_failure_penalty, config.task_timeout)
        self.transfers = Transfers(self)
        self.next_cmd_id = 0
        self._running = True
        self._exit_at: float | None = None
        self.started = time.time()
        self.dropped = 0  # messages that failed verification

    def _router(self) -> zmq.Socket[Any]:
        s = self.ctx.socket(zmq.ROUTER)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.ROUTER_HANDOVER, 1)  # an engine reconnecting keeps its identity
        s.setsockopt(zmq.SNDHWM, 0)
        s.setsockopt(zmq.RCVHWM, 0)
        if self.curve_secret:
            curve.make_server(s, self.curve_secret)
        return s

    # ------------------------------------------------------------------ the loop
    def run(self) -> None:
        poller = zmq.Poller()
        handlers = {
            self.clients: self._on_client,
            self.engine_sock: self._on_engine,
            self.hb: self._on_heartbeat,
        }
        for s in handlers:
            poller.register(s, zmq.POLLIN)
        next_sweep = time.monotonic() + self.hb_period
        while self._running:
            wake = self.scheduler.next_wakeup()
            timeout = max(
                0.0, min(next_sweep, wake if wake is not None else next_sweep) - time.monotonic()
            )
            for sock, _ in poller.poll(int(timeout * 1000)):
                handler = handlers[sock]
                for _ in range(DRAIN):
                    try:
                        frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    try:
                        msg = self.signer.parse(frames)
                    except WireError as e:
                        self.dropped += 1
                        log.warning("dropped a message on the %s channel: %s", self._name(sock), e)
                        continue
                    try:
                        handler(msg)
                    except Exception:
                        log.exception(
                            "error handling %r message; the controller goes on", msg.header.get("t")
                        )
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

    def close(self) -> None:
        for s in (self.clients, self.engine_sock, self.hb):
            s.close(linger=0)
        for url in self.ipc.values():
            try:
                os.unlink(url[len("ipc://") :])
            except OSError:
                pass

    def _name(self, sock: zmq.Socket[Any]) -> str:
        return {id(self.clients): "client", id(self.engine_sock): "engine"}.get(
            id(sock), "heartbeat"
        )

    # ------------------------------------------------------------------ sending
    def send_to_client(
        self,
        client: bytes,
        header: dict[str, Any],
        content: Any = b"",
        buffers: list[Any] | None = None,
    ) -> None:
        self.clients.send_multipart(
            self.signer.frames(header, content, buffers or (), (client,)), copy=False
        )

    def interrupt_engine(self, engine: EngineState, cmd_id: Any, why: str) -> None:
        """Ask an engine's heartbeat thread to interrupt the command it runs."""
        self.hb.send_multipart(
            self.signer.frames(
                {"t": "interrupt", "cmd": cmd_id, "why": why}, b"", (), (engine.ident,)
            )
        )

    def reply_value(self, msg: Message, value: Any) -> None:
        self.send_to_client(
            _client_of(msg), {"t": "value", "id": msg.header.get("id")}, pack(value)
        )

    def reply_error(self, client: bytes, msg_id: Any, ename: str, evalue: str) -> None:
        self.send_to_client(client, {"t": "error", "id": msg_id, "ename": ename, "evalue": evalue})

    # ------------------------------------------------------------------ clients
    def _on_client(self, msg: Message) -> None:
        t = msg.header["t"]
        if t == "submit":
            self._submit(msg)
        elif t == "chunk":
            self.transfers.client_piece(_client_of(msg), msg)
        elif t == "fetch":
            h = msg.header
            self.desk.fetch(_client_of(msg), h.get("id"), h.get("job"), bool(h.get("block", True)))
        elif t == "ping":
            self.send_to_client(_client_of(msg), {"t": "pong", "id": msg.header.get("id")})
        elif t == "get_ids":
            self.reply_value(msg, sorted(self.engines))
        elif t == "connect":
            self.reply_value(msg, {"engines": sorted(self.engines), "pid": os.getpid()})
        elif t == "flush":
            self.desk.flush(_client_of(msg))
            self.reply_value(msg, None)
        elif t == "status":
            self.reply_value(msg, self.status())
        elif t.startswith("task_") or t == "interrupt":
            self._on_task_message(msg)
        else:
            log.warning("unknown client message type %r", t)
            self.reply_error(
                _client_of(msg),
                msg.header.get("id"),
                "ProtocolError",
                f"unknown message type {t!r}",
            )

    def _on_task_message(self, msg: Message) -> None:
        h = msg.header
        client = _client_of(msg)
        if h["t"] != "interrupt":
            self.scheduler.handle(client, msg)
            return
        try:  # interrupt what runs on some engines (MultiEngine commands or tasks)
            targets = self._resolve_targets(h.get("targets", "all"))
        except BadTargets as e:
            self.reply_error(client, h.get("id"), e.ename, e.evalue)
            return
        for eid in targets:
            engine = self.engines[eid]
            if engine.current is not None:
                self.interrupt_engine(engine, engine.current.cmd_id, "interrupt")
        self.reply_value(msg, [None] * len(targets))

    def _resolve_targets(self, targets: Any) -> list[int]:
        return resolve_targets(targets, self.engines)

    def _submit(self, msg: Message) -> None:
        h = msg.header
        client = _client_of(msg)
        try:
            targets = self._resolve_targets(h.get("targets", "all"))
        except BadTargets as e:
            self.reply_error(client, h.get("id"), e.ename, e.evalue)
            return
        name = h["cmd"]
        block = bool(h.get("block", True))
        job = Job(self.job_ids.next(), client, h.get("id"), name, list(targets), block)
        job.kill_controller = bool(h.get("controller")) and name == "kill"
        if not block:
            self.desk.add(job)
            self.send_to_client(client, {"t": "ack", "id": h.get("id"), "job": job.job_id})
        if not targets:
            self._complete(job)
            return
        if name in CONTROLLER_LOCAL:
            for i, eid in enumerate(targets):
                self._local(job, i, self.engines[eid])
            return
        splits = h.get("parts")
        desc = h.get("desc") or name
        try:
            per_target = per_target_payloads(msg.content, msg.buffers, splits, len(targets))
        except BadTargets as e:
            self._fail_job(job, e.ename, e.evalue)
            return
        xfer = h.get("xfer")
        by_part: dict[int, list[Command]] = {}
        if name in CLEARS_FIRST:  # once per engine, so reset(targets=[0, 0]) runs twice
            for eid in set(targets):
                self._clear_queue(self.engines[eid])
        for i, eid in enumerate(targets):
            engine = self.engines[eid]
            content, buffers = per_target[i]
            self.next_cmd_id += 1
            cmd = Command(job, i, name, desc, content, list(buffers), self.next_cmd_id)
            if h.get("live"):
                cmd.extra = {"live": True}
            if xfer:
                p = i if splits is not None else 0
                cmd.xfer = {
                    "sizes": xfer["sizes"][p],
                    "n": xfer["n"][p],
                    "piece": xfer.get("piece"),
                }
                by_part.setdefault(p, []).append(cmd)
            engine.queue.append(cmd)
        if xfer:
            self.transfers.expect(client, h.get("id"), by_part, sum(xfer["n"]))
        for eid in set(targets):
            self.dispatch(self.engines[eid])

    def _fail_job(self, job: Job, ename: str, evalue: str) -> None:
        for i in range(len(job.targets)):
            part = error_part(ename, evalue, job.targets[i])
            if job.set_part(i, part):
                self._complete(job)

    def _local(self, job: Job, index: int, engine: EngineState) -> None:
        if job.method == "queue_status":
            pending = engine.current.desc if engine.current else None
            value: Any = [engine.id, {"queue": engine.queued_descs(), "pending": pending}]
        else:  # clear_queue
            self._clear_queue(engine)
            value = None
        if job.set_part(index, Part(engine.id, "ok", "m", [pack(value)])):
            self._complete(job)

    def _clear_queue(self, engine: EngineState) -> None:
        """Drop every queued (not running) command on ``engine`` with QueueCleared."""
        queued, engine.queue = engine.queue, type(engine.queue)()
        for cmd in queued:
            if cmd.task is not None:
                self.scheduler.requeue(cmd.task)  # a task is not cleared: it goes back to wait
                continue
            assert cmd.job is not None
            part = error_part("QueueCleared", cmd.desc, engine.id)
            if cmd.job.set_part(cmd.index, part):
                self._complete(cmd.job)

    def dispatch(self, engine: EngineState) -> None:
        """Send the engine its next command, and tasks ahead while it runs tasks."""
        if engine.current is None and engine.queue:
            engine.current = engine.queue.popleft()
            self._send_cmd(engine, engine.current)
        while (
            engine.queue
            and engine.current is not None
            and engine.current.task is not None
            and engine.queue[0].task is not None
            and len(engine.ahead) < PREFETCH
        ):
            cmd = engine.queue.popleft()
            engine.ahead.append(cmd)
            self._send_cmd(engine, cmd)

    def next_current(self, engine: EngineState) -> None:
        engine.current = engine.ahead.popleft() if engine.ahead else None

    def _send_cmd(self, engine: EngineState, cmd: Command) -> None:
        header: dict[str, Any] = {"t": "cmd", "cmd": cmd.cmd_id, "name": cmd.name}
        if cmd.xfer is not None:
            header["xfer"] = cmd.xfer
        if cmd.buffers:
            header["raw"] = True  # out-of-band buffers; the content (the pickle) is hashed
        if cmd.extra:
            header.update(cmd.extra)
        self.engine_sock.send_multipart(
            self.signer.frames(header, cmd.content, cmd.buffers, (engine.ident,)), copy=False
        )
        if cmd.xfer is not None:
            self.transfers.dispatched(engine, cmd)

    def _complete(self, job: Job) -> None:
        self.desk.complete(job)
        if job.kill_controller:
            log.info("kill(controller=True): stopping after the reply")
            self._exit_at = time.monotonic() + 0.2

    # ------------------------------------------------------------------ engines
    def _on_engine(self, msg: Message) -> None:
        ident = msg.idents[0]
        t = msg.header["t"]
        engine = self.by_ident.get(ident)
        if engine is not None:
            engine.last_seen = time.monotonic()
        if t == "reply":
            if engine is None:
                log.warning("reply from an unregistered engine dropped")
                return
            self._on_reply(engine, msg)
        elif t == "output":  # live stdout/stderr: on to the client that asked for it
            cmd = engine.current if engine is not None else None
            if (
                engine is not None
                and cmd is not None
                and cmd.job is not None
                and cmd.cmd_id == msg.header.get("cmd")
            ):
                header = {
                    "t": "output",
                    "id": cmd.job.msg_id,
                    "engine": engine.id,
                    "name": msg.header.get("name"),
                }
                self.send_to_client(cmd.job.client, header, msg.content)
        elif t == "chunk":
            if engine is not None and engine.incoming is not None and msg.buffers:
                self.transfers.engine_piece(engine, msg.buffers[0])
        elif t == "register":
            self._register(ident, msg)
        elif t == "bye":
            if engine is not None:
                self._unregister(engine, "the engine shut down")
        else:
            log.warning("unknown engine message type %r", t)

    def _register(self, ident: bytes, msg: Message) -> None:
        h = msg.header
        engine = self.by_ident.get(ident)
        if engine is None:
            desired = h.get("desired_id")
            eid = self.ids.take(desired if isinstance(desired, int) else None)
            engine = EngineState(eid, ident, int(h.get("pid", -1)), str(h.get("host", "?")))
            self.engines[eid] = engine
            self.by_ident[ident] = engine
            log.info("Engine Info: %d %s %d", eid, engine.host, engine.pid)
        reply = {
            "t": "registered",
            "id": engine.id,
            "hb_period": self.hb_period,
            "hb_timeout": self.hb_timeout,
        }
        self.engine_sock.send_multipart(self.signer.frames(reply, b"", (), (ident,)))
        self.scheduler.schedule()

    def _on_reply(self, engine: EngineState, msg: Message) -> None:
        cmd = engine.current
        h = msg.header
        if cmd is None or cmd.cmd_id != h.get("cmd"):
            log.warning(
                "engine %d answered command %r, which it was not running", engine.id, h.get("cmd")
            )
            return
        status = h.get("status", "ok")
        enc = str(h.get("enc", "p"))
        flags = h.get("task")
        xfer = h.get("xfer")
        if xfer:  # the buffers follow in pieces
            self.transfers.reply_announced(engine, cmd, status, enc, flags, xfer, msg.content)
            if engine.incoming is not None:
                engine.incoming["rt"] = h.get("rt")
            return
        self.next_current(engine)
        part = Part(engine.id, status, enc, [msg.content, *msg.buffers])
        part.flags = flags if isinstance(flags, dict) else None
        part.run_time = h.get("rt")
        self.finish_reply(engine, cmd, part)

    def finish_reply(self, engine: EngineState, cmd: Command, part: Part) -> None:
        if cmd.task is not None:  # a task's failure clears nothing
            self.scheduler.on_reply(engine, cmd.task, part)
            self.dispatch(engine)
            # after a success only this engine has room; after a failure the task may go elsewhere
            self.scheduler.schedule([engine] if part.status == "ok" else None)
            return
        assert cmd.job is not None
        status = part.status
        if status == "error":
            self._clear_queue(engine)  # later commands usually depend on the failed one
        if cmd.job.set_part(cmd.index, part):
            self._complete(cmd.job)
        if cmd.name == "kill" and status == "ok":
            self._unregister(engine, "killed")
            return
        self.dispatch(engine)
        if engine.idle:
            self.scheduler.schedule()

    def _unregister(self, engine: EngineState, why: str) -> None:
        if self.engines.get(engine.id) is not engine:
            return
        del self.engines[engine.id]
        self.by_ident.pop(engine.ident, None)
        self.ids.release(engine.id)
        log.info("engine %d unregistered: %s", engine.id, why)
        lost = ([engine.current] if engine.current else []) + list(engine.queue)
        sent_ahead = list(engine.ahead)  # never started: they go back to wait, not as failures
        engine.ahead.clear()
        current = engine.current
        if (
            current is not None
            and current.job is not None
            and engine.incoming is not None
            and engine.incoming["stream"]
        ):
            current.job.streamed = False  # the client gets the error as a whole result
        engine.current = None
        engine.incoming = None
        engine.queue.clear()
        for cmd in sent_ahead:
            self.scheduler.requeue(cmd.task)
        for cmd in lost:
            if cmd.task is not None:
                if cmd is current:
                    self.scheduler.on_lost(cmd.task, engine.id, why)
                else:
                    self.scheduler.requeue(cmd.task)
                continue
            assert cmd.job is not None
            part = error_part(
                "EngineError",
                f"engine {engine.id} was lost ({why}) with {cmd.desc} on it",
                engine.id,
            )
            if cmd.job.set_part(cmd.index, part):
                self._complete(cmd.job)
        self.scheduler.schedule()

    def _on_heartbeat(self, msg: Message) -> None:
        ident = msg.idents[0]
        engine = self.by_ident.get(ident)
        if engine is None:
            self.hb.send_multipart(self.signer.frames({"t": "unknown"}, b"", (), (ident,)))
            return
        engine.last_seen = time.monotonic()
        self.hb.send_multipart(self.signer.frames({"t": "pong"}, b"", (), (ident,)))

    def _sweep(self, now: float) -> None:
        if self.parent_pid and os.getppid() != self.parent_pid and not pid_alive(self.parent_pid):
            log.warning(
                "the process that started this controller (%d) has gone: stopping", self.parent_pid
            )
            self._running = False
        limit = now - self.hb_timeout
        for engine in [e for e in self.engines.values() if e.last_seen < limit]:
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
                for e in sorted(self.engines.values(), key=lambda e: e.id)
            ],
            "pending_results": len(self.desk.store),
            "pending_bytes": self.desk.store.nbytes,
            "dropped_messages": self.dropped,
            "tasks": self.scheduler.status(False),
        }


def _client_of(msg: Message) -> bytes:
    """Where replies to a client message go: its receiving socket, else the sender."""
    rt = msg.header.get("rt")
    return rt if isinstance(rt, bytes) else msg.idents[0]
