"""Reading a request's targets, and its per-target payloads (scatter, map)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from ..errors import NO_ENGINES_REGISTERED
from ..wire.protocol import split_parts

__all__ = ["BadTargets", "resolve_targets", "per_target_payloads"]


class BadTargets(Exception):
    """Targets that name no engine: answered to the caller directly (not per engine)."""

    def __init__(self, ename: str, evalue: str) -> None:
        super().__init__(ename, evalue)
        self.ename = ename
        self.evalue = evalue


def resolve_targets(targets: Any, engines: Collection[int]) -> list[int]:
    """The engine ids ``targets`` names (``'all'``, an int, or a list of ints), in order."""
    if targets == "all":
        if not engines:
            raise BadTargets("NoEnginesRegistered", NO_ENGINES_REGISTERED)
        return sorted(engines)
    if isinstance(targets, bool):
        raise BadTargets(
            "InvalidEngineID", f"targets argument is not an int, list of ints or 'all': {targets!r}"
        )
    if isinstance(targets, int):
        targets = [targets]
    if not isinstance(targets, list) or not all(
        isinstance(t, int) and not isinstance(t, bool) for t in targets
    ):
        raise BadTargets(
            "InvalidEngineID", f"targets argument is not an int, list of ints or 'all': {targets!r}"
        )
    for t in targets:
        if t not in engines:
            raise BadTargets("InvalidEngineID", f"Engine with id {t} is not registered")
    return targets


def per_target_payloads(
    content: Any, buffers: list[Any], splits: list[int] | None, n: int
) -> list[tuple[Any, list[Any]]]:
    """(content, buffers) for each of ``n`` targets: the same for all, or cut by ``splits``."""
    if splits is None:
        return [(content, buffers)] * n
    out = split_parts(splits, buffers)
    if len(out) != n:
        raise BadTargets("ProtocolError", "parts do not match targets")
    return out
