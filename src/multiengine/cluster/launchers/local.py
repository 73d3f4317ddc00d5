"""``local``: each process a child of this one, on this host (the default)."""

from __future__ import annotations

from typing import Any

from .base import ProcessLauncher

__all__ = ["LocalLauncher"]


class LocalLauncher(ProcessLauncher):
    """``n`` subprocesses of this Python, each in its own session, logging to ``log/``."""

    name = "local"
    starts_with_controller = True
    restarts_one = True
    options_doc = {"python": "interpreter to run (default: this one)"}

    def start(self, connection: dict[str, Any] | None = None) -> None:
        if self.role == "controller":
            self.spawn(self.command(), "controller.log")
            return
        for i in range(self.n):
            self.spawn(self.command(), f"engine-{self.first + i}.log")
