"""The engine: a lean Python process with a persistent namespace.

It imports neither IPython nor numpy, unless started with ``--ipython``: then code
runs through IPython (ipython_shell.py, the only module that imports it). The main
thread owns the command socket and runs user code (so SIGINT reaches that code as
KeyboardInterrupt); a daemon thread owns a second socket and answers heartbeats while
user code runs.
"""

from typing import Any

_current: Any = None  # the running engine's Interpreter, set by engine.main


def get_engine(engine_id: int | None = None) -> Any:
    """The engine this code runs in (its ``id``, ``namespace`` and ``properties``).

    The seed's ``get_engine(id)``: call it from code executed on an engine.
    """
    if _current is None or (engine_id is not None and engine_id != _current.engine_id):
        raise LookupError(
            f"no engine {engine_id if engine_id is not None else ''} in this process".replace(
                "  ", " "
            )
        )
    return _current
