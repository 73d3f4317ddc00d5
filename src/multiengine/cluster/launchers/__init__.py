"""Launchers: how a cluster's processes are started (see docs/launchers.md)."""

from __future__ import annotations

from .base import Launcher, LaunchError
from .local import LocalLauncher
from .mpi import MPILauncher
from .pbs import PBSLauncher
from .sge import SGELauncher
from .slurm import SlurmLauncher
from .ssh import SSHLauncher

__all__ = ["LAUNCHERS", "Launcher", "LaunchError", "launcher_class"]

LAUNCHERS: dict[str, type[Launcher]] = {
    cls.name: cls
    for cls in (LocalLauncher, MPILauncher, SlurmLauncher, SGELauncher, PBSLauncher, SSHLauncher)
}


def launcher_class(name: str) -> type[Launcher]:
    try:
        return LAUNCHERS[name]
    except KeyError:
        raise ValueError(
            f"unknown launcher {name!r}: choose one of {', '.join(LAUNCHERS)}"
        ) from None
