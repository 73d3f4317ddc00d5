"""Keeping a cluster whole: the process that started it watches what it started.

A :class:`Supervisor` runs as a thread of the process that started the cluster (the
user's Python process for a :class:`~multiengine.cluster.cluster.Cluster`, the
``multiengine cluster start`` process for a command-line or ``--daemon`` cluster). It
watches every process it can start again on its own, that is every process of the
``local`` launcher (docs/reliability.md says what the other launchers do):

* **An engine that dies** (signal, non-zero exit status) is reported to the controller
  at once with an ``engine_exit`` request naming the cause (``died (killed by
  SIGKILL)``, ``exited with status 3``): the controller unregisters it and its work fails
  with ``EngineError`` saying so, without waiting for the heartbeat timeout. Then the
  engine is started again with ``--id N``, so it comes back under its id, with a fresh
  namespace: at once the first time, then after 1, 2, 4, ... seconds (at most 60), and
  at most ``engine_restarts`` times within an hour, after which it stays down and
  ``status()`` says why. An engine that exits with status 0 stopped on purpose
  (``kill()``, SIGTERM) and is not restarted.
* **An engine past ``engine_memory_limit``** (its RSS, read from ``/proc`` every second)
  is killed and restarted the same way, its work failing with ``was restarted: its memory
  (612 MB) passed the limit of 500 MB``.
* **A controller that crashes** (signal or non-zero status; not ``kill(controller=True)``)
  is started again with ``--restore`` (same key and addresses, so engines and clients
  reconnect; results and unfinished tasks are taken up); same back-off and limit. A
  controller that exits with status 0 ends the cluster: :attr:`Supervisor.finished`
  says why.

On request (``Cluster.stop_engines``, ``restart_engines``, and through them the
control socket that the ``Cluster`` serves, ``control.py``) it stops an engine for good
or restarts it under its id; engines the cluster adds later are watched like the first.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import ClusterConfig
from ..errors import ControllerConnectionError, KernelError
from ..wire import protocol as P
from ..wire.connection import read_connection_file
from ..wire.message import unpack
from .launchers.base import Launcher, Process, ProcessLauncher

if TYPE_CHECKING:
    from ..client.core import ClientCore
    from .cluster import Cluster

__all__ = ["Supervisor", "Slot", "backoff", "exit_cause"]

log = logging.getLogger("multiengine.cluster")

WINDOW = 3600.0  # seconds over which restarts are counted against engine_restarts
BACKOFF_MAX = 60.0
POLL = 0.1  # seconds between looks at the processes
MEMORY_EVERY = 1.0  # seconds between readings of the engines' memory
ASK_TIMEOUT = 3.0  # seconds to wait for the controller to answer engine_exit or status
STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL when stopping an engine

# signals that say more than "killed by"
_SIGNAL_CAUSES = {
    signal.SIGSEGV: "died of a segmentation fault (SIGSEGV)",
    signal.SIGBUS: "died of a bus error (SIGBUS)",
    signal.SIGILL: "died of an illegal instruction (SIGILL)",
    signal.SIGFPE: "died of a floating-point exception (SIGFPE)",
    signal.SIGABRT: "died: it aborted (SIGABRT)",
}


def backoff(recent: int) -> float:
    """Seconds to wait before a restart that follows ``recent`` restarts within the
    window: 0 (at once), then 1, 2, 4, ... up to 60."""
    return 0.0 if recent <= 0 else min(2.0 ** (recent - 1), BACKOFF_MAX)


def exit_cause(returncode: int, oom: bool = False) -> str:
    """What an exit status says, as the words after "engine N": ``died (killed by
    SIGKILL)``, ``died of a segmentation fault (SIGSEGV)``, ``exited with status 3``."""
    if returncode >= 0:
        return f"exited with status {returncode}"
    number = -returncode
    try:
        sig = signal.Signals(number)
    except ValueError:
        return f"died (killed by signal {number})"
    if sig in _SIGNAL_CAUSES:
        return _SIGNAL_CAUSES[sig]
    if sig == signal.SIGKILL and oom:
        return "died (killed by SIGKILL: out of memory, the kernel's OOM killer)"
    return f"died (killed by {sig.name})"


def rss(pid: int) -> int | None:
    """Resident memory of ``pid`` in bytes (``/proc``), None once it has gone."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def oom_file(pid: int) -> Path | None:
    """The file of ``pid``'s memory cgroup that counts the kernel's OOM kills (v2
    ``memory.events``, v1 ``memory.oom_control``), when there is one to read."""
    candidates: list[Path] = []
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        hid, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if hid == "0" and not controllers:
            candidates.append(Path(f"/sys/fs/cgroup{path.rstrip('/')}/memory.events"))
        elif "memory" in controllers.split(","):
            candidates.append(Path(f"/sys/fs/cgroup/memory{path.rstrip('/')}/memory.oom_control"))
            candidates.append(Path("/sys/fs/cgroup/memory/memory.oom_control"))
    return next((c for c in candidates if oom_kills(c) is not None), None)


def oom_kills(path: Path | None) -> int | None:
    if path is None:
        return None
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
    except (OSError, ValueError):
        return None
    return None


@dataclass(eq=False)
class Slot:
    """One process the supervisor keeps running: an engine (or the controller), as
    process ``index`` of its launcher's set."""

    launcher: ProcessLauncher
    index: int
    kind: str = "engine"  # or "controller"
    id: int | None = None  # the engine id, once the controller has said it
    # the process the controller said ``id`` of: a restarted process asks for the id
    # (``--id``) and is asked about again, in case the controller gave it another one
    id_pid: int | None = None
    # running | waiting (to be restarted) | down (not restarted) | stopped (on request)
    # | exited (status 0: stopped on purpose) | restarting (on request)
    state: str = "running"
    restarts: int = 0  # every restart of this slot, shown by status
    recent: deque[float] = field(default_factory=deque)  # crash restarts in the window
    restart_at: float = 0.0
    last_exit: str | None = None
    fate: str = ""
    oom_path: Path | None = None
    oom_mark: int | None = None

    @property
    def proc(self) -> Process:
        return self.launcher.procs[self.index]

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "pid": self.proc.pid,
            "state": self.state,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "fate": self.fate,
        }

    def name(self) -> str:
        if self.kind == "controller":
            return "the controller"
        return f"engine {self.id}" if self.id is not None else "an engine (no id yet)"


class Supervisor:
    """Watches a cluster's local processes and restarts what dies (one thread)."""

    def __init__(self, cluster: Cluster, config: ClusterConfig) -> None:
        self.cluster = cluster
        self.config = config
        self.lock = threading.RLock()
        self.slots: list[Slot] = []
        self.controller: Slot | None = None
        #: why the cluster has ended by itself (the controller exited and is not
        #: restarted); None while it runs
        self.finished: str | None = None
        #: called (on a control thread) when another process asks the cluster to stop
        self.on_stop_request: Callable[[], None] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._core: ClientCore | None = None
        self._next_memory = 0.0
        self._next_ids = 0.0
        self._quiet_until = 0.0  # the controller did not answer: do not wait on it again yet
        self._warned_memory = False
        self.host = socket.gethostname()

    # ------------------------------------------------------------ what is watched
    def watch_controller(self, launcher: Launcher | None) -> None:
        if isinstance(launcher, ProcessLauncher) and launcher.procs:
            self.controller = Slot(launcher, 0, kind="controller")

    def watch(self, launcher: Launcher) -> list[Slot]:
        """Watch the engines of a set just started (those its launcher can restart)."""
        if not (isinstance(launcher, ProcessLauncher) and launcher.restarts_one):
            if self.config.memory_limit and not self._warned_memory:
                log.warning(
                    "engine_memory_limit applies to local engines only, not to the %s launcher's",
                    launcher.name,
                )
                self._warned_memory = True
            return []
        added = []
        with self.lock:
            for i in range(len(launcher.procs)):
                slot = Slot(launcher, i)
                slot.oom_path = oom_file(slot.proc.pid)
                slot.oom_mark = oom_kills(slot.oom_path)
                added.append(slot)
            self.slots.extend(added)
        return added

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name="multiengine-supervisor", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (before the cluster's processes are stopped); idempotent."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(ASK_TIMEOUT * 3)
        self._thread = None
        if self._core is not None:
            self._core.close()
            self._core = None

    # ------------------------------------------------------------ the loop
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - the supervisor must outlive any one failure
                log.exception("the cluster's supervisor failed to look after its processes")
            self._stop.wait(POLL)

    def tick(self) -> None:
        """One look at every process: what died, what is over its memory, what is due."""
        with self.lock:
            if self._stop.is_set():
                return
            self._check_controller()
            if self.finished:
                return
            for slot in self.slots:
                if slot.state == "running":
                    rc = slot.proc.poll()
                    if rc is not None:
                        self._ended(slot, rc)
            now = time.monotonic()
            if self.config.memory_limit and now >= self._next_memory:
                self._next_memory = now + MEMORY_EVERY
                self._check_memory()
            for slot in self.slots:
                if slot.state == "waiting" and slot.restart_at <= time.monotonic():
                    self._respawn(slot)
            if now >= self._next_ids and any(
                s.state == "running" and s.id_pid != s.proc.pid for s in self.slots
            ):
                self._next_ids = now + 0.5
                self.learn_ids()

    # ------------------------------------------------------------ engines that end
    def _plan(self, slot: Slot) -> float | None:
        """Seconds until ``slot`` is restarted, or None (and ``slot.fate`` says why)."""
        now = time.monotonic()
        while slot.recent and slot.recent[0] < now - WINDOW:
            slot.recent.popleft()
        limit = self.config.engine_restarts
        switch = "restart_engines" if slot.kind == "engine" else "restart_controller"
        if not getattr(self.config, switch):
            slot.fate = f"not restarted ({switch} is off)"
            return None
        if len(slot.recent) >= limit:
            times = "once" if len(slot.recent) == 1 else f"{len(slot.recent)} times"
            slot.fate = (
                f"stays down: restarted {times} within the last hour (engine_restarts = {limit})"
            )
            return None
        delay = backoff(len(slot.recent))
        slot.fate = "restarting" if delay == 0 else f"restarting in {delay:g} s"
        return delay

    def _ended(self, slot: Slot, rc: int, cause: Callable[[bool], str] | None = None) -> None:
        """``slot``'s process has ended with ``rc``: plan its restart, tell the controller."""
        pid = slot.proc.pid
        if slot.id_pid != pid:
            self.learn_ids()  # the controller may still have it, under that pid
        oom = rc == -signal.SIGKILL and (oom_kills(slot.oom_path) or 0) > (slot.oom_mark or 0)
        if rc == 0:
            slot.state = "exited"
            slot.fate = "not restarted (an engine that exits with status 0 stopped on purpose)"
            delay = None
        else:
            delay = self._plan(slot)
        text = cause(delay is not None) if cause is not None else exit_cause(rc, oom)
        slot.last_exit = text
        if delay is not None:
            slot.state = "waiting"
            slot.restart_at = time.monotonic() + delay
            slot.recent.append(slot.restart_at)
            slot.restarts += 1
        elif rc != 0:
            slot.state = "down"
        level = logging.INFO if rc == 0 else logging.WARNING
        log.log(level, "%s (pid %d) %s; %s", slot.name(), pid, text, slot.fate)
        self._report(slot, pid, text)

    def _report(self, slot: Slot, pid: int, cause: str) -> bool:
        """Tell the controller (``engine_exit``); whether it still had the engine."""
        if slot.id is None or slot.kind != "engine":
            return False
        header = {
            "t": P.ENGINE_EXIT,
            "engine": slot.id,
            "pid": pid,
            "cause": cause,
            "restarts": slot.restarts,
            "fate": slot.fate,
        }
        try:
            return bool(self.ask(header))
        except (KernelError, TimeoutError, OSError) as e:
            log.warning("could not tell the controller that %s %s: %s", slot.name(), cause, e)
            return False

    def _respawn(self, slot: Slot) -> None:
        if self._stop.is_set():  # the cluster is stopping: start nothing
            slot.state = "stopped"
            return
        extra = ["--id", str(slot.id)] if slot.kind == "engine" and slot.id is not None else []
        if slot.kind == "controller":
            extra = self._controller_extra()
        try:
            proc = slot.launcher.respawn(slot.index, extra)
        except (OSError, KernelError) as e:
            slot.state = "down"
            slot.fate = f"could not be restarted: {e}"
            log.error("%s %s", slot.name(), slot.fate)
            return
        slot.state = "running"
        slot.oom_path = oom_file(proc.pid) or slot.oom_path
        slot.oom_mark = oom_kills(slot.oom_path)
        log.info("%s restarted (pid %d)", slot.name(), proc.pid)

    # ------------------------------------------------------------ memory
    def _check_memory(self) -> None:
        limit = self.config.memory_limit
        assert limit is not None
        for slot in self.slots:
            if slot.state != "running" or slot.proc.poll() is not None:
                continue
            used = rss(slot.proc.pid)
            if used is None or used <= limit:
                continue
            _kill(slot.proc)
            shown, limit_shown = self.config.memory_text(used), self.config.memory_text(limit)

            def cause(restarting: bool, shown: str = shown, limit_shown: str = limit_shown) -> str:
                verb = "was restarted" if restarting else "was stopped"
                return f"{verb}: its memory ({shown}) passed the limit of {limit_shown}"

            self._ended(slot, slot.proc.returncode, cause)

    # ------------------------------------------------------------ the controller
    def _check_controller(self) -> None:
        slot = self.controller
        if slot is None:
            launcher = self.cluster.controller_launcher
            why = launcher.poll() if launcher is not None else "it was not started"
            if why:
                self.finished = f"the controller exited ({why})"
            return
        if slot.state == "waiting":
            if slot.restart_at <= time.monotonic():
                self._respawn(slot)
            return
        if slot.state != "running":
            return
        rc = slot.proc.poll()
        if rc is None:
            return
        why = f"{slot.launcher.logs[slot.index].stem} exited with code {rc}"
        if rc == 0 or not slot.launcher.restarts_one:
            self.finished = f"the controller exited ({why})"
            slot.state = "exited"
            return
        delay = self._plan(slot)
        slot.last_exit = exit_cause(rc)
        if delay is None:
            self.finished = f"the controller exited ({why}); {slot.fate}"
            slot.state = "down"
            log.error("the controller %s; %s", slot.last_exit, slot.fate)
            return
        log.warning("the controller %s; %s", slot.last_exit, slot.fate)
        if self._core is not None:
            self._core.close()
            self._core = None
        slot.state = "waiting"
        slot.restart_at = time.monotonic() + delay
        slot.recent.append(slot.restart_at)
        slot.restarts += 1
        if delay == 0:
            self._respawn(slot)

    def _controller_extra(self) -> list[str]:
        return ["--restore"]  # the same key and addresses, results and unfinished tasks

    # ------------------------------------------------------------ talking to the controller
    def ask(self, header: dict[str, Any], timeout: float = ASK_TIMEOUT) -> Any:
        """A request the controller answers with a value, on the supervisor's own client."""
        with self.lock:  # one client, shared by the supervisor thread and control requests
            return self._ask(header, timeout)

    def _ask(self, header: dict[str, Any], timeout: float) -> Any:
        from ..client.answers import raise_direct
        from ..client.core import ClientCore

        if time.monotonic() < self._quiet_until:
            raise ControllerConnectionError("the controller did not answer a moment ago")
        try:
            if self._core is None:
                info = read_connection_file(self.cluster.cluster_dir.client_file)
                self._core = ClientCore(info, timeout)
            core = self._core
            try:
                msg = core.wait(core.request(dict(header)), timeout)
            except (ControllerConnectionError, TimeoutError):
                self._core = None
                core.close()
                raise
        except (KernelError, TimeoutError, OSError):
            self._quiet_until = time.monotonic() + 1.0
            raise
        raise_direct(msg)
        return unpack(msg.content)

    def learn_ids(self) -> None:
        """Which engine id each watched process has, from the controller (by pid)."""
        try:
            status = self.ask({"t": P.STATUS})
        except (KernelError, TimeoutError, OSError) as e:
            log.debug("could not ask the controller for its engines: %s", e)
            return
        by_pid = {e["pid"]: e["id"] for e in status["engines"] if e.get("host") == self.host}
        with self.lock:
            for slot in self.slots:
                found = by_pid.get(slot.proc.pid)
                if found is not None:
                    if slot.id is not None and found != slot.id:
                        log.warning("engine %d came back as engine %d", slot.id, found)
                    slot.id, slot.id_pid = found, slot.proc.pid

    # ------------------------------------------------------------ on request
    def slot_for(self, eid: int) -> Slot | None:
        with self.lock:
            found = [s for s in self.slots if s.id == eid]
        # the newest slot holding the id (an older one may have stayed down under it)
        live = [s for s in found if s.state in ("running", "waiting", "restarting")]
        chosen = live or found
        return chosen[-1] if chosen else None

    def stop_slot(self, slot: Slot) -> None:
        """Stop an engine for good (it is not restarted)."""
        with self.lock:
            previous = slot.state
            slot.state = "stopped"
            slot.fate = "not restarted"
            slot.last_exit = "was stopped on request"
            self._report(slot, slot.proc.pid, slot.last_exit)
            if previous == "running":
                _terminate(slot.proc)

    def restart_slot(self, slot: Slot) -> Process:
        """Start an engine again under its id, with a fresh namespace (its process is
        stopped first). Returns the new process."""
        with self.lock:
            previous = slot.state
            slot.state = "restarting"
            slot.restarts += 1
            slot.recent.clear()  # asked for: the crash budget starts again
            slot.fate = "restarting"
            if previous == "running":
                slot.last_exit = "was restarted on request"
                self._report(slot, slot.proc.pid, slot.last_exit)
                _terminate(slot.proc)
            self._respawn(slot)
            if slot.state != "running":
                raise KernelError(f"engine {slot.id} {slot.fate}")
            return slot.proc

    def describe(self) -> list[dict[str, Any]]:
        with self.lock:
            return [s.describe() for s in self.slots]


def _kill(proc: Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    proc.wait()


def _terminate(proc: Process, grace: float = STOP_GRACE) -> None:
    """SIGTERM (the engine says ``bye``), SIGKILL after ``grace``; reaped either way."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        _kill(proc)
