"""The fork server's own process: the template that local engines are forked from.

``python -m multiengine.cluster.forktemplate FD [--ipython] [--prefork N]``, started by
:class:`~multiengine.cluster.forkserver.ForkServer` (which explains the design): it
imports what an engine needs, then forks an engine per request read from the socket
``FD`` and says each one's pid, and how each one ended. It ends its engines and exits
when that socket closes or on SIGTERM.
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
import sys
import time
import traceback
from typing import Any

from ..engine.cli import set_process_title

__all__ = ["serve"]

STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL for the engines of a closing server
_PR_SET_PDEATHSIG = 1


def _preload(ipython: bool) -> None:
    """Import what every engine imports, so that children start with it loaded."""
    import cloudpickle  # noqa: F401
    import zmq  # noqa: F401

    from ..engine import cli, commands, group, main, output  # noqa: F401
    from . import cli as command_line

    command_line.build_parser()  # (cached: each engine parses its command line with it)
    with contextlib.suppress(ImportError):  # optional: what ps shows (set_process_title)
        import setproctitle  # noqa: F401

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
        set_process_title(" ".join(["multiengine", *argv]))  # (named by id once registered)
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

    parser = argparse.ArgumentParser(prog="python -m multiengine.cluster.forktemplate")
    parser.add_argument("fd", type=int, help="this end of the socket pair")
    parser.add_argument("--cluster-dir", help="(shown by ps: whose fork server this is)")
    parser.add_argument("--ipython", action="store_true", help="import IPython too")
    parser.add_argument("--prefork", type=int, default=0, help="engines to fork ahead")
    args = parser.parse_args(argv)
    return serve(args.fd, args.ipython, args.prefork)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
