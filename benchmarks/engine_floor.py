"""The floor under an all-engine call on one host: N bare pyzmq processes that answer
a fan-out, without multiengine.

    python benchmarks/engine_floor.py                 # 128 processes, both kinds
    python benchmarks/engine_floor.py -n 64 --rounds 500

The parent binds a ROUTER on an ``ipc://`` endpoint and forks N children (as the fork
server forks engines: after ``import zmq``, each as ``SCHED_BATCH``); each child connects
a DEALER and answers every two-frame message with a two-frame message. One round sends
a message to each child and waits for all N answers, as the controller does for an
all-engine ``execute('pass')``. Two kinds of children:

* **echo**: receive, answer (libzmq, pyzmq and the kernel alone);
* **signed**: what any signed protocol must add per message: the header frame's
  HMAC-SHA256 checked, its msgpack decoded, an answer header packed with msgpack and
  signed.

A third kind, **unix**, does what *signed* does over a bare Unix stream socket per child
(a ``socketpair``; each message a 4-byte length, then the header frame's bytes): no
libzmq, so no I/O thread in either process; the parent writes the command to every
child, then reads the answers as ``poll()`` says they have come. It is the floor of a
fan-out on one host without ZeroMQ.

It prints, per round, the median wall time and the CPU time of all children added up
(their threads' run time, ``schedstat``) and of the parent: what multiengine's
``local_engines.py`` rows (``execute_ms``, ``engines_cpu_ms``, ``controller_cpu_ms``)
can be held against on this machine.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import select
import signal
import socket
import statistics
import struct
import tempfile
import time
from collections.abc import Callable

import msgpack
import zmq

KEY = b"k" * 32
HEADER = msgpack.packb({"t": "cmd", "cmd": 1, "name": "execute", "sid": 1, "seq": 1, "ts": 0.0})


def child(url: str, index: int, signed: bool) -> None:
    """Answer every message until one says ``stop`` (runs in a forked child)."""
    os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    sock = zmq.Context().socket(zmq.DEALER)
    sock.setsockopt(zmq.IDENTITY, b"e%d" % index)
    sock.connect(url)
    sock.send(b"ready")
    base = hmac.new(KEY, digestmod=hashlib.sha256)
    while True:
        frames = sock.recv_multipart(copy=False)
        head = frames[0].bytes
        if head == b"stop":
            return
        if signed:
            h = base.copy()
            h.update(head[36:])
            if not hmac.compare_digest(h.digest(), head[4:36]):
                raise SystemExit("bad signature")
            got = msgpack.unpackb(head[36:])
            out = msgpack.packb(
                {"t": "reply", "cmd": got["cmd"], "status": "ok", "ts": time.time()}
            )
            h = base.copy()
            h.update(out)
            sock.send_multipart([b"ME/3" + h.digest() + out, b"\x80\x05N."])
        else:
            sock.send_multipart([head, b"\x80\x05N."])


def unix_child(sock: socket.socket) -> None:
    """``child``'s signed answers over a bare Unix socket, until ``stop``."""
    os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    base = hmac.new(KEY, digestmod=hashlib.sha256)
    while True:
        head = _read_message(sock)
        if head == b"stop":
            return
        h = base.copy()
        h.update(head[36:])
        if not hmac.compare_digest(h.digest(), head[4:36]):
            raise SystemExit("bad signature")
        got = msgpack.unpackb(head[36:])
        out = msgpack.packb({"t": "reply", "cmd": got["cmd"], "status": "ok", "ts": time.time()})
        h = base.copy()
        h.update(out)
        answer = b"ME/3" + h.digest() + out
        sock.sendall(_LEN.pack(len(answer)) + answer)


_LEN = struct.Struct("<I")


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    data = sock.recv(n)
    while len(data) < n:
        more = sock.recv(n - len(data))
        if not more:
            raise EOFError
        data += more
    return data


def _read_message(sock: socket.socket) -> bytes:
    (n,) = _LEN.unpack(_read_exactly(sock, 4))
    return _read_exactly(sock, n)


def run_unix(n: int, rounds: int) -> dict[str, float]:
    """The *unix* kind: a socketpair per child, the parent polls their ends."""
    pids: list[int] = []
    socks: list[socket.socket] = []
    for _ in range(n):
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                mine.close()
                for s in socks:
                    s.close()
                unix_child(theirs)
            except BaseException:
                code = 1
            os._exit(code)
        theirs.close()
        pids.append(pid)
        socks.append(mine)
    sig = hmac.new(KEY, HEADER, hashlib.sha256).digest()
    command = b"ME/3" + sig + HEADER
    framed = _LEN.pack(len(command)) + command
    by_fd = {s.fileno(): s for s in socks}
    poller = select.poll()
    for fd in by_fd:
        poller.register(fd, select.POLLIN)

    def one_round() -> None:
        for s in socks:
            s.sendall(framed)
        left = n
        while left:
            for fd, _ in poller.poll():
                _read_message(by_fd[fd])
                left -= 1

    stopped = False
    try:
        result = timed_rounds(one_round, pids, rounds)
        stop = b"stop"
        for s in socks:
            s.sendall(_LEN.pack(len(stop)) + stop)
        stopped = True
    finally:
        reap(pids, stopped)
        for s in socks:
            s.close()
    return result


def timed_rounds(one_round: Callable[[], None], pids: list[int], rounds: int) -> dict[str, float]:
    """Median wall time of ``rounds`` rounds (after 20 untimed ones), and the CPU per
    round of the children (``pids``) and of this process."""
    for _ in range(20):
        one_round()
    before = sum(map(cpu_seconds, pids))
    mine = time.process_time()
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        one_round()
        times.append(time.perf_counter() - t)
    return {
        "round_ms": statistics.median(times) * 1e3,
        "children_cpu_ms": (sum(map(cpu_seconds, pids)) - before) / rounds * 1e3,
        "parent_cpu_ms": (time.process_time() - mine) / rounds * 1e3,
    }


def reap(pids: list[int], stopped: bool) -> None:
    """Wait for the children, killing them first unless they were told to stop."""
    for pid in pids:
        if not stopped:
            os.kill(pid, signal.SIGKILL)
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


def cpu_seconds(pid: int) -> float:
    """Run time of all of ``pid``'s threads (its libzmq I/O thread too), in seconds, as
    the scheduler counts it (``schedstat``: nanoseconds, not clock ticks)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, IndexError, ValueError):
            continue
    return total / 1e9


def run(n: int, rounds: int, signed: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"ipc://{tmp}/floor"
        pids = []
        for i in range(n):  # (before this process makes a zmq context: none is inherited)
            pid = os.fork()
            if pid == 0:  # the child: never returns into the parent's code
                code = 0
                try:
                    child(url, i, signed)
                except BaseException:
                    code = 1
                os._exit(code)
            pids.append(pid)
        router: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.ROUTER)
        router.bind(url)  # (the children's DEALERs connect as soon as it is there)
        stopped = False
        try:
            idents = [router.recv_multipart()[0] for _ in range(n)]
            sig = hmac.new(KEY, HEADER, hashlib.sha256).digest()
            message = [b"ME/3" + sig + HEADER, b"\x80\x05\x95\x08"]

            def one_round() -> None:
                for ident in idents:
                    router.send_multipart([ident, *message])
                for _ in range(n):
                    router.recv_multipart(copy=False)

            result = timed_rounds(one_round, pids, rounds)
            for ident in idents:
                router.send_multipart([ident, b"stop"])
            stopped = True
        finally:
            reap(pids, stopped)
            router.close(linger=0)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=128, help="processes")
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    for kind in ("echo", "signed", "unix"):
        r = (
            run_unix(args.n, args.rounds)
            if kind == "unix"
            else run(args.n, args.rounds, kind == "signed")
        )
        cells = ", ".join(f"{k} {v:.2f}" for k, v in r.items())
        print(f"{args.n} {kind:6s} processes: {cells}")


if __name__ == "__main__":
    main()
