"""Engine properties (deprecated in the seed, kept): values deep-copied in and out."""

from __future__ import annotations

import copy
import pickle
from typing import Any

from ..errors import InvalidProperty

__all__ = ["StrictDict"]


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
