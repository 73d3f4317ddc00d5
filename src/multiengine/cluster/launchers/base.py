"""What every launcher is: start a set of processes somewhere, tell whether they still
run, show what they printed, stop them.

A launcher starts one *set*: the controller (``n == 1``) or ``n`` engines. It is given
the multiengine arguments of the command to run (``["engine", "--cluster-dir", ...]``)
and turns them into processes its own way: local subprocesses, ``mpiexec``, a batch job
(``sbatch``/``qsub``) or ``ssh``. Launchers never talk to the controller; the
:class:`~multiengine.cluster.cluster.Cluster` waits for registration and asks
:meth:`Launcher.poll` why nothing came when nothing does.
"""

from __future__ import annotations

import os
import select
import shlex
import shutil
import signal
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Protocol

from ...errors import ClusterStartError, LaunchError  # defined there, re-exported here
from ...runtime import ClusterDir

__all__ = [
    "Launcher",
    "LaunchError",
    "ClusterStartError",
    "Process",
    "ProcessLauncher",
    "tail",
    "require_command",
    "run_command",
]


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output)"


def require_command(launcher: str, cmd: str, hint: str) -> str:
    """The absolute path of ``cmd``, or a :class:`LaunchError` naming what to install."""
    found = shutil.which(cmd)
    if not found:
        raise LaunchError(f"{launcher} launcher: {cmd!r} was not found on PATH ({hint})")
    return found


def run_command(
    launcher: str, argv: list[str], timeout: float = 60.0, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """Run a resource manager's command; its failure becomes a :class:`LaunchError`
    with its output."""
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)
    except FileNotFoundError:
        raise LaunchError(f"{launcher} launcher: {argv[0]!r} was not found") from None
    except subprocess.TimeoutExpired as e:
        raise LaunchError(
            f"{launcher} launcher: `{shlex.join(argv)}` did not finish within {timeout:g} s"
        ) from e
    if r.returncode != 0:
        out = (r.stdout + r.stderr).strip() or "(no output)"
        raise LaunchError(
            f"{launcher} launcher: `{shlex.join(argv)}` failed "
            f"with exit code {r.returncode}:\n{out}"
        )
    return r


class Launcher(ABC):
    """Starts ``n`` copies of one multiengine command and stops them again.

    ``options`` are the launcher's own settings (from ``cluster.toml``'s
    ``[launcher.NAME]`` table or ``Cluster(launcher_options=...)``); each subclass
    documents and checks them. Unknown options are an error, not silently ignored.
    """

    name: ClassVar[str]
    options_doc: ClassVar[dict[str, str]] = {}
    #: True when the processes cannot read the cluster directory and must be sent the
    #: controller's connection info (so it must exist before :meth:`start`).
    needs_connection_info: ClassVar[bool] = False
    #: True when engines may start together with the controller (same host, same
    #: files: they wait for its connection file), which saves a controller start-up.
    starts_with_controller: ClassVar[bool] = False
    #: True when one process of the set can be started again on its own
    #: (:meth:`ProcessLauncher.respawn`): what the cluster's supervisor needs to restart
    #: an engine that died (docs/reliability.md). An ``mpiexec`` or a batch job cannot.
    restarts_one: ClassVar[bool] = False

    def __init__(
        self,
        cluster_dir: ClusterDir,
        n: int,
        argv: list[str],
        env: dict[str, str],
        options: dict[str, Any] | None = None,
        role: str = "engines",
        first: int = 1,
    ) -> None:
        self.cluster_dir = cluster_dir
        self.n = n
        self.argv = list(argv)
        self.env = env
        self.role = role
        self.first = first  # number of the set's first process in the cluster (log names)
        self.options = dict(options or {})
        unknown = set(self.options) - set(self.options_doc)
        if unknown:
            known = ", ".join(sorted(self.options_doc)) or "none"
            raise ValueError(
                f"{self.name} launcher: unknown option(s) {', '.join(sorted(unknown))} "
                f"(known: {known})"
            )
        self.log_dir = cluster_dir.log
        self.started_at: float | None = None

    @classmethod
    def runs_controller(cls, options: dict[str, Any]) -> bool:
        """Whether ``options`` ask this launcher to start the controller too (else it runs here)."""
        return False

    def python(self) -> str:
        return str(self.options.get("python") or sys.executable)

    def command(self) -> list[str]:
        """The full command line of one process of the set."""
        return [self.python(), "-m", "multiengine", *self.argv]

    @abstractmethod
    def start(self, connection: dict[str, Any] | None = None) -> None:
        """Start the processes (or submit the job) and return without waiting for them."""

    @abstractmethod
    def poll(self) -> str | None:
        """None while the set is running or queued; else one line saying why it is gone."""

    @abstractmethod
    def stop(self, timeout: float = 5.0) -> None:
        """Stop every process of the set (idempotent); return once they are gone."""

    @abstractmethod
    def output(self) -> str:
        """What the processes and the launcher's commands printed, for error messages."""

    def pids(self) -> list[int]:
        """Local process ids of the set (the launcher's own commands for remote sets)."""
        return []

    def describe(self) -> str:
        return f"{self.name} launcher ({self.n} {self.role})"


class Process(Protocol):
    """What a launcher holds of a local process: a ``subprocess.Popen``, or an engine
    forked by the fork server (:class:`~multiengine.cluster.forkserver.ForkedProcess`)."""

    @property
    def pid(self) -> int: ...
    @property
    def returncode(self) -> int | Any: ...
    def poll(self) -> int | None: ...
    def wait(self, timeout: float | None = None) -> int: ...
    def send_signal(self, sig: int) -> None: ...
    def terminate(self) -> None: ...
    def kill(self) -> None: ...


class ProcessLauncher(Launcher):
    """A launcher whose set is held as local subprocesses (``mpiexec``, ``ssh``, engines)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.procs: list[Process] = []
        self.logs: list[Path] = []

    def spawn(
        self, argv: list[str], logname: str, stdin: Any = subprocess.DEVNULL
    ) -> subprocess.Popen[bytes]:
        path = self.log_dir / logname
        proc = self._popen(argv, path, stdin)
        self.procs.append(proc)
        self.logs.append(path)
        return proc

    def _popen(self, argv: list[str], path: Path, stdin: Any) -> subprocess.Popen[bytes]:
        with open(path, "ab") as log:
            return subprocess.Popen(
                argv,
                stdin=stdin,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=self.env,
                cwd=os.getcwd(),
            )

    def respawn(self, index: int, extra: list[str]) -> Process:
        """Start process ``index`` of the set again (its log goes on), with ``extra``
        arguments (``--id 3``); only for launchers that :attr:`restarts_one`."""
        if not self.restarts_one:
            raise LaunchError(f"the {self.name} launcher cannot restart one of its processes")
        proc = self._popen([*self.command(), *extra], self.logs[index], subprocess.DEVNULL)
        self.procs[index] = proc
        return proc

    def poll(self) -> str | None:
        for proc, log in zip(self.procs, self.logs):
            if proc.poll() is not None:
                return f"{log.stem} exited with code {proc.returncode}"
        return None

    def alive(self) -> int:
        return sum(1 for p in self.procs if p.poll() is None)

    def stop(self, timeout: float = 5.0) -> None:
        terminate(self.procs, timeout)

    def output(self) -> str:
        parts = []
        for log in self.logs[:3]:
            parts += [f"--- {log.name} ---", tail(log)]
        return "\n".join(parts)

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]


def terminate(procs: list[Process], timeout: float) -> None:
    """SIGTERM each process group, wait up to ``timeout``, SIGKILL what is left, reap all."""
    running = [p for p in procs if p.poll() is None]
    for p in running:
        _signal_group(p, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for p in running:
        try:
            _wait_exit(p, max(0.05, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(p, signal.SIGKILL)
            p.wait()
    for p in procs:
        if p.poll() is None:
            _signal_group(p, signal.SIGKILL)
        p.wait()


def _wait_exit(p: Process, timeout: float) -> None:
    """``p.wait(timeout)``, woken the moment ``p`` exits: Popen's own wait with a timeout
    polls, sleeping up to 50 ms between looks; a pidfd (Linux) becomes readable at once
    (for a forked engine too, which is the fork server's child, not ours)."""
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is not None and p.returncode is None:
        try:
            fd = pidfd_open(p.pid)
        except OSError:  # already reaped, or no pidfds here
            pass
        else:
            try:
                if not select.select([fd], [], [], timeout)[0]:
                    raise subprocess.TimeoutExpired(str(p.pid), timeout)
            finally:
                os.close(fd)
    p.wait(timeout)


def _signal_group(p: Process, sig: int) -> None:
    """Signal the process and its session (``mpiexec``'s ranks, a shell's children)."""
    try:
        os.killpg(p.pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            p.send_signal(sig)
        except ProcessLookupError:
            pass
