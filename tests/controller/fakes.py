"""The controller's hub with no process and no socket: a recording outbox, fake engines
that answer by hand, and a clock moved by hand.

The hub is the controller's real logic (``multiengine.controller.hub``); only the wire
is replaced. Messages are the hub's own ``Message`` objects, as the loop would hand
them over after checking their signatures.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import msgpack

from multiengine.controller.hub import Hub
from multiengine.controller.store import ResultStore
from multiengine.wire import protocol as P
from multiengine.wire.message import Message
from multiengine.wire.protocol import ErrorReport, TaskFlags, TaskItem, TaskLink


@dataclass
class Sent:
    channel: str  # "client", "engine" or "heartbeat"
    to: bytes
    header: dict[str, Any]
    content: Any
    buffers: list[Any]


def _as_sent(header: dict[str, Any]) -> dict[str, Any]:
    """A header as the receiver reads it: through msgpack, as on the wire (tuples come
    as lists)."""
    P.check_header(header)
    return msgpack.unpackb(msgpack.packb(header))  # type: ignore[no-any-return]


class RecordingOutbox:
    """An Outbox that keeps what the hub sends, in order."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.together: list[list[bytes]] = []  # the engines of each message signed once

    def to_client(
        self, client: bytes, header: dict[str, Any], content: Any = b"", buffers: Any = ()
    ) -> None:
        self.sent.append(Sent("client", client, _as_sent(header), content, list(buffers)))

    def to_engine(
        self, ident: bytes, header: dict[str, Any], content: Any = b"", buffers: Any = ()
    ) -> None:
        self.sent.append(Sent("engine", ident, _as_sent(header), content, list(buffers)))

    def to_engines(
        self, idents: list[bytes], header: dict[str, Any], content: Any = b"", buffers: Any = ()
    ) -> None:
        self.together.append(list(idents))
        for ident in idents:
            self.to_engine(ident, header, content, buffers)

    def to_heartbeat(self, ident: bytes, header: dict[str, Any]) -> None:
        self.sent.append(Sent("heartbeat", ident, _as_sent(header), b"", []))


def task(
    name: str,
    *,
    priority: int = 0,
    retries: int = 0,
    time_limit: float | None = None,
    retry_lost: bool = True,
    recovery: list[str] | None = None,
) -> list[tuple[TaskLink, bytes]]:
    """A task chain to submit: the controller never opens the content, so it is a label."""
    chain = [
        (TaskLink(P.MAP_TASK, retries, name, 0, priority, time_limit, retry_lost), name.encode())
    ]
    for r in recovery or []:
        chain.append((TaskLink(P.MAP_TASK, 0, r, 0, 0, None, True), r.encode()))
    return chain


class FakeCluster:
    """A hub, ``n`` registered fake engines, and a client, all driven by the test."""

    CLIENT = b"c-test"

    def __init__(
        self,
        n: int = 2,
        *,
        penalty: float = 1.0,
        task_timeout: float = 30.0,
        store: ResultStore | None = None,
        strict_clients: bool = False,
        engine_id_grace: float = 300.0,
    ) -> None:
        self.now = 1000.0
        self.outbox = RecordingOutbox()
        self.hub = Hub(
            self.outbox,
            heartbeat_period=0.5,
            heartbeat_timeout=3.0,
            task_failure_penalty=penalty,
            task_timeout=task_timeout,
            engine_id_grace=engine_id_grace,
            clock=lambda: self.now,
            store=store,
            strict_clients=strict_clients,
        )
        self._ids = itertools.count(1)
        self._conns = itertools.count(100)  # connection numbers (file descriptors, for real)
        self.conn_of: dict[bytes, int] = {}  # command connections
        self.hb_conn_of: dict[bytes, int] = {}  # heartbeat connections
        self.last_id = 0
        self.idents = [self.register() for _ in range(n)]

    def _turn(self) -> None:
        """What the controller's loop does after each batch of messages."""
        self.hub.scheduler.table.flush()
        self.hub.store.sync()  # what waits for the disk (a results.db) is answered

    # ------------------------------------------------------------ engines
    def register(
        self,
        ident: bytes | None = None,
        *,
        desired: int | None = None,
        epoch: int = 0,
        new_connection: bool = True,
        hello: bool = True,
        direct: str = "",
    ) -> bytes:
        """A fake engine registers (a new one, or ``ident`` again); its identity.

        ``new_connection``: it comes on a connection of its own (False: on the one it
        last used, as a repeated ``register`` does). ``hello``: it then names its
        heartbeat connection, as an engine does once registered. ``direct``: the
        endpoint of its direct socket, if it has one."""
        ident = ident or b"e-%d" % len(self.conn_of)
        if new_connection or ident not in self.conn_of:
            self.conn_of[ident] = next(self._conns)
        header = {"t": P.REGISTER, "desired_id": desired, "pid": 100, "host": "fake"}
        header["epoch"] = epoch
        if direct:
            header["direct"] = direct
        self.hub.on_engine(Message([ident], header, b"", []), self.conn_of[ident])
        if hello:
            self.hello(ident, epoch, new_connection=new_connection)
        if hasattr(self, "idents") and ident not in self.idents:
            self.idents.append(ident)
        return ident

    def registered_id(self, ident: bytes) -> int:
        """The id the last ``registered`` sent to ``ident`` gave it."""
        return next(
            s.header["id"]
            for s in reversed(self.outbox.sent)
            if s.to == ident and s.header["t"] == P.REGISTERED
        )

    def hello(self, ident: bytes, epoch: int = 0, *, new_connection: bool = True) -> None:
        """Engine ``ident`` says ``hello`` on its heartbeat connection (a new one unless
        ``new_connection`` is False)."""
        if new_connection or ident not in self.hb_conn_of:
            self.hb_conn_of[ident] = next(self._conns)
        header = {"t": P.HELLO, "epoch": epoch}
        self.hub.on_heartbeat(Message([ident], header, b"", []), self.hb_conn_of[ident])

    def disconnect(self, ident: bytes) -> None:
        """The command connection of engine ``ident`` closes (it died)."""
        self.hub.on_disconnect(self.conn_of[ident])

    def silent(self, ident: bytes) -> None:
        """Engine ``ident`` went silent past the heartbeat timeout: libzmq closed its
        heartbeat connection."""
        self.hub.on_disconnect(self.hb_conn_of[ident])

    def engine(self, eid: int) -> Any:
        return self.hub.engines[eid]

    def commands_to(self, eid: int) -> list[str]:
        """The names (the labels of tasks) of every command sent to engine ``eid``."""
        ident = self.idents[eid]
        return [
            s.content.decode() if s.header["name"] == "task" else s.header["name"]
            for s in self.outbox.sent
            if s.channel == "engine" and s.to == ident and s.header["t"] == P.CMD
        ]

    def running(self, eid: int) -> str | None:
        cmd = self.engine(eid).current
        return None if cmd is None else cmd.desc

    def sent_ahead(self, eid: int) -> list[str]:
        return [c.desc for c in self.engine(eid).ahead]

    def interrupts_to(self, eid: int) -> list[tuple[str, str]]:
        """(command label, why) of every interrupt sent to engine ``eid``."""
        by_id = {
            s.header["cmd"]: s.content.decode() if s.header["name"] == "task" else s.header["name"]
            for s in self.outbox.sent
            if s.channel == "engine" and s.header["t"] == P.CMD
        }
        return [
            (by_id[s.header["cmd"]], s.header["why"])
            for s in self.outbox.sent
            if s.channel == "heartbeat"
            and s.to == self.idents[eid]
            and s.header["t"] == P.INTERRUPT
        ]

    def reply(
        self,
        eid: int,
        *,
        ok: bool = True,
        flags: TaskFlags | None = None,
        cmd_id: int | None = None,
        ename: str = "ValueError",
        elapsed: float = 0.01,
    ) -> None:
        """Engine ``eid`` answers its current command (or ``cmd_id``), which ran
        ``elapsed`` seconds."""
        engine = self.engine(eid)
        cmd_id = cmd_id if cmd_id is not None else engine.current.cmd_id
        header: dict[str, Any] = {"t": P.REPLY, "cmd": cmd_id, "elapsed": elapsed}
        if ok:
            header.update(status=P.STATUS_OK, enc=P.PICKLE)
            content = b"value"
        else:
            header.update(status=P.STATUS_ERROR, enc=P.MSGPACK)
            content = ErrorReport(ename, "it failed", "Traceback...", "task", eid).to_bytes()
        if flags is not None:
            header["task"] = flags.to_wire()
        self.hub.on_engine(Message([self.idents[eid]], header, content, []))
        self._turn()

    def revoked(self, eid: int, label: str, unrun: bool = True) -> None:
        """Engine ``eid``'s heartbeat thread answers a revoke or abort of ``label``."""
        cmd_id = next(
            s.header["cmd"]
            for s in self.outbox.sent
            if s.channel == "engine"
            and s.to == self.idents[eid]
            and s.header["t"] == P.CMD
            and s.content == label.encode()
        )
        header = {"t": P.REVOKED, "cmd": cmd_id, "ok": unrun}
        self.hub.on_heartbeat(Message([self.idents[eid]], header, b"", []))
        self._turn()

    def answer_unrun(self, eid: int) -> None:
        """Engine ``eid`` reaches a command it was told not to run, and says so."""
        self.reply(eid, ok=False, flags=TaskFlags("revoked", False), ename="_Revoked")

    def lose(self, eid: int) -> None:
        """Engine ``eid`` goes silent past the heartbeat timeout."""
        self.silent(self.engine(eid).ident)

    def advance(self, seconds: float) -> None:
        """Move the clock; run what the controller's loop would on waking up."""
        self.now += seconds
        wake = self.hub.scheduler.next_wakeup()
        if wake is not None and self.now >= wake:
            self.hub.scheduler.schedule()
        self.hub.sweep(self.now)
        self._turn()

    # ------------------------------------------------------------ the client
    def send(self, header: dict[str, Any], buffers: list[Any] | None = None) -> list[Sent]:
        """Send a client request; the answers it got at once (maybe none)."""
        self.last_id = next(self._ids)
        header = {**header, "id": self.last_id, "rt": self.CLIENT}
        before = len(self.outbox.sent)
        self.hub.on_client(Message([self.CLIENT], header, b"", buffers or []))
        self._turn()
        return [s for s in self.outbox.sent[before:] if s.header.get("id") == self.last_id]

    def answers_to(self, msg_id: int) -> list[Sent]:
        return [
            s for s in self.outbox.sent if s.channel == "client" and s.header.get("id") == msg_id
        ]

    def request(self, header: dict[str, Any], buffers: list[Any] | None = None) -> Sent:
        """Send a client request that is answered at once; the answer."""
        answers = self.send(header, buffers)
        assert answers, f"no answer to {header['t']}"
        return answers[0]

    def submit(self, *chains: list[tuple[TaskLink, bytes]]) -> list[int]:
        frames = [content for chain in chains for _, content in chain]
        tasks = [[link.to_wire() for link, _ in chain] for chain in chains]
        answer = self.request({"t": P.TASK_SUBMIT, "tasks": tasks}, frames)
        return msgpack.unpackb(answer.content)  # type: ignore[no-any-return]

    def results(self, *tids: int) -> dict[int, TaskItem]:
        answer = self.request({"t": P.TASK_RESULT, "ids": list(tids), "mode": P.NOW})
        return {i.tid: i for i in map(TaskItem.from_wire, answer.header["items"])}

    def state(self, tid: int) -> str:
        return self.results(tid)[tid].state

    def error_of(self, tid: int) -> str:
        """The error name a finished task failed with."""
        item = self.results(tid)[tid]
        answer = self.request({"t": P.TASK_RESULT, "ids": [tid], "mode": P.NOW})
        assert item.part is not None and item.part.status == P.STATUS_ERROR
        return ErrorReport.from_bytes(answer.buffers[0]).ename

    def abort(self, tid: int) -> Any:
        return msgpack.unpackb(self.request({"t": P.TASK_ABORT, "tid": tid}).content)
