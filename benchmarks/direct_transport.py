"""What a direct call would take over a transport without libzmq's I/O threads.

    python benchmarks/direct_transport.py             # both transports, free-running
    python benchmarks/direct_transport.py --pin 1     # everything on CPU 1
    python benchmarks/direct_transport.py --calls 20000

A direct ``execute('pass')`` (docs/client.md) is a message to an engine of this host and
its answer. Over ZeroMQ each of the two crosses three threads: the sender's main thread
hands it to its libzmq I/O thread, which writes it to the socket, where the receiver's
I/O thread takes it and wakes the receiver's main thread. Over a bare Unix stream socket
the sender's main thread writes it and the receiver's main thread, blocked in
``recv``, reads it: one wake-up instead of three.

Both sides here do what multiengine's do for that call, with its own code: the client
signs a ``direct`` header with a pickled ``("pass",)`` (``Signer.frames``); the engine
verifies it (``Signer.parse`` with a replay guard), unpickles it, runs
``Interpreter.execute('pass')``, pickles the result dict and signs the answer; the
client verifies the answer and unpickles it. Only the transport differs:

* **zmq**: a DEALER here, a ROUTER in the child, over ``ipc://`` (as the direct path);
* **unix**: a ``socketpair``, each message its frames' count and lengths (4 bytes each)
  then their bytes, written with one ``sendall`` and read with ``recv`` into a buffer.

It prints the median and p90 of ``--calls`` round trips per transport (after a tenth as
many untimed ones), alternating the two twice. Take ``flock /tmp/bench.lock`` around
it on a shared machine. On the 2-vCPU VM of issue 13 (2026-12-07, 19:00 UTC) the
medians were 268 and 307 µs over zmq against 196 and 257 µs over the Unix socket
free-running, 144 and 135 against 68 and 68 µs with both processes on one CPU;
multiengine's own direct ``execute('pass')`` took 405-445 µs free-running and 331-343
µs pinned that hour (benchmarks/round_trip.py).
"""

from __future__ import annotations

import argparse
import os
import pickle
import socket
import statistics
import struct
import sys
import time
from collections.abc import Callable
from typing import Any

import zmq

from multiengine.engine.interpreter import Interpreter
from multiengine.wire.message import ReplayGuard, Signer, recv_frames, send_frames

KEY = b"direct-transport-benchmark-key!!"
_LEN = struct.Struct("<I")

Send = Callable[[list[Any]], None]
Recv = Callable[[], list[Any]]


def _unix_pair(sock: socket.socket) -> tuple[Send, Recv]:
    """Framed multipart messages over a stream socket: count, lengths, bytes."""
    buf = bytearray()

    def send(frames: list[Any]) -> None:
        parts = [_LEN.pack(len(frames))]
        for f in frames:
            data = bytes(f)
            parts.append(_LEN.pack(len(data)))
            parts.append(data)
        sock.sendall(b"".join(parts))

    def need(n: int) -> None:
        while len(buf) < n:
            data = sock.recv(65536)
            if not data:
                raise EOFError
            buf.extend(data)

    def recv() -> list[Any]:
        need(4)
        (count,) = _LEN.unpack_from(buf)
        at, frames = 4, []
        for _ in range(count):
            need(at + 4)
            (n,) = _LEN.unpack_from(buf, at)
            at += 4
            need(at + n)
            frames.append(bytes(buf[at : at + n]))
            at += n
        del buf[:at]
        return frames

    return send, recv


def _content(frame: Any) -> Any:
    return frame if type(frame) is bytes else frame.bytes


def _engine(send: Send, recv: Recv) -> None:
    """The engine's side, until an empty message or the end of the stream."""
    signer, guard, interp = Signer(KEY), ReplayGuard(), Interpreter(0)
    while True:
        try:
            msg = signer.parse(recv(), guard)
        except EOFError:
            return
        if msg.header.get("stop"):
            return
        (code,) = pickle.loads(_content(msg.content))
        answer = pickle.dumps(interp.execute(code), 5)
        send(signer.frames({"t": "result", "id": msg.header["id"]}, answer, (), msg.idents))


def _child(kind: str, where: Any) -> None:
    if kind == "zmq":
        ctx = zmq.Context()
        router = ctx.socket(zmq.ROUTER)
        router.bind(where)
        _engine(lambda f: send_frames(router, f), lambda: recv_frames(router))
        router.close(0)
        ctx.term()
    else:
        _engine(*_unix_pair(where))
    os._exit(0)


def round_trips(kind: str, calls: int) -> list[float]:
    """Seconds per signed execute-shaped round trip to a forked engine over ``kind``."""
    signer, guard = Signer(KEY), ReplayGuard()
    if kind == "zmq":
        url = f"ipc:///tmp/me-direct-transport-{os.getpid()}"
        pid = os.fork()
        if pid == 0:
            _child(kind, url)
        ctx = zmq.Context()
        dealer = ctx.socket(zmq.DEALER)
        dealer.connect(url)
        send: Send = lambda f: send_frames(dealer, f)  # noqa: E731
        recv: Recv = lambda: recv_frames(dealer)  # noqa: E731
    else:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:
            mine.close()
            _child(kind, theirs)
        theirs.close()
        send, recv = _unix_pair(mine)
    content = pickle.dumps(("pass",), 5)
    samples = []
    try:
        for i in range(calls + calls // 10):
            t = time.perf_counter()
            send(signer.frames({"t": "direct", "id": i}, content))
            answer = signer.parse(recv(), guard)
            pickle.loads(_content(answer.content))
            if i >= calls // 10:
                samples.append(time.perf_counter() - t)
        send(signer.frames({"t": "direct", "id": -1, "stop": True}, content))
    finally:
        os.waitpid(pid, 0)
        if kind == "zmq":
            dealer.close(0)
            ctx.term()
            os.unlink(url[len("ipc://") :])
        else:
            mine.close()
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000, help="timed round trips per run")
    parser.add_argument("--pin", type=int, default=None, metavar="CPU")
    args = parser.parse_args()
    if args.pin is not None:
        os.sched_setaffinity(0, {args.pin})
    print(f"load average {os.getloadavg()[0]:.2f}, pinned to {args.pin}")
    for kind in ("zmq", "unix", "zmq", "unix"):
        samples = sorted(round_trips(kind, args.calls))
        median = statistics.median(samples) * 1e6
        p90 = samples[int(len(samples) * 0.9)] * 1e6
        print(f"signed execute('pass') over {kind:<4}  median {median:6.0f} µs  p90 {p90:6.0f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
