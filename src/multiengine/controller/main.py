"""``multiengine controller``: bind, write the connection files, run the loop."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import secrets
import signal
import socket
import sys
from typing import Any

from ..config import ControllerConfig
from ..runtime import (
    ClusterDir,
    add_cluster_dir_arguments,
    on_stdin_close,
    pid_alive,
    set_process_name,
)
from ..wire import curve
from ..wire.connection import ConnectionInfo, read_connection_file, write_connection_file

__all__ = ["main", "add_arguments"]

log = logging.getLogger("multiengine.controller")

YOUNG_GC_EVERY = 10_000  # net new objects between collections of the youngest generation


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_cluster_dir_arguments(p)
    ControllerConfig.add_arguments(p)


def main(args: argparse.Namespace) -> int:
    from .relay import Controller

    cdir = ClusterDir.find(args.profile, args.cluster_dir)
    config = ControllerConfig.from_sources(
        toml=cdir.settings("controller"), env=os.environ, args=args
    )
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    cdir.create()
    running = cdir.read_pid(cdir.controller_pid_file)
    if running != os.getpid() and pid_alive(running):
        print(
            f"multiengine controller: a controller is already running for {cdir.path} "
            f"(pid {running})",
            file=sys.stderr,
        )
        return 10
    set_process_name("controller")  # (its command line says which cluster)
    ip = config.ip
    location = config.location or (socket.gethostname() if ip in ("0.0.0.0", "*", "::") else ip)
    encrypt = config.curve == "on" or (config.curve == "auto" and not curve.is_loopback(ip))
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
    if config.port:
        ports = (config.port, config.port + 1, config.port + 2)
    # --restore: the key, ports and IPC endpoints of a controller that died (its
    # connection files are still there), and results.db's contents in any case
    files = cdir.client_file.exists() and cdir.engine_file.exists()
    reuse = bool((config.reuse or config.restore) and files)
    ipc: dict[str, str] | None = None
    curve_public, curve_secret = (
        curve.server_keypair(cdir.curve_file, reuse) if encrypt else (None, None)
    )
    if reuse:
        old_c = read_connection_file(cdir.client_file)
        old_e = read_connection_file(cdir.engine_file)
        key = old_c.key
        if config.restore:  # the same IPC endpoints too: local peers reconnect there
            ipc = {
                **old_c.extra.get("ipc_addresses", {}),
                **old_e.extra.get("ipc_addresses", {}),
            }
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
    import zmq

    results_db = cdir.path / "results.db"
    if not config.restore:
        for stale in (
            results_db,
            results_db.with_name("results.db-wal"),
            results_db.with_name("results.db-shm"),
        ):
            stale.unlink(missing_ok=True)  # a new controller starts with no results
    try:
        ctl = Controller(
            config,
            key=key,
            ports=ports,
            curve_secret=curve_secret,
            store_path=str(results_db),
            restore=config.restore,
            ipc=ipc,
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
        ctl.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.set_wakeup_fd(ctl.wake_fd)  # a signal wakes the loop's poll, not just EINTR
    if config.stdin_lifeline:

        def lifeline_cut() -> None:
            log.warning("stdin closed (the launcher has gone): stopping")
            ctl.stop()

        on_stdin_close(lifeline_cut)
    # What start-up made (modules, the configuration, the bound sockets' objects) lives
    # as long as the process: frozen, the collector's full passes no longer walk it.
    # (An all-engine call at 128 engines keeps about a thousand objects alive while it
    # runs, so the collector runs about once per call; its full passes, every hundred
    # calls or so, took 11 ms each at 128 engines, 5 ms once start-up was frozen.)
    gc.collect()
    gc.freeze()
    # The collector's youngest generation is collected every YOUNG_GC_EVERY net new
    # objects, not Python's 700: the controller keeps every finished task until a client
    # clears it, so most of what it makes lives on, and at 700 each tiny task cost ~20 µs
    # of collections (a fifth of the controller's time per task; benchmarks/task_cost.py),
    # with full passes over all kept tasks (~45 ms each at 10,000) every few thousand.
    gc.set_threshold(YOUNG_GC_EVERY, *gc.get_threshold()[1:])
    try:
        ctl.run()
    finally:
        ctl.close()
        if cdir.read_pid(cdir.controller_pid_file) == os.getpid():
            cdir.controller_pid_file.unlink(missing_ok=True)
            for f in (cdir.client_file, cdir.engine_file):
                if not config.reuse:
                    f.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    parser = argparse.ArgumentParser(prog="multiengine controller")
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
