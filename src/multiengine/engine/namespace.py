"""An engine's names and properties: reading and binding names, the strict property dict.

Shared by the command table (commands.py) and the task runner (tasks.py); the
interpreter keeps its ``properties`` in a :class:`StrictDict`.
"""

from __future__ import annotations

import copy
import pickle
from typing import Any

from ..errors import InvalidProperty
from ..wire.serialize import rebind_globals

__all__ = ["StrictDict", "lookup", "bind"]


class StrictDict(dict[Any, Any]):
    """Engine properties: values are deep-copied in and out and must pickle."""

    def __setitem__(self, key: Any, value: Any) -> None:
        try:
            pickle.dumps(key)
            pickle.dumps(value)
            value = copy.deepcopy(value)
        except Exception as e:
            raise InvalidProperty(f"can't store property {key!r}: {e}") from None
        super().__setitem__(key, value)

    def __getitem__(self, key: Any) -> Any:
        return copy.deepcopy(super().__getitem__(key))

    def update(self, *args: Any, **kw: Any) -> None:
        for k, v in dict(*args, **kw).items():
            self[k] = v


def lookup(ns: dict[str, Any], key: Any) -> Any:
    """The value of name ``key`` in ``ns``; a NameError as Python would raise it."""
    if not isinstance(key, str):
        raise TypeError(f"keys must be strings, not {type(key).__name__}: {key!r}")
    try:
        return ns[key]
    except KeyError:
        raise NameError(f"name '{key}' is not defined") from None


def bind(ns: dict[str, Any], values: dict[str, Any]) -> None:
    """Bind each name of ``values`` in ``ns``; functions get ``ns`` as their globals."""
    for k, v in values.items():
        if not isinstance(k, str):
            raise TypeError(f"names must be strings, not {type(k).__name__}: {k!r}")
        ns[k] = rebind_globals(v, ns)
