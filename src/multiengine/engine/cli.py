"""``multiengine engine``: find the controller, then run one engine (or, with
``--connection-file -``, a group of them) until told to stop."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from ..config import EngineConfig
from ..errors import ConnectionFileError, KernelError
from ..runtime import ClusterDir, add_cluster_dir_arguments, set_process_name
from ..wire import direct, shm
from ..wire.connection import ConnectionInfo, connection_from_env, read_connection_file
from .link import stream_enabled
from .main import Engine

__all__ = ["main", "add_arguments", "use_batch_scheduling"]

log = logging.getLogger("multiengine.engine")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_cluster_dir_arguments(p)
    EngineConfig.add_arguments(p)


def _find_connection(
    config: EngineConfig, cdir: ClusterDir, from_dir: bool
) -> tuple[ConnectionInfo, Path | None]:
    """--connection-file, else --cluster-dir, else $MULTIENGINE_CONNECTION, else the profile.

    Also the file it came from, if any: an engine that loses the controller reads it
    again, since a controller started again may listen elsewhere (its IPC endpoints).
    """
    source: Path | None = None
    if config.connection_file:
        source = Path(config.connection_file)
        info = read_connection_file(source)
    else:
        env = connection_from_env() if not from_dir else None
        if env is not None:
            info = env
        else:
            source = path = cdir.engine_file
            deadline = time.monotonic() + config.timeout
            while not path.exists() and time.monotonic() < deadline:
                time.sleep(0.02)  # the controller may still be starting
            info = read_connection_file(path)
    missing = {"engine", "heartbeat"} - set(info.addresses)
    if missing:
        raise ConnectionFileError(
            f"the connection info has no {' or '.join(sorted(missing))} address: engines need the "
            "controller's engine.json, not client.json"
        )
    return info, source


def use_batch_scheduling() -> bool:
    """Make this thread, and the threads it starts later, ``SCHED_BATCH`` (Linux).

    A batch thread has the CPU share of any other (same nice value); the one difference
    is that waking it never preempts the thread that runs: it gets a CPU when one is
    idle, when the running thread blocks, or at the next tick. With 128 engines on two
    cores, an all-engine ``execute('pass')`` wakes each engine's I/O thread and main
    thread in turn; each of those wake-ups preempted whatever ran (another engine, the
    controller taking in replies) and cost a context switch. As batch threads, the
    engines took 3.1 context switches per command instead of 3.9, and the call 7-15% less
    time (benchmarks/engine_scheduling.py). The controller and the client stay
    ordinary threads, so their wake-ups still come first. Returns whether it was set
    (not on other systems, nor where the kernel refuses).
    """
    policy = getattr(os, "SCHED_BATCH", None)
    if policy is None:
        return False
    try:
        os.sched_setscheduler(0, policy, os.sched_param(0))
    except OSError as e:
        log.info("could not run as SCHED_BATCH: %s", e)
        return False
    return True


def set_process_title(title: str) -> None:
    """The command line ``ps`` shows becomes ``title``, if the optional ``setproctitle``
    package is installed (engines forked from the template would otherwise all show the
    template's). It stays within the command line's own memory: by default the package
    takes the environment's too, and ``/proc/PID/environ`` then reads as empty."""
    try:
        from setproctitle import setproctitle
    except ImportError:
        return
    noenv = os.environ.get("SPT_NOENV")
    os.environ["SPT_NOENV"] = "1"
    try:
        setproctitle(title)
    finally:
        if noenv is None:
            del os.environ["SPT_NOENV"]


def main(args: argparse.Namespace) -> int:
    cdir = ClusterDir.find(args.profile, args.cluster_dir)
    config = EngineConfig.from_sources(toml=cdir.settings("engine"), env=os.environ, args=args)
    shm.threshold()  # a bad $MULTIENGINE_SHM_THRESHOLD: one clear line, before connecting
    direct.enabled()  # and a bad $MULTIENGINE_DIRECT
    stream_enabled()  # and a bad $MULTIENGINE_ENGINE_STREAM
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    if config.connection_file == "-":
        from .group import read_stdin_connection, run_group

        try:
            _, text = read_stdin_connection()
        except KernelError as e:
            print(f"multiengine engine: {e}", file=sys.stderr)
            return 2
        # Each engine of the group gets the connection in its environment and these
        # settings on its command line (it reads the default profile's cluster.toml).
        one = dataclasses.replace(config, connection_file=None, number=1)
        inherited = EngineConfig.from_sources(
            toml=ClusterDir.find().settings("engine"), env=os.environ
        )
        return run_group(text, config.number, one.to_argv(inherited))
    if config.ipython:
        try:
            import IPython  # noqa: F401
        except ImportError as e:
            print(
                "multiengine engine: --ipython needs IPython (pip install multiengine[ipython]): "
                f"{e}",
                file=sys.stderr,
            )
            return 2
    try:
        info, source = _find_connection(config, cdir, from_dir=args.cluster_dir is not None)
    except KernelError as e:
        print(f"multiengine engine: {e}", file=sys.stderr)
        return 2
    mpi: Any = None
    desired = config.id  # a restarted engine asks for its old id
    if config.mpi:
        try:
            from mpi4py import MPI as mpi
        except ImportError as e:
            print(
                "multiengine engine: --mpi needs mpi4py and an MPI library "
                f"(pip install multiengine[mpi]): {e}",
                file=sys.stderr,
            )
            return 2

        mpi.size = mpi.COMM_WORLD.Get_size()
        mpi.rank = mpi.COMM_WORLD.Get_rank()
        desired = mpi.rank if desired is None else desired
    if source is None:
        where = ""  # the connection came from $MULTIENGINE_CONNECTION
    elif source == cdir.engine_file:
        where = f" --cluster-dir {cdir.path}"
    else:
        where = f" --connection-file {source}"

    def titled(engine_id: int) -> None:  # ps tells the engines (and their clusters) apart
        set_process_title(f"multiengine engine {engine_id}{where}")
        set_process_name(f"engine-{engine_id}")  # (no space: /proc/PID/stat parsers split on it)

    if config.batch_scheduling:
        use_batch_scheduling()  # before Engine() starts the threads that inherit it
    engine = Engine(
        info,
        desired,
        mpi,
        reload=(lambda: read_connection_file(source)) if source is not None else None,
        reconnect_timeout=config.reconnect_timeout,
        ipython=config.ipython,
        on_registered=titled,
    )

    def terminate(signum: int, frame: Any) -> None:
        engine.terminating = True
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, engine._on_sigint)
    try:
        engine.register(config.timeout)
        engine.start_heartbeat()
        engine.serve()
    except TimeoutError as e:
        print(f"multiengine engine: {e}", file=sys.stderr)
        return 2
    except SystemExit:
        pass
    finally:
        engine.close()
    return 0
