"""Several engines started by one command whose connection info arrives on stdin.

``multiengine engine --connection-file - -n K`` is what the ``ssh`` launcher runs on a
remote host: it reads the controller's connection info (one JSON line) from stdin, so
the key never touches the remote disk or a command line, starts ``K`` engines with it
(in their environment, readable only by the same user), and then keeps reading stdin.
When stdin closes (the launcher stopped, or its ssh connection died) it stops the
engines: SIGTERM, then SIGKILL after a grace period.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
from typing import Any

from ..runtime import on_stdin_close
from ..wire.connection import ENV_VAR, ConnectionInfo

__all__ = ["read_stdin_connection", "run_group"]

log = logging.getLogger("multiengine.engine")


def read_stdin_connection() -> tuple[ConnectionInfo, str]:
    """The first line of stdin as connection info (and its text, to hand to the engines)."""
    from ..errors import ConnectionFileError

    line = sys.stdin.readline()
    if not line.strip():
        raise ConnectionFileError(
            "--connection-file -: stdin closed before the connection info arrived"
        )
    try:
        data = json.loads(line)
    except ValueError as e:
        raise ConnectionFileError(
            f"--connection-file -: the first line of stdin is not JSON: {e}"
        ) from None
    if not isinstance(data, dict):
        raise ConnectionFileError(
            "--connection-file -: the first line of stdin is not a JSON object"
        )
    return ConnectionInfo.from_json(data, "stdin"), line.strip()


def run_group(text: str, n: int, engine_args: list[str], grace: float = 5.0) -> int:
    """Run ``n`` engines until stdin closes or this process is told to stop;
    return their worst exit code."""
    env = {**os.environ, ENV_VAR: text}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "multiengine", "engine", *engine_args],
            env=env,
            stdin=subprocess.DEVNULL,
        )
        for _ in range(n)
    ]
    log.info(
        "engine group %d: started %d engines (pids %s)",
        os.getpid(),
        n,
        ", ".join(str(p.pid) for p in procs),
    )
    done = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    on_stdin_close(done.set)
    while not done.wait(0.2):
        if all(p.poll() is not None for p in procs):
            break
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    return max((p.returncode or 0) for p in procs) if procs else 0
