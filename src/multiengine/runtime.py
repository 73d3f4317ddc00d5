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

import argparse
import json
import os
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import ClusterConfig, ControllerConfig, EngineConfig
from .errors import ConfigError, ConnectionFileError

__all__ = [
    "ClusterDir",
    "base_dir",
    "list_cluster_dirs",
    "DEFAULT_CONFIG",
    "add_cluster_dir_arguments",
    "pid_alive",
    "pid_stopped",
    "on_stdin_close",
    "set_process_name",
]

DEFAULT_CONFIG = (
    """\
# multiengine cluster configuration. A setting given on the command line, or as
# MULTIENGINE_<SETTING> in the environment (MULTIENGINE_HEARTBEAT_PERIOD), wins over
# this file; a missing key takes the default shown (docs/cli.md lists every setting).
"""
    + ClusterConfig.toml_table()
    + "\n"
    + ControllerConfig.toml_table()
    + "\n"
    + EngineConfig.toml_table()
    + """
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
)


def add_cluster_dir_arguments(parser: argparse.ArgumentParser) -> None:
    """``-p/--profile`` and ``--cluster-dir``: which cluster directory a command uses
    (``ClusterDir.find(args.profile, args.cluster_dir)``)."""
    parser.add_argument(
        "-p", "--profile", default="default", help="cluster profile (default: %(default)s)"
    )
    parser.add_argument("--cluster-dir", help="cluster directory (overrides --profile)")


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

    @property
    def ready_file(self) -> Path:
        """Written by a foreground ``cluster start`` once every engine has registered,
        removed when it stops: what ``cluster start --daemon`` waits for."""
        return self.pid / "cluster.ready"

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
        """``cluster.toml`` over the defaults of :data:`DEFAULT_CONFIG`."""
        merged = tomllib.loads(DEFAULT_CONFIG)
        for section, values in self._read_config().items():
            if isinstance(values, dict):
                merged.setdefault(section, {}).update(values)
        return merged

    def settings(self, section: str) -> dict[str, Any]:
        """One table of ``cluster.toml`` as written (no defaults): what
        ``ControllerConfig``/``EngineConfig.from_sources(toml=...)`` take."""
        table = self._read_config().get(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{self.config_file}: [{section}] must be a table")
        return table

    def _read_config(self) -> dict[str, Any]:
        try:
            text = self.config_file.read_text()
        except FileNotFoundError:
            return {}
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{self.config_file} is not valid TOML: {e}") from None

    def read_pid(self, path: Path) -> int | None:
        try:
            return int(path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def write_pid(self, path: Path, pid: int | None = None) -> None:
        self._write_atomically(path, f"{pid if pid is not None else os.getpid()}\n")

    def write_ready(self, **info: Any) -> None:
        """Say that this process's cluster is up: every engine registered."""
        self._write_atomically(self.ready_file, json.dumps({"pid": os.getpid(), **info}) + "\n")

    def read_ready(self) -> dict[str, Any] | None:
        """What :meth:`write_ready` wrote (``pid``, ``engines``, ...), if it did."""
        try:
            info = json.loads(self.ready_file.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return info if isinstance(info, dict) else None

    def _write_atomically(self, path: Path, text: str) -> None:
        """Readers see the whole file or none of it: a temporary file, then a rename."""
        self.pid.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)

    def __repr__(self) -> str:
        return f"ClusterDir({str(self.path)!r})"


def list_cluster_dirs() -> list[ClusterDir]:
    root = base_dir()
    if not root.is_dir():
        return []
    return [ClusterDir(p) for p in sorted(root.glob("cluster_*")) if p.is_dir()]


def set_process_name(name: str) -> None:
    """What ``ps -o comm``, ``top`` and ``pkill`` call this process: ``name``, cut to the
    kernel's 15 bytes (Linux; elsewhere nothing changes)."""
    try:
        with open("/proc/self/comm", "w") as f:
            f.write(name.encode()[:15].decode(errors="ignore"))
    except OSError:
        pass


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


def pid_stopped(pid: int | None) -> bool:
    """Whether process ``pid`` is stopped (SIGSTOP, a debugger): alive, but silent."""
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("T", "t")
    except OSError:
        return False


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
