"""execute('pass') beside a raw ZeroMQ round trip, measured in one run.

    python benchmarks/round_trip.py             # raw zmq; execute('pass') on 1, on all engines
    python benchmarks/round_trip.py --many 128  # also all-engine execute('pass') at 128 engines
    python benchmarks/round_trip.py --pin 1     # every process on CPU 1 (see below)

The figure a latency goal is set against is the raw round trip of this machine at the
time: a DEALER in this process and a ROUTER in a child process that sends every message
straight back, over tcp loopback and over ipc, in pyzmq with no signing and no Python
work beyond the calls. It moves with the machine (92 µs when the goals were set, 157 µs
on a slower day), so it is measured twice, before and after multiengine's rows, and
each row gives its ratio to the lower median. An all-engine ``execute('pass')`` goes
client -> controller -> engines -> controller -> client: two round trips at the least;
on one engine of this host it goes direct, client -> engine -> client (docs/client.md).

Beside them, once, a **bare Unix socket** round trip: blocking ``send``/``recv`` on a
socketpair between this process and a child, no libzmq. A ZeroMQ round trip crosses six
threads (each side's main thread and libzmq I/O thread, twice); this one crosses two.
Where a wake-up that crosses CPUs is dear (the VM of 2026-12-07: 159-204 µs for the
ZeroMQ trip over ipc free-running against 47 µs for this one; 66-110 against 12 µs
pinned), it shows what a transport without I/O threads could take off a direct call
(benchmarks/direct_transport.py measures that call's work over both).

For each multiengine row the CPU each process spent per call (its threads' user +
system time from /proc, libzmq's I/O threads included) is given too: on a shared
2-core machine the wall time moves by tens of per cent from run to run, the CPU per call
far less, and it says which process a change made cheaper. ``--pin CPU`` runs this
process and everything it starts on one CPU: the wall time is then the sum of the
processes' CPU, and repeats within a few per cent (the scheduler no longer decides
whether a wake-up crosses to the other core, which made free-running medians bimodal).

Medians of ``--calls`` blocking calls after a tenth as many untimed ones. Take
``flock /tmp/bench.lock`` around a run on a shared machine.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import socket
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import zmq

import multiengine


def _echo(url: str) -> None:
    """The raw peer: a ROUTER that sends each message back, until an empty one."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.connect(url)
    while True:
        ident, body = sock.recv_multipart(copy=False)
        if not len(body):
            break
        sock.send_multipart([ident, body], copy=False)
    sock.close(0)
    ctx.term()


def raw_round_trip(transport: str, calls: int) -> float:
    """Median µs of a 1-byte DEALER -> ROUTER -> DEALER round trip to a child process."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.RCVTIMEO, 10_000)
    if transport == "tcp":
        sock.bind_to_random_port("tcp://127.0.0.1")
    else:
        sock.bind(f"ipc:///tmp/me-round-trip-{os.getpid()}")
    url = sock.getsockopt_string(zmq.LAST_ENDPOINT)
    child = mp.get_context("fork").Process(target=_echo, args=(url,), daemon=True)
    child.start()
    try:
        samples = []
        for i in range(calls + calls // 10):
            t = time.perf_counter()
            sock.send(b"x")
            sock.recv()
            if i >= calls // 10:
                samples.append(time.perf_counter() - t)
        sock.send(b"")
        child.join(10)
    finally:
        if child.is_alive():
            child.kill()
            child.join()
        sock.close(0)
        ctx.term()
        if transport == "ipc":
            try:
                os.unlink(url[len("ipc://") :])
            except OSError:
                pass
    return statistics.median(samples) * 1e6


def unix_round_trip(calls: int) -> float:
    """Median µs of a 1-byte round trip over a bare Unix stream socket to a child
    process: blocking send and receive in the two main threads, no I/O thread between
    them (what a transport of its own could reach on this host)."""
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    child = mp.get_context("fork").Process(target=_unix_echo, args=(theirs,), daemon=True)
    child.start()
    theirs.close()
    try:
        samples = []
        for i in range(calls + calls // 10):
            t = time.perf_counter()
            mine.send(b"x")
            mine.recv(1)
            if i >= calls // 10:
                samples.append(time.perf_counter() - t)
    finally:
        mine.close()  # (the child reads the end of the stream and returns)
        child.join(10)
        if child.is_alive():
            child.kill()
            child.join()
    return statistics.median(samples) * 1e6


def _unix_echo(sock: socket.socket) -> None:
    while data := sock.recv(1):
        sock.send(data)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of every thread of ``pid``, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(fn: Callable[[], Any], calls: int, pids: dict[str, list[int]]) -> tuple[float, str]:
    """Median µs of ``fn``, and the CPU per call of each group of processes."""
    for _ in range(max(1, calls // 10)):
        fn()
    before = {k: sum(map(cpu_seconds, ps)) for k, ps in pids.items()}
    samples = []
    for _ in range(calls):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    cpu = {k: (sum(map(cpu_seconds, ps)) - before[k]) / calls * 1e6 for k, ps in pids.items()}
    return statistics.median(samples) * 1e6, ", ".join(f"{k} {v:.0f}" for k, v in cpu.items())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2, help="engines of the small cluster")
    parser.add_argument("--calls", type=int, default=2000, help="timed calls per row")
    parser.add_argument("--many", type=int, default=0, help="also all engines at this count")
    parser.add_argument("--pin", type=int, default=None, metavar="CPU")
    args = parser.parse_args()
    if args.pin is not None:
        os.sched_setaffinity(0, {args.pin})
    print(f"multiengine {multiengine.__version__} from {os.path.dirname(multiengine.__file__)}")
    print(f"python {sys.version.split()[0]}, pyzmq {zmq.__version__}, libzmq {zmq.zmq_version()}")
    print(
        f"load average {os.getloadavg()[0]:.2f}, pinned to {args.pin}"
        if args.pin is not None
        else f"load average {os.getloadavg()[0]:.2f}"
    )
    raws = [raw_round_trip("tcp", args.calls), raw_round_trip("ipc", args.calls)]
    unix = unix_round_trip(args.calls)
    rows: list[tuple[str, float, str]] = []
    with multiengine.Cluster(n=args.n) as cluster:
        mec = cluster.multiengine_client()
        controller = mec.status()["pid"]
        engines = list(cluster.engine_pids().values())
        me = os.getpid()
        one = {"client": [me], "controller": [controller], "engine": engines[:1]}
        us, cpu = timed(lambda: mec.execute("pass", targets=0, block=True), args.calls, one)
        rows.append(("execute('pass'), 1 engine", us, cpu))
        every = {"client": [me], "controller": [controller], "engines": engines}
        us, cpu = timed(lambda: mec.execute("pass", block=True), args.calls, every)
        rows.append((f"execute('pass'), all {args.n} engines", us, cpu))
    raws += [raw_round_trip("tcp", args.calls), raw_round_trip("ipc", args.calls)]
    if args.many:
        with multiengine.Cluster(n=args.many) as cluster:
            mec = cluster.multiengine_client()
            controller = mec.status()["pid"]
            engines = list(cluster.engine_pids().values())
            pids = {"client": [me], "controller": [controller], "engines": engines}
            us, cpu = timed(
                lambda: mec.execute("pass", block=True), max(20, args.calls // 20), pids
            )
            rows.append((f"execute('pass'), all {args.many} engines", us, cpu))
    raw = min(raws)
    print(
        f"raw zmq round trip (µs), tcp / ipc, before and after: "
        f"{raws[0]:.0f} / {raws[1]:.0f}, {raws[2]:.0f} / {raws[3]:.0f}"
    )
    print(f"bare Unix socket round trip (µs), no I/O threads: {unix:.0f}")
    print(f"{'row':<34} {'median µs':>10} {'x raw':>7}   CPU µs per call")
    for label, us, cpu in rows:
        print(f"{label:<34} {us:>10.0f} {us / raw:>7.1f}   {cpu}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
