"""The commands an engine runs, by name: what each does with its arguments.

Each handler takes the :class:`Interpreter` and the unpickled argument tuple and
returns the value sent back to the client.
"""

from __future__ import annotations

import builtins
import types
from collections.abc import Callable
from typing import Any

from ..wire import slices, warm
from ..wire.serialize import Serialized, rebind_globals, serialize
from .interpreter import Interpreter
from .output import Captured
from .tasks import run_task

__all__ = ["COMMANDS"]


def pull(interp: Interpreter, keys: Any) -> Any:
    if isinstance(keys, str):
        return interp.lookup(keys)
    return [interp.lookup(k) for k in keys]


def push(interp: Interpreter, namespace: dict[str, Any]) -> None:
    ns = interp.namespace
    for key, value in namespace.items():
        if type(value) is list:
            warm.keep(value)  # a scatter in a loop: the next part goes in the same memory
        old = ns.get(key)
        if type(old) is list and len(old) >= slices.MIN_ITEMS:
            # a long list replaced (a scatter in a loop): freeing its items took a
            # quarter of the engine's time per 500k-int part; it is freed after the
            # answer has gone instead (Interpreter.retired)
            interp.retired.append(old)
    interp.push(namespace)


def push_serialized(interp: Interpreter, namespace: dict[str, Serialized]) -> None:
    push(interp, {k: v.unserialize() for k, v in namespace.items()})


def pull_serialized(interp: Interpreter, keys: Any) -> Any:
    if isinstance(keys, str):
        return serialize(interp.lookup(keys))
    return [serialize(interp.lookup(k)) for k in keys]


def _printing(run: Callable[..., Any]) -> Callable[..., Any]:
    """A command that calls user functions: what they print is kept (``interp.output``)
    and, with live output, streamed."""

    def command(interp: Interpreter, *args: Any) -> Any:
        capture = Captured(interp.streamer)
        try:
            with capture:
                return run(interp, *args)
        finally:
            texts = capture.texts()
            if texts is not None:
                prior = interp.output  # a StringTask's execute keeps its own
                if prior is not None:
                    texts = (texts[0] + prior[0], texts[1] + prior[1])
                interp.output = texts

    return command


def apply(
    interp: Interpreter, f: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    f = rebind_globals(f, interp.namespace)
    return f(*args, **kwargs)


def map_chunk(interp: Interpreter, f: Any, items: Any, single: bool = False) -> list[Any]:
    """``[f(*item) for item in items]``; with ``single``, ``items`` holds the arguments
    themselves (a map over one sequence), and ``[f(item) ...]``."""
    if isinstance(f, str):  # a name on the engines, or a builtin such as 'abs'
        f = (
            interp.namespace[f]
            if f in interp.namespace
            else getattr(builtins, f, None) or interp.lookup(f)
        )
    elif isinstance(f, types.FunctionType):
        f = rebind_globals(f, interp.namespace)
    if single:
        return list(map(f, items))
    return [f(*item) for item in items]


def reset(interp: Interpreter) -> None:
    interp.reset()


def keys(interp: Interpreter) -> list[str]:
    return interp.keys()


def get_result(interp: Interpreter, i: int | None = None) -> dict[str, Any]:
    return interp.get_result(i)


def execute(interp: Interpreter, code: str) -> dict[str, Any]:
    result = interp.execute(code)
    result["id"] = interp.engine_id
    return result


def set_properties(interp: Interpreter, props: dict[Any, Any]) -> None:
    interp.properties.update(props)


def get_properties(interp: Interpreter, keys: Any = None) -> dict[Any, Any]:
    props = interp.properties
    if keys is None:
        return {k: props[k] for k in props}
    if isinstance(keys, str):
        keys = (keys,)
    return {k: props[k] for k in keys}


def has_properties(interp: Interpreter, keys: Any) -> list[bool]:
    if isinstance(keys, str):
        keys = (keys,)
    return [k in interp.properties for k in keys]


def del_properties(interp: Interpreter, keys: Any) -> None:
    if isinstance(keys, str):
        keys = (keys,)
    for k in keys:
        dict.pop(interp.properties, k, None)


def clear_properties(interp: Interpreter) -> None:
    interp.properties.clear()


def task(interp: Interpreter, spec: dict[str, Any]) -> Any:
    return run_task(interp, spec)


def kill(interp: Interpreter) -> None:
    return None  # the main loop exits after replying


def _result_with_id(f: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    def wrapped(interp: Interpreter, *args: Any) -> dict[str, Any]:
        r = dict(f(interp, *args))
        r["id"] = interp.engine_id
        return r

    return wrapped


COMMANDS: dict[str, Callable[..., Any]] = {
    "execute": execute,
    "push": push,
    "pull": pull,
    "push_function": push,
    "pull_function": pull,
    "push_serialized": push_serialized,
    "pull_serialized": pull_serialized,
    "get_result": _result_with_id(get_result),
    "reset": reset,
    "keys": keys,
    "kill": kill,
    "apply": _printing(apply),
    "map": _printing(map_chunk),
    "task": _printing(task),
    "set_properties": set_properties,
    "get_properties": get_properties,
    "has_properties": has_properties,
    "del_properties": del_properties,
    "clear_properties": clear_properties,
}
