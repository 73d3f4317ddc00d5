"""The controller process's sockets and its loop.

::

    clients (DEALER) ──► client ROUTER ─┐                ┌─► engine ROUTER ──► engines (DEALER,
                                        │      Hub       │                     main thread)
                        answers  ◄──────┤ jobs, results  ├◄── replies
                                        │  ┌──────────┐  │
                                        │  │ Dispatch │◄─┼── TaskScheduler, Transfers
                                        │  └──────────┘  │
                                        └─ heartbeat ROUTER ◄─► engines' heartbeat thread

One thread runs a ``poll()`` loop that drains each ready socket (a drained poller loop
was measured in shared/spec/limits.md to cost half the CPU per message of
zmq.asyncio; :meth:`Controller.run` says why it polls plain descriptors). The hot path
parses the small msgpack header, checks the signature and hands the message to the
:class:`~.hub.Hub`, which forwards frames without unpickling what clients and engines
send each other. What the hub sends goes out through :class:`SocketOutbox`.

Engine liveness costs this loop nothing per heartbeat: libzmq's I/O threads send a ZMTP
ping on each heartbeat-channel connection every period and close a connection whose
engine does not answer in time (the engine's libzmq answers, without Python). Socket
monitors on the engine and heartbeat ROUTERs report each closed connection by its file
descriptor, which the hub maps to the engine that registered (``register``) or said
``hello`` on it (docs/protocol.md §7).
"""

from __future__ import annotations

import logging
import math
import os
import select
import time
from typing import Any

import zmq
from zmq.utils.monitor import parse_monitor_message

from ..config import ControllerConfig
from ..runtime import pid_alive
from ..wire import curve, stream
from ..wire import protocol as P
from ..wire.message import (
    Signer,
    WireError,
    pending,
    recv_frames,
    send_frames,
    send_to_each,
)
from .endpoints import bind
from .hub import Hub
from .store import ResultStore
from .streams import EngineStreams

__all__ = ["Controller", "SocketOutbox"]

log = logging.getLogger("multiengine.controller")

DRAIN = 64  # messages taken from one socket per wakeup before looking at the others
BACKLOG = 4096  # pending connections per listening socket: a burst of engines starting at
# once (libzmq's default of 100 drops SYNs, and each dropped one costs its engine 1 s)
# libzmq I/O threads. Each keeps its connections' heartbeat timers in one ordered map and
# cancels a timer (on every pong) by a linear scan of it, so the heartbeat cost grows as
# connections² / threads: measured at 5,000 engines pinged every second, one thread took
# 36% of a core and 16 took 7.6% (docs/protocol.md §7). Idle threads cost nothing.
IO_THREADS = 16
# Once stopping, how long the loop goes on for an engine that registered but whose
# heartbeat connection has not said ``hello`` yet (it would miss the ``shutdown`` notice
# and wait for a controller that is gone); a stop is otherwise immediate.
HELLO_GRACE = 0.5
# Which of them serve which socket (ZMQ_AFFINITY bits): all engines' command
# connections share one thread and all clients' another, so a fan-out to 128 engines
# wakes one I/O thread, not sixteen (a send that wakes an idle thread cost 2-3 times
# as much on two cores); the heartbeat connections, where the timer cost grows with
# their number, have the other fourteen.
ENGINE_THREADS, CLIENT_THREADS = 0b1, 0b10
HEARTBEAT_THREADS = ((1 << IO_THREADS) - 1) & ~(ENGINE_THREADS | CLIENT_THREADS)


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
        self.streams: EngineStreams | None = None  # engines of this host on Unix streams
        # the sockets sent on since the loop last asked them for messages (a send may
        # take in the news of a message that came, without its ZMQ_FD saying so again)
        self.touched: set[zmq.Socket[Any]] = set()

    def to_client(
        self, client: bytes, header: dict[str, Any], content: Any = b"", buffers: Any = ()
    ) -> None:
        send_frames(self._clients, self._frames(header, content, buffers, (client,)))
        self.touched.add(self._clients)

    def to_engine(
        self, ident: bytes, header: dict[str, Any], content: Any = b"", buffers: Any = ()
    ) -> None:
        """To one engine: on its stream if it has one (streams.py), else its socket."""
        streams = self.streams
        if streams is not None and streams.by_ident:
            frames = self._frames(header, content, buffers)
            if streams.send(ident, frames):
                return
            frames = [ident, *frames]
        else:
            frames = self._frames(header, content, buffers, (ident,))
        send_frames(self._engines, frames)
        self.touched.add(self._engines)

    def to_engines(
        self, idents: list[bytes], header: dict[str, Any], content: Any = b"", buffers: Any = ()
    ) -> None:
        """One message, signed once, to each of ``idents``."""
        frames = self._frames(header, content, buffers)
        streams = self.streams
        if streams is not None and streams.by_ident:
            framed = stream.frame_head(frames)  # (once for all of them)
            idents = [i for i in idents if not streams.send(i, frames, framed)]
            if not idents:
                return
        send_to_each(self._engines, idents, frames)
        self.touched.add(self._engines)

    def to_heartbeat(self, ident: bytes, header: dict[str, Any]) -> None:
        send_frames(self._heartbeat, self._frames(header, b"", (), (ident,)))
        self.touched.add(self._heartbeat)


class Controller:
    """A controller bound to its three ports: :meth:`run` serves until stopped."""

    def __init__(
        self,
        config: ControllerConfig,
        *,
        key: bytes,
        ports: tuple[int, int, int] | None = None,
        curve_secret: bytes | None = None,
        context: zmq.Context[Any] | None = None,
        store_path: str | None = None,
        restore: bool = False,
        ipc: dict[str, str] | None = None,
    ) -> None:
        self.config = config
        self.parent_pid = config.parent_pid
        self.curve_secret = curve_secret
        self.signer = Signer(key)
        self.ctx = context or zmq.Context.instance()
        self.ctx.set(zmq.IO_THREADS, IO_THREADS)  # (takes effect before the first socket)
        self.hb_period = config.heartbeat_period
        self.clients = self._router(CLIENT_THREADS)
        self.engine_sock = self._router(ENGINE_THREADS)
        self.hb = self._router(HEARTBEAT_THREADS)
        # Heartbeats: a ZMTP ping every period on each heartbeat-channel connection (it
        # carries only small messages, so a ping never waits behind a large transfer, as
        # it would on the engine channel); one unanswered for (timeout - period) closes
        # it, so an engine is dropped at most `timeout` after it fell silent. The TTL
        # tells engines to drop a controller silent as long.
        period_ms = max(1, int(config.heartbeat_period * 1000))
        timeout_ms = max(1, int(config.heartbeat_timeout * 1000))
        self.hb.setsockopt(zmq.HEARTBEAT_IVL, period_ms)
        self.hb.setsockopt(zmq.HEARTBEAT_TIMEOUT, max(1, timeout_ms - period_ms))
        self.hb.setsockopt(zmq.HEARTBEAT_TTL, min(max(100, timeout_ms), 6_553_500))
        # closed engine connections (either channel), by fd: before binding, so none is
        # missed
        self.monitors = [
            s.get_monitor_socket(zmq.EVENT_DISCONNECTED) for s in (self.engine_sock, self.hb)
        ]
        # and closed client connections: a client that dies while it sends a large
        # transfer in pieces (controller/transfers.py)
        self.client_monitor = self.clients.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        named = {"client": self.clients, "engine": self.engine_sock, "heartbeat": self.hb}
        # engines of this host connect to a Unix stream beside the engine endpoint (bound
        # just before it: an engine that finds the endpoint finds the stream)
        self.streams: EngineStreams | None = None
        self.ports, self.ipc = bind(named, config.ip, ports, ipc, self._engine_streams)
        self.outbox = SocketOutbox(self.signer, self.clients, self.engine_sock, self.hb)
        self.outbox.streams = self.streams
        self.hub = Hub(
            self.outbox,
            heartbeat_period=config.heartbeat_period,
            heartbeat_timeout=config.heartbeat_timeout,
            task_failure_penalty=config.task_failure_penalty,
            task_timeout=config.task_timeout,
            store=ResultStore(store_path, config.result_memory_budget_bytes, config.history_limit),
            strict_clients=restore or config.reuse,
            engine_id_grace=config.engine_id_grace,
        )
        self.hub.connection_of = self._connection
        if self.streams is not None:
            self.hub.on_stream = self.streams.by_ident.__contains__
        if restore:
            self.hub.restore()
        self._running = True
        # Written to by :meth:`stop` and, at the C level, by a signal (main.py hands it to
        # ``signal.set_wakeup_fd``): wakes the loop's poll at once. Without it a SIGTERM
        # was seen only when the poll timed out, up to a heartbeat period later.
        self.wake_read, self.wake_fd = os.pipe()
        os.set_blocking(self.wake_read, False)
        os.set_blocking(self.wake_fd, False)

    def _engine_streams(self, channel: str, ipc_url: str) -> None:
        """Listen on the Unix stream socket for engines of this host (streams.py),
        beside the engine channel's IPC endpoint ``ipc_url`` (before it is bound)."""
        address = stream.beside(ipc_url) if channel == "engine" else None
        path = None if address is None else stream.path_of(address)
        if path is None or self.streams is not None:
            return
        try:
            self.streams = EngineStreams(path)
        except OSError as e:
            log.info("no engine stream (%s): engines of this host use IPC", e)

    def _router(self, threads: int) -> zmq.Socket[Any]:
        s: zmq.Socket[Any] = self.ctx.socket(zmq.ROUTER)
        s.setsockopt(zmq.AFFINITY, threads)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.ROUTER_HANDOVER, 1)  # an engine reconnecting keeps its identity
        s.setsockopt(zmq.SNDHWM, 0)
        s.setsockopt(zmq.RCVHWM, 0)
        s.setsockopt(zmq.BACKLOG, BACKLOG)
        if self.curve_secret:
            curve.make_server(s, self.curve_secret)
        return s

    def run(self) -> None:
        hub = self.hub
        hub.dispatch.batching = True  # task commands go out together at each turn's end
        # Engines first: their replies free them, and the refills the scheduler gives them
        # go out before the clients' messages are handled. A client's submission of many
        # tasks takes milliseconds to take in, and engines that waited behind it went idle.
        readers = {
            self.engine_sock: ("engine", hub.on_engine),
            self.hb: ("heartbeat", hub.on_heartbeat),
            self.clients: ("client", hub.on_client),
        }
        routers = list(readers)
        rank = {sock: n for n, sock in enumerate(routers)}
        # One poll() of plain descriptors: each ROUTER's ZMQ_FD (readable once libzmq has
        # news for that socket), the monitors', the store writer's and the wake-up pipe.
        # zmq_poll over the same five sockets asked each of them for its events before
        # and after waiting, and every such question costs libzmq a poll() and getpid()
        # of its own: 34 system calls per execute('pass') here, against about 12 this way.
        # A ZMQ_FD says only that something changed: a socket is asked (pending) when
        # its descriptor wakes the poll, until it has no message left, and again before
        # the next wait if anything was sent on it since (a send may take in the news of
        # a message that came meanwhile, and the descriptor does not say so again).
        poller = select.poll()
        socket_of_fd: dict[int, zmq.Socket[Any]] = {}
        for sock in routers:
            fd = int(sock.getsockopt(zmq.FD))
            socket_of_fd[fd] = sock
            poller.register(fd, select.POLLIN)
        monitor_fds = {int(m.getsockopt(zmq.FD)) for m in (*self.monitors, self.client_monitor)}
        for fd in monitor_fds:
            poller.register(fd, select.POLLIN)
        wake_fd = hub.store.wake_fd  # the store's writer: "what you wait for is on disk"
        if wake_fd is not None:
            poller.register(wake_fd, select.POLLIN)
        poller.register(self.wake_read, select.POLLIN)
        streams = self.streams
        stream_listener = -1
        if streams is not None:
            stream_listener = streams.listener.fd
            poller.register(stream_listener, select.POLLIN)
        stream_of_fd = streams.connections if streams is not None else {}
        engine_sock, hb, clients = self.engine_sock, self.hb, self.clients
        # digested frames the controller passes on unchecked, for their receivers to
        # check (docs/protocol.md §2): an engine's slices, a client's digested parts
        relayed: dict[Any, tuple[str, ...]] = {engine_sock: (P.CHUNK,), clients: (P.SUBMIT,)}
        self.outbox.touched.update(routers)  # (messages may have come before the first turn)
        self._closed_connections()  # (the same for the monitors: after this, their fds say)
        next_sweep = time.monotonic() + self.hb_period
        stop_by: float | None = None  # once stopping: how long to wait for late hellos
        while True:
            if not self._running:
                if stop_by is None:
                    stop_by = time.monotonic() + HELLO_GRACE
                if time.monotonic() >= stop_by or not self._hello_pending():
                    break
            touched = self.outbox.touched
            ready = [sock for sock in routers if sock in touched and pending(sock)]
            touched.clear()
            if ready:
                timeout = 0  # (the other descriptors are still looked at, at no wait)
            else:
                wake = hub.scheduler.next_wakeup()
                until = next_sweep if wake is None else min(next_sweep, wake)
                write = hub.store.next_turn()
                if write is not None:
                    until = min(until, write)
                if stop_by is not None:
                    until = min(until, time.monotonic() + 0.01)
                # (rounded up: a wait under 1 ms cut to 0 spun the loop until it was due)
                timeout = math.ceil(max(0.0, until - time.monotonic()) * 1000)
            if streams is not None and streams.backlogged:
                self._poll_writes(poller, streams)
            for fd, ev in poller.poll(timeout):
                woken = socket_of_fd.get(fd)
                if woken is not None:
                    if woken not in ready and pending(woken):
                        ready.append(woken)
                elif fd in stream_of_fd:
                    self._engine_stream(poller, stream_of_fd[fd], ev)
                elif fd == stream_listener:
                    assert streams is not None
                    for conn in streams.accept():
                        poller.register(conn.fd, select.POLLIN)
                elif fd == wake_fd:
                    hub.store.woken()
                elif fd == self.wake_read:
                    self._drain_wake()
                elif fd in monitor_fds:
                    self._closed_connections()
            if len(ready) > 1:
                ready.sort(key=rank.__getitem__)
            for sock in ready:
                if sock is clients:
                    hub.dispatch.send_batched()  # the engines' refills, before the clients
                channel, handle = readers[sock]
                for n in range(DRAIN + 1):
                    # (known to hold a message at first. Whether there is a second is
                    # asked: cheaper than a receive that raises zmq.Again, and one
                    # message per wakeup is the common case. After a second, the rest
                    # are received until one raises: the 128 replies of an all-engine
                    # call, often all there at once, without a question each.)
                    if n == 1 and not pending(sock):
                        touched.discard(sock)  # asked after what was sent on it so far
                        break
                    if n == DRAIN:  # more to read: the next turn asks again
                        touched.add(sock)
                        break
                    try:
                        frames = recv_frames(sock, zmq.NOBLOCK)
                    except zmq.Again:
                        touched.discard(sock)
                        break
                    try:  # (digests of what is relayed: the receiver's to check)
                        msg = self.signer.parse(frames, deferred=relayed.get(sock, ()))
                    except WireError as e:
                        hub.dropped += 1
                        log.warning("dropped a message on the %s channel: %s", channel, e)
                        continue
                    try:
                        if msg.type == P.REGISTER and sock is engine_sock:
                            hub.on_engine(msg, self._connection(frames[-1]))
                        elif msg.type == P.HELLO and sock is hb:
                            hub.on_heartbeat(msg, self._connection(frames[-1]))
                        else:
                            handle(msg)
                    except Exception:
                        log.exception("error handling %r message; the controller goes on", msg.type)
            hub.scheduler.table.flush()
            now = time.monotonic()
            hub.store.turn(now)
            wake = hub.scheduler.next_wakeup()
            if wake is not None and now >= wake:
                hub.scheduler.schedule()
            if now >= next_sweep:
                self._check_parent()
                hub.sweep(now)
                next_sweep = now + self.hb_period
            hub.dispatch.send_batched()
            if hub.exit_at is not None and now >= hub.exit_at:
                self._running = False
        log.info("controller stopping")

    def _engine_stream(self, poller: Any, conn: stream.Connection, events: int) -> None:
        """An engine's stream woke the poll: send what waits for it, read what came
        (streams.py); an ended stream is a closed engine connection."""
        streams, hub = self.streams, self.hub
        assert streams is not None
        if events & select.POLLOUT:
            conn.flush()
        if not events & ~select.POLLOUT:
            return
        try:
            batches = conn.read()
        except (stream.Closed, stream.StreamError, OSError) as e:
            if not isinstance(e, stream.Closed):
                hub.dropped += 1
                log.warning("dropped an engine's stream: %s", e)
            conn.close()
            batches = []
        for frames in batches:
            try:
                msg = self.signer.parse(frames, deferred=(P.CHUNK,))
            except WireError as e:
                hub.dropped += 1
                log.warning("dropped a message on the engine channel: %s", e)
                continue
            ident = streams.ident_of.get(conn.fd)
            try:
                if ident is None:  # its first message names it: a register with ident
                    named = msg.header.get("ident")
                    if msg.type != P.REGISTER or type(named) is not bytes:
                        hub.dropped += 1
                        log.warning("dropped a %r before register on an engine stream", msg.type)
                        continue
                    ident = named
                    streams.name(conn, ident)
                msg.idents = [ident]
                if msg.type == P.REGISTER:
                    self._closed_connections()  # (as _connection says)
                    hub.on_engine(msg, conn.fd)
                else:
                    hub.on_engine(msg)
            except Exception:
                log.exception("error handling %r message; the controller goes on", msg.type)
        if conn.closed:
            try:
                poller.unregister(conn.fd)
            except KeyError:
                pass
            fd = streams.drop(conn)
            try:
                hub.on_disconnect(fd)
            except Exception:
                log.exception("error handling a closed connection; the controller goes on")

    @staticmethod
    def _poll_writes(poller: Any, streams: EngineStreams) -> None:
        """Poll for POLLOUT exactly the streams with something queued."""
        for conn in list(streams.backlogged):
            if conn.closed:
                streams.backlogged.discard(conn)
                continue
            if conn.wants_write:
                poller.modify(conn.fd, select.POLLIN | select.POLLOUT)
            else:
                poller.modify(conn.fd, select.POLLIN)
                streams.backlogged.discard(conn)

    def _hello_pending(self) -> bool:
        """Whether an engine registered but has not said ``hello`` on the heartbeat
        channel yet: the ``shutdown`` notice goes there, and would not reach it."""
        return any(e.hb_conn is None for e in self.hub.dispatch.engines.values())

    def _connection(self, frame: Any) -> int | None:
        """The connection (its fd) a ``register`` or ``hello`` came on. Closed connections
        are taken first: a new connection may reuse the descriptor of one whose closing
        has not been read yet, and that closing must not be pinned on the new engine."""
        self._closed_connections()
        try:
            conn: int | None = frame.get(zmq.SRCFD)
        except (zmq.ZMQError, AttributeError, TypeError):
            conn = None
        return conn

    def _closed_connections(self) -> None:
        """Tell the hub of every connection that has closed (engines' and clients')."""
        hub = self.hub
        watched = [(m, hub.on_disconnect) for m in self.monitors]
        for monitor, closed in [*watched, (self.client_monitor, hub.on_client_disconnect)]:
            while True:
                try:
                    frames = monitor.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                event = parse_monitor_message(frames)
                if event["event"] == zmq.EVENT_DISCONNECTED:
                    try:
                        closed(int(event["value"]))
                    except Exception:
                        log.exception("error handling a closed connection; the controller goes on")

    def _check_parent(self) -> None:
        parent = self.parent_pid
        if parent and os.getppid() != parent and not pid_alive(parent):
            log.warning("the process that started this controller (%d) has gone: stopping", parent)
            self._running = False

    def stop(self) -> None:
        """Leave the loop (from a signal handler or another thread)."""
        self._running = False
        try:
            os.write(self.wake_fd, b"s")
        except OSError:  # full (a wake-up is pending anyway) or closed
            pass

    def _drain_wake(self) -> None:
        try:
            while os.read(self.wake_read, 4096):
                pass
        except OSError:  # empty
            pass

    def close(self) -> None:
        """Tell the engines this controller stops for good (they exit rather than wait to
        register again), then close the sockets."""
        try:
            self.hub.shutdown()
        except zmq.ZMQError as e:
            log.warning("could not tell every engine that the controller stops: %s", e)
        self.hub.store.close()
        if self.streams is not None:
            self.streams.close()
        for monitor in (*self.monitors, self.client_monitor):
            monitor.close(linger=0)
        for s in (self.clients, self.engine_sock):
            s.close(linger=0)
        self.hb.close(linger=1000)  # the shutdown notices go out first
        for url in self.ipc.values():
            try:
                os.unlink(url[len("ipc://") :])
            except OSError:
                pass
        for fd in (self.wake_read, self.wake_fd):
            try:
                os.close(fd)
            except OSError:
                pass
