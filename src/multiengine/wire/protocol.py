"""The multiengine protocol in one place: message types, their header fields, and the
structured items that travel inside headers.

``message.py`` frames and signs messages; this module says what their headers mean.
Every process builds and reads headers with the names defined here:

* **Message types** are the constants below (``SUBMIT``, ``REPLY``, ...). :data:`MESSAGES`
  lists, per channel and sender, the header fields each type may carry; with
  ``MULTIENGINE_CHECK_PROTOCOL=1`` in the environment (the test suite sets it) every
  message sent is checked against it. docs/protocol.md describes the same table, and a
  test checks that the two agree.
* **Items** that travel as lists inside headers are named tuples with one encoding
  (``to_wire``) and one decoding (``from_wire``): :class:`PartHeader` (one engine's
  share of a result), :class:`Xfer` (buffers that follow in pieces), :class:`TaskLink`
  (one link of a submitted task's chain), :class:`TaskItem` (a task's state and
  result), :class:`TaskFlags` (a failed task attempt, for the scheduler) and
  :class:`ErrorReport` (the msgpack content of an error part).
* :func:`pack_parts` and :func:`split_parts` lay several (content, buffers) parts into
  one message's frames and back, with the ``raw`` indices the signature needs: the
  controller's results, a task submit, a scatter all use them.

A header names engines by id, commands by number and jobs by id; it never holds user
data, so the controller routes without unpickling anything.

It is long because it is the protocol's one definition: every message type of three
channels with its fields, and every item's encoding beside its decoding. Split, a
sender and a receiver could read different definitions of the same header.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import msgpack

__all__ = [
    "COMMON_FIELDS",
    "job_id",
    "MESSAGES",
    "MessageSpec",
    "STAMP_FIELDS",
    "ErrorReport",
    "PartHeader",
    "Printed",
    "BatchedCmd",
    "BatchedReply",
    "TaskFlags",
    "TaskItem",
    "TaskLink",
    "Xfer",
    "ProtocolViolation",
    "check_header",
    "pack_parts",
    "split_parts",
]

# ---------------------------------------------------------------- channels and senders
CLIENT_CHANNEL = "client"
ENGINE_CHANNEL = "engine"
HEARTBEAT_CHANNEL = "heartbeat"
DIRECT_CHANNEL = "direct"  # a client and an engine of one host, past the controller

CLIENT = "client"
CONTROLLER = "controller"
ENGINE = "engine"

# ---------------------------------------------------------------- message types
# client -> controller
CONNECT = "connect"
GET_IDS = "get_ids"
STATUS = "status"
SUBMIT = "submit"
FETCH = "fetch"
FLUSH = "flush"
INTERRUPT = "interrupt"
WAIT_STARTED = "wait_started"
CANCEL = "cancel"
TASK_SUBMIT = "task_submit"
TASK_RESULT = "task_result"
TASK_ABORT = "task_abort"
TASK_STATUS = "task_status"
TASK_CLEAR = "task_clear"
TASK_SPIN = "task_spin"
TASK_RESUBMIT = "task_resubmit"
HISTORY = "history"
MONITOR = "monitor"  # a live view's poll: status, recent events, engines' memory and CPU
NODES = "nodes"  # which engines share memory with whom (multiengine.wire.shm)
ENGINE_EXIT = "engine_exit"  # from the process supervising the engines: one has died
DIRECT_ADDRS = "direct_addrs"  # where the engines of this host take direct commands
DIRECT_JOB = "direct_job"  # a command a client sent straight to an engine, for the books
# controller -> client
VALUE = "value"
ACK = "ack"
RESULT = "result"
ERROR = "error"
TASK_RESULTS = "task_results"
# engine channel
REGISTER = "register"
REGISTERED = "registered"
CMD = "cmd"
REPLY = "reply"
CMDS = "cmds"  # several task commands in one message (controller -> engine)
REPLIES = "replies"  # several task replies in one message (engine -> controller)
BYE = "bye"
DIRECT_DONE = "direct_done"  # engine -> controller: a direct command was answered
DIRECT_DONES = "direct_dones"  # engine -> controller: quick direct commands it answered
DIRECT_ON = "direct_on"  # controller -> engine: a client learned your direct socket: read it
DIRECT_FLUSH = "direct_flush"  # controller -> engine: a command waits: send the reports held
# direct channel
DIRECT = "direct"  # client -> engine: a small command, answered straight to "rt"
# heartbeat channel
REVOKED = "revoked"
SHUTDOWN = "shutdown"
HELLO = "hello"
PROBE = "probe"  # controller -> engine: report your memory and CPU (a live view asked)
USAGE = "usage"  # engine -> controller: the answer, from the heartbeat thread
# on more than one channel
PING = "ping"
PONG = "pong"
CHUNK = "chunk"
OUTPUT = "output"
PROGRESS = "progress"  # how many engines of a long blocking call have answered

# ---------------------------------------------------------------- values of header fields
STATUS_OK = "ok"  # status of a reply or part
STATUS_ERROR = "error"
PICKLE = "p"  # enc: the content is a pickle made by a client or an engine
MSGPACK = "m"  # enc: msgpack, made by the controller or an engine's error report
SLICES = "s"  # enc: a long list from an engine, its buffers the pickles of its slices

# task states (TaskItem.state)
SCHEDULED = "scheduled"  # waiting in the controller
PENDING = "pending"  # handed to an engine: running or sent ahead
SUCCEEDED = "succeeded"
FAILED = "failed"
UNKNOWN_TASK = "unknown"
FINISHED_STATES = frozenset({SUCCEEDED, FAILED})

# task kinds
STRING_TASK = "string"
MAP_TASK = "map"

# task_result modes: answer now, once all are done, or once any is done
NOW = "now"
ALL = "all"
ANY = "any"

# why the controller interrupts a command (heartbeat ``interrupt``)
WHY_INTERRUPT = "interrupt"  # mec.interrupt(): KeyboardInterrupt in the user code
WHY_ABORT = "abort"  # tc.abort(): the task ends with TaskAborted
WHY_REVOKE = "revoke"  # a task sent ahead is taken back, unrun, for another engine

# wait_started answers
RUNNING = "running"
DONE = "done"

# engine commands run by the engine (submit ``cmd``, engine ``cmd`` ``name``)
ENGINE_COMMANDS = frozenset(
    {
        "execute",
        "push",
        "pull",
        "push_function",
        "pull_function",
        "push_serialized",
        "pull_serialized",
        "get_result",
        "reset",
        "keys",
        "kill",
        "apply",
        "map",
        "task",
        "set_properties",
        "get_properties",
        "has_properties",
        "del_properties",
        "clear_properties",
    }
)
# commands a client may send straight to an engine of its host (docs/protocol.md §6,
# "A direct path on one host")
DIRECT_COMMANDS = frozenset({"execute", "apply", "map", "pull"})
# answered by the controller itself, without queueing
CONTROLLER_COMMANDS = frozenset({"queue_status", "clear_queue"})


# ---------------------------------------------------------------- fields of every header
# The replay stamp that Signer.frames (wire/message.py) puts in every header it signs:
# the sending session's id, its message counter, and the sender's clock (Unix time).
# Receivers drop a message whose stamp is not fresh (docs/protocol.md §2).
STAMP_FIELDS = ("sid", "seq", "ts")
COMMON_FIELDS = frozenset({"t", *STAMP_FIELDS})  # besides each type's own fields


# ---------------------------------------------------------------- the table
@dataclass(frozen=True)
class MessageSpec:
    type: str
    channel: str
    sender: str
    fields: frozenset[str]  # header fields besides COMMON_FIELDS


def _spec(type_: str, channel: str, sender: str, *fields: str) -> MessageSpec:
    return MessageSpec(type_, channel, sender, frozenset(fields))


# The ``ename`` of the ``error`` a restored controller answers to a request from a client
# socket that has not sent it ``connect`` yet: the request was not run, and the client
# sends it again once connected (docs/protocol.md, "A controller that restarts").
CONNECT_AGAIN = "ConnectAgain"

# Client requests a client may send again after a controller restart without doing
# anything twice (a ``task_submit`` goes with its ``key``).
SAFE_TO_RESEND = frozenset(
    {
        *(FETCH, WAIT_STARTED, TASK_RESULT, TASK_STATUS, TASK_CLEAR, FLUSH, STATUS, GET_IDS),
        *(HISTORY, MONITOR, NODES),
    }
)

MESSAGES: tuple[MessageSpec, ...] = (
    # client channel, client -> controller. Every request has "id" (echoed in its answer)
    # and "rt", the identity of the client socket its answer goes to.
    _spec(CONNECT, CLIENT_CHANNEL, CLIENT, "id", "rt"),
    _spec(GET_IDS, CLIENT_CHANNEL, CLIENT, "id", "rt"),
    _spec(STATUS, CLIENT_CHANNEL, CLIENT, "id", "rt"),
    _spec(NODES, CLIENT_CHANNEL, CLIENT, "id", "rt"),
    _spec(
        SUBMIT,
        CLIENT_CHANNEL,
        CLIENT,
        *("id", "rt", "cid", "cmd", "targets", "block", "desc"),
        *("parts", "xfer", "controller", "live", "progress", "raw", "fetch_id", "dg"),
    ),
    _spec(CHUNK, CLIENT_CHANNEL, CLIENT, "x", "p", "rt", "raw"),
    _spec(FETCH, CLIENT_CHANNEL, CLIENT, "id", "rt", "job", "block"),
    _spec(FLUSH, CLIENT_CHANNEL, CLIENT, "id", "rt", "cid"),
    _spec(PING, CLIENT_CHANNEL, CLIENT, "id", "rt"),
    _spec(INTERRUPT, CLIENT_CHANNEL, CLIENT, "id", "rt", "targets"),
    _spec(WAIT_STARTED, CLIENT_CHANNEL, CLIENT, "id", "rt", "job", "tid"),
    _spec(CANCEL, CLIENT_CHANNEL, CLIENT, "id", "rt", "job"),
    _spec(TASK_SUBMIT, CLIENT_CHANNEL, CLIENT, "id", "rt", "tasks", "raw", "key", "again", "live"),
    _spec(TASK_RESULT, CLIENT_CHANNEL, CLIENT, "id", "rt", "ids", "mode"),
    _spec(TASK_ABORT, CLIENT_CHANNEL, CLIENT, "id", "rt", "tid"),
    _spec(TASK_STATUS, CLIENT_CHANNEL, CLIENT, "id", "rt", "verbose"),
    _spec(TASK_CLEAR, CLIENT_CHANNEL, CLIENT, "id", "rt"),
    _spec(TASK_SPIN, CLIENT_CHANNEL, CLIENT, "id", "rt"),
    _spec(TASK_RESUBMIT, CLIENT_CHANNEL, CLIENT, "id", "rt", "ids"),
    _spec(
        HISTORY, CLIENT_CHANNEL, CLIENT, "id", "rt", "kind", "status", "engine", "since", "limit"
    ),
    _spec(MONITOR, CLIENT_CHANNEL, CLIENT, "id", "rt", "since"),
    _spec(
        ENGINE_EXIT,
        CLIENT_CHANNEL,
        CLIENT,
        "id",
        "rt",
        "engine",
        "pid",
        "cause",
        "restarts",
        "fate",
    ),
    _spec(DIRECT_ADDRS, CLIENT_CHANNEL, CLIENT, "id", "rt"),
    _spec(
        DIRECT_JOB,
        CLIENT_CHANNEL,
        CLIENT,
        "id",
        "rt",
        "cid",
        "cmd",
        "name",
        "engine",
        "job",
        "desc",
        "url",
    ),
    # client channel, controller -> client
    _spec(VALUE, CLIENT_CHANNEL, CONTROLLER, "id"),
    _spec(ACK, CLIENT_CHANNEL, CONTROLLER, "id", "job", "started"),
    _spec(RESULT, CLIENT_CHANNEL, CONTROLLER, "id", "job", "parts", "stream", "ahead", "raw"),
    _spec(ERROR, CLIENT_CHANNEL, CONTROLLER, "id", "ename", "evalue"),
    _spec(PONG, CLIENT_CHANNEL, CONTROLLER, "id", "run"),
    _spec(CHUNK, CLIENT_CHANNEL, CONTROLLER, "id", "p", "xfer", "enc", "raw", "dg"),
    _spec(OUTPUT, CLIENT_CHANNEL, CONTROLLER, "id", "engine", "name"),
    _spec(PROGRESS, CLIENT_CHANNEL, CONTROLLER, "id", "done", "total"),
    _spec(TASK_RESULTS, CLIENT_CHANNEL, CONTROLLER, "id", "items", "raw"),
    # engine channel
    _spec(
        REGISTER,
        ENGINE_CHANNEL,
        ENGINE,
        "desired_id",
        "pid",
        "host",
        "epoch",
        "node",
        "direct",
        "ident",
    ),
    _spec(REGISTERED, ENGINE_CHANNEL, CONTROLLER, "id", "hb_period", "hb_timeout", "epoch"),
    _spec(CMD, ENGINE_CHANNEL, CONTROLLER, "cmd", "name", "xfer", "tl", "live", "raw", "cdg"),
    _spec(REPLY, ENGINE_CHANNEL, ENGINE, "cmd", "status", "enc", "elapsed", "task", "xfer", "raw"),
    _spec(CMDS, ENGINE_CHANNEL, CONTROLLER, "cmds", "raw"),
    _spec(REPLIES, ENGINE_CHANNEL, ENGINE, "replies", "raw"),
    _spec(OUTPUT, ENGINE_CHANNEL, ENGINE, "cmd", "name"),
    _spec(CHUNK, ENGINE_CHANNEL, CONTROLLER, "cmd", "raw"),
    _spec(CHUNK, ENGINE_CHANNEL, ENGINE, "cmd", "raw", "dg"),
    _spec(BYE, ENGINE_CHANNEL, ENGINE),
    _spec(
        DIRECT_DONE,
        ENGINE_CHANNEL,
        ENGINE,
        *("cmd", "status", "enc", "elapsed", "ename", "raw"),
        *("job", "id", "rt", "cid", "name", "desc", "started"),
    ),
    _spec(DIRECT_DONES, ENGINE_CHANNEL, ENGINE, "dones"),
    _spec(DIRECT_ON, ENGINE_CHANNEL, CONTROLLER),
    _spec(DIRECT_FLUSH, ENGINE_CHANNEL, CONTROLLER),
    # direct channel (a client and an engine of one host, over a Unix stream)
    _spec(
        DIRECT,
        DIRECT_CHANNEL,
        CLIENT,
        *("id", "rt", "cmd", "name", "job", "cid", "desc", "live", "raw"),
    ),
    _spec(RESULT, DIRECT_CHANNEL, ENGINE, "id", "job", "parts", "raw"),
    _spec(OUTPUT, DIRECT_CHANNEL, ENGINE, "id", "engine", "name"),
    # heartbeat channel (the heartbeats themselves are libzmq's ZMTP pings on this
    # channel's connection: no message of ours)
    _spec(INTERRUPT, HEARTBEAT_CHANNEL, CONTROLLER, "cmd", "why"),
    _spec(SHUTDOWN, HEARTBEAT_CHANNEL, CONTROLLER),
    _spec(PROBE, HEARTBEAT_CHANNEL, CONTROLLER),
    _spec(HELLO, HEARTBEAT_CHANNEL, ENGINE, "epoch"),
    _spec(REVOKED, HEARTBEAT_CHANNEL, ENGINE, "cmd", "ok"),
    _spec(USAGE, HEARTBEAT_CHANNEL, ENGINE, "rss", "cpu"),
)

_ALLOWED: dict[str, frozenset[str]] = {}
for _m in MESSAGES:
    _ALLOWED[_m.type] = _ALLOWED.get(_m.type, frozenset()) | _m.fields | COMMON_FIELDS


class ProtocolViolation(Exception):
    """A header that names an unknown message type or a field its type does not have."""


def check_header(header: dict[str, Any]) -> None:
    """Raise :class:`ProtocolViolation` unless ``header`` follows :data:`MESSAGES`."""
    t = header.get("t")
    allowed = _ALLOWED.get(t) if isinstance(t, str) else None
    if allowed is None:
        raise ProtocolViolation(f"unknown message type {t!r}")
    extra = set(header) - allowed
    if extra:
        raise ProtocolViolation(f"{t!r} messages have no field(s) {sorted(extra)}")


# ---------------------------------------------------------------- structured items
def _items(item: Any, what: str, least: int, most: int) -> Sequence[Any]:
    if not isinstance(item, (list, tuple)) or not least <= len(item) <= most:
        raise ProtocolViolation(f"malformed {what}: {item!r}")
    return item


class Xfer(NamedTuple):
    """Buffers that follow a message in pieces (``header["xfer"]``): their sizes, the
    number of pieces, and the piece size they were cut with."""

    sizes: list[int]
    n: int
    piece: int

    def to_wire(self) -> list[Any]:
        return [self.sizes, self.n, self.piece]

    @classmethod
    def from_wire(cls, item: Any) -> Xfer:
        sizes, n, piece = _items(item, "xfer", 3, 3)
        return cls(list(sizes), int(n), int(piece))


class PartHeader(NamedTuple):
    """One engine's share of a ``result`` (or a finished task's outcome).

    Its content frame is followed by ``nframes`` frames: the buffers of the content's
    pickle, or, when ``sizes`` is set, pieces that rebuild buffers of those sizes.
    """

    engine_id: int
    status: str  # STATUS_OK or STATUS_ERROR
    enc: str  # PICKLE, MSGPACK or SLICES
    nframes: int
    sizes: list[int] | None = None
    piece: int | None = None
    started: float | None = None  # when the command became its engine's current one
    completed: float | None = None  # when its answer reached the controller
    elapsed: float | None = None  # seconds the engine ran it

    def to_wire(self) -> list[Any]:
        return list(self)

    @classmethod
    def from_wire(cls, item: Any) -> PartHeader:
        if type(item) is list:  # the common case, checked quickly
            if len(item) == 9:  # every field, as the controller sends: no defaults to fill
                return tuple.__new__(cls, item)
            if 4 <= len(item) <= 9:
                return cls(*item)
        return cls(*_items(item, "result part", 4, 9))


class TaskLink(NamedTuple):
    """One link of a submitted task's chain (the task, then its recovery tasks): what the
    scheduler needs, sent beside the pickled task, which the controller never opens."""

    kind: str  # STRING_TASK or MAP_TASK
    retries: int
    desc: str
    nbuf: int  # buffers after the link's content frame
    priority: int = 0
    time_limit: float | None = None
    retry_lost: bool = True  # retry when the engine dies under it

    def to_wire(self) -> list[Any]:
        return list(self)

    @classmethod
    def from_wire(cls, item: Any) -> TaskLink:
        kind, retries, desc, nbuf, priority, time_limit, retry_lost = _items(
            item, "task link", 7, 7
        )
        return cls(
            str(kind),
            max(0, int(retries)),
            str(desc),
            max(0, int(nbuf)),
            int(priority),
            float(time_limit) if time_limit else None,
            bool(retry_lost),
        )


class TaskItem(NamedTuple):
    """A task in a ``task_results`` answer: its state and, once finished, its outcome
    (``part``), whose frames follow in the message's buffers."""

    tid: int
    state: str
    kind: str | None = None
    submitted: float | None = None
    started: float | None = None
    completed: float | None = None
    elapsed: float | None = None  # seconds the engine ran it
    part: PartHeader | None = None

    def to_wire(self) -> list[Any]:
        part = self.part.to_wire() if self.part is not None else None
        return [*self[:7], part]

    @classmethod
    def from_wire(cls, item: Any) -> TaskItem:
        if type(item) is not list or len(item) != 8:
            raise ProtocolViolation(f"malformed task item: {item!r}")
        part = item[7]
        header = PartHeader.from_wire(part) if part is not None else None
        return cls(item[0], item[1], item[2], item[3], item[4], item[5], item[6], header)


class TaskFlags(NamedTuple):
    """How a task attempt failed, for the scheduler (``reply`` header ``task``).

    ``why``: ``"reject"`` (TaskRejectError), ``"unmet"`` (its ``depend`` is false here),
    ``"timeout"``, ``"aborted"``, ``"revoked"`` (taken back unrun) or None (it raised);
    ``retry``: whether the task's ``retry_on`` admits this failure.
    """

    why: str | None
    retry: bool

    def to_wire(self) -> list[Any]:
        return [self.why, self.retry]

    @classmethod
    def from_wire(cls, item: Any) -> TaskFlags:
        why, retry = _items(item, "task flags", 2, 2)
        return cls(why if isinstance(why, str) else None, bool(retry))


class BatchedCmd(NamedTuple):
    """One task command of a ``cmds`` message (what a ``cmd`` header would say, and how
    many buffers follow its content)."""

    cmd: int
    name: str
    nbuf: int
    tl: float | None = None  # its time limit
    live: bool = False  # stream what it prints

    def to_wire(self) -> list[Any]:
        return [self.cmd, self.name, self.nbuf, self.tl, self.live]

    @classmethod
    def from_wire(cls, item: Any) -> BatchedCmd:
        cmd, name, nbuf, tl, live = _items(item, "batched command", 5, 5)
        if type(nbuf) is not int or not isinstance(name, str):
            raise ProtocolViolation(f"malformed batched command: {item!r}")
        return cls(cmd, name, nbuf, tl if isinstance(tl, (int, float)) else None, bool(live))

    def header(self) -> dict[str, Any]:
        """The ``cmd`` header this command would have had on its own."""
        h: dict[str, Any] = {"t": CMD, "cmd": self.cmd, "name": self.name}
        if self.tl:
            h["tl"] = self.tl
        if self.live:
            h["live"] = True
        return h


class BatchedReply(NamedTuple):
    """One reply of a ``replies`` message (what a ``reply`` header would say, and how many
    buffers follow its content)."""

    cmd: Any
    status: str
    enc: str
    elapsed: float
    task: list[Any] | None  # TaskFlags.to_wire(), or None
    nbuf: int

    def to_wire(self) -> list[Any]:
        return [self.cmd, self.status, self.enc, self.elapsed, self.task, self.nbuf]

    @classmethod
    def from_wire(cls, item: Any) -> BatchedReply:
        cmd, status, enc, elapsed, task, nbuf = _items(item, "batched reply", 6, 6)
        if type(nbuf) is not int or not isinstance(status, str) or not isinstance(enc, str):
            raise ProtocolViolation(f"malformed batched reply: {item!r}")
        return cls(cmd, status, enc, elapsed, task, nbuf)


class Printed(NamedTuple):
    """The value of an ``apply``, ``map`` or ``task`` command whose function printed (or
    logged): the engine pickles this instead of the bare value, and the client unwraps
    it. It travels inside the pickled content, so the controller never sees it."""

    value: Any
    stdout: str
    stderr: str


class ErrorReport(NamedTuple):
    """The content of a failed part (always msgpack, never a bare pickle).

    Made by an engine: the exception's name, text and formatted traceback, the method
    and engine, the exception pickled with cloudpickle when it can be (``exc``), and what
    the command printed before it failed (``stdout``, ``stderr``), when it printed.
    Made by the controller: only ``ename`` and ``evalue``.
    """

    ename: str
    evalue: str
    traceback: str | None = None
    method: str | None = None
    engine_id: int | None = None
    exc: bytes | None = None
    stdout: str | None = None  # what the failed command printed, when it printed
    stderr: str | None = None

    def to_bytes(self) -> bytes:
        data = {k: v for k, v in zip(self._fields, self, strict=True) if v is not None}
        return msgpack.packb(data)  # type: ignore[no-any-return]

    @classmethod
    def from_bytes(cls, data: Any) -> ErrorReport:
        env = msgpack.unpackb(data.buffer if hasattr(data, "buffer") else data)
        if not isinstance(env, dict):
            raise ProtocolViolation("an error report is not a map")
        return cls(
            str(env.get("ename", "KernelError")),
            str(env.get("evalue", "")),
            env.get("traceback"),
            env.get("method"),
            env.get("engine_id"),
            env.get("exc"),
            env.get("stdout"),
            env.get("stderr"),
        )


# ---------------------------------------------------------------- parts in frames
def pack_parts(
    parts: Iterable[tuple[Any, Sequence[Any]]],
    hashed: Sequence[bool] = (),
) -> tuple[list[int], list[Any], list[int]]:
    """Lay ``(content, buffers)`` parts one after another in a message's frames.

    Returns the buffer count of each part, the frames, and the indices of the frames
    that are raw buffers (the signature covers their length only; every content frame,
    a pickle or msgpack, is hashed in full). ``hashed[i]`` True: part i's buffers are
    pickles too (encoding ``SLICES``), hashed in full like its content.
    """
    counts: list[int] = []
    frames: list[Any] = []
    raw: list[int] = []
    for i, (content, buffers) in enumerate(parts):
        frames.append(content)
        if buffers:
            if not (i < len(hashed) and hashed[i]):
                raw.extend(range(len(frames), len(frames) + len(buffers)))
            frames.extend(buffers)
            counts.append(len(buffers))
        else:
            counts.append(0)
    return counts, frames, raw


def job_id(count: int, tag: str) -> str:
    """A job id: 40 hex digits, the time in milliseconds, ``count`` and the 16 digits of
    its maker's ``tag`` (the controller's, or a client's for a direct command): ids sort
    by time, and say who made them."""
    return "%016x%08x%s" % (int(time.time() * 1000), count & 0xFFFFFFFF, tag)


def split_parts(counts: Sequence[int], frames: list[Any]) -> list[tuple[Any, list[Any]]]:
    """The ``(content, buffers)`` parts that :func:`pack_parts` laid out."""
    out: list[tuple[Any, list[Any]]] = []
    pos = 0
    end = len(frames)
    for n in counts:
        nxt = pos + 1 + n
        if type(n) is not int or n < 0 or nxt > end:
            raise ProtocolViolation("the parts do not match the frames")
        out.append((frames[pos], frames[pos + 1 : nxt]))
        pos = nxt
    if pos != end:
        raise ProtocolViolation("frames left over after the last part")
    return out
