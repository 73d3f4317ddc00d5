"""Parallel map over explicit engines: the mapper object and the @parallel decorator."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .multiengine import MultiEngineClient

__all__ = ["MultiEngineMapper", "ParallelFunction"]


class MultiEngineMapper:
    """``map(func, *seqs)`` with fixed ``dist``, ``targets`` and ``block``."""

    def __init__(
        self,
        multiengine: MultiEngineClient,
        dist: str = "b",
        targets: Any = "all",
        block: bool = True,
    ) -> None:
        self.multiengine = multiengine
        self.dist = dist
        self.targets = targets
        self.block = block

    def map(self, func: Any, *sequences: Any) -> Any:
        return self.multiengine.raw_map(
            func, sequences, dist=self.dist, targets=self.targets, block=self.block
        )


class ParallelFunction:
    """A decorator: ``f(seq, ...)`` maps ``f`` over the sequences on the engines.

    Targets and block left as ``None`` are read from the client at each call (contract
    decision 4), so changing ``mec.targets`` later takes effect.
    """

    def __init__(
        self,
        multiengine: MultiEngineClient,
        dist: str = "b",
        targets: Any = None,
        block: bool | None = None,
    ) -> None:
        self.multiengine = multiengine
        self.dist = dist
        self.targets = targets
        self.block = block

    def __call__(self, func: Callable[..., Any] | str) -> Callable[..., Any]:
        def call_function(*sequences: Any) -> Any:
            return self.multiengine.raw_map(
                func, sequences, dist=self.dist, targets=self.targets, block=self.block
            )

        if callable(func):
            functools.update_wrapper(call_function, func)
        return call_function
