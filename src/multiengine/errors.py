"""The exceptions of multiengine, one hierarchy under :class:`KernelError`.

    KernelError
    ├── CompositeError            errors from one or more engines of one call
    ├── RemoteError               (inside a CompositeError) an engine exception whose type
    │                             could not be rebuilt on the client
    ├── RemoteTraceback           the ``__cause__`` of every exception from an engine: the
    │                             engine id, the call and the engine's traceback
    ├── EngineError               the engine died or was lost with the command on it
    ├── QueueCleared              a queued command was dropped (clear_queue, reset, kill,
    │                             or an earlier error on the same engine)
    ├── InvalidProperty           an engine property that cannot be stored
    ├── InvalidEngineID           a target that is not a registered engine
    ├── NoEnginesRegistered       'all' when no engine is registered
    ├── InvalidDeferredID         unknown, fetched, flushed or double-awaited result id
    ├── ResultNotCompleted        a non-blocking fetch of an unfinished result
    ├── AbortedPendingDeferredError   a pending result was flushed while awaited
    ├── NotAPendingResult         barrier() given something else
    ├── ControllerConnectionError no answer from the controller (alias ``ConnectionError``)
    │   └── ControllerRestarted   the controller restarted (--restore) while a call was on
    │                             its way or running: that call may or may not have run
    ├── ConnectionFileError       a missing connection file or unknown profile
    │                             (also a ``FileNotFoundError``)
    ├── ConfigError               a setting that cannot be used (also a ``ValueError``)
    ├── SerializationError        a value that cannot be pickled or unpickled
    │                             (also a ``pickle.PicklingError``)
    ├── ProtocolError             a malformed message
    ├── TaskAborted               a task aborted before or while it ran
    ├── TaskTimeout               a task past its time limit, or with unmet dependencies
    ├── TaskRejectError           raised by task code: not on this engine, try another
    ├── ClusterStartError         the cluster's processes did not come up
    │   └── LaunchError           a launcher could not start (or stop) its processes
    ├── ClusterNotRunning         no process supervises a cluster for this profile
    │
    │   Seed compatibility: names the seed had, never raised by multiengine
    ├── NotDefined, IdInUse, InvalidClientID, MessageSizeError, ResultAlreadyRetrieved,
    └── ClientError, UnpickleableException, StopLocalExecution, FileTimeoutError,
        MissingBlockArgument, SecurityError

Remote exceptions keep their own type (ZeroDivisionError, NameError, ...) inside a
CompositeError. Each has a :class:`RemoteTraceback` as its ``__cause__``: the engine
id, the call, and the engine's formatted traceback, shown wherever it is printed.
"""

from __future__ import annotations

import functools
import pickle
import re
import sys
from collections.abc import Callable
from typing import Any

__all__ = [
    "AbortedPendingDeferredError",
    "ClientError",
    "ClusterNotRunning",
    "ClusterStartError",
    "CompositeError",
    "ConfigError",
    "ConnectionError",
    "ConnectionFileError",
    "ControllerConnectionError",
    "ControllerRestarted",
    "EngineError",
    "FileTimeoutError",
    "IdInUse",
    "InvalidClientID",
    "InvalidDeferredID",
    "InvalidEngineID",
    "InvalidProperty",
    "KernelError",
    "LaunchError",
    "MessageSizeError",
    "MissingBlockArgument",
    "NO_ENGINES_REGISTERED",
    "NoEnginesRegistered",
    "NotAPendingResult",
    "NotDefined",
    "ProtocolError",
    "QueueCleared",
    "RemoteError",
    "RemoteTraceback",
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


# ---------------------------------------------------------------- errors from the engines
class RemoteTraceback(KernelError):
    """Where an engine's exception came from: set as its ``__cause__`` on the client, so
    a printed traceback shows the engine, the call, and the engine's own traceback.

    ``engine_id`` and ``method`` say where; ``traceback`` is the engine's formatted
    traceback, or None when the controller reported the error (an engine that was lost,
    a command cleared from a queue).
    """

    def __init__(self, engine_id: int, method: str, traceback: str | None = None) -> None:
        super().__init__(engine_id, method, traceback)
        self.engine_id = engine_id
        self.method = method
        self.traceback = traceback

    def __str__(self) -> str:
        where = f"[engine {self.engine_id}] {self.method}"
        if self.traceback is None:
            return f"{where}: reported by the controller (no engine traceback)"
        return f'{where}, the engine\'s traceback:\n"""\n{self.traceback.rstrip()}\n"""'


def _on_a_terminal() -> bool:
    return sys.platform != "win32" and bool(getattr(sys.stdout, "isatty", lambda: False)())


# How many engines' tracebacks IPython shows for one error; the others get one line.
RENDER_TRACEBACKS = 4


def render_remote(ev: BaseException, engines: list[int] | None = None) -> list[str]:
    """What IPython shows for an exception from an engine: ``[engine N] Type: text`` and
    the engine's own traceback, none of the client's frames (``_render_traceback_``).
    ``engines``: the ids to name in the header when several engines failed alike."""
    red, normal = ("\x1b[0;31m", "\x1b[0m") if _on_a_terminal() else ("", "")
    origin = remote_origin(ev)
    if engines is None:
        engines = [origin.engine_id] if origin is not None else []
    where = ""
    if len(engines) == 1:
        where = f"[engine {engines[0]}] "
    elif engines:
        where = f"[engines {', '.join(map(str, engines))}] "
    name, text = type(ev).__name__, str(ev).strip()
    if isinstance(ev, RemoteError):
        name, text = ev.ename, ev.evalue.strip()
    lines = [f"{red}{where}{name}{': ' + text if text else ''}{normal}"]
    if origin is not None and origin.traceback:
        lines.extend(origin.traceback.rstrip("\n").splitlines())
    return lines


_ENGINE_FILE = re.compile(r"<engine-\d+-input-\d+>")


def _alike(ev: BaseException) -> tuple[str, str, str]:
    """What makes two engines' failures the same one, but for the engine's id and the
    command's number in the traceback's file names."""
    origin = remote_origin(ev)
    tb = (origin.traceback or "") if origin is not None else ""
    return (
        type(ev).__name__,
        _ENGINE_FILE.sub("<engine-input>", str(ev)),
        _ENGINE_FILE.sub("<engine-input>", tb),
    )


def render_remote_traceback(ev: BaseException) -> Callable[[], list[str]]:
    """A ``_render_traceback_`` for an engine's exception raised as it is (``tc.map``,
    ``raise_exception``), set on the instance since its type is the user's own."""
    return functools.partial(_render_with_notes, ev)


def _render_with_notes(ev: BaseException) -> list[str]:
    return render_remote(ev) + [str(n) for n in getattr(ev, "__notes__", ())]


def remote_origin(ev: BaseException) -> RemoteTraceback | None:
    """The :class:`RemoteTraceback` of an exception that came from an engine, else None."""
    cause = ev.__cause__
    return cause if isinstance(cause, RemoteTraceback) else None


def engine_label(ev: BaseException) -> str:
    origin = remote_origin(ev)
    if origin is None:
        return "[Engine Exception]"
    return "[%i:%s]: " % (origin.engine_id, origin.method)


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

    def _render_traceback_(self) -> list[str]:
        """What IPython shows instead of its own traceback: each failed engine's
        ``[engine N] Type: text`` and its own traceback (the first
        ``RENDER_TRACEBACKS`` in full, one line for the others), then this error's
        summary; none of multiengine's frames."""
        groups: dict[tuple[str, str, str], tuple[BaseException, list[int]]] = {}
        for _, ev, _ in self.elist:  # engines that failed alike are shown once
            origin = remote_origin(ev)
            ids = groups.setdefault(_alike(ev), (ev, []))[1]
            if origin is not None:
                ids.append(origin.engine_id)
        lines: list[str] = []
        for i, (ev, ids) in enumerate(groups.values()):
            rendered = render_remote(ev, ids)
            lines.extend(rendered if i < RENDER_TRACEBACKS else rendered[:1])
            if i < RENDER_TRACEBACKS:
                lines.append("")
        if len(groups) > RENDER_TRACEBACKS:
            lines.append("")
        lines.append(f"{type(self).__name__}: {self.msg}")
        lines.extend(getattr(self, "__notes__", ()))
        return lines

    def _get_engine_str(self, ev: BaseException) -> str:
        return engine_label(ev)

    def _get_traceback(self, ev: BaseException) -> str:
        origin = remote_origin(ev)
        return (origin.traceback if origin else None) or "No traceback available"

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
    """Raise a CompositeError if ``rlist`` holds exceptions, else return it.

    The first engine's exception becomes the CompositeError's ``__cause__``, so a printed
    traceback shows it, with the engine's own traceback, above the summary.
    """
    elist = [(type(r), r, None) for r in rlist if isinstance(r, BaseException)]
    if elist:
        err = CompositeError("one or more exceptions from call to method: " + method, elist)
        if len(elist) > 1:
            err.add_note(
                f"{len(elist)} engines failed; e.print_tracebacks() shows every traceback, "
                "e.raise_exception(i) raises the i-th exception"
            )
        raise err from elist[0][1]
    return rlist


class RemoteError(KernelError):
    """An engine exception whose type could not be rebuilt on the client."""

    def __init__(self, ename: str, evalue: str, traceback: str = "") -> None:
        super().__init__(ename, evalue)
        self.ename = ename
        self.evalue = evalue
        self.traceback = traceback

    def __str__(self) -> str:
        return f"{self.ename}: {self.evalue}"


class EngineError(KernelError):
    """An engine died or was lost while a command was queued or running on it."""


class QueueCleared(KernelError):
    """A queued command was dropped: clear_queue, reset, kill, or an earlier error."""


class InvalidProperty(KernelError):
    """An engine property that cannot be stored."""


# ---------------------------------------------------------------- targets and results
class InvalidEngineID(KernelError):
    """A target that is not a registered engine (or not an int, list of ints or 'all')."""


NO_ENGINES_REGISTERED = (
    "There are no engines registered. Check the logs if you think there should have been."
)


class NoEnginesRegistered(KernelError):
    """'all' (or a map, or a gather) when no engine is registered."""


class InvalidDeferredID(KernelError):
    """A result id that is unknown, already retrieved, flushed or already being awaited."""


class ResultNotCompleted(KernelError):
    """A non-blocking fetch of a result that is not finished yet."""


class AbortedPendingDeferredError(KernelError):
    """A result was flushed while a blocking fetch waited for it."""


class NotAPendingResult(KernelError):
    """``barrier()`` was given something that is not a pending result."""


# ---------------------------------------------------------------- connection and wire
class ControllerConnectionError(KernelError):
    """The controller did not answer (not running, unreachable, or a wrong key)."""


ConnectionError = ControllerConnectionError  # the seed's name  # noqa: A001


class ControllerRestarted(ControllerConnectionError):
    """The controller restarted (``--restore``) while this call was on its way or running.

    Results kept by the controller survive a restart, and a client takes up its tasks
    and its requests that are safe to send twice by itself; a call that is not (an
    ``execute``, a ``push``) fails with this error: it may or may not have run. The
    engines kept their namespaces.
    """


class ConnectionFileError(KernelError, FileNotFoundError):
    """A connection file is missing, or a profile has no cluster directory."""


class SerializationError(KernelError, pickle.PicklingError):
    """A value could not be pickled (client side) or unpickled."""


class ProtocolError(KernelError):
    """A malformed message."""


class ConfigError(KernelError, ValueError):
    """A setting (command line, environment, cluster.toml or keyword) that cannot be used;
    ``settings`` names the fields concerned (multiengine.config)."""

    def __init__(self, message: str, settings: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.settings = settings


# ---------------------------------------------------------------- tasks
class TaskAborted(KernelError):
    """A task was aborted before or while it ran."""


class TaskTimeout(KernelError):
    """A task ran past its time limit, or its dependencies can no longer be met."""


class TaskRejectError(KernelError):
    """Raised by task code to say: not on this engine, try another one."""


# ---------------------------------------------------------------- starting a cluster
class ClusterStartError(KernelError):
    """The cluster's processes did not come up; the message ends with their output."""


class LaunchError(ClusterStartError):
    """A launcher could not start (or stop) its processes; the message ends with their output."""


class ClusterNotRunning(KernelError):
    """No process supervises a cluster for this profile: ``cluster engines ...`` and
    ``Cluster.from_profile`` have nothing to talk to."""


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
        ControllerRestarted,
        SerializationError,
        KernelError,
    )
}


# ---------------------------------------------------------------- seed compatibility
# Seed compatibility: names the seed had, never raised by multiengine.
# IPython.kernel defined them; they stay importable so that code catching them still runs.


class NotDefined(KernelError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(name)

    def __repr__(self) -> str:
        return f"<NotDefined: {self.name}>"

    __str__ = __repr__


class IdInUse(KernelError):
    pass


class InvalidClientID(KernelError):
    pass


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


class MissingBlockArgument(KernelError):
    pass


class SecurityError(KernelError):
    pass
