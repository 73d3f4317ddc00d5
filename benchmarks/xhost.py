"""Large arrays over the network, beside one raw 80 MB ZeroMQ frame over the same link.

    python benchmarks/xhost.py            # engines on two network-namespace hosts (root)
    python benchmarks/xhost.py --local    # engines on this host, shared memory off
    python benchmarks/xhost.py -r 15 --json xhost.json

Where shared memory cannot serve, a large push or pull travels client -> controller ->
engine (or back) in signed pieces that the controller relays as they arrive (docs/
protocol.md §6). This script measures that path and, in the same run, the limit it is
measured against: one 80 MB frame sent by a client socket to a receiving process over
the same link (same transport, same Curve setting), answered with one byte.

* **netns** (the default): ``tests/systems/netns.sh`` builds two hosts (network
  namespaces ``meh1``/``meh2`` at 10.200.0.2 and .3, each with an sshd) on a bridge
  whose root side is 10.200.0.1; the controller binds 10.200.0.1, so CurveZMQ is on;
  the ``ssh`` launcher starts one engine on each host. The namespaces share this
  machine's boot id, so they would look like one node to shared memory:
  ``MULTIENGINE_SHM_THRESHOLD=0`` is set for the client and the engines. The raw
  frame goes from this process to a receiver inside ``meh1`` through a Curve socket.
  The hosts are taken down at the end (``netns.sh down``).
* **local** (``--local``): ``Cluster(n=2)`` on loopback with
  ``MULTIENGINE_SHM_THRESHOLD=0``; the raw frame goes over tcp loopback without Curve.

Rows (an 80 MB float64 array; the median of ``-r`` timed calls after 2 untimed ones):
``push -> 1 engine`` (``mec.push({'a': a}, targets=0)``), ``push -> 2 engines``
(``mec.push({'a': a})``, delivered bytes: 2 x 80 MB / time), ``pull <- 1 engine``
(``mec.pull('a', targets=0)``), ``gather 80 MB from 2 engines`` (``mec.gather('b')``
of an array scattered before), each as GB/s and as a ratio to the raw frame's GB/s;
and ``execute('pass')`` in µs (median of 300 after 30), to show small messages are not
slowed. The raw frame is measured before and after the cluster rows; the ratio uses
their mean.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import zmq

import multiengine
from multiengine.wire import chunks

ROOT = Path(__file__).resolve().parents[1]
NETNS_SH = ROOT / "tests" / "systems" / "netns.sh"
SSH_OPTIONS = [
    "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=5",
]  # fmt: skip
BRIDGE_IP = "10.200.0.1"

# The receiver of the raw frame: binds, prints its port, answers each frame with one byte,
# stops after a 1-byte frame. With a server key as argv[2], it is a Curve server.
RECEIVER = r"""
import sys, zmq
ctx = zmq.Context()
s = ctx.socket(zmq.ROUTER)
s.linger = 0
if len(sys.argv) > 2:
    s.curve_secretkey = sys.argv[2].encode()
    s.curve_server = True
print(s.bind_to_random_port("tcp://" + sys.argv[1]), flush=True)
while True:
    ident, tag, *data = s.recv_multipart(copy=False)
    if tag.bytes == b"m":
        continue  # a piece before the last: the last one is answered
    s.send_multipart([ident.bytes, b"k"])
    if tag.bytes == b"q":
        break
"""


def median_seconds(fn: Callable[[], Any], repeat: int, warm: int = 2) -> float:
    for _ in range(warm):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def raw_frame_rate(
    a: np.ndarray, ip: str, prefix: Sequence[str], curve: bool, repeat: int, piece: int = 0
) -> float:
    """GB/s of one ``a``-sized frame from here to a receiver process at ``ip`` (with
    ``piece``: as messages of that many bytes, sent one after the other)."""
    argv = [*prefix, sys.executable, "-c", RECEIVER, ip]
    public = b""
    if curve:
        public, secret = zmq.curve_keypair()
        argv.append(secret.decode())
    receiver = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.rcvtimeo = 60_000
    try:
        assert receiver.stdout is not None
        port = int(receiver.stdout.readline())
        if curve:
            sock.curve_serverkey = public
            sock.curve_publickey, sock.curve_secretkey = zmq.curve_keypair()
        sock.connect(f"tcp://{ip}:{port}")

        data = memoryview(a).cast("B")
        cuts = range(0, len(data), piece) if piece else [0]
        step = piece or len(data)

        def one() -> None:
            for off in cuts:  # each its own message; the last is tagged "e"
                tag = b"e" if off + step >= len(data) else b"m"
                sock.send_multipart([tag, data[off : off + step]], copy=False)
            sock.recv()

        try:
            t = median_seconds(one, repeat)
        except zmq.Again:
            raise SystemExit(
                f"the raw-frame receiver did not answer within 60 s (its exit status: "
                f"{receiver.poll()}; killed by the OOM killer on a loaded machine?)"
            ) from None
        sock.send(b"q")
        sock.recv()
        receiver.wait(30)
        return a.nbytes / 1e9 / t
    finally:
        sock.close()
        ctx.term()
        if receiver.poll() is None:
            receiver.kill()
            receiver.wait()
        if receiver.stdout is not None:
            receiver.stdout.close()


@contextmanager
def netns_hosts(workdir: Path) -> Iterator[tuple[list[str], Path]]:
    """Two hosts from tests/systems/netns.sh: their addresses and the ssh key; down at the end."""
    up = subprocess.run(
        ["bash", str(NETNS_SH), "up", str(workdir), "2"], capture_output=True, text=True
    )
    if up.returncode != 0:
        raise SystemExit(f"netns.sh up failed:\n{up.stderr}")
    values = dict(line.split("=", 1) for line in up.stdout.splitlines() if "=" in line)
    try:
        yield values["HOSTS"].split(), Path(values["SSH_KEY"])
    finally:
        subprocess.run(["bash", str(NETNS_SH), "down", str(workdir), "2"], capture_output=True)


def remote_python(workdir: Path) -> str:
    """This interpreter, this multiengine, shared memory off (sshd clears the environment)."""
    source = Path(multiengine.__file__).resolve().parents[1]
    wrapper = workdir / "python"
    wrapper.write_text(
        "#!/bin/sh\nMULTIENGINE_SHM_THRESHOLD=0 "
        f'PYTHONPATH={shlex.quote(str(source))} exec {shlex.quote(sys.executable)} "$@"\n'
    )
    wrapper.chmod(0o755)
    return str(wrapper)


def cluster_rows(cluster: multiengine.Cluster, a: np.ndarray, repeat: int) -> dict[str, float]:
    gb = a.nbytes / 1e9
    mec = cluster.multiengine_client()
    rows: dict[str, float] = {}
    t = median_seconds(lambda: mec.execute("pass", targets=0), 300, warm=30)
    rows["execute('pass'), 1 engine, µs"] = t * 1e6
    rows["push 80 MB -> 1 engine"] = gb / median_seconds(
        lambda: mec.push({"a": a}, targets=0), repeat
    )
    rows["push 80 MB -> 2 engines (delivered)"] = (
        2 * gb / median_seconds(lambda: mec.push({"a": a}), repeat)
    )
    if not np.array_equal(mec.pull("a", targets=0)[0], a):
        raise SystemExit("pull returned a different array")
    rows["pull 80 MB <- 1 engine"] = gb / median_seconds(lambda: mec.pull("a", targets=0), repeat)
    mec.scatter("b", a)
    if not np.array_equal(mec.gather("b"), a):
        raise SystemExit("gather returned a different array")
    rows["gather 80 MB <- 2 engines"] = gb / median_seconds(lambda: mec.gather("b"), repeat)
    mec.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--local", action="store_true", help="engines on this host, no netns")
    parser.add_argument("-r", "--repeat", type=int, default=8, help="timed transfers per row")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args()
    os.environ["MULTIENGINE_SHM_THRESHOLD"] = "0"
    a = np.random.default_rng(0).random(10_000_000)  # 80 MB
    raw: list[float] = []  # one frame, before and after the cluster rows
    pieces: list[float] = []  # the same bytes as 4 MiB messages, sent back to back

    def limits(ip: str, prefix: Sequence[str], curve: bool) -> None:
        raw.append(raw_frame_rate(a, ip, prefix, curve, args.repeat))
        pieces.append(raw_frame_rate(a, ip, prefix, curve, args.repeat, chunks.PIECE))

    with tempfile.TemporaryDirectory(prefix="xhost-") as tmp:
        work = Path(tmp)
        if args.local:
            where = "one host, tcp loopback, shared memory off"
            limits("127.0.0.1", (), False)
            with multiengine.Cluster(n=2) as cluster:
                rows = cluster_rows(cluster, a, args.repeat)
            limits("127.0.0.1", (), False)
        else:
            where = "two netns hosts over a bridge, Curve on, shared memory off"
            with netns_hosts(work / "netns") as (hosts, key):
                into_host = ("ip", "netns", "exec", "meh1")
                limits(hosts[0], into_host, True)
                cluster = multiengine.Cluster(
                    2,
                    launcher="ssh",
                    ip=BRIDGE_IP,
                    timeout=60,
                    launcher_options={
                        "python": remote_python(work),
                        "ssh_args": ["-i", str(key), *SSH_OPTIONS],
                        "hosts": {hosts[0]: 1, hosts[1]: 1},
                    },
                )
                with cluster:
                    rows = cluster_rows(cluster, a, args.repeat)
                limits(hosts[0], into_host, True)
    limit = statistics.mean(raw)
    print(f"{where}; 80 MB float64; median of {args.repeat}")
    print(f"{'raw: one 80 MB zmq frame (before / after)':45s} {raw[0]:6.2f} / {raw[1]:.2f} GB/s")
    print(f"{'raw: 80 MB as 4 MiB messages, direct':45s} {pieces[0]:6.2f} / {pieces[1]:.2f} GB/s")
    for name, value in rows.items():
        if name.endswith("µs"):
            print(f"{name:45s} {value:6.0f} µs")
        else:
            print(f"{name:45s} {value:6.2f} GB/s  {value / limit:5.2f} x raw frame")
    if args.json:
        out = {
            "where": where,
            "repeat": args.repeat,
            "raw_frame_gbs": raw,
            "raw_pieces_gbs": pieces,
            "rows": rows,
        }
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
