"""Local engines forked from a pre-imported template process: the fork server.

A fresh ``python -m multiengine engine`` spends most of its start importing (Python,
zmq, cloudpickle, multiengine's engine modules; IPython with ``--ipython``): about 50 ms
of CPU each, so 128 engines took 6.4 s on two cores. The fork server imports all that
once and then ``os.fork()``\\ s one engine per request: a child starts with every module
already loaded and only builds its own state.

::

    cluster process (this module)            fork server (forktemplate.py, one thread)
    ForkServer.spawn_many(requests) --JSON line per engine-->  fork() -> engine child
                                    <-- {"pid": N} ----------  (own session, log, zmq)
    ForkedProcess.poll()/wait()     <-- {"exited": N, "status": rc}   (SIGCHLD, waitpid)

**Why our own template, not multiprocessing's forkserver.** The supervisor needs each
engine in its own session (it signals process groups), writing to its own log file,
with its exit status known to the cluster process, which is not the engine's parent;
and no engine may outlive the template. ``multiprocessing.forkserver`` gives a child
only to the process that called ``Process.start()`` (its sentinel and exit code travel
over pipes to that process alone), runs a pickled target rather than a command line, and
brings its resource tracker along. A single-threaded loop over a Unix socket pair, with
``os.fork()``, ``setsid()``, ``dup2()`` of the log and ``PR_SET_PDEATHSIG``, is shorter
than adapting it and does exactly that.

**Forking fast.** A fork copies the template's page tables (about 17 MB of Python
objects: 1.5-3.5 ms a fork here), so the cluster asks for its first engines when it
starts the server, which forks them while the controller starts (``--prefork N``); each
such spare waits on a pipe of its own for its request. Engines asked for later are
forked a batch at a time, and each waits on its pipe until the whole batch is forked:
children that ran at once would take the CPU from the loop that forks them.

**A child is a clean engine.** The template never makes a zmq context (so none is
shared across a fork: the engine makes its own, and its heartbeat thread, after it);
it has one thread, so ``fork()`` copies no lock held by another; ``gc.freeze()`` after
the imports keeps the collector from touching (and so copying) the shared pages. In the
child: a new session (process group = pid, as ``start_new_session=True`` gives a
``Popen`` engine), stdin from ``/dev/null``, stdout and stderr appended to
``log/engine-N.log``, default signal handlers, the request's working directory, and
then the same ``multiengine engine ...`` command line a ``Popen`` engine runs.

**Nothing is left behind.** Each child asks the kernel for SIGKILL when the template
dies (``PR_SET_PDEATHSIG``), so ``kill -9`` of the fork server ends its engines; the
cluster process then reports them as killed and the supervisor starts them again
through a new fork server. When the cluster process goes away (its end of the socket
closes) or the fork server gets SIGTERM, it ends its engines (SIGTERM to each group,
SIGKILL after a grace period) and exits.

The setting ``fork_server`` (``config.py``; docs/cli.md) turns it off: then each engine
is a fresh ``Popen``. It is used on Linux only (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import LaunchError

__all__ = ["ForkServer", "ForkedProcess", "ForkRequest", "available"]

READY_TIMEOUT = 30.0  # seconds to wait for the template to import and answer a request
PREFORK_MAX = 512  # engines forked ahead at most (each holds a pipe in the template)


def available() -> bool:
    """Whether engines can be forked here (Linux: ``fork`` and ``PR_SET_PDEATHSIG``)."""
    return sys.platform.startswith("linux") and hasattr(os, "fork")


@dataclass(frozen=True)
class ForkRequest:
    """One engine to fork: its ``multiengine`` arguments, log file and working directory."""

    argv: list[str]
    log: Path
    cwd: str

    def line(self) -> bytes:
        return json.dumps({"argv": self.argv, "log": str(self.log), "cwd": self.cwd}).encode() + (
            b"\n"
        )


# ---------------------------------------------------------------- the cluster's side
class ForkServer:
    """The cluster process's handle on a fork server (started on first use, and again
    after it died). Thread-safe: the supervisor and the cluster's callers share it."""

    def __init__(
        self,
        python: str,
        env: dict[str, str],
        log: Path,
        ipython: bool,
        cluster_dir: Path,
        prefork: int = 0,
    ) -> None:
        self.python = python
        # engines the first server forks ahead, while the controller starts (the first
        # request takes them); a server started again after dying forks none ahead
        self.prefork = min(max(0, prefork), PREFORK_MAX)
        self.cluster_dir = cluster_dir  # on the command line, so that ``ps`` tells whose
        self.env = env
        self.log = log
        self.ipython = ipython
        self.lock = threading.RLock()
        self.proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._buffer = b""
        self._live: set[int] = set()  # engines forked by the current server, not yet exited
        self._exits: dict[int, int] = {}  # pid -> status, for engines that have ended
        self._pids: list[int] = []  # answers to requests not yet taken by spawn_many

    # ------------------------------------------------------------ the server process
    def _ensure(self) -> socket.socket:
        if self._sock is not None and self.proc is not None and self.proc.poll() is None:
            return self._sock
        if self._sock is not None:
            self._lost()
        ours, theirs = socket.socketpair()
        argv = [self.python, "-m", "multiengine.cluster.forktemplate", str(theirs.fileno())]
        argv += ["--cluster-dir", str(self.cluster_dir)]
        if self.ipython:
            argv.append("--ipython")
        if self.prefork:
            argv += ["--prefork", str(self.prefork)]
            self.prefork = 0
        try:
            with open(self.log, "ab") as out:
                self.proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    pass_fds=(theirs.fileno(),),
                    env=self.env,
                    cwd=os.getcwd(),
                )
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        self._sock = ours
        self._buffer = b""
        return ours

    def start(self) -> None:
        """Start the template now (it imports while the controller starts)."""
        with self.lock:
            self._ensure()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def _lost(self) -> None:
        """The server has gone: its engines die with it (PDEATHSIG); make sure of it, and
        record them as killed, so the supervisor sees them end."""
        for pid in self._live:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            self._exits[pid] = -signal.SIGKILL
        self._live.clear()
        self._pids.clear()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            self.proc.wait()

    # ------------------------------------------------------------ requests
    def spawn_many(self, requests: list[ForkRequest]) -> list[ForkedProcess]:
        """Fork one engine per request; return their handles once the server has said
        every pid. Raises :class:`LaunchError` if it cannot."""
        if not requests:
            return []
        with self.lock:
            sock = self._ensure()
            try:
                sock.sendall(b"".join(r.line() for r in requests))
            except OSError as e:
                self._lost()
                raise LaunchError(f"the fork server did not take the request: {e}") from e
            deadline = time.monotonic() + READY_TIMEOUT
            while len(self._pids) < len(requests):
                left = deadline - time.monotonic()
                if left <= 0 or not self._pump(left):
                    got = len(self._pids)
                    self._lost()
                    raise LaunchError(
                        f"the fork server (log {self.log}) forked {got} of "
                        f"{len(requests)} engines, then "
                        + ("stopped answering" if left <= 0 else "exited")
                    )
            pids, self._pids = self._pids[: len(requests)], self._pids[len(requests) :]
        return [ForkedProcess(self, pid, r.argv) for pid, r in zip(pids, requests)]

    def _pump(self, timeout: float) -> bool:
        """Read what the server has said, waiting up to ``timeout`` for something; False
        once the server has gone (every engine of it then counts as killed)."""
        sock = self._sock
        if sock is None:
            return False
        ready, _, _ = select.select([sock], [], [], max(0.0, timeout))
        if not ready:
            return True
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            self._lost()
            return False
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            said = json.loads(line)
            if "pid" in said:
                self._pids.append(int(said["pid"]))
                self._live.add(int(said["pid"]))
            elif "exited" in said:
                pid = int(said["exited"])
                self._live.discard(pid)
                self._exits[pid] = int(said["status"])
            elif "error" in said:
                self._pids.append(-1)
                sys.stderr.write(f"multiengine fork server: {said['error']}\n")
        return True

    def status(self, pid: int, timeout: float = 0.0) -> int | None:
        """Exit status of engine ``pid`` (as ``Popen.returncode``), None while it runs;
        waits up to ``timeout`` for it to end."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                if pid in self._exits:
                    return self._exits[pid]
                if pid not in self._live:  # its server was replaced meanwhile
                    return self._exits.setdefault(pid, -signal.SIGKILL)
                left = deadline - time.monotonic()
                self._pump(max(0.0, min(left, 0.05)))
                if pid in self._exits:
                    return self._exits[pid]
                if left <= 0:
                    return None

    def stop(self, timeout: float = 5.0) -> None:
        """End the server (it ends any engine it still has first); idempotent."""
        with self.lock:
            if self._sock is None or self.proc is None:
                return
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_WR)  # EOF: the server's cue to go
            try:
                self.proc.wait(timeout + 1.0)
            except subprocess.TimeoutExpired:
                pass
            self._lost()


class ForkedProcess:
    """An engine forked by a :class:`ForkServer`, with the part of ``subprocess.Popen``
    the launchers and the supervisor use (``pid``, ``poll``, ``wait``, signals)."""

    def __init__(self, server: ForkServer, pid: int, args: list[str]) -> None:
        self.server = server
        self.pid = pid
        self.args = args
        # a fork that failed (the server said why on stderr) counts as an engine that exited
        self.returncode: int | None = None if pid > 0 else 1

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.server.status(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            left = 1.0 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
            self.returncode = self.server.status(self.pid, min(left, 1.0))
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.pid > 0 and self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def __repr__(self) -> str:
        return f"<ForkedProcess pid={self.pid} returncode={self.returncode}>"
