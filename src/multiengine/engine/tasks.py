"""Running one load-balanced task on an engine.

A task arrives as a plain dict made by the client (the engine imports no client
code): ``kind`` is ``"string"`` (push, execute an expression, pull names) or ``"map"``
(call a function); ``clear_before``/``clear_after`` reset the namespace around it;
``depend`` is the deprecated engine-properties predicate; ``retry_on`` says which
failures the scheduler may retry.

A failure leaves :class:`~multiengine.wire.protocol.TaskFlags` in
``interp.task_flags``, which the engine puts in its reply header for the controller's
scheduler (``why``: ``"reject"`` or ``"unmet"``, else ``None``; ``retry``: whether
``retry_on`` admits the failure).
"""

from __future__ import annotations

import pickle
from typing import Any

from ..errors import TaskRejectError
from ..wire.protocol import TaskFlags
from ..wire.serialize import rebind_globals
from .interpreter import Interpreter

__all__ = ["run_task", "UnmetDependency"]


class UnmetDependency(Exception):
    """The task's ``depend`` predicate is false on this engine."""


def _check_depend(interp: Interpreter, depend: Any) -> None:
    try:
        ok = bool(depend(dict(interp.properties.items())))
    except Exception:
        ok = False  # as in the seed, a predicate that raises counts as unmet
    if not ok:
        raise UnmetDependency("the task's dependencies are not met on this engine")


_functions: dict[bytes, Any] = {}  # a map's function, unpickled once for all its tasks


def _function(spec: dict[str, Any]) -> Any:
    data = spec.get("function_pickle")
    if data is None:
        return spec["function"]
    f = _functions.get(data)
    if f is None:
        if len(_functions) >= 64:
            _functions.clear()
        f = _functions[data] = pickle.loads(data)
    return f


def run_task(interp: Interpreter, spec: dict[str, Any]) -> Any:
    try:
        if spec.get("depend") is not None:
            _check_depend(interp, spec["depend"])
        try:
            if spec.get("clear_before"):
                interp.reset()
            if spec["kind"] == "string":
                interp.push(spec.get("push") or {})
                if spec.get("expression"):
                    try:
                        interp.execute(spec["expression"])
                    finally:  # what it printed goes with the task's outcome
                        ran = interp.history.get(interp.number, {})
                        if ran.get("stdout") or ran.get("stderr"):
                            interp.output = (ran.get("stdout", ""), ran.get("stderr", ""))
                return {k: interp.lookup(k) for k in spec.get("pull") or ()}
            f = rebind_globals(_function(spec), interp.namespace)
            if "chunk" in spec:
                return [f(*item) for item in spec["chunk"]]
            return f(*spec.get("args") or (), **spec.get("kwargs") or {})
        finally:
            if spec.get("clear_after"):
                interp.reset()
    except BaseException as e:
        why = "unmet" if isinstance(e, UnmetDependency) else None
        why = "reject" if isinstance(e, TaskRejectError) else why
        retry_on = spec.get("retry_on", (Exception,))  # () when only engine loss is retried
        interp.task_flags = TaskFlags(why, isinstance(e, retry_on))
        raise
