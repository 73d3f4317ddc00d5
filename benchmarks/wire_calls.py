"""What pyzmq's calls cost on the hot path, beside the helpers in multiengine.wire.message.

    python benchmarks/wire_calls.py

A 3-part message of small frames over tcp on 127.0.0.1, sent and received in one
process; each row is the best of 5 runs of 20,000 calls, in µs per call.
"""

from __future__ import annotations

import time
import timeit
from typing import Any

import zmq

from multiengine.wire.message import pending, recv_frames, send_frames

N = 20_000
FRAMES = [b"c-0123456789abcdef", b"ME/3" + b"x" * 150, b""]


def best(fn: Any, n: int = N) -> float:
    return min(timeit.repeat(fn, number=n, repeat=5)) / n * 1e6


def main() -> None:
    ctx = zmq.Context()
    a = ctx.socket(zmq.PUSH)
    a.setsockopt(zmq.SNDHWM, 0)
    a.bind("tcp://127.0.0.1:0")
    b = ctx.socket(zmq.PULL)
    b.setsockopt(zmq.RCVHWM, 0)
    b.connect(a.getsockopt(zmq.LAST_ENDPOINT))
    time.sleep(0.2)

    def drain() -> None:
        time.sleep(0.2)
        while b.poll(0):
            b.recv_multipart()

    rows = []
    rows.append(("send_multipart(copy=False)", best(lambda: a.send_multipart(FRAMES, copy=False))))
    drain()
    rows.append(("send_multipart(copy=True)", best(lambda: a.send_multipart(FRAMES))))
    drain()
    rows.append(("send_frames", best(lambda: send_frames(a, FRAMES))))
    drain()
    for name, recv in (
        ("recv_multipart(copy=False)", lambda: b.recv_multipart(copy=False)),
        ("recv_frames", lambda: recv_frames(b)),
    ):
        for _ in range(N * 5):
            send_frames(a, FRAMES)
        time.sleep(0.5)
        rows.append((name, best(recv)))
        drain()

    def again() -> None:
        try:
            b.recv_multipart(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            pass

    rows.append(("empty socket: recv raising zmq.Again", best(again)))
    rows.append(("empty socket: pending()", best(lambda: pending(b))))
    rows.append(("empty socket: sock.poll(0)", best(lambda: b.poll(0))))
    for name, us in rows:
        print(f"{name:40s} {us:6.2f} µs")
    a.close(0)
    b.close(0)
    ctx.term()


if __name__ == "__main__":
    main()
