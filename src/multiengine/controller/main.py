"""``multiengine controller``: bind, write the connection files, run the loop."""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import socket
import sys
from typing import Any

from ..runtime import ClusterDir
from ..wire import curve
from ..wire.connection import ConnectionInfo, read_connection_file, write_connection_file

__all__ = ["main", "add_arguments"]

log = logging.getLogger("multiengine.controller")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-p", "--profile", default="default", help="cluster profile (default: %(default)s)"
    )
    p.add_argument("--cluster-dir", help="cluster directory (overrides --profile)")
    p.add_argument("--ip", help="interface to bind (default: cluster.toml, else 127.0.0.1)")
    p.add_argument(
        "--location",
        help="host or address engines and clients connect to (default: the --ip, "
        "or this host's name when binding all interfaces)",
    )
    p.add_argument(
        "--curve",
        choices=("auto", "on", "off"),
        default=None,
        help="CurveZMQ encryption: auto = on whenever the controller binds anything but loopback "
        "(default: cluster.toml, else auto)",
    )
    p.add_argument(
        "--port", type=int, default=0, help="first of three consecutive ports (default: random)"
    )
    p.add_argument(
        "--reuse", action="store_true", help="reuse the key and ports of existing connection files"
    )
    p.add_argument("--heartbeat-period", type=float, help="seconds between engine heartbeats")
    p.add_argument(
        "--heartbeat-timeout", type=float, help="seconds of silence before an engine is dropped"
    )
    p.add_argument(
        "--task-failure-penalty",
        type=float,
        default=1.0,
        help="seconds before a task that failed on an engine is offered to it again (default 1)",
    )
    p.add_argument(
        "--task-timeout",
        type=float,
        default=30.0,
        help="seconds a task may wait for an engine that meets its dependencies (default 30)",
    )
    p.add_argument(
        "--parent-pid", type=int, help="stop when this process has gone (set by launchers)"
    )
    p.add_argument(
        "--stdin-lifeline",
        action="store_true",
        help="stop when stdin closes (set by the ssh launcher for a controller on another host)",
    )
    p.add_argument("--log-level", default="INFO")


def main(args: argparse.Namespace) -> int:
    from .relay import Controller

    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    from ..runtime import pid_alive

    cdir = ClusterDir.find(args.profile, args.cluster_dir).create()
    running = cdir.read_pid(cdir.controller_pid_file)
    if running != os.getpid() and pid_alive(running):
        print(
            f"multiengine controller: a controller is already running for {cdir.path} "
            f"(pid {running})",
            file=sys.stderr,
        )
        return 10
    if args.port and not 0 < args.port <= 65533:
        print(
            f"multiengine controller: --port must be between 1 and 65533, not {args.port}",
            file=sys.stderr,
        )
        return 2
    cfg = cdir.config().get("controller", {})
    ip = args.ip or cfg.get("ip", "127.0.0.1")
    ip = "127.0.0.1" if ip == "localhost" else ip
    location = (
        args.location
        or cfg.get("location")
        or (socket.gethostname() if ip in ("0.0.0.0", "*", "::") else ip)
    )
    mode = args.curve or str(cfg.get("curve", "auto"))
    encrypt = mode == "on" or (mode == "auto" and not curve.is_loopback(ip))
    if encrypt and not curve.available():
        print(
            f"multiengine controller: CurveZMQ is needed to listen on {ip} "
            "but this libzmq lacks it; use --curve off to send signed plaintext",
            file=sys.stderr,
        )
        return 2
    if not encrypt and not curve.is_loopback(ip):
        log.warning(
            "listening on %s without encryption (--curve off): messages are signed but readable", ip
        )
    key = secrets.token_bytes(32)
    ports: tuple[int, int, int] | None = None
    if args.port:
        ports = (args.port, args.port + 1, args.port + 2)
    reuse = bool(args.reuse and cdir.client_file.exists() and cdir.engine_file.exists())
    curve_public, curve_secret = (
        curve.server_keypair(cdir.curve_file, reuse) if encrypt else (None, None)
    )
    if reuse:
        old_c = read_connection_file(cdir.client_file)
        old_e = read_connection_file(cdir.engine_file)
        key = old_c.key
        ports = tuple(
            int(u.rsplit(":", 1)[1])
            for u in (  # type: ignore[assignment]
                old_c.addresses["client"],
                old_e.addresses["engine"],
                old_e.addresses["heartbeat"],
            )
        )
    else:
        for f in (cdir.client_file, cdir.engine_file):
            f.unlink(missing_ok=True)
    hb_period = args.heartbeat_period or float(cfg.get("heartbeat_period", 0.5))
    hb_timeout = args.heartbeat_timeout or float(cfg.get("heartbeat_timeout", 3.0))
    import zmq

    try:
        ctl = Controller(
            key,
            ip,
            ports,
            hb_period,
            hb_timeout,
            parent_pid=args.parent_pid,
            task_failure_penalty=args.task_failure_penalty,
            task_timeout=args.task_timeout,
            curve_secret=curve_secret,
        )
    except zmq.ZMQError as e:
        where = f"{ip}:{ports[0]}-{ports[2]}" if ports else ip
        print(f"multiengine controller: cannot listen on {where}: {e}", file=sys.stderr)
        return 2
    cport, eport, hport = ctl.ports
    url = f"tcp://[{location.strip('[]')}]:%d" if ":" in location else f"tcp://{location}:%d"
    extra: dict[str, Any] = {"controller_pid": os.getpid(), "location": location}
    serverkey = curve_public.decode() if curve_public else None

    def local(*names: str) -> dict[str, Any]:  # IPC endpoints, for processes on this host
        if not all(n in ctl.ipc for n in names):
            return {}
        return {"host": socket.gethostname(), "ipc_addresses": {n: ctl.ipc[n] for n in names}}

    engine_addrs = {"engine": url % eport, "heartbeat": url % hport}
    write_connection_file(
        cdir.engine_file,
        ConnectionInfo(
            key,
            engine_addrs,
            curve_serverkey=serverkey,
            extra={**extra, **local("engine", "heartbeat")},
        ),
    )
    write_connection_file(
        cdir.client_file,
        ConnectionInfo(
            key,
            {"client": url % cport},
            curve_serverkey=serverkey,
            extra={**extra, **local("client")},
        ),
    )
    cdir.write_pid(cdir.controller_pid_file)
    log.info(
        "controller %d listening: client %d, engine %d, heartbeat %d on %s (%s)",
        os.getpid(),
        cport,
        eport,
        hport,
        ip,
        "CurveZMQ encrypted" if encrypt else "plaintext, signed",
    )

    def stop(signum: int, frame: Any) -> None:
        ctl._running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.stdin_lifeline:
        from ..runtime import on_stdin_close

        def lifeline_cut() -> None:
            log.warning("stdin closed (the launcher has gone): stopping")
            ctl._running = False

        on_stdin_close(lifeline_cut)
    try:
        ctl.run()
    finally:
        ctl.close()
        if cdir.read_pid(cdir.controller_pid_file) == os.getpid():
            cdir.controller_pid_file.unlink(missing_ok=True)
            for f in (cdir.client_file, cdir.engine_file):
                if not args.reuse:
                    f.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    parser = argparse.ArgumentParser(prog="multiengine controller")
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
