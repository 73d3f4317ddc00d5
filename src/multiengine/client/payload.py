"""How a call's arguments travel: one pickle for every target, or one per target, with
large buffers sent as pieces (``multiengine.wire.chunks``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..wire import chunks
from ..wire import protocol as P
from ..wire.serialize import dumps

__all__ = ["Payload", "plan_payload"]


@dataclass(slots=True)
class Payload:
    """What a ``submit`` carries: header fields, frames, and the pieces that follow it."""

    fields: dict[str, Any] = field(default_factory=dict)  # parts, xfer, raw
    content: Any = b""
    buffers: list[Any] = field(default_factory=list)
    pieces: list[tuple[int, Any]] = field(default_factory=list)  # (part index, piece)


def plan_payload(args: tuple[Any, ...], parts: Sequence[tuple[Any, ...]] | None = None) -> Payload:
    """Pickle ``args`` (the same for every target), or each of ``parts`` (one per target).

    Buffers that reach :data:`~multiengine.wire.chunks.STREAM_THRESHOLD` in total are cut
    into pieces, announced in ``xfer`` (one :class:`~multiengine.wire.protocol.Xfer` per
    part) and sent after the message; smaller ones ride in it as raw frames.
    """
    if parts is None:
        content, buffers = dumps(args) if args else (b"", [])
        if not buffers:
            return Payload(content=content)
        if chunks.total_size(buffers) < chunks.STREAM_THRESHOLD:
            return Payload({"raw": True}, content, buffers)
        xfer, cut = chunks.cut(buffers)
        return Payload({"xfer": [xfer.to_wire()]}, content, [], [(0, c) for c in cut])
    dumped = [dumps(p) for p in parts]
    if sum(chunks.total_size(b) for _, b in dumped) < chunks.STREAM_THRESHOLD:
        counts, frames, raw = P.pack_parts(dumped)
        fields: dict[str, Any] = {"parts": counts}
        if raw:
            fields["raw"] = raw
        return Payload(fields, b"", frames)
    xfers: list[Any] = []
    pieces: list[tuple[int, Any]] = []
    for i, (_, bufs) in enumerate(dumped):
        xfer, cut = chunks.cut(bufs)
        xfers.append(xfer.to_wire())
        pieces.extend((i, c) for c in cut)
    counts, frames, _ = P.pack_parts((content, []) for content, _ in dumped)
    return Payload({"parts": counts, "xfer": xfers}, b"", frames, pieces)
