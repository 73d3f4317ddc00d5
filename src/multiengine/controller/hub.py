"""What the controller does with each message: the hub of the controller.

The :class:`Hub` turns MultiEngine calls into jobs (one command per target, queued in
:class:`~.dispatch.Dispatch`), collects their answers into results, and handles
engines joining and leaving; it hands task requests to the
:class:`~.scheduler.TaskScheduler` and large buffers to :class:`~.transfers.Transfers`,
which see only ``Dispatch``. Each channel has a table from message type to handler.

The hub owns no socket: it sends through an :class:`~.dispatch.Outbox` and is handed
verified messages by the loop in ``relay.py``. Tests drive it the same way, with an
outbox that records (tests/controller/).

It is long because it is the one table of handlers of every message type on three
channels, and the engine registry's life (register, hello, loss, engine_exit) that
those handlers share with the jobs; the pieces with an interface of their own are
already apart: scheduler, task table, result desk, store, transfers, dispatch, and
the books of direct commands (direct.py).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from typing import Any

from ..runtime import pid_stopped
from ..wire import protocol as P
from ..wire import stream
from ..wire.message import Message, owned, pack
from ..wire.protocol import TaskFlags, Xfer
from . import monitor
from .direct import DirectBooks
from .dispatch import Dispatch, Outbox, what_of
from .engines import Command, EngineState, IdAllocator
from .jobs import Job, JobIds, Part, error_part
from .results import JOB, ResultDesk
from .scheduler import TaskScheduler
from .store import ResultStore
from .targets import BadTargets, per_target_payloads, resolve_targets
from .tasktable import TASK
from .transfers import Transfers

__all__ = ["Hub"]

log = logging.getLogger("multiengine.controller")

# Commands that first drop what is queued on the engine (the seed's reset and kill).
CLEARS_FIRST = frozenset({"reset", "kill"})
MAX_ENGINE_ID = 2**20 - 1  # the highest id a register may ask for (desired_id)

# what a client that has not connected to this run of the controller may still send
_OPEN = frozenset({P.CONNECT, P.PING})


# how long a dead engine's supervisor has to report the cause (engine_exit) before its
# work fails with "its connection closed"
EXIT_REPORT_WAIT = 2.0
# A blocking call that asked for ``progress`` hears how many engines answered, one
# message per answer, once it has waited PROGRESS_AFTER seconds (the client's bar appears
# after 2 s): a quick call costs nothing more.
PROGRESS_AFTER = 1.0

ClientHandler = Callable[[bytes, Message], None]
EngineHandler = Callable[[bytes, "EngineState | None", Message], None]


class Hub:
    """The controller's state and its answer to every message.

    ``heartbeat_period``/``heartbeat_timeout`` go to engines at registration. Engines
    heartbeat in libzmq (ZMTP pings on their heartbeat-channel connection, which each
    names with ``hello``; docs/protocol.md §7): an engine silent past the timeout loses
    that connection, and the loop reports it with :meth:`on_disconnect`. The id of an
    engine lost that way stays reserved for it for ``engine_id_grace`` seconds.
    """

    def __init__(
        self,
        outbox: Outbox,
        *,
        heartbeat_period: float,
        heartbeat_timeout: float,
        task_failure_penalty: float,
        task_timeout: float,
        store: ResultStore | None = None,
        engine_id_grace: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        strict_clients: bool = False,
    ) -> None:
        self.outbox = outbox
        # this run of the controller: a client that sees it change knows it restarted
        self.run = secrets.token_hex(4)
        # With a key an earlier controller used (--restore, --reuse), clients of that one
        # may send here: their requests are refused with ControllerRestarted (never run)
        # until they connect again, so a client knows exactly what to send again.
        self.strict_clients = strict_clients
        self.known_clients: set[bytes] = set()
        # engines of this host whose process died, until engine_exit says how (or a sweep)
        self._dying: dict[int, tuple[EngineState, float, str]] = {}
        self._host = socket.gethostname()
        # results kept for clients, and the history; in memory only without a file
        self.store = store or ResultStore(None, budget=1 << 30)
        self.hb_period = heartbeat_period
        self.hb_timeout = heartbeat_timeout
        self.clock = clock
        self.dispatch = Dispatch(outbox, IdAllocator(engine_id_grace, clock))
        self.job_ids = JobIds()
        self.desk = ResultDesk(self.dispatch, self.store)
        self.desk.own_tag = self.job_ids.tag
        self.scheduler = TaskScheduler(
            self.dispatch, self.store, task_failure_penalty, task_timeout, clock
        )
        self.transfers = Transfers(self.dispatch, clock)
        # commands clients sent straight to engines of their host (direct.py)
        self.direct = DirectBooks(self.dispatch, self.job_ids, self._complete, self._clear_queue)
        # the connection (fd) a received frame came on; set by the relay, which knows
        self.connection_of: Callable[[Any], int | None] = lambda frame: None
        # whether an engine (by identity) is on a Unix stream (streams.py), not ZeroMQ
        self.on_stream: Callable[[bytes], bool] = lambda ident: False
        self.started = time.time()
        self.dropped = 0  # messages that failed verification (counted by the loop)
        self.exit_at: float | None = None  # kill(controller=True): when to stop (clock)
        # engine id -> how its last process ended, as the supervising process reported it
        # (engine_exit): "restarts", "last_exit", "fate"; shown by status()
        self.exits: dict[int, dict[str, Any]] = {}
        self.usage = monitor.Usage()  # engines' memory and CPU, for live views
        self.client_handlers: dict[str, ClientHandler] = {
            P.SUBMIT: self._on_submit,
            P.CHUNK: self.transfers.client_piece,
            P.FETCH: self._on_fetch,
            P.PING: self._on_ping,
            P.GET_IDS: lambda c, m: self.dispatch.reply_value(c, m.header.get("id"), self.ids()),
            P.CONNECT: self._on_connect,
            P.FLUSH: self._on_flush,
            P.STATUS: lambda c, m: self.dispatch.reply_value(c, m.header.get("id"), self.status()),
            P.NODES: lambda c, m: self.dispatch.reply_value(c, m.header.get("id"), self.nodes()),
            P.INTERRUPT: self._on_interrupt,
            P.WAIT_STARTED: self._on_wait_started,
            P.CANCEL: self._on_cancel,
            P.HISTORY: self._on_history,
            P.MONITOR: self._on_monitor,
            P.ENGINE_EXIT: self._on_engine_exit,
            P.DIRECT_ADDRS: lambda c, m: self.dispatch.reply_value(
                c, m.header.get("id"), self.direct.addresses()
            ),
            P.DIRECT_JOB: lambda c, m: self.direct.on_job(c, m, _owner_of(m, c)),
            **self.scheduler.handlers,
        }
        self.engine_handlers: dict[str, EngineHandler] = {
            P.REPLY: self._on_reply,
            P.REPLIES: self._on_replies,
            P.OUTPUT: self._on_output,
            P.CHUNK: self._on_engine_piece,
            P.BYE: self._on_bye,
            P.DIRECT_DONE: lambda ident, engine, msg: self.direct.on_done(engine, msg),
            P.DIRECT_DONES: lambda ident, engine, msg: self.direct.on_dones(engine, msg),
        }

    @property
    def engines(self) -> dict[int, EngineState]:
        return self.dispatch.engines

    def ids(self) -> list[int]:
        return list(self.dispatch.sorted_ids())

    # ------------------------------------------------------------------ clients
    def on_client(self, msg: Message) -> None:
        """A verified message on the client channel."""
        client = _client_of(msg)
        if self.strict_clients and client not in self.known_clients and msg.type not in _OPEN:
            evalue = (
                "the controller restarted: this request was not run; connect again (a "
                "client does so by itself)"
            )
            self.dispatch.reply_error(client, msg.header.get("id"), P.CONNECT_AGAIN, evalue)
            return
        handler = self.client_handlers.get(msg.type)
        if handler is None:
            log.warning("unknown client message type %r", msg.type)
            evalue = f"unknown message type {msg.type!r}"
            self.dispatch.reply_error(client, msg.header.get("id"), "ProtocolError", evalue)
            return
        try:
            handler(client, msg)
        except (P.ProtocolViolation, LookupError, TypeError, ValueError) as e:
            # a signed request whose fields do not fit together: say so, rather than leave
            # the client waiting for an answer that never comes
            log.warning("malformed %r request: %r", msg.type, e)
            evalue = f"malformed {msg.type!r} request: {e!r}"
            self.dispatch.reply_error(client, msg.header.get("id"), "ProtocolError", evalue)

    def _on_connect(self, client: bytes, msg: Message) -> None:
        if self.strict_clients:
            self.known_clients.add(client)
        value = {"engines": self.ids(), "pid": os.getpid(), "run": self.run}
        self.dispatch.reply_value(client, msg.header.get("id"), value)

    def _on_ping(self, client: bytes, msg: Message) -> None:
        self.dispatch.to_client(client, {"t": P.PONG, "id": msg.header.get("id"), "run": self.run})

    def restore(self) -> None:
        """Take up what the last controller of this cluster directory left unfinished
        (``--restore``): its tasks run again (see :meth:`TaskScheduler.restore`); the
        results of its non-blocking calls that had not finished are lost, and fetching
        one says so (ControllerRestarted)."""
        left = self.store.leftovers()
        self.scheduler.restore(left.tasks, left.next_tid, left.ended_rows)
        self.desk.restored = True

    def _on_fetch(self, client: bytes, msg: Message) -> None:
        h = msg.header
        self.desk.fetch(client, h.get("id"), h.get("job"), bool(h.get("block", True)))

    def _on_flush(self, client: bytes, msg: Message) -> None:
        self.desk.flush(_owner_of(msg, client))
        self.dispatch.reply_value(client, msg.header.get("id"), None)

    def _on_wait_started(self, client: bytes, msg: Message) -> None:
        h = msg.header
        if h.get("tid") is not None:
            self.scheduler.table.wait_started(client, h.get("id"), h["tid"])
        else:
            self.desk.wait_started(client, h.get("id"), h.get("job"))

    def _on_history(self, client: bytes, msg: Message) -> None:
        """Records of finished jobs and tasks, newest first, as the request filters them."""
        h = msg.header
        kinds: dict[str, Any] = {
            "kind": str,
            "status": str,
            "engine": int,
            "since": (int, float),
            "limit": int,
        }
        for name, kind in kinds.items():
            if h.get(name) is not None and not isinstance(h[name], kind):
                raise P.ProtocolViolation(f"history: bad {name} {h[name]!r}")
        rows = self.store.history(
            kind=h.get("kind"),
            status=h.get("status"),
            engine=h.get("engine"),
            since=h.get("since"),
            limit=h.get("limit"),
        )
        self.dispatch.reply_value(client, h.get("id"), rows)

    def _on_monitor(self, client: bytes, msg: Message) -> None:
        """A live view's poll: the status, the events after ``since``, and the engines'
        memory and CPU as last reported (asking them again when those are a second old)."""
        since = msg.header.get("since") or 0
        if not isinstance(since, int):
            raise P.ProtocolViolation(f"monitor: bad since {since!r}")
        if self.usage.due(self.clock()):
            for engine in self.dispatch.engines.values():
                self.outbox.to_heartbeat(engine.ident, {"t": P.PROBE})
        timeline = self.dispatch.timeline
        value = {
            "status": self.status(),
            "run": self.run,
            "seq": timeline.seq,
            "events": timeline.since(since),
            "usage": [{"engine": eid, **u} for eid, u in sorted(self.usage.by_engine.items())],
        }
        self.dispatch.reply_value(client, msg.header.get("id"), value)

    def _on_cancel(self, client: bytes, msg: Message) -> None:
        """Take back the commands of a stored job that have not started (they never run).

        Answers True when none of the job had started, else False (what runs goes on).
        """
        h = msg.header
        job = self.desk.jobs.get(h["job"]) if isinstance(h.get("job"), str) else None
        if job is None:
            self.dispatch.reply_value(client, h.get("id"), False)
            return
        untouched = job.started is None
        for engine in {self.dispatch.engines.get(eid) for eid in job.targets} - {None}:
            assert engine is not None
            for cmd in [c for c in engine.queue if c.job is job]:
                engine.queue.remove(cmd)
                cleared = error_part("QueueCleared", f"{cmd.desc} was cancelled", engine.id)
                if job.set_part(cmd.index, cleared):
                    self._complete(job)
        self.dispatch.reply_value(client, h.get("id"), untouched)

    def _on_engine_exit(self, client: bytes, msg: Message) -> None:
        """The process that started an engine saw it end (or ended it): unregister it at
        once, its work failing with ``cause``, and keep what happened for ``status``.

        Only the engine with that ``pid`` is unregistered (an engine that already came
        back under the id is left alone). Answers whether it was still registered.
        """
        h = msg.header
        eid = h["engine"]
        if type(eid) is not int:
            raise TypeError(f"engine must be an engine id, not {eid!r}")
        cause = str(h.get("cause") or "exited")
        engine = self.dispatch.engines.get(eid)
        if engine is not None and h.get("pid") not in (None, engine.pid):
            self.dispatch.reply_value(client, h.get("id"), False)  # another engine has the id
            return
        record = self.exits.setdefault(eid, {"restarts": 0})
        record["last_exit"] = cause
        record["fate"] = str(h.get("fate") or "")
        if type(h.get("restarts")) is int:
            record["restarts"] = h["restarts"]
        self._dying.pop(eid, None)
        if engine is not None:  # kept for it while the supervisor starts it again
            coming_back = record["fate"].startswith("restarting")
            self._unregister(engine, cause, lost=cause, reserve=coming_back)
        self.dispatch.reply_value(client, h.get("id"), engine is not None)

    def _targets(self, client: bytes, msg: Message) -> list[int] | None:
        """The engines a request names; None (and the caller answered) when it names none."""
        targets = msg.header.get("targets", "all")
        if targets == "all" and self.dispatch.engines:
            return self.dispatch.sorted_ids()  # (cached: callers copy it, never change it)
        try:
            return resolve_targets(targets, self.dispatch.engines)
        except BadTargets as e:
            self.dispatch.reply_error(client, msg.header.get("id"), e.ename, e.evalue)
            return None

    def _on_interrupt(self, client: bytes, msg: Message) -> None:
        """Interrupt what runs on some engines (MultiEngine commands or tasks)."""
        h = msg.header
        targets = self._targets(client, msg)
        if targets is None:
            return
        for eid in targets:
            engine = self.dispatch.engines[eid]
            if engine.current is not None:
                self.dispatch.interrupt(engine, engine.current, P.WHY_INTERRUPT)
            if engine.direct:
                self.direct.interrupt(engine)
        self.dispatch.reply_value(client, h.get("id"), [None] * len(targets))

    def _on_submit(self, client: bytes, msg: Message) -> None:
        """A MultiEngine call: one job, one command per target in each target's queue.

        A non-blocking one is answered ``ack`` once its commands are on their way (the
        engines start sooner). With ``fetch_id`` its result is sent under that id as
        soon as it ends, as for a blocking ``fetch`` sent right behind it, and the ``ack``
        says whether it has started: the caller of a quick call hears all it needs in
        one round trip.
        """
        h = msg.header
        job = self._submit(client, msg)
        if job is None or job.block:
            return
        ack: dict[str, Any] = {"t": P.ACK, "id": h.get("id"), "job": job.job_id}
        fetch_id = h.get("fetch_id")
        if fetch_id is None:
            self.dispatch.to_client(client, ack)
            return
        ack["started"] = job.started is not None or job.done
        self.dispatch.to_client(client, ack)
        self.desk.fetch(client, fetch_id, job.job_id, True)

    def _submit(self, client: bytes, msg: Message) -> Job | None:
        """Make the job of a ``submit`` and queue or start its commands (None: the
        request was answered with an error)."""
        h = msg.header
        targets = self._targets(client, msg)
        if targets is None:
            return None
        name = str(h["cmd"])
        block = bool(h.get("block", True))
        job = Job(self.job_ids.next(), client, h.get("id"), name, list(targets), block)
        job.submitted = time.time()
        job.desc = str(h.get("desc") or name)
        cid = h.get("cid")  # (inline: every submit passes here)
        job.owner = cid if type(cid) is bytes else client
        if block and h.get("progress") is True and len(targets) > 1:
            job.progress_at = job.submitted + PROGRESS_AFTER
        job.kill_controller = bool(h.get("controller")) and name == "kill"
        if not block:
            self.desk.add(job)
        if not targets:
            self._complete(job)
            return job
        engines = self.dispatch.engines
        if name in P.CONTROLLER_COMMANDS:
            for i, eid in enumerate(targets):
                self._answer_locally(job, i, engines[eid])
            return job
        splits = h.get("parts")
        try:
            per_target = per_target_payloads(msg.content, msg.buffers, splits, len(targets))
            xfers = [Xfer.from_wire(x) for x in h["xfer"]] if h.get("xfer") else None
            if xfers is not None and len(xfers) != (len(splits) if splits is not None else 1):
                raise P.ProtocolViolation("one xfer per part is needed")
            digests = _part_digests(h.get("dg"), splits)
        except (BadTargets, P.ProtocolViolation) as e:
            self._fail_job(job, "ProtocolError", str(e))
            return job
        if name in CLEARS_FIRST:  # once per engine, so reset(targets=[0, 0]) runs twice
            for eid in set(targets):
                self._clear_queue(engines[eid])
        desc = str(h.get("desc") or name)
        live = bool(h.get("live"))
        by_part: dict[int, list[Command]] = {}
        # Idle engines named once, when every target gets the same payload: they start
        # together on one message (one command number, signed once). The others queue.
        together: list[tuple[EngineState, Command]] = []
        shared_id = self.dispatch.new_cmd_id() if splits is None and not xfers else None
        named_once = shared_id is not None and len(set(targets)) == len(targets)
        for i, eid in enumerate(targets):
            engine = engines[eid]
            content, buffers = per_target[i]
            idle = named_once and engine.current is None and not engine.queue and not engine.direct
            cmd_id = shared_id if idle and shared_id is not None else self.dispatch.new_cmd_id()
            cmd = Command(job, i, name, desc, content, buffers, cmd_id, live=live)
            if digests is not None:
                cmd.digest = digests[i]  # checked by the engine, not here (§2)
            if idle:
                together.append((engine, cmd))
                continue
            if xfers:
                p = i if splits is not None else 0
                cmd.xfer = xfers[p]
                by_part.setdefault(p, []).append(cmd)
            engine.queue.append(cmd)
        if xfers:
            conn = self.connection_of(msg.content)  # to notice a client gone mid-transfer
            self.transfers.expect(client, h.get("id"), by_part, sum(x.n for x in xfers), conn)
        if together:
            self.dispatch.start_together(together)
        for eid in set(targets):
            self.dispatch.dispatch(engines[eid])
        return job

    def _fail_job(self, job: Job, ename: str, evalue: str) -> None:
        for i in range(len(job.targets)):
            if job.set_part(i, error_part(ename, evalue, job.targets[i])):
                self._complete(job)

    def _answer_locally(self, job: Job, index: int, engine: EngineState) -> None:
        if job.method == "queue_status":
            pending = engine.current.desc if engine.current else self.direct.running(engine)
            value: Any = [engine.id, {"queue": engine.queued_descs(), "pending": pending}]
        else:  # clear_queue
            self._clear_queue(engine)
            value = None
        if job.set_part(index, Part(engine.id, P.STATUS_OK, P.MSGPACK, [pack(value)])):
            self._complete(job)

    def _clear_queue(self, engine: EngineState, spare: bytes | None = None) -> None:
        """Drop every queued (not running) command on ``engine`` with QueueCleared;
        ``spare``: except the commands of that client (``Job.owner``), which stay queued
        in their order."""
        queued, engine.queue = engine.queue, type(engine.queue)()
        for cmd in queued:
            if cmd.task is not None:
                self.scheduler.requeue(cmd.task)  # a task is not cleared: it goes back to wait
                continue
            assert cmd.job is not None
            if spare is not None and cmd.job.owner == spare:
                engine.queue.append(cmd)
                continue
            if cmd.job.set_part(cmd.index, error_part("QueueCleared", cmd.desc, engine.id)):
                self._complete(cmd.job)

    def _complete(self, job: Job) -> None:
        self.desk.complete(job)
        if job.kill_controller:
            log.info("kill(controller=True): stopping after the reply")
            self.exit_at = self.clock() + 0.2

    # ------------------------------------------------------------------ engines
    def on_engine(self, msg: Message, conn: int | None = None) -> None:
        """A verified message on the engine channel; ``conn`` names the connection a
        ``register`` came on (the loop passes it; it is ignored for other types)."""
        ident = msg.idents[0]
        engine = self.dispatch.by_ident.get(ident)
        handler = self.engine_handlers.get(msg.type)
        if handler is None:
            if msg.type == P.REGISTER:
                self._on_register(ident, engine, msg, conn)
            else:
                log.warning("unknown engine message type %r", msg.type)
            return
        handler(ident, engine, msg)

    def _on_register(
        self, ident: bytes, engine: EngineState | None, msg: Message, conn: int | None
    ) -> None:
        """Register an engine, or answer again an engine that asks again.

        An engine known under this identity that registers on another connection, or
        after losing one (a higher ``epoch``), dropped what it was running when it lost
        the controller: that is failed as for a lost engine, and it registers afresh (its
        id is reserved for it, so it gets the same one back).
        """
        h = msg.header
        epoch = h.get("epoch")
        epoch = epoch if type(epoch) is int else 0
        if engine is not None and (
            epoch > engine.epoch or (conn is not None and conn != engine.conn)
        ):
            self._unregister(engine, "it lost its connection and came back", reserve=True)
            engine = None
        if engine is None:
            self._stale(conn)
            desired = h.get("desired_id")
            wanted = desired if type(desired) is int and 0 <= desired <= MAX_ENGINE_ID else None
            if wanted is None and desired is not None:  # the ids below it would all be made
                log.warning(
                    "register: desired id %.40r ignored (not 0 .. %d)", desired, MAX_ENGINE_ID
                )
            pid = h.get("pid")
            pid = pid if type(pid) is int else -1  # a malformed one is not a reason to refuse
            engine = self.dispatch.add_engine(
                ident, pid, str(h.get("host", "?")), wanted, conn, epoch
            )
            node = h.get("node")
            engine.node = node if type(node) is str else ""
            url = h.get("direct")
            engine.direct_url = url if type(url) is str and url.startswith(stream.SCHEME) else ""
            if self.exits and wanted != engine.id:
                self.exits.pop(engine.id, None)  # a new engine, not the one that exited
            log.info("Engine Info: %d %s %d", engine.id, engine.host, engine.pid)
        reply = {
            "t": P.REGISTERED,
            "id": engine.id,
            "hb_period": self.hb_period,
            "hb_timeout": self.hb_timeout,
            "epoch": epoch,
        }
        self.outbox.to_engine(ident, reply)
        if self.direct.asked:  # (registering again, it keeps an endpoint clients may know)
            self.direct.turn_on(engine)
        self.scheduler.engine_has_room(engine)

    def _on_bye(self, ident: bytes, engine: EngineState | None, msg: Message) -> None:
        if engine is not None:
            self._unregister(engine, "the engine shut down")

    def on_disconnect(self, conn: int) -> None:
        """A connection of an engine closed (on either channel): its engine closed it or
        died, or libzmq closed its heartbeat connection because no heartbeat came within
        the timeout."""
        engine = self.dispatch.by_conn.get(conn)
        if engine is None or engine.id in self._dying:
            return
        if conn == engine.hb_conn:
            why = f"no heartbeat for {self.hb_timeout:g} s, or its connection closed"
        else:
            why = "its connection closed: it died, or lost the controller"
        killed = engine.current is not None and engine.current.name == "kill"
        if killed or (engine.host == self._host and not pid_stopped(engine.pid)):
            # An engine of this host that is not merely stopped (SIGSTOP) has died, or is
            # dying (its connections close before it is a zombie): the process that
            # started it, if it is watched, says in a moment how (engine_exit), and its
            # work fails naming that; else at the first sweep after EXIT_REPORT_WAIT. (An
            # engine told to exit closes its connections as it answers: the answer may
            # come after the close.)
            self._dying[engine.id] = (engine, self.clock() + EXIT_REPORT_WAIT, why)
            return
        self._unregister(engine, why, reserve=True)

    def on_client_disconnect(self, conn: int) -> None:
        """A client connection closed: a transfer it was sending will not go on."""
        self.transfers.connection_closed(conn)

    def _stale(self, conn: int | None) -> None:
        """A new connection has the descriptor ``conn``: an engine still listed under it
        lost that connection (the loop reads closed connections before new ones, so this
        is a safeguard)."""
        engine = self.dispatch.by_conn.get(conn) if conn is not None else None
        if engine is not None:
            self._unregister(engine, "its connection closed", reserve=True)

    def _on_hello(self, engine: EngineState, msg: Message, conn: int | None) -> None:
        """An engine registered in ``epoch`` names its heartbeat connection: from now on
        that connection closing (no heartbeat within the timeout) unregisters it."""
        if conn is None or msg.header.get("epoch") != engine.epoch or engine.hb_conn == conn:
            return  # (an older registration's hello; or said again)
        if self.dispatch.by_conn.get(conn) is not engine:
            self._stale(conn)
        self.dispatch.attach_heartbeat(engine, conn)

    def _on_output(self, ident: bytes, engine: EngineState | None, msg: Message) -> None:
        """Live stdout/stderr: on to the client that asked for it (a job's, or a task's
        submitter)."""
        cmd = engine.current if engine is not None else None
        if engine is None or cmd is None or cmd.cmd_id != msg.header.get("cmd"):
            return
        if cmd.job is not None:
            client, msg_id = cmd.job.client, cmd.job.msg_id
        elif cmd.task is not None and cmd.task.live_id is not None:
            client, msg_id = cmd.task.client, cmd.task.live_id
        else:
            return
        header = {"t": P.OUTPUT, "id": msg_id, "engine": engine.id, "name": msg.header.get("name")}
        self.dispatch.to_client(client, header, msg.content)

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
        frames = [msg.content, *msg.buffers]
        if cmd.task is not None or (cmd.job is not None and not cmd.job.block):  # kept
            frames = [owned(f) for f in frames]
        if h.get("enc") == P.SLICES and h.get("raw"):  # slices are pickles: never raw
            log.warning("engine %d sent the slices of a list unsigned", engine.id)
            what = "the slices of the answer came unsigned"
            self._finish_reply(engine, cmd, error_part("SerializationError", what, engine.id))
            return
        part = Part(
            engine.id,
            str(h.get("status", P.STATUS_OK)),
            str(h.get("enc", P.PICKLE)),
            frames,
            flags=TaskFlags.from_wire(h["task"]) if h.get("task") else None,
            elapsed=h.get("elapsed"),
        )
        self._finish_reply(engine, cmd, part)

    def _on_replies(self, ident: bytes, engine: EngineState | None, msg: Message) -> None:
        """Several task replies in one message (the engine held them back): each is
        taken as if it had come on its own, in order."""
        if engine is None:
            log.warning("replies from an unregistered engine dropped")
            return
        try:
            wire = msg.header.get("replies")
            if not isinstance(wire, list):
                raise P.ProtocolViolation("replies is not a list")
            items = [P.BatchedReply.from_wire(i) for i in wire]
            parts = P.split_parts([i.nbuf for i in items], msg.buffers)
            flags = [TaskFlags.from_wire(i.task) if i.task else None for i in items]
        except P.ProtocolViolation as e:
            log.warning("dropped malformed replies from engine %d: %s", engine.id, e)
            return
        # the engine gets new tasks once, after the last of these replies (one pass of
        # the scheduler for the room they all made), unless one of them failed
        for item, (content, buffers), flag in zip(items, parts, flags, strict=True):
            cmd = engine.current
            if cmd is None or cmd.cmd_id != item.cmd or cmd.task is None:
                log.warning(
                    "engine %d answered command %r, which it was not running", engine.id, item.cmd
                )
                continue
            part = Part(
                engine.id,
                item.status,
                item.enc,
                [owned(f) for f in (content, *buffers)] if buffers else [owned(content)],
                flags=flag,
                elapsed=item.elapsed if isinstance(item.elapsed, (int, float)) else None,
            )
            self._finish_reply(engine, cmd, part, refill=False)
        if self.dispatch.engines.get(engine.id) is engine:
            self.dispatch.dispatch(engine)
            self.scheduler.engine_has_room(engine)

    def _on_engine_piece(self, ident: bytes, engine: EngineState | None, msg: Message) -> None:
        if engine is None or engine.incoming is None or not msg.buffers:
            return
        cmd = engine.current
        piece, header = msg.buffers[0], msg.header
        part = self.transfers.engine_piece(
            engine, piece, header.get("raw") is True, header.get("dg")
        )
        if part is not None and cmd is not None:
            self._finish_reply(engine, cmd, part)

    def _finish_reply(
        self, engine: EngineState, cmd: Command, part: Part, refill: bool = True
    ) -> None:
        """``engine`` answered ``cmd``: record it, and send the engine what comes next
        (a task that succeeded, with ``refill`` False: the caller does, once for a batch)."""
        self.dispatch.advance(engine)
        if cmd.task is not None:
            self.dispatch.task_answered(engine, part.status == P.STATUS_OK, part.elapsed)
        kind = monitor.FAILED if part.status != P.STATUS_OK else monitor.OK
        job = cmd.job  # (a job's name made once, not asked of what_of for each of its parts)
        what = job.what if job is not None and cmd.task is None else what_of(cmd)
        self.dispatch.timeline.record(
            engine.id, what, monitor.REVOKED if cmd.detached else kind, cmd.desc
        )
        if cmd.detached:  # taken back before it ran; the task went elsewhere
            self.dispatch.dispatch(engine)
            self.scheduler.engine_has_room(engine)
            return
        failed = part.status != P.STATUS_OK
        if cmd.task is not None:  # a task's failure clears nothing
            self.scheduler.on_reply(engine, cmd.task, part)
            if not failed and not refill:
                return
            self.dispatch.dispatch(engine)
            self.scheduler.engine_has_room(engine, failed)
            return
        assert cmd.job is not None
        if failed and not cmd.abandoned:  # (one whose client went away: others' work stays)
            self._clear_queue(engine)  # later commands usually depend on the failed one
        part.started = cmd.started
        if cmd.job.set_part(cmd.index, part):
            self._complete(cmd.job)
        elif cmd.job.progress_at is not None:
            self._tell_progress(cmd.job)
        if cmd.name == "kill" and not failed:
            self._unregister(engine, "killed")
            return
        self.dispatch.dispatch(engine)
        if self.scheduler.ready or self.dispatch.prefetching:  # any task work at all
            self.scheduler.engine_has_room(engine)

    def _tell_progress(self, job: Job) -> None:
        """Tell the client waiting for ``job`` how many of its engines have answered."""
        assert job.progress_at is not None
        if time.time() < job.progress_at:
            return
        total = len(job.targets)
        header = {"t": P.PROGRESS, "id": job.msg_id, "done": total - job.remaining}
        header["total"] = total
        self.dispatch.to_client(job.client, header)

    def _unregister(
        self, engine: EngineState, why: str, lost: str | None = None, reserve: bool = False
    ) -> None:
        """Forget an engine; what ran or waited on it fails or goes back to wait.

        Its work fails with ``engine N <lost> with ...``: ``lost`` says what happened
        (``died (killed by SIGKILL)``), else ``was lost (<why>)``. ``reserve``: it was
        lost or is being restarted (not gone for good), so its id stays reserved for it.
        """
        if not self.dispatch.remove_engine(engine, reserve):
            return
        log.info("engine %d unregistered: %s", engine.id, why)
        current = engine.current
        if current is not None and current.job is not None:
            if engine.incoming is not None and engine.incoming.stream:
                current.job.streamed = False  # the client gets the error as a whole result
        unstarted = [*engine.ahead, *engine.queue]
        direct_jobs = self.direct.lost(engine)
        if current is not None:
            self.dispatch.timeline.record(engine.id, what_of(current), monitor.LOST, current.desc)
        self.usage.forget(engine.id)
        engine.current = None
        engine.incoming = None
        engine.ahead.clear()
        engine.queue.clear()
        phrase = lost or f"was lost ({why})"
        self.scheduler.on_engine_lost(engine.id, phrase, current, unstarted)
        if current is not None and current.job is not None and current.name == "kill":
            # The engine ended while running kill: the kill is done, whether its answer
            # or the news of its end (its supervisor's engine_exit, on another
            # connection) came first.
            done = Part(engine.id, P.STATUS_OK, P.MSGPACK, [pack(None)])
            if current.job.set_part(current.index, done):
                self._complete(current.job)
            current = None
        for cmd in [current, *unstarted]:
            if cmd is None or cmd.job is None:
                continue
            text = f"engine {engine.id} {phrase} with {cmd.desc} on it"
            if cmd.job.set_part(cmd.index, error_part("EngineError", text, engine.id)):
                self._complete(cmd.job)
        for job in direct_jobs:
            text = f"engine {engine.id} {phrase} with {job.desc} on it"
            if job.set_part(0, error_part("EngineError", text, engine.id)):
                self._complete(job)
        self.scheduler.schedule()

    def on_heartbeat(self, msg: Message, conn: int | None = None) -> None:
        """A verified message on the heartbeat channel; ``conn`` names the connection a
        ``hello`` came on (the loop passes it)."""
        engine = self.dispatch.by_ident.get(msg.idents[0])
        if engine is None:
            return
        if msg.type == P.REVOKED:
            self.scheduler.on_revoked(engine, msg.header.get("cmd"), bool(msg.header.get("ok")))
        elif msg.type == P.HELLO:
            self._on_hello(engine, msg, conn)
        elif msg.type == P.USAGE:
            self.usage.report(engine.id, msg.header.get("rss"), msg.header.get("cpu"))
        else:
            log.warning("unknown heartbeat message type %r", msg.type)

    def sweep(self, now: float) -> None:
        """What runs every heartbeat period: the scheduler's timeouts. (Engine liveness
        costs nothing here: silent engines are reported by :meth:`on_disconnect`.)"""
        self.scheduler.sweep(now)
        self.transfers.sweep(now)
        for eid, (engine, deadline, why) in list(self._dying.items()):
            if now >= deadline:  # nobody said how it died
                del self._dying[eid]
                self._unregister(engine, why, reserve=True)

    def shutdown(self) -> None:
        """The controller stops for good: tell every engine, so it exits rather than wait
        to register again (an engine that loses a controller that crashed waits)."""
        for engine in self.dispatch.engines.values():
            self.outbox.to_heartbeat(engine.ident, {"t": P.SHUTDOWN})

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
                    "node": e.node,  # who may share memory with it (multiengine.wire.shm)
                    # waiting in the controller, and tasks sent ahead to the engine
                    "queue": len(e.queue) + len(e.ahead),
                    "running": e.current.desc if e.current else self.direct.running(e),
                    "restarts": self.exits.get(e.id, {}).get("restarts", 0),
                    "last_exit": self.exits.get(e.id, {}).get("last_exit"),
                    "link": "unix" if self.on_stream(e.ident) else "zmq",
                }
                for e in map(self.dispatch.engines.__getitem__, self.dispatch.sorted_ids())
            ],
            **self._results_status(),
            # engines that exited (engine_exit) and are not registered again
            "down": [
                {"id": eid, **record}
                for eid, record in sorted(self.exits.items())
                if eid not in self.dispatch.engines
            ],
            "reserved_ids": list(self.dispatch.ids.reserved()),
            "dropped_messages": self.dropped + self.transfers.changed,
            "direct_jobs": self.direct.taken,  # commands clients sent straight to engines
            "tasks": self.scheduler.table.status(False),
        }

    def nodes(self) -> list[list[Any]]:
        """``[id, node]`` of every engine (``register`` ``node``; ascending ids)."""
        engines = self.dispatch.engines
        return [[i, engines[i].node] for i in self.dispatch.sorted_ids()]

    def _results_status(self) -> dict[str, int]:
        pending, pending_bytes = self.desk.counts()
        # the results of jobs and of tasks (not the rows of tasks that have not ended)
        in_memory, memory_bytes, on_disk, disk_bytes = self.store.counts(JOB, TASK)
        return {
            "pending_results": pending,  # of non-blocking calls, not fetched yet
            "pending_bytes": pending_bytes,
            "results_in_memory": in_memory,  # kept results of calls and tasks
            "results_in_memory_bytes": memory_bytes,
            "results_on_disk": on_disk,  # every kept result (memory holds the newest)
            "results_on_disk_bytes": disk_bytes,
        }


def _client_of(msg: Message) -> bytes:
    """Where answers to a client message go: the socket it names in ``rt``, else the sender."""
    rt = msg.header.get("rt")
    return rt if isinstance(rt, bytes) else msg.idents[0]


def _owner_of(msg: Message, client: bytes) -> bytes:
    """Which client a stored result belongs to (for ``flush``): ``cid``, else ``client``."""
    cid = msg.header.get("cid")
    return cid if isinstance(cid, bytes) else client


def _part_digests(dg: Any, splits: list[int] | None) -> list[bytes] | None:
    """The digest of each part's pickle in a ``submit`` whose parts are digested (``dg``,
    one per part, checked for form by the signer), or None. Only parts that are a
    pickle alone (no buffers) are digested: each then goes on with its digest as
    ``cdg``, and its engine checks it (docs/protocol.md §2)."""
    if dg is None:
        return None
    if splits is None or any(splits):
        raise P.ProtocolViolation("digests (dg) come only with parts that have no buffers")
    return list(dg)
