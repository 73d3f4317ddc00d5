"""The ``multiengine`` command line (argparse only builds options and calls in)."""

from __future__ import annotations

import argparse
import functools
import os
import signal
import subprocess
import sys
import time
from typing import Any

import zmq

from ..bench import add_arguments as add_bench_arguments
from ..config import ClusterConfig, ControllerConfig, EngineConfig
from ..errors import ClusterNotRunning, ConfigError, KernelError
from ..runtime import ClusterDir, add_cluster_dir_arguments, list_cluster_dirs, pid_alive
from ..wire import direct, shm

__all__ = ["main", "ALREADY_RUNNING", "NOT_RUNNING"]

ALREADY_RUNNING = 10
NOT_RUNNING = 11


# The controller settings `cluster start` takes (the ones Cluster() takes), as options
# generated from ControllerConfig.
START_SETTINGS = (
    "ip",
    "location",
    "curve",
    "heartbeat_period",
    "heartbeat_timeout",
    "task_failure_penalty",
    "task_timeout",
    "result_memory_budget",
    "restore",
)
# The cluster settings it takes: the engines, the launcher, and how they are supervised.
CLUSTER_SETTINGS = (
    "engines",
    "launcher",
    "restart_engines",
    "engine_restarts",
    "engine_memory_limit",
    "restart_controller",
    "fork_server",
)
# The engine settings it takes (Cluster(engine_<name>=...)).
ENGINE_SETTINGS = ("ipython",)


@functools.cache  # (built once per process; the fork server builds it for its engines)
def build_parser() -> argparse.ArgumentParser:
    from ..controller.main import add_arguments as controller_args
    from ..engine.cli import add_arguments as engine_args

    parser = argparse.ArgumentParser(
        prog="multiengine", description="Interactive parallel computing for Python."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    cluster = sub.add_parser("cluster", help="create, start, stop and inspect clusters")
    csub = cluster.add_subparsers(dest="action", required=True)
    p = csub.add_parser("create", help="make a cluster directory with a default cluster.toml")
    add_cluster_dir_arguments(p)
    p.add_argument(
        "--reset-config", action="store_true", help="overwrite cluster.toml with the defaults"
    )
    p = csub.add_parser("start", help="start a controller and engines")
    add_cluster_dir_arguments(p)
    ClusterConfig.add_arguments(p, CLUSTER_SETTINGS)
    p.add_argument("--daemon", action="store_true", help="start in the background and return")
    ControllerConfig.add_arguments(p, START_SETTINGS)
    EngineConfig.add_arguments(p, ENGINE_SETTINGS)
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the engines")
    p.add_argument(
        "--dashboard",
        nargs="?",
        const=0,
        type=int,
        metavar="PORT",
        help="also serve the web dashboard on loopback (a free port, or PORT)",
    )
    p = csub.add_parser("stop", help="stop a running cluster")
    add_cluster_dir_arguments(p)
    p.add_argument(
        "--signal", type=int, default=int(signal.SIGINT), help="signal to send (default 2, SIGINT)"
    )
    p = csub.add_parser("list", help="list cluster directories")
    p = csub.add_parser("status", help="engines, queues, tasks and pending results")
    add_cluster_dir_arguments(p)
    p.add_argument(
        "--watch",
        nargs="?",
        const=1.0,
        type=float,
        metavar="SECONDS",
        help="redraw every SECONDS (default 1) until Ctrl-C",
    )
    p.add_argument("--count", type=int, help="with --watch: stop after N redraws")
    p = csub.add_parser("engines", help="add, stop or restart engines of a running cluster")
    esub = p.add_subparsers(dest="engines_action", required=True)
    e = esub.add_parser("add", help="start more engines")
    add_cluster_dir_arguments(e)
    e.add_argument("-n", "--number", type=int, default=1, help="how many (default 1)")
    e = esub.add_parser("stop", help="stop engines for good (they are not restarted)")
    add_cluster_dir_arguments(e)
    e.add_argument("ids", nargs="+", type=int, metavar="ID", help="engine ids")
    e = esub.add_parser("restart", help="restart engines under the same ids, fresh namespaces")
    add_cluster_dir_arguments(e)
    e.add_argument("ids", nargs="+", type=int, metavar="ID", help="engine ids")

    p = sub.add_parser("dashboard", help="serve a live web view of a running cluster")
    add_cluster_dir_arguments(p)
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    controller_args(sub.add_parser("controller", help="run a controller"))
    engine_args(sub.add_parser("engine", help="run an engine"))
    add_bench_arguments(
        sub.add_parser(
            "bench", help="benchmarks, side by side with ipyparallel, dask and Ray when installed"
        )
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "controller":
            from ..controller.main import main as controller_main

            return controller_main(args)
        if args.command == "engine":
            from ..engine.cli import main as engine_main

            return engine_main(args)
        if args.command == "dashboard":
            return cmd_dashboard(args)
        if args.command == "bench":
            from ..bench import main as bench_main

            return bench_main(args)
        return CLUSTER_ACTIONS[args.action](args)
    except KeyboardInterrupt:
        return 130
    except ConfigError as e:  # a bad setting: a usage error, as argparse's own
        print(f"multiengine: error: {e}", file=sys.stderr)
        return 2
    except (KernelError, OSError, ValueError, zmq.ZMQError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"multiengine: error: {first}", file=sys.stderr)
        rest = str(e).splitlines()[1:]
        if rest:
            print("\n".join(rest), file=sys.stderr)
        return 1


def _cdir(args: argparse.Namespace) -> ClusterDir:
    return ClusterDir.find(args.profile, args.cluster_dir)


def cmd_create(args: argparse.Namespace) -> int:
    cdir = _cdir(args).create(reset_config=args.reset_config)
    print(f"cluster directory {cdir.path}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    for cdir in list_cluster_dirs():
        running = pid_alive(cdir.read_pid(cdir.cluster_pid_file))
        n = cdir.config()["cluster"]["engines"]
        state = "running" if running else "stopped"
        print(f"multiengine cluster start -p {cdir.profile} -n {n} ==> {cdir.path} ({state})")
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    from .cluster import Cluster

    cdir = _cdir(args).create()
    pid = cdir.read_pid(cdir.cluster_pid_file)
    if pid_alive(pid):
        print(
            f"multiengine: cluster {cdir.profile!r} is already running (pid {pid})", file=sys.stderr
        )
        return ALREADY_RUNNING
    # Checked here, so a bad setting stops us before anything starts (or daemonizes).
    config = ControllerConfig.from_sources(
        toml=cdir.settings("controller"), env=os.environ, args=args
    )
    cconfig = ClusterConfig.from_sources(toml=cdir.settings("cluster"), env=os.environ, args=args)
    n, launcher = cconfig.engines, cconfig.launcher
    given = {
        name: getattr(config, name) for name in START_SETTINGS if getattr(args, name) is not None
    }
    supervision = {
        name: getattr(cconfig, name)
        for name in CLUSTER_SETTINGS[2:]
        if getattr(args, name) is not None
    }
    for_engines = {name: getattr(args, name) for name in ENGINE_SETTINGS}
    EngineConfig.from_sources(toml=cdir.settings("engine"), env=os.environ, args=for_engines)
    shm.threshold()
    direct.enabled()
    for_engines = {name: value for name, value in for_engines.items() if value is not None}
    if args.dashboard is not None and not 0 <= args.dashboard <= 65535:
        raise ValueError(f"--dashboard takes a port between 0 and 65535, not {args.dashboard}")
    if args.dashboard is not None:
        from ..dashboard import check_available

        check_available()  # before anything starts: Bokeh missing is one clear line
    if args.daemon:
        settings = [
            *ControllerConfig.argv_for(given),
            *ClusterConfig.argv_for(supervision),
            *EngineConfig.argv_for(for_engines),
        ]
        if args.dashboard is not None:
            settings += ["--dashboard", str(args.dashboard)]
        return _start_daemon(args, cdir, n, launcher, settings)
    cluster = Cluster(
        n,
        launcher=launcher,
        cluster_dir=cdir.path,
        timeout=args.timeout,
        **given,
        **supervision,
        **{f"engine_{name}": value for name, value in for_engines.items()},
    )
    cdir.write_pid(cdir.cluster_pid_file)
    cdir.ready_file.unlink(missing_ok=True)  # left by a start that was killed
    stopping: list[int | str] = []
    dashboard = None

    def on_signal(signum: int, frame: Any) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        cluster.start()
        assert cluster.supervisor is not None
        cluster.supervisor.on_stop_request = lambda: stopping.append("request")
        ctl = cluster.controller_launcher
        where = f"controller pid {ctl.pids()[0]}" if ctl and ctl.pids() else "controller started"
        print(
            f"cluster {cdir.profile!r} running: {cluster.n} engines ({launcher} launcher, "
            f"{cluster.start_time:.2f} s to start), {where}",
            flush=True,
        )
        if args.dashboard is not None:
            from ..dashboard import Dashboard

            dashboard = Dashboard(cluster_dir=cdir.path, port=args.dashboard).start()
            dashboard.write_url_file(cdir)
            print(f"dashboard: {dashboard.url}", flush=True)
        cdir.write_ready(engines=cluster.n, launcher=launcher, start_time=cluster.start_time)
        while not stopping:
            why = cluster.supervisor.finished  # the controller gone, and not restarted
            if why:
                print(f"multiengine: {why}; stopping the cluster", file=sys.stderr)
                break
            time.sleep(0.1)
    finally:
        if (cdir.read_ready() or {}).get("pid") == os.getpid():
            cdir.ready_file.unlink(missing_ok=True)
        if dashboard is not None:
            dashboard.stop()
        cluster.stop()
        if cdir.read_pid(cdir.cluster_pid_file) == os.getpid():
            cdir.cluster_pid_file.unlink(missing_ok=True)
    print(f"cluster {cdir.profile!r} stopped", flush=True)
    return 0


def _start_daemon(
    args: argparse.Namespace, cdir: ClusterDir, n: int, launcher: str, settings: list[str]
) -> int:
    cmd = [sys.executable, "-m", "multiengine", "cluster", "start", "--cluster-dir", str(cdir.path)]
    cmd += ["-n", str(n), "--timeout", str(args.timeout), "--launcher", launcher, *settings]
    logpath = cdir.log / "cluster.log"
    start = logpath.stat().st_size if logpath.exists() else 0
    with open(logpath, "ab") as log:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    # Up when the child has written the ready file (pid/cluster.ready, naming it);
    # failed when it exits first. Its log is read only to say why.
    deadline = time.monotonic() + args.timeout + 5
    while time.monotonic() < deadline:
        ready = cdir.read_ready()
        if ready and ready.get("pid") == proc.pid:
            print(
                f"cluster {cdir.profile!r} started in the background: "
                f"{ready.get('engines', n)} engines (pid {proc.pid})"
            )
            if args.dashboard is not None:
                from ..dashboard import URL_FILE

                url = (cdir.path / URL_FILE).read_text().strip()
                print(f"dashboard: {url} (also in {cdir.path / URL_FILE})")
            return 0
        if proc.poll() is not None:
            with open(logpath, "rb") as f:
                f.seek(start)
                text = f.read().decode(errors="replace")
            last = text.strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
            print(
                f"multiengine: error: the cluster did not start: {last[0]} (see {logpath})",
                file=sys.stderr,
            )
            return 1
        time.sleep(0.05)
    proc.terminate()
    print(
        f"multiengine: error: the cluster did not come up within {args.timeout:g} s; see {logpath}",
        file=sys.stderr,
    )
    return 1


def cmd_stop(args: argparse.Namespace) -> int:
    cdir = _cdir(args)
    pid = cdir.read_pid(cdir.cluster_pid_file)
    if not pid_alive(pid):
        cdir.cluster_pid_file.unlink(missing_ok=True)
        cdir.ready_file.unlink(missing_ok=True)
        print(f"multiengine: no cluster is running for profile {cdir.profile!r}", file=sys.stderr)
        return NOT_RUNNING
    assert pid is not None
    os.kill(pid, args.signal)
    deadline = time.monotonic() + 15
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if pid_alive(pid):
        print(
            f"multiengine: error: cluster process {pid} did not stop within 15 s", file=sys.stderr
        )
        return 1
    print(f"cluster {cdir.profile!r} stopped")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from ..client.multiengine import MultiEngineClient
    from ..wire.connection import read_connection_file

    cdir = _cdir(args).require()
    if args.count is not None and args.count < 1:
        raise ValueError(f"--count must be at least 1, not {args.count}")
    if args.watch is not None and args.watch <= 0:
        raise ValueError(f"--watch takes a positive number of seconds, not {args.watch:g}")
    info = read_connection_file(cdir.client_file)
    security = "CurveZMQ encrypted, signed" if info.curve_serverkey else "signed, not encrypted"
    with MultiEngineClient(cluster_dir=cdir.path, timeout=5) as mec:
        if args.watch is None:
            print("\n".join(_status_lines(cdir, mec.status(), security)))
            return 0
        # redrawn in place on a terminal; one block after another into a file or pipe
        tty = sys.stdout.isatty()
        last: tuple[float, int] | None = None
        drawn = 0
        while True:
            st = mec.status()
            now = time.monotonic()
            tasks = st.get("tasks") or {}
            done = int(tasks.get("succeeded", 0)) + int(tasks.get("failed", 0))
            rate = None if last is None else (done - last[1]) / max(now - last[0], 1e-9)
            last = (now, done)
            lines = _status_lines(cdir, st, security, rate)
            stamp = time.strftime("%H:%M:%S")
            lines.append(f"(every {args.watch:g} s, {stamp}; Ctrl-C to stop)")
            if tty:
                sys.stdout.write("\x1b[H\x1b[2J")
            elif drawn:
                sys.stdout.write("\n")
            sys.stdout.write("\n".join(lines) + "\n")
            sys.stdout.flush()
            drawn += 1
            if args.count is not None and drawn >= args.count:
                return 0
            time.sleep(args.watch)


def _status_lines(
    cdir: ClusterDir, st: dict[str, Any], security: str, rate: float | None = None
) -> list[str]:
    """What ``cluster status`` prints for the status map ``st``; ``rate``: tasks finished
    per second since the last redraw (``--watch``)."""
    from ..client.view import TASK_STATES

    lines = [
        f"cluster {cdir.profile!r}: controller pid {st['pid']} on {st['host']}, "
        f"up {st['uptime']:.0f} s",
        f"clients connect to {_client_address(cdir)} ({security})",
        f"{len(st['engines'])} engines; {st['pending_results']} pending results "
        f"({st['pending_bytes']} bytes)",
    ]
    tasks = st.get("tasks") or {}
    counts = ", ".join(f"{tasks.get(s, 0)} {s}" for s in TASK_STATES)
    per_s = f" ({rate:.1f}/s finishing)" if rate is not None else ""
    lines.append(f"tasks: {counts}{per_s}")
    lines.append(
        f"results kept: {st['results_in_memory']} in memory "
        f"({_size(st['results_in_memory_bytes'])}), {st['results_on_disk']} on disk "
        f"({_size(st['results_on_disk_bytes'])}, {cdir.path / 'results.db'})"
    )
    for e in st["engines"]:
        running = e["running"] or "idle"
        lines.append(
            f"  engine {e['id']}: pid {e['pid']} on {e['host']}, {e['queue']} queued, {running}"
            f"{_restarts(e)}"
        )
    for e in st.get("down", []):
        fate = f"; {e['fate']}" if e.get("fate") else ""
        lines.append(f"  engine {e['id']}: down, it {e.get('last_exit')}{fate}")
    return lines


def _client_address(cdir: ClusterDir) -> str:
    from ..wire.connection import read_connection_file

    return str(read_connection_file(cdir.client_file).addresses["client"])


def cmd_dashboard(args: argparse.Namespace) -> int:
    from ..dashboard import Dashboard

    cdir = _cdir(args).require()
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be between 0 and 65535, not {args.port}")
    dash = Dashboard(cluster_dir=cdir.path, port=args.port)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    dash.start()
    try:
        dash.write_url_file(cdir)
        print(f"dashboard of cluster {cdir.profile!r}: {dash.url}", flush=True)
        dash.wait()
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the way to stop it, so a success
        pass
    finally:
        dash.stop()
    return 0


def _restarts(e: dict[str, Any]) -> str:
    """What a status line says of an engine's restarts:
    ``, restarted 2 times (last: died (killed by SIGKILL))``."""
    count = int(e.get("restarts") or 0)
    if not count:
        return ""
    times = "once" if count == 1 else f"{count} times"
    cause = f" (last: {e['last_exit']})" if e.get("last_exit") else ""
    return f", restarted {times}{cause}"


def cmd_engines(args: argparse.Namespace) -> int:
    from . import control

    cdir = _cdir(args)
    name = f"cluster {cdir.profile!r}"
    try:
        if args.engines_action == "add":
            if args.number < 1:
                raise ValueError(f"-n must be at least 1, not {args.number}")
            ids = control.request(cdir, {"op": "add", "n": args.number}, timeout=300)["ids"]
            print(f"{name}: started {_engines(ids)}")
        elif args.engines_action == "stop":
            ids = control.request(cdir, {"op": "stop", "ids": args.ids}, timeout=120)["ids"]
            print(f"{name}: stopped {_engines(ids)}")
        else:
            ids = control.request(cdir, {"op": "restart", "ids": args.ids}, timeout=300)["ids"]
            print(f"{name}: restarted {_engines(ids)}")
    except ClusterNotRunning:
        print(f"multiengine: no cluster is running for profile {cdir.profile!r}", file=sys.stderr)
        return NOT_RUNNING
    return 0


def _engines(ids: list[int]) -> str:
    if len(ids) == 1:
        return f"engine {ids[0]}"
    return f"{len(ids)} engines: {', '.join(map(str, ids))}"


CLUSTER_ACTIONS = {
    "create": cmd_create,
    "start": cmd_start,
    "stop": cmd_stop,
    "list": cmd_list,
    "status": cmd_status,
    "engines": cmd_engines,
}


def _size(n: int) -> str:
    """Bytes as people read them: 812 B, 3.4 MB, 1.2 GB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"
