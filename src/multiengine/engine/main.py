"""The engine: connect, register, then run commands until told to stop (the command line,
``multiengine engine``, is cli.py).

The main thread owns the command socket: it receives a command, runs it, and sends
the answer. On the controller's host it also reads the direct socket of direct.py
(small commands from clients of that host over Unix stream connections, answered to
them straight), taking the
controller's commands first, once the controller says a client may use it
(``direct_on``; until then it waits on the command socket alone, which costs less).
A daemon thread owns the heartbeat socket (``hello``, ``interrupt``, ``revoked``,
``shutdown``). Heartbeats are libzmq's: the controller sends ZMTP pings on
the heartbeat socket's connection and libzmq answers them here, in its I/O thread (no
Python, no GIL); the controller drops the connection of an engine that stops answering,
and the pings' TTL makes this side drop a controller that stops pinging. After each
registration the heartbeat thread says ``hello`` on that connection, so the controller
knows it. The same thread watches both connections: when either closes, the engine has
lost the controller. It then interrupts what runs (the controller has already failed
it; a direct command, answered by the engine itself, runs on), and the main thread
registers again under the same id, keeping the namespace,
until ``reconnect_timeout`` runs out (docs/protocol.md §7).

It is long because it is one process's life: the command loop, the heartbeat thread,
registering (again), interrupts and the loss of the controller share the engine's state
(its id, epoch, current command, sockets) under one lock; the commands themselves are
in commands.py, the namespace in interpreter.py, the direct socket's messages in
direct.py.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import zmq
from zmq.utils.monitor import parse_monitor_message

from ..config import ControllerConfig
from ..errors import SerializationError
from ..wire import chunks, curve, recycle, shm, slices
from ..wire import protocol as P
from ..wire.connection import ConnectionInfo
from ..wire.direct import ANNOUNCE_AFTER
from ..wire.message import (
    Message,
    ReplayGuard,
    Signer,
    WireError,
    check_message_digests,
    digests,
)
from ..wire.protocol import BatchedCmd, BatchedReply, ErrorReport, Printed, TaskFlags, Xfer
from ..wire.serialize import dumps, loads
from .commands import COMMANDS
from .direct import OUTPUT_QUEUE_AT_MOST, DirectCommand, DirectSocket
from .interpreter import Interpreter, format_exception
from .link import CommandLink, make_dealer
from .replies import HeldReplies

__all__ = ["Engine"]

log = logging.getLogger("multiengine.engine")


# how long a receive waits before the engine looks at its state again (registering
# again once the controller is lost, letting go of idle memory)
RECEIVE_WAIT_MS = 500
# while the controller is down, how often a registering engine looks for it again
CONNECT_AGAIN_EVERY = 0.1
# why the engine interrupts its own code: the controller was lost, the command is void
_WHY_LOST = "lost"
# messages whose digests (dg, cdg) are checked when they run, not when they arrive: a
# command that does not match fails with an answer (Engine._check_digests)
CHECKED_WHEN_RUN = (P.CMD,)


class Engine:
    def __init__(
        self,
        info: ConnectionInfo,
        desired_id: int | None = None,
        mpi: Any = None,
        *,
        reload: Callable[[], ConnectionInfo] | None = None,
        reconnect_timeout: float = 300.0,
        ipython: bool = False,
        on_registered: Callable[[int], None] | None = None,
    ) -> None:
        self.info = info
        self._on_registered = on_registered  # given the id at each registration
        self._reload = reload  # reads the connection info again (the controller may move)
        self.reconnect_timeout = reconnect_timeout
        self.signer = Signer(info.key)
        self.ctx = zmq.Context()
        self.ident = b"e-" + uuid.uuid4().hex.encode()
        self.sock = make_dealer(self.ctx, self.ident, info)
        # read by the heartbeat thread: the command connection closing is the loss of the
        # controller (made before connecting, so no closing is missed)
        self._events = self.sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        self.direct: DirectSocket | None = None
        # the command channel: a Unix stream on the controller's host, else the DEALER
        # (link.py); its end is the loss of the controller, as a closed connection is
        self.link = CommandLink(self.sock, self._controller_lost, self._command_fd_changed)
        # the main thread tells the heartbeat thread it has registered (it then says
        # ``hello`` on the heartbeat channel, which only that thread may send on)
        self._registered_out = self.ctx.socket(zmq.PAIR)
        self._registered_out.bind(f"inproc://registered-{id(self)}")
        self._registered_in = self.ctx.socket(zmq.PAIR)
        self._registered_in.connect(f"inproc://registered-{id(self)}")
        self._urls = {"engine": info.url("engine"), "heartbeat": info.url("heartbeat")}
        self.link.connect(self._urls["engine"])
        # small commands from clients of this host, past the controller (direct.py)
        # (waited on beside the command connection, in one poll: serve, _next)
        self.direct = DirectSocket.open(
            self.signer, self._urls["engine"], self._dropped, self.link.fd
        )
        # read only once the controller says a client may use it (``direct_on``): until
        # then the engine waits on its command socket alone (cheaper per command)
        self._direct_on = False
        self.desired_id = desired_id
        self.interp: Interpreter
        if ipython:  # (only this mode imports IPython)
            from .ipython_shell import IPythonInterpreter

            self.interp = IPythonInterpreter(-1, mpi)
        else:
            self.interp = Interpreter(-1, mpi)
        from .. import engine as _package

        _package._current = self.interp
        from .output import UserLogHandler

        UserLogHandler.install()  # what user code logs goes with its command's output
        self.id = -1
        self.hb_period = ControllerConfig.heartbeat_period  # until the controller says
        self.hb_timeout = ControllerConfig.heartbeat_timeout
        # Each time a connection to the controller closes the heartbeat thread adds one to
        # ``epoch``; ``_session`` is the epoch the engine last registered in (main
        # thread). While they differ the engine has lost the controller: the answers of
        # commands received in an older session are never sent, and what arrives before
        # the ``registered`` of the current epoch is dropped.
        self.epoch = 0
        self._session = 0
        self._lost_at: float | None = None
        self._stop = threading.Event()
        self.terminating = False
        self._backlog: list[Any] = []  # messages read early, handled next
        self._running: Any = None  # id of the command user code is running for, else None
        self._revoked: dict[
            Any, str
        ] = {}  # commands not started yet -> "interrupt", "abort" or "revoke"
        self._last_started = -1  # command ids only grow: older marks can be forgotten
        self._start_lock = threading.Lock()
        self._sigint_handled = True
        self._send_lock = threading.Lock()  # the output thread sends on the command socket too
        # task replies held back to go several in one message (replies.py)
        self._held = HeldReplies(self.signer, self._send, lambda: self.epoch)
        self._drop_lock = threading.Lock()
        self._live_cmd: Any = None
        self._live_to: DirectCommand | None = None  # the client of a direct command's output
        self._streamer: Any = None
        self._interrupted: str | None = None  # why SIGINT was sent: "interrupt", "abort", "timeout"
        self._reply_node = ""  # the running command's client takes large answers by shm
        self._reply_holder = 0  # ... and keeps them mapped read-only: its PID (else 0)

    # ------------------------------------------------------------ registration
    def register(self, timeout: float = 10.0) -> int:
        """Register, or register again after losing the controller (then asking for the
        id it had). Sent again after 1 s, then every 2 s, until ``registered`` answers
        it; raises TimeoutError after ``timeout`` seconds."""
        again = self.id >= 0
        epoch = self.epoch
        header = {
            "t": P.REGISTER,
            "desired_id": self.id if again else self.desired_id,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "epoch": epoch,
            "node": shm.node_identity() if shm.threshold() else "",  # no shm when off
            "direct": self.direct.url if self.direct is not None else "",
            "ident": self.ident,  # (who this is, on a stream: it has no routing identity)
        }
        deadline = time.monotonic() + timeout
        self.sock.setsockopt(
            zmq.SNDTIMEO, max(1, int(timeout * 1000))
        )  # no pipe yet: do not block forever
        wait = 1.0
        msg: Message | None = None
        while msg is None:
            if self.epoch != epoch:  # lost again meanwhile: the newest epoch counts
                epoch = header["epoch"] = self.epoch
            if again or not self.link.connected:
                self._follow_controller("engine", self.sock)
            if self.link.connected:
                try:
                    self._send(self.signer.frames(header))
                except zmq.Again:
                    pass
            resend = min(time.monotonic() + wait, deadline)
            wait = 2.0
            while msg is None and (left := resend - time.monotonic()) > 0:
                if not self.link.connected:  # the controller is not up (yet): look again
                    time.sleep(min(CONNECT_AGAIN_EVERY, left))  # soon, and send at once
                    self._follow_controller("engine", self.sock)
                    if self.link.connected:
                        break
                    continue
                if not self.link.poll(max(1, int(left * 1000))):
                    continue
                got = self._recv()
                if got is None:
                    continue
                if got.type == P.REGISTERED and got.header.get("epoch", 0) == epoch:
                    msg = got
                elif got.type == P.DIRECT_ON:
                    self._turn_direct_on()
                elif got.type == P.CMD:
                    log.info(
                        "dropped command %s, sent before the controller was lost",
                        got.header.get("cmd"),
                    )
            if msg is None and time.monotonic() >= deadline:
                raise TimeoutError(
                    f"no answer from the controller at {self._urls['engine']} in {timeout:g} s"
                )
        self.sock.setsockopt(zmq.SNDTIMEO, -1)
        new_id = int(msg.header["id"])
        if again and new_id != self.id:
            log.warning(
                "engine %d registered again as engine %d (its id was taken)", self.id, new_id
            )
        self.id = new_id
        self.hb_period = float(msg.header.get("hb_period", self.hb_period))
        self.hb_timeout = float(msg.header.get("hb_timeout", self.hb_timeout))
        self.interp.set_id(self.id)
        shm.set_reader_slot(shm.engine_slot(self.id))
        with self._start_lock:
            self._session = epoch
            if self.epoch == epoch:
                self._lost_at = None
        self._registered_out.send(b"")
        log.info("registered %sas engine %d", "again " if again else "", self.id)
        if self._on_registered is not None:
            self._on_registered(self.id)
        return self.id

    def _register_again(self) -> None:
        """The controller was lost: register again (main thread, between commands)."""
        self._backlog.clear()
        self._held.drop()
        self.link.reset()  # (connected afresh: to the controller's stream if it offers one)
        with self._start_lock:  # command numbers of another controller start afresh
            self._revoked.clear()
            self._last_started = -1
        lost_at = self._lost_at if self._lost_at is not None else time.monotonic()
        left = self.reconnect_timeout - (time.monotonic() - lost_at)
        try:
            self.register(max(left, 0.1))
        except TimeoutError:
            self._lost(f"could not register again within {self.reconnect_timeout:g} s")

    def _follow_controller(self, channel: str, sock: zmq.Socket[Any]) -> None:
        """While the controller is lost: connect ``sock`` where the controller now is.

        A controller started again (``--reuse``) keeps its TCP ports and key but not its
        IPC endpoints: the connection file is read again when there is one, and an IPC
        endpoint whose file has gone gives way to TCP (``ConnectionInfo.url``).
        """
        if self._reload is not None:
            try:
                fresh = self._reload()
            except Exception:  # noqa: BLE001 - missing or half-written: keep the old one
                fresh = None
            if fresh is not None and fresh.key == self.info.key:
                self.info = fresh
        url = self.info.url(channel)
        old = self._urls[channel]
        if channel == "engine":
            self.link.connect(url)  # (a stream that ended is connected again)
            self._urls[channel] = url
            return
        if url != old:
            log.info("connecting the %s socket to %s instead of %s", channel, url, old)
            try:
                sock.disconnect(old)
            except zmq.ZMQError:
                pass
            sock.connect(url)
            self._urls[channel] = url

    def _recv(self) -> Any:
        frames = self.link.recv(RECEIVE_WAIT_MS)
        try:  # (a cmd's digests are checked when it runs: _check_digests)
            return self.signer.parse(frames, deferred=CHECKED_WHEN_RUN)
        except WireError as e:
            self._dropped("a message", e)
            return None

    def _dropped(self, what: str, e: WireError) -> None:
        """Count and log a message that failed verification (both threads call this)."""
        with self._drop_lock:
            self.interp.dropped_messages += 1
            n = self.interp.dropped_messages
        log.warning("dropped %s (%d so far): %s", what, n, e)

    # ------------------------------------------------------------ heartbeat
    def start_heartbeat(self) -> threading.Thread:
        t = threading.Thread(target=self._heartbeat, name="multiengine-heartbeat", daemon=True)
        t.start()
        return t

    def _heartbeat(self) -> None:
        hb = self.ctx.socket(zmq.DEALER)
        hb.setsockopt(zmq.IDENTITY, self.ident)
        hb.setsockopt(zmq.LINGER, 0)
        hb.setsockopt(zmq.IPV6, 1)
        curve.make_client(hb, self.info.curve_serverkey)
        # the heartbeat connection closing (the controller's pings stopped for its TTL, or
        # it closed the connection) is the loss of the controller, too
        hb_events = hb.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        hb.connect(self._urls["heartbeat"])
        guard = ReplayGuard()  # this thread's own: the main thread checks with the signer's

        def on_interrupt(msg: Message) -> None:
            cmd, why = msg.header.get("cmd"), str(msg.header.get("why", P.WHY_INTERRUPT))
            if cmd is not None and type(cmd) not in (int, str):  # numbers; direct: strs
                log.warning("ignored an interrupt for command %.80r", cmd)
                return
            unrun = self.interrupt(cmd, why)
            if why in (P.WHY_REVOKE, P.WHY_ABORT):  # the scheduler waits for this answer
                hb.send_multipart(self.signer.frames({"t": P.REVOKED, "cmd": cmd, "ok": unrun}))

        def on_probe() -> None:  # a live view wants this process's memory and CPU
            hb.send_multipart(
                self.signer.frames({"t": P.USAGE, "rss": _rss(), "cpu": time.process_time()})
            )

        handlers: dict[str, Callable[[Message], None]] = {
            P.INTERRUPT: on_interrupt,
            P.SHUTDOWN: lambda msg: self._lost("the controller stopped"),
            P.PROBE: lambda msg: on_probe(),
        }

        def hello() -> None:  # after each registration: "my heartbeats come on this one"
            while True:
                try:
                    self._registered_in.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
            hb.send_multipart(self.signer.frames({"t": P.HELLO, "epoch": self._session}))

        poller = zmq.Poller()
        for s in (hb, self._events, hb_events, self._registered_in):
            poller.register(s, zmq.POLLIN)
        while not self._stop.is_set():
            lost = self._lost_at is not None
            for sock, _ in poller.poll(500 if lost else None):
                if sock is self._events or sock is hb_events:
                    self._read_events(sock)
                    continue
                if sock is self._registered_in:
                    hello()
                    continue
                try:
                    msg = self.signer.parse(hb.recv_multipart(), guard)
                except WireError as e:
                    self._dropped("a heartbeat message", e)
                    continue
                handler = handlers.get(msg.type)
                if handler is None:
                    log.warning("unexpected heartbeat message %r", msg.type)
                    continue
                try:
                    handler(msg)
                except Exception:  # the heartbeat thread must live on, whatever came
                    log.exception("error handling a %r heartbeat message", msg.type)
            lost_at = self._lost_at
            if lost_at is not None:
                if time.monotonic() - lost_at > self.reconnect_timeout:
                    self._lost(f"could not register again within {self.reconnect_timeout:g} s")
                self._follow_controller("heartbeat", hb)
        hb.close()

    def _read_events(self, monitor: zmq.Socket[Any]) -> None:
        """A socket's monitor: a closed connection means the controller is lost (it
        closed it, died, or libzmq gave up waiting for its heartbeats)."""
        while True:
            try:
                frames = monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if parse_monitor_message(frames)["event"] == zmq.EVENT_DISCONNECTED:
                self._controller_lost()

    def _command_fd_changed(self, fd: int | None) -> None:
        """The command connection's descriptor changed (link.py): poll that one."""
        if self.direct is not None:
            self.direct.watch_command(fd)

    def _controller_lost(self) -> None:
        with self._start_lock:
            self.epoch += 1
            if self._lost_at is None:
                self._lost_at = time.monotonic()
            running = self._running
        # A direct command (its id a str) goes on: its client gets the answer from this
        # engine, not from the controller, which has not failed it.
        void = running is not None and type(running) is not str
        log.warning(
            "engine %d lost the controller (its connection closed, or no heartbeat for "
            "%g s): registering again%s",
            self.id,
            self.hb_timeout,
            "; interrupting what runs (the controller has failed it)" if void else "",
        )
        if void:
            self.interrupt(running, _WHY_LOST)

    def interrupt(self, cmd_id: Any, why: str) -> bool:
        """Raise KeyboardInterrupt in the user code running for ``cmd_id`` (any, if None).

        A command that has not started yet (still arriving, or a task sent ahead) is
        instead marked: it is answered without running, as interrupted, as aborted
        (``why="abort"``) or as given back to the scheduler (``why="revoke"``). A revoke
        never interrupts running code. Returns True when ``cmd_id`` will not run.
        """
        with self._start_lock:
            running = self._running
            if cmd_id is not None and cmd_id != running:
                if type(cmd_id) is str:  # a direct command: not run yet, unless answered
                    if self.direct is None or cmd_id in self.direct.recent:
                        return False
                    self._revoked[cmd_id] = why
                    return True
                if cmd_id > self._last_started:  # not started yet: answered without running
                    self._revoked[cmd_id] = why
                    return True
                return False
            if running is None or why == P.WHY_REVOKE:
                return False
            self._interrupted = why
            self._sigint_handled = False
        threading.Thread(
            target=self._signal_main, args=(running,), name="multiengine-interrupt", daemon=True
        ).start()
        return False

    def _signal_main(self, running: Any) -> None:
        """SIGINT to the main thread, again until its handler has run (off the heartbeat thread).

        To the main thread itself: a signal the kernel hands to another thread would not
        wake the main thread from a blocking call such as time.sleep(). Again: a signal
        that lands just before a blocking call starts is only handled when it returns.
        """
        main = threading.main_thread().ident or 0
        for delay in (0.0, *[0.02] * 25, *[0.25] * 40):
            time.sleep(delay)
            if self._sigint_handled or self._running != running:
                return
            signal.pthread_kill(main, signal.SIGINT)

    def _on_sigint(self, signum: int, frame: Any) -> None:
        self._sigint_handled = True
        if self._running is not None:  # only user code is interrupted; the loop itself is not
            raise KeyboardInterrupt

    def _arm_time_limit(self, cmd_id: Any, seconds: float) -> threading.Thread:
        def watch() -> None:
            deadline = time.monotonic() + seconds
            while self._running == cmd_id:
                left = deadline - time.monotonic()
                if left > 0:
                    time.sleep(min(left, 0.05))
                    continue
                self.interrupt(cmd_id, "timeout")
                deadline = time.monotonic() + 0.5  # again, if the code swallowed it

        t = threading.Thread(target=watch, name="multiengine-time-limit", daemon=True)
        t.start()
        return t

    def _lost(self, why: str) -> None:
        log.error("engine %d stopping: %s", self.id, why)
        logging.shutdown()
        os._exit(3)

    # ------------------------------------------------------------ main loop
    def _recv_buffers(
        self, xfer: Xfer, cmd_id: Any, session: int, timeout: float = 60.0
    ) -> list[Any]:
        """Read the pieces that follow a command announcing them, copying as they come.

        An empty ``chunk`` for this command (no buffer) means its client stopped sending
        (the controller abandoned the transfer): the command fails, unrun.
        """
        asm = chunks.Assembler(xfer.sizes, xfer.piece)
        try:
            return self._fill(asm, cmd_id, session, timeout)
        except BaseException:
            asm.discard()  # its memory goes back to the system, not to the next transfer
            raise

    def _fill(self, asm: chunks.Assembler, cmd_id: Any, session: int, timeout: float) -> list[Any]:
        while not asm.done:
            deadline = time.monotonic() + timeout
            while not self.link.poll(500):
                if self.epoch != session:
                    raise ConnectionError("the controller was lost during the transfer")
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"a transfer stalled: {asm.received} of {asm.expected} pieces arrived"
                    )
            msg = self._recv()
            if msg is None:
                continue
            if msg.type == P.CHUNK and not msg.buffers and msg.header.get("cmd") == cmd_id:
                raise ConnectionAbortedError(
                    f"the client stopped sending: its transfer broke off after "
                    f"{asm.received} of {asm.expected} pieces (nothing was changed)"
                )
            if msg.type == P.DIRECT_ON:
                self._turn_direct_on()
                continue
            if msg.type == P.DIRECT_FLUSH:
                self._send_reports()
                continue
            if msg.type != P.CHUNK or not msg.buffers:
                self._backlog.append(msg)  # not ours: handled after this command
                raise ValueError(
                    f"a transfer broke off after {asm.received} of {asm.expected} pieces"
                )
            asm.add(msg.buffers[0])
        return asm.buffers

    def _classify(
        self, e: BaseException, h: dict[str, Any]
    ) -> tuple[BaseException, TaskFlags | None]:
        """Turn an interrupt into the error it stands for; the scheduler's flags for a task."""
        from ..errors import TaskAborted, TaskTimeout

        why = self._interrupted
        self._interrupted = None
        flags = self.interp.task_flags if h.get("name") == "task" else None
        if isinstance(e, _Revoked):
            if e.why == P.WHY_ABORT:
                return TaskAborted("the task was aborted before it ran"), TaskFlags(
                    "aborted", False
                )
            if e.why == P.WHY_INTERRUPT:
                return KeyboardInterrupt(), TaskFlags(None, False)
            return e, TaskFlags("revoked", False)
        if isinstance(e, KeyboardInterrupt) and why == "timeout":
            limit = float(h["tl"])
            e = TaskTimeout(f"the task exceeded its time limit of {limit:g} s and was interrupted")
            flags = TaskFlags("timeout", False)
        elif isinstance(e, KeyboardInterrupt) and why == P.WHY_ABORT:
            e = TaskAborted("the task was aborted while it ran")
            flags = TaskFlags("aborted", False)
        return e, flags

    def _send(self, frames: list[Any]) -> None:
        with self._send_lock:
            self.link.send(frames)

    def _send_output(self, name: str, text: str) -> None:
        to = self._live_to
        if to is not None and self.direct is not None:  # a direct command's: to its client
            self.direct.output(to, self.id, name, text)
            return
        if self.link.queued() > OUTPUT_QUEUE_AT_MOST:  # the controller does not read
            log.info("live output dropped: the controller has not read what came before")
            return
        header = {"t": P.OUTPUT, "cmd": self._live_cmd, "name": name}
        self._send(self.signer.frames(header, text.encode("utf-8", "replace")))

    def _send_reply(
        self,
        cmd_id: Any,
        status: str,
        content: Any,
        buffers: list[Any],
        flags: TaskFlags | None = None,
        elapsed: float = 0.0,
    ) -> None:
        reply: dict[str, Any] = {
            "t": P.REPLY,
            "cmd": cmd_id,
            "status": status,
            "enc": P.PICKLE if status == P.STATUS_OK else P.MSGPACK,
            "elapsed": round(elapsed * 1e6) / 1e6,  # (_to_us, without a call on every reply)
        }
        if flags is not None:
            reply["task"] = flags.to_wire()
        if buffers and chunks.total_size(buffers) >= chunks.STREAM_THRESHOLD:
            self._held.flush()
            xfer, pieces = chunks.cut(buffers)
            reply["xfer"] = xfer.to_wire()
            self._send(self.signer.frames(reply, content))
            for piece in pieces:
                chunk = {"t": P.CHUNK, "cmd": cmd_id, "raw": True}
                self._send(self.signer.frames(chunk, b"", (piece,)))
            return
        if buffers:
            reply["raw"] = True  # out-of-band pickle buffers; the pickle itself is hashed
        if self._held.items:  # after the replies held before it
            self._held.send_after(lambda: self.signer.frames(reply, content, buffers))
        else:
            self._send(self.signer.frames(reply, content, buffers))

    def serve(self) -> None:
        """Run commands until a ``kill``; the only message the command socket takes is ``cmd``.

        Reads wake up twice a second when nothing comes (a receive timeout, which costs
        nothing when messages arrive), to register again once the controller is lost.
        """
        self.sock.setsockopt(zmq.RCVTIMEO, RECEIVE_WAIT_MS)
        recycle.enable()  # large receive buffers are reused (pruned below when idle)
        while True:
            if self.epoch != self._session:
                self._register_again()
            if not self._backlog and self._held.items:
                self._held.flush()  # nothing more to run here: what is held goes now
            answer_to = None
            try:
                if self._backlog:
                    msg = self._backlog.pop(0)
                elif not self._direct_on:
                    msg = self._recv()
                else:
                    msg, answer_to = self._next()
            except zmq.Again:
                shm.prune()  # idle: let go of the blocks of clients that have exited
                recycle.prune()  # and of receive buffers unused for a while
                if self.direct is not None and not self._direct_on and self.direct.knocking():
                    self._turn_direct_on()  # (a safety net: direct_on comes first)
                continue
            except KeyboardInterrupt:
                continue  # an interrupt that arrived while idle
            if msg is None:
                continue
            if msg.type == P.CMDS:  # several tasks: each runs as if it came on its own
                self._unbatch(msg)
                continue
            if msg.type != P.CMD:
                if msg.type == P.DIRECT_ON:
                    self._turn_direct_on()
                elif msg.type == P.DIRECT_FLUSH:
                    self._send_reports()  # (done as it was read: _next)
                elif msg.type != P.REGISTERED:  # (a late answer to a repeated register)
                    log.warning("unexpected message type %r", msg.type)
                continue
            if self._run_command(msg, answer_to):
                return

    def _turn_direct_on(self) -> None:
        """From now on read the direct socket too (a client may have its endpoint)."""
        if self.direct is not None and not self._direct_on:
            self._direct_on = True
            log.debug("engine %d reads its direct socket", self.id)

    def _next(self) -> tuple[Any, DirectCommand | None]:
        """The next message: the controller's first, else a direct command (and where
        its answer goes). Raises zmq.Again after half a second of nothing.

        The command socket is asked whether a message waits (``ZMQ_EVENTS``, ~1.5 µs),
        and the direct commands already read are looked at; only when there is neither
        does the engine wait, in one ``poll()`` of the command socket's ``ZMQ_FD``
        (which says only that something changed, so the socket is asked again after
        it), the direct socket's listener and its connections (DirectSocket.wait)."""
        direct = self.direct
        assert direct is not None
        ready = direct.ready
        link = self.link
        while True:
            if link.pending():
                self._send_reports()  # (the books in order before a command of the controller)
                return self._recv(), None
            if ready:
                got = ready.popleft()
                if direct.reports and time.monotonic() >= direct.reports_due:
                    self._send_reports()  # (before a command that may run long)
                return got
            if direct.reports:  # held reports go once they are REPORT_WITHIN old
                wait = direct.reports_due - time.monotonic()
                if wait <= 0 or not self._wait_both(wait * 1000):
                    self._send_reports()
                continue
            if not self._wait_both(RECEIVE_WAIT_MS):
                raise zmq.Again
            if link.fd is None:  # the stream to the controller ended: register again
                return None, None

    def _wait_both(self, timeout_ms: float) -> bool:
        """Wait on the command connection and the direct socket (DirectSocket.wait);
        False when nothing happened."""
        direct, link = self.direct, self.link
        assert direct is not None
        woke = direct.wait(timeout_ms, link.wants_write())
        if direct.command_woke:
            link.flush()
            link.take_ready()
        return woke

    def _unbatch(self, msg: Message) -> None:
        """A ``cmds`` message: its commands go to the backlog, in order, as ``cmd``s."""
        try:
            items = [BatchedCmd.from_wire(i) for i in msg.header["cmds"]]
            parts = P.split_parts([i.nbuf for i in items], msg.buffers)
        except (P.ProtocolViolation, KeyError, TypeError) as e:
            log.warning("dropped a malformed cmds message: %s", e)
            return
        for item, (content, buffers) in zip(items, parts, strict=True):
            self._backlog.append(Message([], item.header(), content, buffers))

    def _run_command(self, msg: Message, answer_to: DirectCommand | None = None) -> bool:
        """Run one command and answer it; True when it was a ``kill``. ``answer_to``: a
        direct command, answered to its client (the controller told after)."""
        h = msg.header
        name = str(h.get("name"))
        cmd_id = h.get("cmd")
        session = self._session
        held = self._held
        if held.items:
            if name != "task" or h.get("live"):
                held.flush()  # the controller must know what runs when its output comes
            else:
                held.arm()  # sent after a while if this one runs long
        status = P.STATUS_OK
        flags: TaskFlags | None = None
        elapsed = 0.0
        sliced: tuple[int, bytes, Iterator[bytes]] | None = None  # a long list, in slices
        interp = self.interp
        interp.task_flags = None  # set by a task that fails
        interp.output = None  # set by a function that prints
        try:
            buffers = msg.buffers
            if h.get("xfer"):
                buffers = self._recv_buffers(Xfer.from_wire(h["xfer"]), cmd_id, session)
            handler = COMMANDS[name]
            if answer_to is None and ("cdg" in h or "dg" in h):
                self._check_digests(msg, name)
            args = self._arguments(name, msg.content, buffers)
            with self._start_lock:
                marks = self._revoked
                revoked = marks.pop(cmd_id, None) if marks else None
                if isinstance(cmd_id, int):
                    if cmd_id > self._last_started:
                        self._last_started = cmd_id
                    if marks:
                        for old in [c for c in marks if type(c) is int and c < cmd_id]:
                            del marks[old]
                if revoked is None:
                    self._interrupted = None
                    self._running = cmd_id
            if revoked is not None:
                raise _Revoked(revoked)
            if h.get("tl"):
                self._arm_time_limit(cmd_id, float(h["tl"]))
            if h.get("live"):
                if self._streamer is None:
                    from .output import Streamer

                    self._streamer = Streamer(self._send_output)
                self._live_cmd = cmd_id
                self._live_to = answer_to
                interp.streamer = self._streamer
            started = time.perf_counter()
            try:
                value = handler(interp, *args)
            finally:
                self._running = None
                elapsed = time.perf_counter() - started
                interp.streamer = None
            if interp.output is not None:
                value = Printed(value, *interp.output)
            if (
                name == "pull"
                and answer_to is None  # (a direct answer goes whole: it has no slices)
                and type(value) is list
                and len(value) >= slices.MIN_ITEMS
            ):
                sliced = self._first_slice(value)
            if sliced is None:
                content, buffers = dumps(value, name == "execute" and interp.plain_result(value))
                if self._reply_node and buffers:
                    content, buffers = self._shared_answer(content, buffers)
            else:
                content, buffers = b"", []
        except BaseException as e:  # user code may raise anything, even SystemExit
            if self.terminating:
                raise
            status, sliced = P.STATUS_ERROR, None
            e, flags = self._classify(e, h)
            if name != "task":
                flags = None  # only the scheduler reads them, and only for tasks
            content, buffers = self._error_report(e, name), []
            if answer_to is not None:
                answer_to.ename = type(e).__name__
        if answer_to is not None:
            self._answer_direct(answer_to, status, content, buffers, elapsed)
        elif self.epoch != session:  # the controller was lost meanwhile and failed it: an
            # answer now would go to a controller that no longer expects it
            log.info("not answering command %s: the controller was lost while it ran", cmd_id)
        elif name == "task" and status == P.STATUS_OK and not buffers and self._backlog:
            # more to run here: held back, to go with the next ones (a failure goes at
            # once: the scheduler takes back what was sent ahead and retries elsewhere)
            item = BatchedReply(cmd_id, status, P.PICKLE, _to_us(elapsed), None, 0)
            held.hold(session, item, content)
        elif sliced is not None:
            self._send_slices(cmd_id, elapsed, *sliced)
        else:
            self._send_reply(cmd_id, status, content, buffers, flags, elapsed)
        if interp.retired:
            interp.retired.clear()  # answered: now the values it replaced are freed
        return name == "kill" and status == P.STATUS_OK

    def _answer_direct(
        self, to: DirectCommand, status: str, content: Any, buffers: list[Any], elapsed: float
    ) -> None:
        """A direct command's answer to its client, then its report to the controller:
        with others later (``direct_dones``: a quick command that succeeded), else at
        once (``direct_done``), with the answer itself when the client's connection has
        closed (the controller passes it on)."""
        direct = self.direct
        assert direct is not None
        enc = P.PICKLE if status == P.STATUS_OK else P.MSGPACK
        started = time.time() - elapsed
        sent = direct.answer(to, self.id, status, enc, content, buffers, elapsed, started)
        done: dict[str, Any] = {
            "cmd": to.cmd_id,
            "status": status,
            "elapsed": _to_us(elapsed),
            "job": to.job,
            "id": to.request,
            "rt": to.rt,
            "cid": to.cid,
            "name": to.name,
            "desc": to.desc,
            "started": started,
        }
        if to.ename:
            done["ename"] = to.ename
        if sent and status == P.STATUS_OK and elapsed < ANNOUNCE_AFTER:
            if direct.hold_report(done):
                self._send_reports()
            return
        self._send_reports()  # (in order: the controller may hold a queue behind them)
        done["t"] = P.DIRECT_DONE
        if sent:
            self._send(self.signer.frames(done))
            return
        done["enc"] = enc
        if buffers:
            done["raw"] = True
        self._send(self.signer.frames(done, content, buffers))

    def _send_reports(self) -> None:
        """Send the reports of direct commands held (one ``direct_dones``)."""
        direct = self.direct
        if direct is not None and direct.reports:
            dones, direct.reports = direct.reports, []
            self._send(self.signer.frames({"t": P.DIRECT_DONES, "dones": dones}))

    @staticmethod
    def _first_slice(value: list[Any]) -> tuple[int, bytes, Iterator[bytes]] | None:
        """A long list's slice count, its first slice pickled, and the rest to come;
        None when the first slice does not pickle (``dumps`` then says why)."""
        rest = slices.dumps(value)
        try:
            first = next(rest)
        except Exception:
            return None
        return slices.count(value), first, rest

    def _send_slices(
        self, cmd_id: Any, elapsed: float, n: int, first: bytes, rest: Iterator[bytes]
    ) -> None:
        """A long list as a reply of encoding ``SLICES`` whose ``n`` pieces are its
        slices, each sent as soon as it is pickled (docs/protocol.md §5). They are
        pickles, so never ``raw``: each is digested (``dg``), and the client checks it
        against its digest (the controller passes the digest on without hashing the
        slice). A slice that fails to pickle is sent as the exception it becomes on the
        client, and the slices after it empty."""
        self._held.flush()
        reply = {
            "t": P.REPLY,
            "cmd": cmd_id,
            "status": P.STATUS_OK,
            "enc": P.SLICES,
            "elapsed": _to_us(elapsed),
            "xfer": Xfer([], n, 0).to_wire(),
        }
        self._send(self.signer.frames(reply, b""))
        frames = self.signer.frames

        def piece(data: bytes) -> list[Any]:
            return frames({"t": P.CHUNK, "cmd": cmd_id, "dg": digests((data,))}, b"", (data,))

        self._send(piece(first))
        sent = 1
        try:
            for data in rest:
                self._send(piece(data))
                sent += 1
        except Exception as e:  # an item that does not pickle, further on
            self._send(piece(slices.failed(e)))
            for _ in range(sent + 1, n):
                self._send(piece(b""))

    def _shared_answer(self, content: bytes, buffers: list[Any]) -> tuple[bytes, list[Any]]:
        """A large answer for a client of this host: through shared memory (one copy
        here, one there; or none there, for a client that maps it read-only) rather than
        the network, when the pool has room."""
        limit = shm.threshold()
        if not limit or self._reply_node != shm.node_identity():
            return content, buffers
        if chunks.total_size(buffers) < limit:
            return content, buffers
        holder = self._reply_holder
        env = shm.share(content, buffers, [shm.client_slot()], shared=bool(holder), holder=holder)
        return (env, []) if env is not None else (content, buffers)

    def _check_digests(self, msg: Message, name: str) -> None:
        """A command whose pickle came with the client's digest (``cdg``, passed on by
        the controller unchecked, docs/protocol.md §2): a pickle that does not match it
        was changed on its way, so it is counted with the dropped messages and never
        unpickled, and the command fails (its job is answered, not left waiting)."""
        try:
            check_message_digests(msg.header, msg.content, msg.buffers)
        except WireError as e:
            self._dropped(f"the arguments of command {msg.header.get('cmd')}", e)
            raise SerializationError(
                f"the arguments of {name} were changed on their way to engine {self.id} "
                "(they do not match the digest their client signed); not unpickled"
            ) from None

    def _arguments(self, name: str, content: Any, buffers: list[Any]) -> Any:
        """A command's argument tuple; a value that does not unpickle here (a class this
        engine cannot import, a ``__reduce__`` that raises) fails with a
        SerializationError that names the command and the cause."""
        self._reply_node = ""
        self._reply_holder = 0
        if not len(content):
            return ()
        try:
            data = content.buffer if type(content) is zmq.Frame else content
            # (a pickle starts with its PROTO opcode, never an envelope's first byte: most
            # commands are told from an envelope without a call)
            if data[0] == shm.ENVELOPE_START and shm.is_envelope(data):  # buffers in shm
                env = shm.Envelope.from_bytes(data)
                self._reply_node = env.reply_node
                self._reply_holder = env.reply_holder
                return loads(env, buffers)
            if not buffers:  # (most commands: what loads would do, without asking again)
                return pickle.loads(data)
            return loads(data, buffers)
        except KeyboardInterrupt:
            raise
        except BaseException as e:  # SystemExit from a __reduce__ too: the engine goes on
            raise SerializationError(
                f"cannot unpickle the arguments of {name} on engine {self.id}: "
                f"{type(e).__name__}: {e}"
            ) from e

    def _error_report(self, e: BaseException, method: Any) -> bytes:
        """An error as msgpack: its text always arrives, its pickled object if it can.

        Never raises, whatever the user's exception does: one whose ``__str__`` fails
        is sent as text only (the client could not show the object either)."""
        import cloudpickle

        ename = type(e).__name__
        try:
            text = format_exception(e)
        except Exception as inner:
            text = f"{ename}: (its traceback could not be formatted: {type(inner).__name__})\n"
        e.__traceback__ = None
        exc: bytes | None = None
        try:
            evalue = str(e)
        except Exception as inner:
            evalue = f"<str() of this {ename} failed with {type(inner).__name__}>"
        else:
            try:
                exc = cloudpickle.dumps(e, protocol=5)
            except Exception:
                pass
        out, err = self.interp.output or (None, None)
        return ErrorReport(
            ename, evalue, text, str(method), self.id, exc, out or None, err or None
        ).to_bytes()

    def close(self) -> None:
        self._stop.set()
        try:
            self._send(self.signer.frames({"t": P.BYE}))
        except zmq.ZMQError:
            pass
        self.link.close(500)
        if self.direct is not None:
            self.direct.close()


class _Revoked(Exception):
    """A command taken back (or aborted) before it started."""

    def __init__(self, why: str) -> None:
        super().__init__(f"taken back before it ran ({why})")
        self.why = why


def _to_us(seconds: float) -> float:
    """``seconds`` to the microsecond, as ``round(seconds, 6)`` but without its
    decimal conversion (on every reply)."""
    return round(seconds * 1e6) / 1e6


def _rss() -> int:
    """This process's resident memory in bytes (``/proc``; the peak where there is none)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak) * (1 if sys.platform == "darwin" else 1024)
