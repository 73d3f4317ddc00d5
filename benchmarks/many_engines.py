"""Thousands of engines on one controller: simulated engines against a real controller.

    python benchmarks/many_engines.py                      # 100, 1,000 and 5,000 simulated engines
    python benchmarks/many_engines.py --sizes 200          # one size
    python benchmarks/many_engines.py --real 128           # 128 real engine processes instead
    python benchmarks/many_engines.py --sizes 5000 --profile /tmp/controller.prof

A *simulated engine* is a pair of DEALER sockets (command and heartbeat channel, the
identity ``e-<hex>`` on both, as a real engine has) that speaks the real protocol: it
registers (sending ``register`` again after 1 s, then every 2 s, until answered), says
``hello`` on the heartbeat channel, lets its libzmq answer the controller's ZMTP
heartbeats on that connection, and answers every ``cmd`` with a
signed ``reply``: ``execute(code)`` with the result dict a real engine makes, ``push``
after unpickling the namespace, anything else with ``None``. Against a controller that
still wants Python heartbeats (an older multiengine, whose ``registered`` has no
``epoch``), it sends them: a ``ping`` per engine every ``hb_period``. A few processes
(``--per-process`` engines each, 1,250 by default) hold them all; each has one
``zmq.Poller`` over its sockets, and two libzmq I/O threads: one for the command
channels, one for the heartbeats (a real engine's heartbeat never waits behind another
engine's data). One more process holds a single simulated engine, the
*victim*, stopped with SIGSTOP to measure how fast a silent engine is detected.

For each size the harness starts one real controller (``multiengine controller``, from
the ``multiengine`` on ``PYTHONPATH``, with its default settings unless
``--heartbeat-period``/``--heartbeat-timeout`` are given) and a client, and reports:

* **registration**: from telling every simulator to start (each then makes its
  sockets, connects and registers all its engines at once) until ``get_ids()`` lists
  them all;
* **idle controller CPU**: % of one core, from ``/proc/<pid>/stat``: the median of three
  10 s windows (and their range), from 2 s after the last registration;
* **execute('pass'), all engines**: median of ``--repeat`` blocking calls after one
  untimed one;
* **push 1 MB to all**: ``push({'a': bytes(1 MiB)})``, median of 3 after the first, and
  the first beside it (on the first, every simulator faults in fresh memory for its
  engines' megabytes: 1.25 GB each at 5,000 engines);
* **silent engine detected**: from SIGSTOP of the victim until ``get_ids()`` no longer
  lists it (polled every 20 ms), beside the heartbeat timeout.

``--real N`` does the same with ``Cluster(n=N)`` of real engine processes
(registration is then ``Cluster.start()``, process start-up included), and also the
time from SIGCONT until the stopped engine is back under its id (an engine that lost
the controller registers again), and whether the value pushed before is still there.

Every process started is ended by its pid; each step is bounded in time and reported as
``timeout`` or ``failed (...)`` rather than hanging. The soft limit on open files is
raised to the hard one (5,000 engines are 10,000 connections on the controller).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq

PER_PROCESS = 1250
# A simulator's libzmq I/O threads, by ZMQ_AFFINITY bit: one reads the command channels
# of all its engines, the other answers their heartbeats. Real engines each have an I/O
# thread of their own; in one shared thread a heartbeat would wait behind the megabytes
# of 1,250 other engines' data (a cold 1 MB push to all faults in 1.25 GB per simulator).
DATA_THREAD, HEARTBEAT_THREAD = 1, 2
STEP_TIMEOUT = 120.0  # seconds any one step may take before it is reported as a timeout


# ---------------------------------------------------------------- helpers
def raise_fd_limit() -> int:
    """Raise the soft limit on open files to the hard one (inherited by children)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_percent(pid: int, seconds: float = 10.0) -> float:
    c0, t0 = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return 100.0 * (cpu_seconds(pid) - c0) / (time.monotonic() - t0)


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.02) -> float:
    """Seconds until ``predicate()`` is true; TimeoutError after ``timeout``."""
    start = time.perf_counter()
    while not predicate():
        if time.perf_counter() - start > timeout:
            raise TimeoutError
        time.sleep(interval)
    return time.perf_counter() - start


def idle_cpu(pid: int, window: float = 10.0, samples: int = 3) -> str:
    """Median % of a core over ``samples`` windows of ``window`` s, with the range."""
    seen = sorted(cpu_percent(pid, window) for _ in range(samples))
    return f"{statistics.median(seen):.1f} ({seen[0]:.1f}-{seen[-1]:.1f})"


def median_time(fn: Callable[[], Any], repeat: int) -> float:
    fn()  # untimed
    return statistics.median(timed(fn) for _ in range(repeat))


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def push_times(fn: Callable[[], Any], repeat: int = 3) -> str:
    """The median of ``repeat`` pushes after the first, and the first beside it (cold:
    every receiver allocates fresh memory)."""
    first = timed(fn)
    return f"{statistics.median(timed(fn) for _ in range(repeat)):.2f} (first {first:.2f})"


def stop_pid(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, grace: float = 10.0) -> None:
    """End a process this harness started: ``sig``, then SIGKILL after ``grace`` s."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)
            os.kill(proc.pid, sig)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """The next line ``proc`` prints; TimeoutError after ``timeout`` s."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise TimeoutError
    return proc.stdout.readline().strip()


class Step:
    """Runs measurements; a failure or timeout becomes the cell's text."""

    def __init__(self) -> None:
        self.cells: dict[str, str] = {}

    def run(self, name: str, fn: Callable[[], str]) -> bool:
        try:
            self.cells[name] = fn()
            return True
        except TimeoutError:
            self.cells[name] = "timeout"
        except Exception as e:  # noqa: BLE001 - reported in the table
            first = getattr(e, "elist", None)  # a CompositeError: its first engine error
            if first:
                e = first[0][1]
            text = " ".join(str(e).split())[:80]
            self.cells[name] = f"failed ({type(e).__name__}: {text})"
        print(f"  {name}: {self.cells[name]}", flush=True)
        return False


# ---------------------------------------------------------------- simulated engines
class SimEngine:
    __slots__ = (
        "ident",
        "sock",
        "hb",
        "signer",
        "hb_signer",
        "id",
        "number",
        "resend_at",
        "wait",
        "ping",
    )

    def __init__(
        self, ctx: zmq.Context[Any], urls: tuple[str, str], with_hb: bool, key: bytes
    ) -> None:
        from multiengine.wire.message import Signer

        # One Signer per socket, as a real engine has: a replay session's counter is
        # only in order on one pipe, so engines sharing one would see their messages
        # dropped as replays.
        self.signer = Signer(key)
        self.hb_signer = Signer(key)
        self.ident = b"e-" + uuid.uuid4().hex.encode()
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.AFFINITY, DATA_THREAD)
        self.sock.setsockopt(zmq.IDENTITY, self.ident)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(urls[0])
        self.hb: zmq.Socket[Any] | None = None
        if with_hb:
            self.hb = ctx.socket(zmq.DEALER)
            self.hb.setsockopt(zmq.AFFINITY, HEARTBEAT_THREAD)
            self.hb.setsockopt(zmq.IDENTITY, self.ident)
            self.hb.setsockopt(zmq.LINGER, 0)
            self.hb.connect(urls[1])
        self.id = -1
        self.number = 0
        self.resend_at = 0.0
        self.wait = 1.0
        self.ping: list[Any] | None = None  # Python heartbeats, for an older controller


def simulate(connection: str, n: int, tcp: bool, with_hb: bool) -> None:
    """A simulator process: ``n`` simulated engines, started by a line on stdin."""
    from multiengine.wire.connection import read_connection_file
    from multiengine.wire.message import WireError
    from multiengine.wire.serialize import dumps, loads

    info = read_connection_file(connection)
    urls = tuple(info.addresses[c] if tcp else info.url(c) for c in ("engine", "heartbeat"))
    ctx: zmq.Context[Any] = zmq.Context(io_threads=2)
    ctx.max_sockets = 2 * n + 64
    print("ready", flush=True)
    if not sys.stdin.readline():
        return
    engines = [SimEngine(ctx, (urls[0], urls[1]), with_hb, info.key) for _ in range(n)]
    by_sock: dict[Any, SimEngine] = {}
    poller = zmq.Poller()
    register = {"t": "register", "desired_id": None, "pid": os.getpid(), "host": "sim"}
    register["epoch"] = 0
    now = time.monotonic()
    for e in engines:
        e.sock.send_multipart(e.signer.frames(register))
        e.resend_at = now + e.wait
        by_sock[e.sock] = e
        poller.register(e.sock, zmq.POLLIN)
        if e.hb is not None:
            by_sock[e.hb] = e
            poller.register(e.hb, zmq.POLLIN)
    waiting = set(engines)  # not registered yet
    pinging: list[SimEngine] = []
    hb_period = 0.0
    next_ping = float("inf")
    announced = False
    while True:
        now = time.monotonic()
        wake = min([next_ping, *(e.resend_at for e in waiting)] or [next_ping])
        timeout = None if wake == float("inf") else max(0, int((wake - now) * 1000))
        for sock, _ in poller.poll(timeout):
            e = by_sock[sock]
            while True:
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                try:
                    msg = (e.signer if sock is e.sock else e.hb_signer).parse(frames)
                except WireError:
                    continue
                h = msg.header
                t = msg.type
                if t == "cmd":
                    name = h.get("name")
                    args = loads(msg.content, msg.buffers) if len(msg.content) else ()
                    value: Any = None
                    if name == "execute":
                        e.number += 1
                        code = args[0]
                        value = {
                            "input": {"raw": code, "translated": code},
                            "number": e.number,
                            "id": e.id,
                        }
                    content, buffers = dumps(value)
                    reply: dict[str, Any] = {"t": "reply", "cmd": h.get("cmd"), "status": "ok"}
                    reply.update(enc="p", elapsed=1e-5)
                    if buffers:
                        reply["raw"] = True
                    e.sock.send_multipart(e.signer.frames(reply, content, buffers), copy=False)
                elif t == "registered" and e in waiting:
                    waiting.discard(e)
                    e.id = int(h["id"])
                    if e.hb is None:
                        pass
                    elif "epoch" in h:  # heartbeats on this connection, answered by libzmq
                        e.hb.send_multipart(e.hb_signer.frames({"t": "hello", "epoch": 0}))
                    else:  # an older controller, which wants Python heartbeats
                        e.ping = e.hb_signer.frames({"t": "ping", "id": e.id})
                        hb_period = float(h.get("hb_period", 0.5))
                        pinging.append(e)
                        next_ping = min(next_ping, time.monotonic())
        now = time.monotonic()
        for e in [e for e in waiting if e.resend_at <= now]:
            e.sock.send_multipart(e.signer.frames(register))
            e.wait = 2.0
            e.resend_at = now + e.wait
        if pinging and now >= next_ping:
            for e in pinging:
                assert e.hb is not None and e.ping is not None
                e.hb.send_multipart(e.ping)
            next_ping = now + hb_period
        if not waiting and not announced:
            announced = True
            print(f"registered {' '.join(str(e.id) for e in engines[:1])}", flush=True)


# ---------------------------------------------------------------- the controller
class Controller:
    """``multiengine controller`` in a cluster directory of its own."""

    def __init__(self, args: argparse.Namespace, profile: str | None = None) -> None:
        from multiengine.runtime import ClusterDir

        self.dir = Path(tempfile.mkdtemp(prefix="me-many-"))
        self.cdir = ClusterDir(self.dir)
        argv = [sys.executable]
        if profile:
            argv += ["-m", "cProfile", "-o", profile]
        argv += ["-m", "multiengine", "controller", "--cluster-dir", str(self.dir)]
        if args.heartbeat_period:
            argv += ["--heartbeat-period", str(args.heartbeat_period)]
        if args.heartbeat_timeout:
            argv += ["--heartbeat-timeout", str(args.heartbeat_timeout)]
        self.log = open(self.dir / "controller-stdout.log", "wb")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(lambda: self.cdir.client_file.exists() and self.cdir.engine_file.exists(), 30)

    def stop(self) -> None:
        stop_pid(self.proc, signal.SIGINT, 30)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def spawn_simulator(connection: Path, n: int, args: argparse.Namespace) -> subprocess.Popen[str]:
    argv = [sys.executable, __file__, "--simulate", str(n), "--connection", str(connection)]
    if args.ipc:
        argv.append("--ipc")
    return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def split(total: int, per: int) -> list[int]:
    k = max(1, -(-total // per))
    return [total // k + (1 if i < total % k else 0) for i in range(k)]


# ---------------------------------------------------------------- one size, simulated
def run_simulated(n: int, args: argparse.Namespace, profile: str | None) -> dict[str, str]:
    import multiengine

    print(f"{n} simulated engines", flush=True)
    step = Step()
    ctl = Controller(args, profile)
    sims: list[subprocess.Popen[str]] = []
    mec: Any = None
    try:
        mec = multiengine.MultiEngineClient(cluster_dir=ctl.dir, timeout=30)
        pid = ctl.proc.pid
        hb_timeout = args.heartbeat_timeout or _default("heartbeat_timeout")
        sims = [spawn_simulator(ctl.cdir.engine_file, k, args) for k in split(n - 1, args.per)]
        victim = spawn_simulator(ctl.cdir.engine_file, 1, args)
        sims.append(victim)
        for s in sims:
            if read_line(s, 60) != "ready":
                raise RuntimeError("a simulator did not start")
        start = time.perf_counter()
        for s in sims:
            assert s.stdin is not None
            s.stdin.write("go\n")
            s.stdin.flush()

        def registration() -> str:
            wait_for(lambda: len(mec.get_ids()) >= n, STEP_TIMEOUT)
            return f"{time.perf_counter() - start:.2f}"

        if not step.run("registration (s)", registration):
            return step.cells
        victim_id = int(read_line(victim, 30).split()[1])
        time.sleep(2)
        step.run("idle controller CPU (% of a core)", lambda: idle_cpu(pid, args.idle))
        step.run(
            "execute('pass'), all, median (ms)",
            lambda: f"{1000 * median_time(lambda: mec.execute('pass'), args.repeat):.0f}",
        )
        data = b"x" * (1 << 20)
        step.run(
            "push 1 MB to all, median (s)",
            lambda: push_times(lambda: mec.push({"a": data})),
        )

        def detection() -> str:
            os.kill(victim.pid, signal.SIGSTOP)
            took = wait_for(lambda: victim_id not in mec.get_ids(), STEP_TIMEOUT)
            return f"{took:.2f} (timeout {hb_timeout:g})"

        step.run("silent engine detected after (s)", detection)
    except Exception as e:  # noqa: BLE001 - reported
        step.cells.setdefault("error", f"{type(e).__name__}: {e}")
    finally:
        if mec is not None:
            with contextlib.suppress(Exception):
                mec.close()
        for s in sims:
            stop_pid(s, signal.SIGKILL)
        if any(c.startswith(("failed", "timeout")) for c in step.cells.values()):
            log = ctl.cdir.log / "controller.log"
            if log.exists():
                print("  the controller's log ends with:", flush=True)
                for line in log.read_text().splitlines()[-15:]:
                    print("    " + line)
        ctl.stop()
    return step.cells


def _default(name: str) -> float:
    from multiengine.config import ControllerConfig

    return float(getattr(ControllerConfig, name))


# ---------------------------------------------------------------- real engines
def run_real(n: int, args: argparse.Namespace) -> dict[str, str]:
    import multiengine

    print(f"{n} real engines", flush=True)
    step = Step()
    kwargs: dict[str, Any] = {"timeout": 600}
    if args.heartbeat_period:
        kwargs["heartbeat_period"] = args.heartbeat_period
    if args.heartbeat_timeout:
        kwargs["heartbeat_timeout"] = args.heartbeat_timeout
    hb_timeout = args.heartbeat_timeout or _default("heartbeat_timeout")
    cluster = multiengine.Cluster(n=n, **kwargs)
    try:
        start = time.perf_counter()
        cluster.start()
        step.cells["registration (s)"] = f"{time.perf_counter() - start:.2f} (processes started)"
        mec = cluster.multiengine_client(timeout=60)
        pid = mec.status()["pid"]
        time.sleep(2)
        step.run("idle controller CPU (% of a core)", lambda: idle_cpu(pid, args.idle))
        step.run(
            "execute('pass'), all, median (ms)",
            lambda: f"{1000 * median_time(lambda: mec.execute('pass'), args.repeat):.0f}",
        )
        data = b"x" * (1 << 20)
        step.run(
            "push 1 MB to all, median (s)",
            lambda: push_times(lambda: mec.push({"a": data})),
        )
        engine_pid = cluster.engine_pids()[0]

        def detection() -> str:
            os.kill(engine_pid, signal.SIGSTOP)
            took = wait_for(lambda: 0 not in mec.get_ids(), STEP_TIMEOUT)
            return f"{took:.2f} (timeout {hb_timeout:g})"

        if step.run("silent engine detected after (s)", detection):

            def back() -> str:
                os.kill(engine_pid, signal.SIGCONT)
                took = wait_for(lambda: 0 in mec.get_ids(), 30)
                kept = mec.pull("a", targets=0) == [data]
                return f"{took:.2f}, namespace {'kept' if kept else 'LOST'}"

            step.run("SIGCONT: back as engine 0 after (s)", back)
        mec.close()
    except Exception as e:  # noqa: BLE001 - reported
        step.cells.setdefault("error", f"{type(e).__name__}: {e}")
    finally:
        with contextlib.suppress(ProcessLookupError, KeyError):
            os.kill(cluster.engine_pids().get(0, -1), signal.SIGCONT)
        cluster.stop()
    return step.cells


# ---------------------------------------------------------------- the table
def table(columns: dict[str, dict[str, str]]) -> str:
    rows: list[str] = []
    for cells in columns.values():
        rows += [r for r in cells if r not in rows]
    width = max(len(r) for r in rows)
    heads = list(columns)
    widths = [max(len(h), *(len(c.get(r, "-")) for r in rows)) for h, c in columns.items()]
    out = [
        "| "
        + "metric".ljust(width)
        + " | "
        + " | ".join(h.rjust(w) for h, w in zip(heads, widths))
        + " |",
        "|" + "-" * (width + 2) + "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    for r in rows:
        cells = [columns[h].get(r, "-").rjust(w) for h, w in zip(heads, widths)]
        out.append("| " + r.ljust(width) + " | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 5000])
    parser.add_argument("--real", type=int, metavar="N", help="N real engines instead")
    parser.add_argument("--repeat", type=int, default=5, help="timed all-engine executes")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds per idle CPU window")
    parser.add_argument("--per", type=int, default=PER_PROCESS, help="engines per simulator")
    parser.add_argument("--ipc", action="store_true", help="simulators use IPC, not TCP")
    parser.add_argument("--heartbeat-period", type=float)
    parser.add_argument("--heartbeat-timeout", type=float)
    parser.add_argument("--profile", metavar="PATH", help="cProfile the controller (last size)")
    parser.add_argument("--simulate", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--connection", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.simulate:
        signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
        simulate(args.connection, args.simulate, not args.ipc, True)
        return 0
    limit = raise_fd_limit()
    import multiengine

    print(
        f"{socket.gethostname()}: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
        f"pyzmq {zmq.__version__}/libzmq {zmq.zmq_version()}, multiengine from "
        f"{Path(multiengine.__file__).parent}, open files limit {limit}, "
        f"load {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    columns: dict[str, dict[str, str]] = {}
    if args.real:
        columns[f"{args.real} real"] = run_real(args.real, args)
    else:
        for i, n in enumerate(args.sizes):
            profile = args.profile if args.profile and i == len(args.sizes) - 1 else None
            columns[f"{n} simulated"] = run_simulated(n, args, profile)
    print(table(columns))
    if args.profile and not args.real:
        import pstats

        pstats.Stats(args.profile).sort_stats("tottime").print_stats(25)
    failed = any(
        c.startswith(("failed", "timeout")) for col in columns.values() for c in col.values()
    )
    return 1 if failed or any("error" in c for c in columns.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
