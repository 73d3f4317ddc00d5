"""``local``: each process a child of this one, on this host (the default).

Engines are forked by the cluster's fork server (``forkserver.py``) when it gives the
launcher one (the ``fork_server`` setting, on by default): they start with everything
imported. Without one, or when the fork server cannot fork, each engine is a fresh
``python -m multiengine engine`` subprocess.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from ..forkserver import ForkRequest, ForkServer
from .base import LaunchError, Process, ProcessLauncher

__all__ = ["LocalLauncher"]

log = logging.getLogger("multiengine.cluster")


class LocalLauncher(ProcessLauncher):
    """``n`` processes of this Python, each in its own session, logging to ``log/``."""

    name = "local"
    starts_with_controller = True
    restarts_one = True
    options_doc = {"python": "interpreter to run (default: this one)"}

    #: the cluster's fork server, which engines are forked from (None: ``Popen`` each)
    fork_server: ForkServer | None = None

    def start(self, connection: dict[str, Any] | None = None) -> None:
        if self.role == "controller":
            self.spawn(self.command(), "controller.log")
            return
        names = [f"engine-{self.first + i}.log" for i in range(self.n)]
        if self.fork_server is not None:
            requests = [ForkRequest(self.argv, self.log_dir / name, os.getcwd()) for name in names]
            forked = self._fork(requests)
            if forked is not None:
                self.procs.extend(forked)
                self.logs.extend(r.log for r in requests)
                return
        for name in names:
            self.spawn(self.command(), name)

    def respawn(self, index: int, extra: list[str]) -> Process:
        if self.fork_server is None or self.role == "controller":
            return super().respawn(index, extra)
        forked = self._fork([ForkRequest([*self.argv, *extra], self.logs[index], os.getcwd())])
        if forked is None:
            return super().respawn(index, extra)
        self.procs[index] = forked[0]
        return forked[0]

    def _fork(self, requests: list[ForkRequest]) -> list[Process] | None:
        """Engines forked by the fork server, or None (then they start as subprocesses)."""
        assert self.fork_server is not None
        try:
            return list(self.fork_server.spawn_many(requests))
        except (OSError, LaunchError) as e:
            log.warning("fork server: %s; starting engines as subprocesses instead", e)
            return None
