"""Starting a controller and engines through a launcher, and stopping them again.

:class:`Cluster` is the Python face (``with multiengine.Cluster(n=4) as c:``); the
``multiengine cluster start`` command uses it too. The controller is started first (on
this host, under ``mpiexec -n 1`` or over ssh), then the engines through the chosen
launcher (``local``, ``mpi``, ``slurm``, ``sge``, ``pbs``, ``ssh``); engines that share
this host's files start at the same moment as the controller and wait for its
connection file. Stopping stops the engines' launcher, then the controller's, and
makes sure every process, job and connection it started is gone.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import time
import uuid
from typing import TYPE_CHECKING, Any, TypeVar

from ..config import ControllerConfig, EngineConfig, Settings
from ..runtime import ClusterDir, base_dir
from ..wire.curve import is_loopback
from .launchers import Launcher, launcher_class
from .launchers.base import ClusterStartError, LaunchError, ProcessLauncher, tail
from .launchers.local import LocalLauncher

if TYPE_CHECKING:
    from ..client.multiengine import MultiEngineClient
    from ..client.taskclient import TaskClient

__all__ = ["Cluster", "ClusterStartError", "LaunchError"]

log = logging.getLogger("multiengine.cluster")

AnyConfig = TypeVar("AnyConfig", ControllerConfig, EngineConfig)


class Cluster:
    """A controller plus ``n`` engines, stopped on exit even when the body raises.

    ``launcher`` names how the engines start (see docs/launchers.md);
    ``launcher_options`` are its settings, on top of ``cluster.toml``'s
    ``[launcher.NAME]`` table. ``ip`` is the interface the controller binds
    (loopback by default), ``location`` the address others reach it at; ``curve``
    (``"auto"``, ``"on"``, ``"off"``) sets CurveZMQ encryption, on by default whenever
    the controller binds anything but loopback.

    Those and the other settings become :attr:`controller_config` and
    :attr:`engine_config` (:mod:`multiengine.config`), built and checked here, before
    anything starts: ``None`` means not given, so ``MULTIENGINE_<SETTING>``, then
    ``cluster.toml``, then the default decide. A bad one raises ``ConfigError``
    (a ``ValueError``).

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
        launcher_options: dict[str, Any] | None = None,
        ip: str | None = None,
        location: str | None = None,
        curve: str | None = None,
        timeout: float = 30.0,
        heartbeat_period: float | None = None,
        heartbeat_timeout: float | None = None,
        log_level: str | None = None,
        env: dict[str, str] | None = None,
        task_failure_penalty: float | None = None,
        task_timeout: float | None = None,
        result_memory_budget: str | None = None,
    ) -> None:
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be a non-negative int, not {n!r}")
        self.launcher = launcher
        self.launcher_cls = launcher_class(launcher)
        self.n = n
        self._temporary = profile is None and cluster_dir is None
        if self._temporary:
            profile = f"tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.cluster_dir = ClusterDir.find(profile, cluster_dir)
        configured = self.cluster_dir.config().get("launcher", {}).get(launcher, {})
        self.launcher_options = {**configured, **(launcher_options or {})}
        self.timeout = timeout
        self.env = {**os.environ, **(env or {})}
        # Both configs are built (and checked) here, before anything starts; None means
        # "not given": the environment, then cluster.toml, then the default decide.
        given = {
            "ip": ip,
            "location": location,
            "curve": curve,
            "heartbeat_period": heartbeat_period,
            "heartbeat_timeout": heartbeat_timeout,
            "task_failure_penalty": task_failure_penalty,
            "task_timeout": task_timeout,
            "log_level": log_level,
            "result_memory_budget": result_memory_budget,
        }
        self.controller_config = self._config(
            ControllerConfig, {**given, "parent_pid": os.getpid()}
        )
        self.engine_config = self._config(
            EngineConfig, {"timeout": timeout, "log_level": log_level}
        )
        self.controller_launcher: Launcher | None = None
        self.engine_launchers: list[Launcher] = []
        self._clients: list[Any] = []
        self._engine_count = 0
        self.start_time: float | None = None  # seconds from start() to all engines registered

    @property
    def profile(self) -> str:
        return self.cluster_dir.profile

    @property
    def controller(self) -> subprocess.Popen[bytes] | None:
        """The controller's local process (``mpiexec`` or ``ssh`` when it runs through them)."""
        launcher = self.controller_launcher
        if isinstance(launcher, ProcessLauncher) and launcher.procs:
            return launcher.procs[0]
        return None

    @property
    def engines(self) -> list[subprocess.Popen[bytes]]:
        """The local processes holding the engines: the engines themselves with ``local``,
        else ``mpiexec`` or the ssh connections (empty for batch jobs)."""
        return [
            p
            for launcher in self.engine_launchers
            if isinstance(launcher, ProcessLauncher)
            for p in launcher.procs
        ]

    # ------------------------------------------------------------ processes
    def _config(self, kind: type[AnyConfig], given: dict[str, Any]) -> AnyConfig:
        return kind.from_sources(
            toml=self.cluster_dir.settings(kind.SECTION), env=self.env, args=given
        )

    def _argv(self, command: str, config: Settings) -> list[str]:
        """``command`` with this cluster's directory and exactly the settings that the
        process would not read from its environment and cluster.toml by itself."""
        inherited = type(config).from_sources(
            toml=self.cluster_dir.settings(config.SECTION), env=self.env
        )
        return [command, "--cluster-dir", str(self.cluster_dir.path), *config.to_argv(inherited)]

    def _controller_args(self) -> list[str]:
        return self._argv("controller", self.controller_config)

    def _make_controller_launcher(self) -> Launcher:
        """The cluster's launcher when its options ask it to run the controller; else ``local``."""
        if self.launcher_cls.runs_controller(self.launcher_options):
            return self.launcher_cls(
                self.cluster_dir,
                1,
                self._controller_args(),
                self.env,
                self.launcher_options,
                role="controller",
            )
        return LocalLauncher(
            self.cluster_dir, 1, self._controller_args(), self.env, {}, role="controller"
        )

    def start(self) -> Cluster:
        began = time.monotonic()
        self.cluster_dir.create()
        for f in (self.cluster_dir.client_file, self.cluster_dir.engine_file):
            f.unlink(missing_ok=True)  # so engines wait for this controller's file
        try:
            self.controller_launcher = self._make_controller_launcher()
            self.controller_launcher.start()
            if not self.launcher_cls.starts_with_controller:
                self._wait_for_connection_file(began + self.timeout)
            launcher = self._launch_engines(self.n)
            self.n = launcher.n
            self.wait_for_engines(self.n, self.timeout, launchers=[launcher])
        except BaseException:
            try:
                self.stop()
            except Exception as e:  # noqa: BLE001 - the start's own error is the one to raise
                log.error("cleaning up after a failed start: %s", e)
            raise
        self.start_time = time.monotonic() - began
        log.info(
            "cluster %s: %d engines registered in %.2f s (%s)",
            self.profile,
            self.n,
            self.start_time,
            self.launcher,
        )
        return self

    def _launch_engines(self, n: int) -> Launcher:
        argv = self._argv("engine", self.engine_config)
        launcher = self.launcher_cls(
            self.cluster_dir,
            n,
            argv,
            self.env,
            self.launcher_options,
            role="engines",
            first=self._engine_count + 1,
        )
        self._engine_count += launcher.n
        self.engine_launchers.append(launcher)
        connection = None
        if launcher.needs_connection_info:
            connection = json.loads(self.cluster_dir.engine_file.read_text())
        launcher.start(connection)
        return launcher

    def start_engines(self, n: int, wait: bool = True) -> list[subprocess.Popen[bytes]]:
        """Start ``n`` more engines through the cluster's launcher; with ``wait``, return
        once they are registered. Returns their local processes (see :attr:`engines`)."""
        before = len(self._probe().get_ids()) if wait else 0
        launcher = self._launch_engines(n)
        if wait:
            self.wait_for_engines(before + launcher.n, self.timeout, launchers=[launcher])
        return list(launcher.procs) if isinstance(launcher, ProcessLauncher) else []

    def _wait_for_connection_file(self, deadline: float) -> None:
        while not self.cluster_dir.client_file.exists():
            self._check_controller()
            if time.monotonic() > deadline:
                raise self._start_error(
                    "the controller did not write its connection file within the timeout"
                )
            time.sleep(0.005)

    def wait_for_engines(
        self, n: int, timeout: float | None = None, launchers: list[Launcher] | None = None
    ) -> list[int]:
        """Block until at least ``n`` engines are registered; return their ids.

        ``launchers`` are asked, while waiting, whether their processes are still there,
        so an engine set that died or a job that failed is reported at once.
        """
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        self._wait_for_connection_file(deadline)
        client = self._probe()
        while True:
            ids = client.get_ids()
            if len(ids) >= n:
                return ids
            self._check_controller()
            for launcher in launchers or []:
                why = launcher.poll()
                if why:
                    hint = (
                        self._reach_hint() if launcher.needs_connection_info else ""
                    )  # engines elsewhere
                    raise self._start_error(
                        f"{why} ({len(ids)} of {n} engines registered){hint}", launcher
                    )
            if time.monotonic() > deadline:
                raise self._start_error(
                    f"{len(ids)} of {n} engines registered within {self.timeout:g} s"
                    f"{self._reach_hint()}",
                    *(launchers or []),
                )
            time.sleep(0.005 if self.launcher_cls.starts_with_controller else 0.05)

    def _probe(self) -> MultiEngineClient:
        if not self._clients:
            from ..client.multiengine import MultiEngineClient

            self._clients.append(
                MultiEngineClient(cluster_dir=self.cluster_dir.path, timeout=self.timeout)
            )
        return self._clients[0]  # type: ignore[no-any-return]

    def _check_controller(self) -> None:
        if self.controller_launcher is None:
            raise self._start_error("the controller was not started")
        why = self.controller_launcher.poll()
        if why:
            raise self._start_error(f"the controller exited: {why}")

    def _reach_hint(self) -> str:
        """Why engines elsewhere may not reach the controller, when it listens on loopback only."""
        if self.launcher_cls is LocalLauncher:
            return ""
        try:
            address = json.loads(self.cluster_dir.engine_file.read_text())["addresses"]["engine"]
        except (OSError, ValueError, KeyError):
            return ""
        host = address.split("//", 1)[-1].rsplit(":", 1)[0].strip("[]")
        if is_loopback(host):
            return (
                f"; the controller listens on {host} only, "
                "which engines on other hosts cannot reach: "
                "start it with --ip (Cluster(ip=...)) on an interface they can"
            )
        return ""

    def _start_error(self, why: str, *launchers: Launcher) -> ClusterStartError:
        parts = [f"cluster {self.profile!r} failed to start ({self.launcher} launcher): {why}"]
        if self.controller_launcher is not None:
            fallback = "--- controller.log ---\n" + tail(self.cluster_dir.log / "controller.log")
            parts.append(self.controller_launcher.output() or fallback)
        for launcher in launchers:
            parts.append(launcher.output())
        return ClusterStartError("\n".join(p for p in parts if p))

    def stop(self, timeout: float = 5.0) -> None:
        """Stop every process (and job) this cluster started (idempotent).

        Every launcher is stopped even when one of them fails to; the first failure is
        raised at the end.
        """
        for c in self._clients:
            c.close()
        self._clients.clear()
        errors: list[BaseException] = []
        for launcher in [
            *self.engine_launchers,
            *([self.controller_launcher] if self.controller_launcher else []),
        ]:
            try:
                launcher.stop(timeout)
            except Exception as e:  # noqa: BLE001 - stop the rest, then report
                log.error("stopping %s: %s", launcher.describe(), e)
                errors.append(e)
        self.engine_launchers = []
        self.controller_launcher = None
        if self._temporary and self.cluster_dir.path.parent == base_dir():
            shutil.rmtree(self.cluster_dir.path, ignore_errors=True)
        if errors:
            raise errors[0]

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
        return (
            f"<Cluster {self.profile!r} n={self.n} launcher={self.launcher} "
            f"dir={self.cluster_dir.path}>"
        )
