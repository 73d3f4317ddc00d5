"""Local engines forked from a pre-imported template process: the fork server.

A fresh ``python -m multiengine engine`` spends most of its start importing (Python,
zmq, cloudpickle, multiengine's engine modules; IPython with ``--ipython``): about 50 ms
of CPU each, so 128 engines took 6.4 s on two cores. The fork server imports all that
once and then ``os.fork()``\\ s one engine per request: a child starts with every module
already loaded and only builds its own state.

::

    cluster process                          fork server (template, one thread)
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
import ctypes
import ctypes.util
import gc
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import LaunchError

__all__ = ["ForkServer", "ForkedProcess", "ForkRequest", "available", "serve"]

READY_TIMEOUT = 30.0  # seconds to wait for the template to import and answer a request
STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL for the engines of a closing server
PREFORK_MAX = 512  # engines forked ahead at most (each holds a pipe in the template)
_PR_SET_PDEATHSIG = 1


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
        argv = [self.python, "-m", "multiengine.cluster.forkserver", str(theirs.fileno())]
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

    def stop(self, timeout: float = STOP_GRACE) -> None:
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


# ---------------------------------------------------------------- the template's side
def _preload(ipython: bool) -> None:
    """Import what every engine imports, so that children start with it loaded."""
    import cloudpickle  # noqa: F401
    import zmq  # noqa: F401

    from ..engine import cli, commands, group, main, output  # noqa: F401
    from . import cli as command_line

    command_line.build_parser()  # (cached: each engine parses its command line with it)

    if ipython:
        with contextlib.suppress(ImportError):  # the engine itself says what is missing
            from ..engine import ipython_shell  # noqa: F401


def _set_death_signal() -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _wait_and_become_engine(template: int, request_fd: int, close: list[int]) -> None:
    """In a child just forked: become a process of its own, wait for its request (one
    JSON line on ``request_fd``; none, at EOF: it was a spare, and exits), then run
    the engine that request asks for. Never returns.

    It ends as ``python -m multiengine engine`` does, by ``SystemExit`` through the
    interpreter's normal shutdown (not ``os._exit``): that shutdown is what gives zmq's
    I/O thread the moment to deliver the engine's last messages (its answer to
    ``kill``, its ``bye``). The template's frames below hold no ``finally`` to run.
    """
    try:
        os.setsid()
        _set_death_signal()
        if os.getppid() != template:  # the template died before the death signal was set
            os._exit(1)
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        for fd in close:
            os.close(fd)
        data = b""
        while not data.endswith(b"\n"):
            chunk = os.read(request_fd, 65536)
            if not chunk:
                os._exit(0)  # a spare no longer needed
            data += chunk
        os.close(request_fd)
        request = json.loads(data)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.chdir(request["cwd"])
        argv = [str(a) for a in request["argv"]]
        sys.argv = [sys.argv[0], *argv]
        from .cli import main
    except BaseException:  # noqa: BLE001 - the child must never return into the template
        traceback.print_exc()
        os._exit(1)
    raise SystemExit(main(argv))


class _Template:
    """The fork server's loop: fork on request, report exits, end with its parent."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.children: set[int] = set()
        self.spares: dict[int, int] = {}  # forked ahead, waiting for a request: pid -> pipe
        self.requests_open: set[int] = set()  # write ends of children's request pipes
        self.buffer = b""
        self.stopping = False
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    def _on_term(self, *_: Any) -> None:
        self.stopping = True

    def say(self, what: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):
            self.sock.sendall(json.dumps(what).encode() + b"\n")

    def run(self) -> None:
        while not self.stopping:
            try:
                ready, _, _ = select.select([self.sock.fileno(), self.wake_r], [], [])
            except InterruptedError:
                continue
            if self.wake_r in ready:
                with contextlib.suppress(BlockingIOError, InterruptedError):
                    os.read(self.wake_r, 4096)
                self.reap()
            if self.sock.fileno() in ready:
                data = self.sock.recv(65536)
                if not data:
                    break  # the cluster process has gone, or stops us
                self.buffer += data
                *lines, self.buffer = self.buffer.split(b"\n")
                self.fork_batch([json.loads(line) for line in lines])
                self.reap()
        self.end_children()

    def fork_waiting(self) -> tuple[int, int] | None:
        """Fork a child that waits for its request on a pipe: (its pid, the pipe's
        write end), or None if the fork failed (said on stderr)."""
        sys.stdout.flush()
        sys.stderr.flush()
        template = os.getpid()
        r, w = os.pipe()
        try:
            pid = os.fork()
        except OSError as e:
            os.close(r)
            os.close(w)
            print(f"multiengine fork server: fork failed: {e}", file=sys.stderr, flush=True)
            return None
        if pid == 0:
            inherited = [self.sock.detach(), w, self.wake_r, self.wake_w]
            _wait_and_become_engine(template, r, [*inherited, *self.requests_open])
        os.close(r)
        self.children.add(pid)
        self.requests_open.add(w)
        return pid, w

    def close_request(self, w: int) -> None:
        self.requests_open.discard(w)
        os.close(w)

    def prefork(self, n: int) -> None:
        """Fork ``n`` spares now (while the controller starts), for the first requests."""
        for _ in range(n):
            child = self.fork_waiting()
            if child is not None:
                self.spares[child[0]] = child[1]

    def fork_batch(self, requests: list[dict[str, Any]]) -> None:
        """An engine per request: a spare if there is one, else a child forked now.
        The children of a batch are all forked before any is given its request:
        started at once, 128 of them would take the CPU from this loop, and forking
        them would take seconds instead of a fraction of one."""
        children: list[tuple[int, int] | None] = []
        for _ in requests:
            if self.spares:
                children.append(self.spares.popitem())
            else:
                children.append(self.fork_waiting())
        said: list[dict[str, Any]] = []
        for child, request in zip(children, requests):
            if child is None:
                said.append({"error": "fork failed (see log/forkserver.log)"})
                continue
            pid, w = child
            try:
                os.write(w, json.dumps(request).encode() + b"\n")
                said.append({"pid": pid})
            except OSError as e:  # the spare died meanwhile: it is reaped as any child
                said.append({"error": f"the child for it had died: {e}"})
            finally:
                self.close_request(w)
        with contextlib.suppress(OSError):
            self.sock.sendall(b"".join(json.dumps(x).encode() + b"\n" for x in said))

    def reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.children.discard(pid)
            spare = self.spares.pop(pid, None)
            if spare is not None:
                self.close_request(spare)
                continue  # (the cluster process never heard of it)
            self.say({"exited": pid, "status": os.waitstatus_to_exitcode(status)})

    def end_children(self) -> None:
        for w in self.spares.values():
            self.close_request(w)  # a spare reads the end of its pipe, and exits
        self.spares.clear()
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        while self.children and time.monotonic() < deadline:
            self.reap()
            time.sleep(0.01)
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        while self.children:
            try:
                pid, _ = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            self.children.discard(pid)


def serve(fd: int, ipython: bool, prefork: int = 0) -> int:
    """The fork server's main: preload, fork ``prefork`` spares, then fork engines
    until the socket closes."""
    sock = socket.socket(fileno=fd)
    template = _Template(sock)  # signals first: a SIGTERM during the imports counts
    _preload(ipython)
    gc.collect()
    gc.freeze()  # the collector leaves the template's objects (and so shared pages) alone
    template.prefork(prefork)
    template.run()
    return 0


def _main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m multiengine.cluster.forkserver")
    parser.add_argument("fd", type=int, help="this end of the socket pair")
    parser.add_argument("--cluster-dir", help="(shown by ps: whose fork server this is)")
    parser.add_argument("--ipython", action="store_true", help="import IPython too")
    parser.add_argument("--prefork", type=int, default=0, help="engines to fork ahead")
    args = parser.parse_args(argv)
    return serve(args.fd, args.ipython, args.prefork)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
