"""The exceptions of multiengine, one hierarchy under :class:`KernelError`.

    KernelError
    ├── CompositeError            errors from one or more engines of one call
    ├── InvalidEngineID           a target that is not a registered engine
    ├── NoEnginesRegistered       'all' when no engine is registered
    ├── QueueCleared              a queued command was dropped (clear_queue, reset, kill,
    │                             or an earlier error on the same engine)
    ├── EngineError               the engine died or was lost with the command on it
    ├── InvalidDeferredID         unknown, fetched, flushed or double-awaited result id
    ├── ResultNotCompleted        a non-blocking fetch of an unfinished result
    ├── AbortedPendingDeferredError   a pending result was flushed while awaited
    ├── NotAPendingResult         barrier() given something else
    ├── ControllerConnectionError no answer from the controller (``ConnectionError``)
    ├── ConnectionFileError       a missing connection file or unknown profile
    ├── ConfigError               a setting that cannot be used (``ValueError``)
    ├── SerializationError        a value that cannot be pickled or unpickled
    ├── ProtocolError             a malformed message
    ├── InvalidProperty           an engine property that cannot be stored
    ├── TaskAborted, TaskTimeout, TaskRejectError
    └── the seed's remaining names, kept for compatibility

Remote exceptions keep their own type (ZeroDivisionError, NameError, ...) inside a
CompositeError; the engine's formatted traceback travels with them.
"""

from __future__ import annotations

import pickle
import sys
from typing import Any

__all__ = [
    "AbortedPendingDeferredError",
    "ClientError",
    "CompositeError",
    "ConfigError",
    "ConnectionError",
    "ConnectionFileError",
    "ControllerConnectionError",
    "EngineError",
    "FileTimeoutError",
    "IdInUse",
    "InvalidClientID",
    "InvalidDeferredID",
    "InvalidEngineID",
    "InvalidProperty",
    "KernelError",
    "NO_ENGINES_REGISTERED",
    "MessageSizeError",
    "MissingBlockArgument",
    "NoEnginesRegistered",
    "NotAPendingResult",
    "NotDefined",
    "ProtocolError",
    "QueueCleared",
    "RemoteError",
    "ResultAlreadyRetrieved",
    "ResultNotCompleted",
    "SecurityError",
    "SerializationError",
    "StopLocalExecution",
    "TaskAborted",
    "TaskRejectError",
    "TaskTimeout",
    "UnpickleableException",
    "collect_exceptions",
]


class KernelError(Exception):
    """Base class of every multiengine error."""


class NotDefined(KernelError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(name)

    def __repr__(self) -> str:
        return f"<NotDefined: {self.name}>"

    __str__ = __repr__


class QueueCleared(KernelError):
    pass


class IdInUse(KernelError):
    pass


class ProtocolError(KernelError):
    pass


class InvalidClientID(KernelError):
    pass


class SerializationError(KernelError, pickle.PicklingError):
    """A value could not be pickled (client side) or unpickled."""


class MessageSizeError(KernelError):
    pass


class ResultAlreadyRetrieved(KernelError):
    pass


class ClientError(KernelError):
    pass


class UnpickleableException(KernelError):
    pass


class StopLocalExecution(KernelError):
    pass


class FileTimeoutError(KernelError):
    pass


class ControllerConnectionError(KernelError):
    """The controller did not answer (not running, unreachable, or a wrong key)."""


ConnectionError = ControllerConnectionError  # the seed's name  # noqa: A001


class ConnectionFileError(KernelError, FileNotFoundError):
    """A connection file is missing, or a profile has no cluster directory."""


class ConfigError(KernelError, ValueError):
    """A setting (command line, environment, cluster.toml or keyword) that cannot be used;
    ``settings`` names the fields concerned (multiengine.config)."""

    def __init__(self, message: str, settings: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.settings = settings


class InvalidEngineID(KernelError):
    pass


NO_ENGINES_REGISTERED = (
    "There are no engines registered. Check the logs if you think there should have been."
)


class NoEnginesRegistered(KernelError):
    pass


class InvalidDeferredID(KernelError):
    pass


class ResultNotCompleted(KernelError):
    pass


class TaskAborted(KernelError):
    pass


class TaskTimeout(KernelError):
    pass


class NotAPendingResult(KernelError):
    pass


class AbortedPendingDeferredError(KernelError):
    pass


class InvalidProperty(KernelError):
    pass


class MissingBlockArgument(KernelError):
    pass


class SecurityError(KernelError):
    pass


class TaskRejectError(KernelError):
    """Raised by task code to say: not on this engine, try another one."""


class EngineError(KernelError):
    """An engine died or was lost while a command was queued or running on it."""


class RemoteError(KernelError):
    """An engine exception whose type could not be rebuilt on the client."""

    def __init__(self, ename: str, evalue: str, traceback: str = "") -> None:
        super().__init__(ename, evalue)
        self.ename = ename
        self.evalue = evalue
        self.traceback = traceback

    def __str__(self) -> str:
        return f"{self.ename}: {self.evalue}"


# The classes a controller-made error may name (it sends names, never pickles).
BY_NAME: dict[str, type[KernelError]] = {
    cls.__name__: cls
    for cls in (
        QueueCleared,
        InvalidEngineID,
        NoEnginesRegistered,
        InvalidDeferredID,
        ResultNotCompleted,
        AbortedPendingDeferredError,
        EngineError,
        ProtocolError,
        TaskAborted,
        TaskTimeout,
        KernelError,
    )
}


def engine_label(ev: BaseException) -> str:
    info = getattr(ev, "_multiengine_engine_info", None)
    if not info:
        return "[Engine Exception]"
    return "[%i:%s]: " % (info["engineid"], info["method"])


class CompositeError(KernelError):
    """Errors from one or more engines of one call.

    ``elist`` holds ``(etype, evalue, None)`` triples, one per failed engine (nested
    CompositeErrors are flattened). ``str(e)`` lists one ``[id:method]: Type: text`` line
    per error; :meth:`raise_exception` re-raises one of them, :meth:`print_tracebacks`
    shows the engines' formatted tracebacks.
    """

    def __init__(self, message: str, elist: list[tuple[Any, BaseException, Any]]) -> None:
        flat: list[tuple[Any, BaseException, Any]] = []
        for et, ev, etb in elist:
            if isinstance(ev, CompositeError):
                flat.extend(ev.args[1])
            else:
                flat.append((et, ev, etb))
        super().__init__(message, flat)
        self.msg = message
        self.elist = flat

    def __str__(self) -> str:
        lines = [self.msg]
        for et, ev, _ in self.elist:
            lines.append("\n" + engine_label(ev) + et.__name__ + ": " + str(ev))
        return "".join(lines)

    def _get_engine_str(self, ev: BaseException) -> str:
        return engine_label(ev)

    def _get_traceback(self, ev: BaseException) -> str:
        return getattr(ev, "_multiengine_traceback_text", None) or "No traceback available"

    def print_tracebacks(self, excid: int | None = None, file: Any = None) -> None:
        out = file if file is not None else sys.stdout
        indices = range(len(self.elist)) if excid is None else [self._check(excid)]
        for i in indices:
            ev = self.elist[i][1]
            print(self._get_engine_str(ev), file=out)
            print(self._get_traceback(ev), file=out)
            print("", file=out)

    def _check(self, excid: int) -> int:
        if not 0 <= excid < len(self.elist):
            raise IndexError("an exception with index %i does not exist" % excid)
        return excid

    def raise_exception(self, excid: int = 0) -> None:
        et, ev, etb = self.elist[self._check(excid)]
        raise ev.with_traceback(etb)


def collect_exceptions(rlist: list[Any], method: str) -> list[Any]:
    """Raise a CompositeError if ``rlist`` holds exceptions, else return it."""
    elist = [(type(r), r, None) for r in rlist if isinstance(r, BaseException)]
    if elist:
        raise CompositeError("one or more exceptions from call to method: " + method, elist)
    return rlist
