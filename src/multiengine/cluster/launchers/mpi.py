"""``mpi``: engines as the ranks of one ``mpiexec`` (mpi4py initialised, id = rank)."""

from __future__ import annotations

import shlex
from typing import Any

from .base import ProcessLauncher, require_command

__all__ = ["MPILauncher"]


class MPILauncher(ProcessLauncher):
    """``mpiexec -n N [args] python -m multiengine engine --mpi ...``.

    Each engine initialises MPI through mpi4py, asks for its rank as its engine id and
    has ``mpi`` (the ``mpi4py.MPI`` module, with ``rank`` and ``size``) in its
    namespace. With ``controller = true`` the controller is started under
    ``mpiexec -n 1`` as well.
    """

    name = "mpi"
    starts_with_controller = True
    options_doc = {
        "mpiexec": "the MPI launcher command (default: mpiexec)",
        "args": (
            "extra mpiexec arguments, a list or a string (e.g. --oversubscribe, --hostfile FILE)"
        ),
        "python": "interpreter the ranks run (default: this one)",
        "controller": "also start the controller under `mpiexec -n 1` (default: false)",
    }

    @classmethod
    def runs_controller(cls, options: dict[str, Any]) -> bool:
        return bool(options.get("controller"))

    def mpiexec_argv(self, n: int) -> list[str]:
        mpiexec = require_command(
            self.name,
            str(self.options.get("mpiexec", "mpiexec")),
            "install OpenMPI or MPICH, or set [launcher.mpi] mpiexec",
        )
        extra = self.options.get("args", [])
        if isinstance(extra, str):
            extra = shlex.split(extra)
        return [mpiexec, "-n", str(n), *map(str, extra)]

    def start(self, connection: dict[str, Any] | None = None) -> None:
        if self.role == "controller":
            self.spawn([*self.mpiexec_argv(1), *self.command()], "controller.log")
        else:
            argv = self.command()
            if "--mpi" not in argv:
                argv.append("--mpi")
            self.spawn([*self.mpiexec_argv(self.n), *argv], f"mpiexec-engines-{self.first}.log")
