"""The ground floor: what every process of a cluster shares on this host.

Cluster directories and profiles: ``$MULTIENGINE_DIR/cluster_<profile>/``
(``MULTIENGINE_DIR`` defaults to ``~/.multiengine``) holds ``cluster.toml``,
``security/`` (0700, connection files 0600), ``log/`` and ``pid/``. Also whether a pid
is alive, and the stdin lifeline of processes started over ssh.

The controller, the engines, the clients and the cluster command all use this module,
so it imports only the standard library and :mod:`multiengine.errors` /
:mod:`multiengine.config` (the import-layering test, tests/project/test_layers.py,
keeps it that way).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import ConnectionFileError

__all__ = [
    "ClusterDir",
    "base_dir",
    "list_cluster_dirs",
    "DEFAULT_CONFIG",
    "pid_alive",
    "on_stdin_close",
]

DEFAULT_CONFIG = """\
# multiengine cluster configuration
[cluster]
engines = 2            # engines started by `multiengine cluster start` without -n
launcher = "local"

[controller]
ip = "127.0.0.1"       # interface to bind; loopback unless told otherwise
heartbeat_period = 0.5 # seconds between engine heartbeats
heartbeat_timeout = 3.0  # an engine silent this long is unregistered
# location = "node1"   # address engines and clients connect to (default: the ip)
# curve = "auto"       # CurveZMQ: auto = on whenever ip is not loopback; "on", "off"

# Launcher settings, one table per launcher (docs/launchers.md lists every option):
# [launcher.mpi]
# args = ["--oversubscribe"]
# [launcher.slurm]
# queue = "debug"
# time = "1:00:00"
# [launcher.sge]
# queue = "all.q"
# [launcher.pbs]
# queue = "batch"
# [launcher.ssh]
# hosts = { "node1" = 2, "node2" = 2 }
# python = "/opt/venv/bin/python"
"""


def base_dir() -> Path:
    return Path(os.environ.get("MULTIENGINE_DIR") or "~/.multiengine").expanduser()


class ClusterDir:
    """One cluster directory; :meth:`create` makes it with the right modes."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser().absolute()

    @classmethod
    def for_profile(cls, profile: str = "default") -> ClusterDir:
        return cls(base_dir() / f"cluster_{profile}")

    @classmethod
    def find(
        cls, profile: str | None = None, cluster_dir: str | os.PathLike[str] | None = None
    ) -> ClusterDir:
        if cluster_dir is not None:
            return cls(cluster_dir)
        return cls.for_profile(profile or "default")

    @property
    def profile(self) -> str:
        name = self.path.name
        return name[len("cluster_") :] if name.startswith("cluster_") else name

    @property
    def security(self) -> Path:
        return self.path / "security"

    @property
    def log(self) -> Path:
        return self.path / "log"

    @property
    def pid(self) -> Path:
        return self.path / "pid"

    @property
    def client_file(self) -> Path:
        return self.security / "client.json"

    @property
    def engine_file(self) -> Path:
        return self.security / "engine.json"

    @property
    def config_file(self) -> Path:
        return self.path / "cluster.toml"

    @property
    def curve_file(self) -> Path:
        """The controller's CurveZMQ key pair (only when encryption is on)."""
        return self.security / "curve.json"

    @property
    def cluster_pid_file(self) -> Path:
        return self.pid / "cluster.pid"

    @property
    def controller_pid_file(self) -> Path:
        return self.pid / "controller.pid"

    def exists(self) -> bool:
        return self.path.is_dir()

    def create(self, reset_config: bool = False) -> ClusterDir:
        self.path.mkdir(parents=True, exist_ok=True)
        for sub in (self.log, self.pid):
            sub.mkdir(exist_ok=True)
        self.security.mkdir(mode=0o700, exist_ok=True)
        os.chmod(self.security, 0o700)
        if reset_config or not self.config_file.exists():
            self.config_file.write_text(DEFAULT_CONFIG)
        return self

    def require(self) -> ClusterDir:
        if not self.exists():
            raise ConnectionFileError(
                f"no cluster directory {self.path} (unknown profile {self.profile!r}?); "
                f"create it with `multiengine cluster create -p {self.profile}`"
            )
        return self

    def config(self) -> dict[str, Any]:
        merged = tomllib.loads(DEFAULT_CONFIG)
        if self.config_file.exists():
            for section, values in tomllib.loads(self.config_file.read_text()).items():
                if isinstance(values, dict):
                    merged.setdefault(section, {}).update(values)
        return merged

    def read_pid(self, path: Path) -> int | None:
        try:
            return int(path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def write_pid(self, path: Path, pid: int | None = None) -> None:
        self.pid.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(f"{pid if pid is not None else os.getpid()}\n")
        os.replace(tmp, path)

    def __repr__(self) -> str:
        return f"ClusterDir({str(self.path)!r})"


def list_cluster_dirs() -> list[ClusterDir]:
    root = base_dir()
    if not root.is_dir():
        return []
    return [ClusterDir(p) for p in sorted(root.glob("cluster_*")) if p.is_dir()]


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def on_stdin_close(callback: Callable[[], None]) -> None:
    """Call ``callback`` (from a daemon thread) once stdin reaches end of file: the lifeline
    of processes started over ssh, which must stop when their connection closes."""
    import sys
    import threading

    def watch() -> None:
        while sys.stdin.buffer.read(4096):
            pass
        callback()

    threading.Thread(target=watch, daemon=True, name="stdin-lifeline").start()
