"""Starting a controller and engines through a launcher, and stopping them again.

:class:`Cluster` is the Python face (``with multiengine.Cluster(n=4) as c:``); the
``multiengine cluster start`` command uses it too. The controller is started first (on
this host, under ``mpiexec -n 1`` or over ssh), then the engines through the chosen
launcher (``local``, ``mpi``, ``slurm``, ``sge``, ``pbs``, ``ssh``); engines that share
this host's files start at the same moment as the controller and wait for its
connection file. Stopping stops the engines' launcher, then the controller's, and
makes sure every process, job and connection it started is gone.

While it runs, a :class:`~.supervisor.Supervisor` thread restarts local engines (and
the controller) that die, and answers other processes on the control socket
(``control.py``): ``multiengine cluster engines add|stop|restart`` and
:meth:`Cluster.from_profile` reach it there.

It is long because it is the whole life of a cluster seen from the process that owns
it: settings, starting, waiting, status, changing and stopping, with the errors of each;
launching is in launchers/, restarting in supervisor.py, the control socket in
control.py.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from ..config import ClusterConfig, ControllerConfig, EngineConfig, Settings
from ..errors import ClusterNotRunning, InvalidEngineID
from ..runtime import ClusterDir, base_dir
from ..wire import shm
from ..wire.curve import is_loopback
from . import control, forkserver
from .forkserver import ForkServer
from .launchers import Launcher, launcher_class
from .launchers.base import ClusterStartError, LaunchError, Process, ProcessLauncher, tail
from .launchers.local import LocalLauncher
from .supervisor import Supervisor

if TYPE_CHECKING:
    from ..client.multiengine import MultiEngineClient
    from ..client.taskclient import TaskClient

__all__ = ["Cluster", "ClusterStartError", "LaunchError"]

log = logging.getLogger("multiengine.cluster")

AnyConfig = TypeVar("AnyConfig", ControllerConfig, EngineConfig, ClusterConfig)


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

    ``restart_engines``, ``engine_restarts``, ``engine_memory_limit`` (``"500MB"``,
    ``"2GiB"`` or a number of bytes) and ``restart_controller`` say how it keeps itself
    whole while it runs (:attr:`cluster_config`; docs/reliability.md). ``restore=True``
    starts the controller with ``--restore`` on the profile's directory: the results,
    history and unfinished tasks of its last controller are taken up.
    :meth:`from_profile` gives a ``Cluster`` attached to one that another process runs.

    ``engine_ipython=True`` starts every engine with ``--ipython``: code runs through
    IPython (magics, ``!cmd``, rich display; docs/interactive.md).

    ``fork_server`` (on by default) forks ``local`` engines, including those restarted
    or added later, from one pre-imported template process (``forkserver.py``), which
    starts them many times faster; off, each engine is a fresh Python process.
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
        restart_engines: bool | None = None,
        engine_restarts: int | None = None,
        engine_memory_limit: str | int | None = None,
        restart_controller: bool | None = None,
        fork_server: bool | None = None,
        restore: bool = False,
        engine_ipython: bool | None = None,
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
            "restore": restore or None,
        }
        self.controller_config = self._config(
            ControllerConfig, {**given, "parent_pid": os.getpid()}
        )
        self.engine_config = self._config(
            EngineConfig, {"timeout": timeout, "log_level": log_level, "ipython": engine_ipython}
        )
        if isinstance(engine_memory_limit, int) and not isinstance(engine_memory_limit, bool):
            engine_memory_limit = str(engine_memory_limit)  # bytes
        self.cluster_config = self._config(
            ClusterConfig,
            {
                "engines": n,
                "launcher": launcher,
                "restart_engines": restart_engines,
                "engine_restarts": engine_restarts,
                "engine_memory_limit": engine_memory_limit,
                "restart_controller": restart_controller,
                "fork_server": fork_server,
            },
        )
        self.supervisor: Supervisor | None = None
        self._control: control.ControlServer | None = None
        self._attached: dict[str, Any] | None = None  # from_profile: the owner's info
        self._stopping = False
        self.controller_launcher: Launcher | None = None
        self.engine_launchers: list[Launcher] = []
        self.fork_server: ForkServer | None = None  # made when local engines first start
        self._clients: list[Any] = []
        self._engine_count = 0
        self.start_time: float | None = None  # seconds from start() to all engines registered

    @property
    def profile(self) -> str:
        return self.cluster_dir.profile

    @property
    def controller(self) -> Process | None:
        """The controller's local process (``mpiexec`` or ``ssh`` when it runs through them)."""
        launcher = self.controller_launcher
        if isinstance(launcher, ProcessLauncher) and launcher.procs:
            return launcher.procs[0]
        return None

    @property
    def engines(self) -> list[Process]:
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
        shm.threshold(self.env)  # a bad setting fails here, not in every engine
        self.cluster_dir.create()
        if not self.controller_config.restore:  # (restored: its key and addresses)
            for f in (self.cluster_dir.client_file, self.cluster_dir.engine_file):
                f.unlink(missing_ok=True)  # so engines wait for this controller's file
        try:
            self.controller_launcher = self._make_controller_launcher()
            self.controller_launcher.start()
            # The fork server imports while the controller starts; its engines are
            # forked once the controller listens (they start in milliseconds, and 128
            # of them waiting for its file would slow its start).
            forked = self._start_fork_server() is not None
            if forked or not self.launcher_cls.starts_with_controller:
                self._wait_for_connection_file(began + self.timeout)
            launcher = self._launch_engines(self.n)
            self.n = launcher.n
            self.wait_for_engines(self.n, self.timeout, launchers=[launcher])
            self._supervise(launcher)
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

    def _supervise(self, launcher: Launcher) -> None:
        """Start watching the processes (supervisor thread) and answering the control socket."""
        sup = Supervisor(self, self.cluster_config)
        sup.watch_controller(self.controller_launcher)
        sup.watch(launcher)
        sup.learn_ids()
        sup.on_stop_request = lambda: threading.Thread(
            target=self.stop, name="multiengine-stop-request", daemon=True
        ).start()
        self.supervisor = sup
        server = control.ControlServer(control.socket_path(self.cluster_dir), self._on_control)
        try:
            server.start()
            self._control = server
        except OSError as e:  # the cluster still works; only other shells cannot change it
            log.warning("no control socket at %s: %s", server.path, e)
        sup.start()

    def _start_fork_server(self) -> ForkServer | None:
        """The fork server local engines are forked from (started on first use), or
        None when the setting is off, the launcher is not ``local`` or this is not Linux."""
        if self.fork_server is not None:
            return self.fork_server
        if not (
            self.cluster_config.fork_server
            and self.launcher_cls is LocalLauncher
            and forkserver.available()
        ):
            return None
        python = str(self.launcher_options.get("python") or sys.executable)
        server = ForkServer(
            python,
            self.env,
            self.cluster_dir.log / "forkserver.log",
            self.engine_config.ipython,
            self.cluster_dir.path,
            prefork=self.n,  # forked while the controller starts
        )
        try:
            server.start()
        except OSError as e:
            log.warning("no fork server (%s): engines start as subprocesses", e)
            return None
        self.fork_server = server
        return server

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
        if isinstance(launcher, LocalLauncher):
            launcher.fork_server = self._start_fork_server()
        connection = None
        if launcher.needs_connection_info:
            connection = json.loads(self.cluster_dir.engine_file.read_text())
        launcher.start(connection)
        return launcher

    # ------------------------------------------------------------ changing a running cluster
    def start_engines(self, n: int, wait: bool = True) -> list[int]:
        """Start ``n`` more engines through the cluster's launcher (watched like the first
        ones); with ``wait``, return their ids once they are registered (else ``[]``)."""
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"n must be a whole number of engines, at least 1, not {n!r}")
        if self._attached is not None:
            answer = self._request({"op": "add", "n": n, "wait": wait}, self.timeout + 30)
            return [int(i) for i in answer["ids"]]
        sup = self.supervisor
        before = set(self._probe().get_ids()) if wait else set()
        if sup is not None:
            with sup.lock:
                launcher = self._launch_engines(n)
                sup.watch(launcher)
        else:
            launcher = self._launch_engines(n)
        if not wait:
            return []
        if isinstance(launcher, LocalLauncher):
            return sorted(self._wait_for_pids(launcher.pids(), [launcher]).values())
        ids = self.wait_for_engines(len(before) + launcher.n, self.timeout, launchers=[launcher])
        return sorted(set(ids) - before)

    def stop_engines(self, ids: int | Iterable[int]) -> list[int]:
        """Stop engines for good (they are not restarted): SIGTERM to local ones, the
        ``kill`` command for others. Unknown ids raise ``InvalidEngineID`` (nothing stops)."""
        wanted = _id_list(ids)
        if self._attached is not None:
            return [int(i) for i in self._request({"op": "stop", "ids": wanted})["ids"]]
        sup = self._require_supervisor()
        sup.learn_ids()
        registered = set(self._probe().get_ids())
        slots = {eid: sup.slot_for(eid) for eid in wanted}
        self._check_known(wanted, registered | {e for e, s in slots.items() if s is not None})
        elsewhere = []
        for eid in wanted:
            slot = slots[eid]
            if slot is not None:
                sup.stop_slot(slot)
            else:
                elsewhere.append(eid)
        if elsewhere:
            self._probe().kill(targets=elsewhere)
        return wanted

    def restart_engines(self, ids: int | Iterable[int]) -> list[int]:
        """Stop engines and start them again under the same ids, with fresh namespaces;
        return once they are registered again. Only engines of the ``local`` launcher
        can be restarted one by one (ValueError for others; InvalidEngineID for unknown ids)."""
        wanted = _id_list(ids)
        if self._attached is not None:
            answer = self._request({"op": "restart", "ids": wanted}, self.timeout + 30)
            return [int(i) for i in answer["ids"]]
        sup = self._require_supervisor()
        sup.learn_ids()
        registered = set(self._probe().get_ids())
        slots = {eid: sup.slot_for(eid) for eid in wanted}
        self._check_known(wanted, registered | {e for e, s in slots.items() if s is not None})
        for eid, slot in slots.items():
            if slot is None:
                raise ValueError(
                    f"cannot restart engine {eid}: it was not started by this cluster's "
                    f"local launcher (engines of the {self.launcher} launcher, or started by "
                    "hand, cannot be restarted one by one); stop it and add another"
                )
        pids = {}
        for eid, slot in slots.items():
            assert slot is not None
            pids[sup.restart_slot(slot).pid] = eid
        found = self._wait_for_pids(list(pids), [])
        return [found[pid] for pid in pids]

    def _wait_for_pids(self, pids: list[int], launchers: list[Launcher]) -> dict[int, int]:
        """Wait until the engines with these (local) pids are registered: pid -> engine id."""
        deadline = time.monotonic() + self.timeout
        host = socket.gethostname()
        client = self._probe()
        while True:
            by_pid = {
                e["pid"]: e["id"] for e in client.status()["engines"] if e.get("host") == host
            }
            if all(p in by_pid for p in pids):
                if self.supervisor is not None:
                    self.supervisor.learn_ids()
                return {p: by_pid[p] for p in pids}
            for launcher in launchers:
                why = launcher.poll()
                if why:
                    raise self._start_error(why, launcher)
            if time.monotonic() > deadline:
                missing = sum(1 for p in pids if p not in by_pid)
                raise self._start_error(
                    f"{missing} of {len(pids)} engines did not register within {self.timeout:g} s",
                    *launchers,
                )
            time.sleep(0.02)

    def _check_known(self, wanted: list[int], known: set[int]) -> None:
        unknown = [eid for eid in wanted if eid not in known]
        if unknown:
            listed = ", ".join(map(str, sorted(known))) or "none"
            which = "id" if len(unknown) == 1 else "ids"
            raise InvalidEngineID(
                f"unknown engine {which} {', '.join(map(str, unknown))}: "
                f"the engines of cluster {self.profile!r} are {listed}"
            )

    def _require_supervisor(self) -> Supervisor:
        if self.supervisor is None or self._stopping:
            raise ClusterNotRunning(f"cluster {self.profile!r} is not running")
        return self.supervisor

    def _on_control(self, req: dict[str, Any]) -> dict[str, Any]:
        """A request on the control socket (``control.py``), from another process."""
        if self._stopping or self.supervisor is None:
            raise ClusterNotRunning(f"cluster {self.profile!r} is stopping")
        op = req.get("op")
        if op == "info":
            return {
                "pid": os.getpid(),
                "profile": self.profile,
                "launcher": self.launcher,
                "n": self.n,
                "engines": self.supervisor.describe(),
            }
        if op == "add":
            n = req.get("n")
            if type(n) is not int or n < 1:
                raise ValueError(f"n must be a whole number of engines, at least 1, not {n!r}")
            return {"ids": self.start_engines(n, bool(req.get("wait", True)))}
        if op == "stop":
            return {"ids": self.stop_engines(_id_list(req.get("ids")))}
        if op == "restart":
            return {"ids": self.restart_engines(_id_list(req.get("ids")))}
        if op == "stop_cluster":
            if self.supervisor.on_stop_request is not None:
                self.supervisor.on_stop_request()
            return {"pid": os.getpid()}
        raise ValueError(f"unknown control request {op!r}")

    # ------------------------------------------------------------ attaching
    @classmethod
    def from_profile(
        cls,
        profile: str = "default",
        *,
        cluster_dir: str | os.PathLike[str] | None = None,
        timeout: float = 30.0,
    ) -> Cluster:
        """A ``Cluster`` attached to the one running for ``profile`` (or ``cluster_dir``),
        started by ``multiengine cluster start`` or by a ``Cluster`` in another process.

        Its :meth:`start_engines`, :meth:`stop_engines` and :meth:`restart_engines` are
        carried out by the process running the cluster; its clients work as usual;
        :meth:`stop` stops the cluster; leaving a ``with`` block only detaches.
        Raises :class:`~multiengine.errors.ClusterNotRunning` when none runs.
        """
        cdir = ClusterDir.find(profile, cluster_dir)
        info = control.request(cdir, {"op": "info"}, timeout=10)
        c = cls(
            int(info["n"]), launcher=str(info["launcher"]), cluster_dir=cdir.path, timeout=timeout
        )
        c._attached = info
        return c

    @property
    def attached(self) -> bool:
        """True for a ``Cluster`` from :meth:`from_profile` (another process runs it)."""
        return self._attached is not None

    def _request(self, req: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
        return control.request(self.cluster_dir, req, timeout)

    def detach(self) -> None:
        """Close this object's clients; the cluster goes on (for :meth:`from_profile`)."""
        for c in self._clients:
            c.close()
        self._clients.clear()

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
        raised at the end. On a cluster from :meth:`from_profile`, asks the process
        running it to stop it, and returns once it has.
        """
        if self._attached is not None:
            self._stop_attached(timeout)
            return
        self._stopping = True
        if self.supervisor is not None:
            self.supervisor.stop()  # nothing is restarted from here on
        for c in self._clients:
            c.close()
        self._clients.clear()
        errors: list[BaseException] = []
        # under the supervisor's lock: a restart or a control request still under way
        # ends first, and none starts a process after this
        with self.supervisor.lock if self.supervisor is not None else contextlib.nullcontext():
            for launcher in [
                *self.engine_launchers,
                *([self.controller_launcher] if self.controller_launcher else []),
            ]:
                try:
                    launcher.stop(timeout)
                except Exception as e:  # noqa: BLE001 - stop the rest, then report
                    log.error("stopping %s: %s", launcher.describe(), e)
                    errors.append(e)
        if self.fork_server is not None:  # after its engines: it has none left to end
            try:
                self.fork_server.stop(timeout)
            except Exception as e:  # noqa: BLE001 - stop the rest, then report
                log.error("stopping the fork server: %s", e)
                errors.append(e)
            self.fork_server = None
        self.engine_launchers = []
        self.controller_launcher = None
        if self._control is not None:  # last: attached clusters wait for it to go
            self._control.close()
            self._control = None
        if self._temporary and self.cluster_dir.path.parent == base_dir():
            shutil.rmtree(self.cluster_dir.path, ignore_errors=True)
        if errors:
            raise errors[0]

    def _stop_attached(self, timeout: float) -> None:
        self.detach()
        try:
            self._request({"op": "stop_cluster"}, 10)
        except ClusterNotRunning:
            return
        path = control.socket_path(self.cluster_dir)
        deadline = time.monotonic() + self.timeout + timeout + 10
        while path.exists():
            if time.monotonic() > deadline:
                pid = (self._attached or {}).get("pid")
                raise ClusterStartError(
                    f"cluster {self.profile!r} did not stop within "
                    f"{self.timeout + timeout + 10:g} s (the process running it: pid {pid})"
                )
            time.sleep(0.05)

    def __enter__(self) -> Cluster:
        return self if self._attached is not None else self.start()

    def __exit__(self, *exc: Any) -> None:
        if self._attached is not None:
            self.detach()
        else:
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

    def _repr_html_(self) -> str:
        from ..client.view import status_html

        title = f"Cluster {self.profile!r}: {self.n} engines, {self.launcher} launcher"
        if self.controller_launcher is None and self._attached is None:
            return status_html(title, None, "not started")
        try:
            return status_html(title, self._probe().status())
        except Exception as e:  # a notebook's display must not raise
            return status_html(title, None, f"{type(e).__name__}: {e}")

    def __repr__(self) -> str:
        attached = " attached" if self._attached is not None else ""
        return (
            f"<Cluster {self.profile!r}{attached} n={self.n} launcher={self.launcher} "
            f"dir={self.cluster_dir.path}>"
        )


def _id_list(ids: Any) -> list[int]:
    """Engine ids as a list without repeats: an int, or an iterable of ints."""
    if isinstance(ids, int) and not isinstance(ids, bool):
        ids = [ids]
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
        raise TypeError(f"engine ids must be an int or a list of ints, not {ids!r}")
    out: list[int] = []
    for i in ids:
        if type(i) is not int or i < 0:
            raise TypeError(f"engine ids must be non-negative ints, not {i!r}")
        if i not in out:
            out.append(i)
    if not out:
        raise ValueError("no engine ids given")
    return out
