"""Starting a controller and engines as local processes, and stopping them again.

:class:`Cluster` is the Python face (``with multiengine.Cluster(n=4) as c:``); the
``multiengine cluster start`` command uses it too. The controller and the engines are
started at the same moment (engines wait for the controller's connection file), each
in its own session, with output going to the cluster's ``log/`` directory. Stopping
sends SIGTERM, waits, then SIGKILLs what is left, and reaps every process.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import KernelError
from .paths import ClusterDir, base_dir

if TYPE_CHECKING:
    from ..client.multiengine import MultiEngineClient
    from ..client.taskclient import TaskClient

__all__ = ["Cluster", "ClusterStartError"]


class ClusterStartError(KernelError):
    """The cluster's processes did not come up; the message has their log tails."""


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class Cluster:
    """A local controller plus ``n`` engines, stopped on exit even when the body raises.

    Without ``profile`` (and ``cluster_dir``) a unique throw-away profile is made under
    ``$MULTIENGINE_DIR`` and removed at :meth:`stop`, so clusters can run side by side.
    """

    def __init__(
        self,
        n: int = 2,
        profile: str | None = None,
        launcher: str = "local",
        *,
        cluster_dir: str | os.PathLike[str] | None = None,
        ip: str | None = None,
        timeout: float = 30.0,
        heartbeat_period: float | None = None,
        heartbeat_timeout: float | None = None,
        log_level: str = "INFO",
        env: dict[str, str] | None = None,
        task_failure_penalty: float | None = None,
        task_timeout: float | None = None,
    ) -> None:
        if launcher != "local":
            raise ValueError(f"unknown launcher {launcher!r}: this version has 'local'")
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be a non-negative int, not {n!r}")
        self.n = n
        self._temporary = profile is None and cluster_dir is None
        if self._temporary:
            profile = f"tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.cluster_dir = ClusterDir.find(profile, cluster_dir)
        self.ip = ip
        self.timeout = timeout
        self.heartbeat_period = heartbeat_period
        self.heartbeat_timeout = heartbeat_timeout
        self.task_failure_penalty = task_failure_penalty
        self.task_timeout = task_timeout
        self.log_level = log_level
        self.env = {**os.environ, **(env or {})}
        self.controller: subprocess.Popen[bytes] | None = None
        self.engines: list[subprocess.Popen[bytes]] = []
        self._clients: list[Any] = []
        self._engine_count = 0

    @property
    def profile(self) -> str:
        return self.cluster_dir.profile

    # ------------------------------------------------------------ processes
    def _spawn(self, args: list[str], logname: str) -> subprocess.Popen[bytes]:
        logfile = open(self.cluster_dir.log / logname, "ab")
        try:
            return subprocess.Popen(
                [sys.executable, "-m", "multiengine", *args],
                stdin=subprocess.DEVNULL,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=self.env,
                cwd=os.getcwd(),
            )
        finally:
            logfile.close()

    def _dir_args(self) -> list[str]:
        return ["--cluster-dir", str(self.cluster_dir.path), "--log-level", self.log_level]

    def start(self) -> Cluster:
        self.cluster_dir.create()
        args = ["controller", *self._dir_args(), "--parent-pid", str(os.getpid())]
        if self.ip:
            args += ["--ip", self.ip]
        if self.heartbeat_period:
            args += ["--heartbeat-period", str(self.heartbeat_period)]
        if self.heartbeat_timeout:
            args += ["--heartbeat-timeout", str(self.heartbeat_timeout)]
        if self.task_failure_penalty is not None:
            args += ["--task-failure-penalty", str(self.task_failure_penalty)]
        if self.task_timeout is not None:
            args += ["--task-timeout", str(self.task_timeout)]
        for f in (self.cluster_dir.client_file, self.cluster_dir.engine_file):
            f.unlink(missing_ok=True)  # so engines wait for this controller's file
        try:
            self.controller = self._spawn(args, "controller.log")
            self.start_engines(self.n, wait=False)
            self.wait_for_engines(self.n, self.timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def start_engines(self, n: int, wait: bool = True) -> list[subprocess.Popen[bytes]]:
        """Start ``n`` more engines; with ``wait``, return once they are registered."""
        before = len(self._probe().get_ids()) if wait else 0
        new = []
        for _ in range(n):
            self._engine_count += 1
            p = self._spawn(["engine", *self._dir_args(), "--timeout", str(self.timeout)], f"engine-{self._engine_count}.log")
            new.append(p)
        self.engines.extend(new)
        if wait:
            self.wait_for_engines(before + n, self.timeout)
        return new

    def wait_for_engines(self, n: int, timeout: float | None = None) -> list[int]:
        """Block until at least ``n`` engines are registered; return their ids."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self.cluster_dir.client_file.exists():
            self._check_controller()
            if time.monotonic() > deadline:
                raise self._start_error("the controller did not write its connection file")
            time.sleep(0.005)
        client = self._probe()
        while True:
            ids = client.get_ids()
            if len(ids) >= n:
                return ids
            self._check_controller()
            alive = sum(1 for p in self.engines if p.poll() is None)
            if alive < n:
                raise self._start_error(f"only {alive} engine processes are running, {n} were wanted")
            if time.monotonic() > deadline:
                raise self._start_error(f"{len(ids)} of {n} engines registered within the timeout")
            time.sleep(0.005)

    def _probe(self) -> MultiEngineClient:
        if not self._clients:
            from ..client.multiengine import MultiEngineClient

            self._clients.append(MultiEngineClient(cluster_dir=self.cluster_dir.path, timeout=self.timeout))
        return self._clients[0]  # type: ignore[no-any-return]

    def _check_controller(self) -> None:
        if self.controller is None or self.controller.poll() is not None:
            raise self._start_error("the controller exited")

    def _start_error(self, why: str) -> ClusterStartError:
        logs = self.cluster_dir.log
        parts = [f"cluster {self.profile!r} failed to start: {why}", "--- controller.log ---", _tail(logs / "controller.log")]
        for p in sorted(logs.glob("engine-*.log"))[:2]:
            parts += [f"--- {p.name} ---", _tail(p)]
        return ClusterStartError("\n".join(parts))

    def stop(self, timeout: float = 5.0) -> None:
        """Stop every process this cluster started (idempotent)."""
        for c in self._clients:
            c.close()
        self._clients.clear()
        procs = [p for p in self.engines + ([self.controller] if self.controller else []) if p.poll() is None]
        for p in procs:
            try:
                p.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        for p in procs:
            try:
                p.wait(max(0.05, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for p in self.engines + ([self.controller] if self.controller else []):
            if p.poll() is None:
                p.kill()
            p.wait()
        self.engines = []
        self.controller = None
        if self._temporary and self.cluster_dir.path.parent == base_dir():
            shutil.rmtree(self.cluster_dir.path, ignore_errors=True)

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------ clients
    def multiengine_client(self, **kwargs: Any) -> MultiEngineClient:
        from ..client.multiengine import MultiEngineClient

        client = MultiEngineClient(cluster_dir=self.cluster_dir.path, **kwargs)
        self._clients.append(client)
        return client

    def task_client(self, **kwargs: Any) -> TaskClient:
        from ..client.taskclient import TaskClient

        client = TaskClient(cluster_dir=self.cluster_dir.path, **kwargs)
        self._clients.append(client)
        return client

    def engine_pids(self) -> dict[int, int]:
        """Engine id -> process id, as the controller knows them."""
        return {e["id"]: e["pid"] for e in self._probe().status()["engines"]}

    def __repr__(self) -> str:
        return f"<Cluster {self.profile!r} n={self.n} dir={self.cluster_dir.path}>"
