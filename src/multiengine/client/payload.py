"""How a call's arguments travel: one pickle for every target, or one per target, with
large buffers sent as pieces (``multiengine.wire.chunks``), or, to engines of this
host, through shared memory (``multiengine.wire.shm``)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..wire import chunks, shm
from ..wire import protocol as P
from ..wire.serialize import dumps

__all__ = [
    "Dumped",
    "Payload",
    "dump_payload",
    "plan_payload",
    "plan_dumped",
    "plan_reply",
    "plan_shared",
]


@dataclass(slots=True)
class Payload:
    """What a ``submit`` carries: header fields, frames, and the pieces that follow it."""

    fields: dict[str, Any] = field(default_factory=dict)  # parts, xfer, raw
    content: Any = b""
    buffers: list[Any] = field(default_factory=list)
    pieces: list[tuple[int, Any]] = field(default_factory=list)  # (part index, piece)
    # through shared memory: let the engines of these reader slots go of the block
    release: Callable[[Sequence[int]], None] | None = None


@dataclass(slots=True)
class Dumped:
    """Arguments pickled: one (content, buffers) for every target, or one per part."""

    items: list[tuple[bytes, list[Any]]]
    per_part: bool

    @property
    def size(self) -> int:
        """Bytes of out-of-band buffers in all."""
        return sum(chunks.total_size(b) for _, b in self.items if b)


def dump_payload(args: tuple[Any, ...], parts: Sequence[tuple[Any, ...]] | None = None) -> Dumped:
    if parts is None:
        return Dumped([dumps(args) if args else (b"", [])], False)
    return Dumped([dumps(p) for p in parts], True)


def plan_payload(args: tuple[Any, ...], parts: Sequence[tuple[Any, ...]] | None = None) -> Payload:
    """Pickle ``args`` (the same for every target), or each of ``parts`` (one per target)."""
    return plan_dumped(dump_payload(args, parts))


def plan_dumped(dumped: Dumped) -> Payload:
    """Frames for pickled arguments, over the network.

    Buffers that reach :data:`~multiengine.wire.chunks.STREAM_THRESHOLD` in total are cut
    into pieces, announced in ``xfer`` (one :class:`~multiengine.wire.protocol.Xfer` per
    part) and sent after the message; smaller ones ride in it as raw frames.
    """
    if not dumped.per_part:
        ((content, buffers),) = dumped.items
        if not buffers:
            return Payload(content=content)
        if chunks.total_size(buffers) < chunks.STREAM_THRESHOLD:
            return Payload({"raw": True}, content, buffers)
        xfer, cut = chunks.cut(buffers)
        return Payload({"xfer": [xfer.to_wire()]}, content, [], [(0, c) for c in cut])
    items = dumped.items
    if dumped.size < chunks.STREAM_THRESHOLD:
        counts, frames, raw = P.pack_parts(items)
        fields: dict[str, Any] = {"parts": counts}
        if raw:
            fields["raw"] = raw
        return Payload(fields, b"", frames)
    xfers: list[Any] = []
    pieces: list[tuple[int, Any]] = []
    for i, (_, bufs) in enumerate(items):
        xfer, cut = chunks.cut(bufs)
        xfers.append(xfer.to_wire())
        pieces.extend((i, c) for c in cut)
    counts, frames, _ = P.pack_parts((content, []) for content, _ in items)
    return Payload({"parts": counts, "xfer": xfers}, b"", frames, pieces)


def plan_reply(dumped: Dumped, holder: int = 0) -> Payload | None:
    """A request with no buffers of its own, asking that large answers from engines of
    this host come back through shared memory (a blocking ``pull``); ``holder``: this
    process's PID when it maps them read-only (``shared=True``). Each engine sees for
    itself whether it is on this host, so the targets stay as they are. None when the
    request has buffers or parts (it then goes as usual)."""
    if dumped.per_part or dumped.items[0][1]:
        return None
    node = shm.node_identity()
    envelope = shm.Envelope(bytes(dumped.items[0][0]), [], node, False, node, holder)
    return Payload(content=envelope.to_bytes())


def plan_shared(
    dumped: Dumped,
    readers: Sequence[int],
    *,
    shared: bool = False,
    reply: bool = False,
    holder: int = 0,
    local: Sequence[bool] | None = None,
) -> Payload | None:
    """Envelopes for engines of this host (reader slots ``readers``): every buffer copied
    once into one block of this process's pool, the content frames holding references.
    ``shared``: the engines map the buffers read-only instead of copying them;
    ``reply``: they may answer through shared memory too (``holder``: as for
    :func:`plan_reply`). ``local``: per target, whether
    it is an engine of this host; the others then get their bytes over the network, every
    target getting a part of its own. None when the pool is full."""
    node = shm.node_identity()
    items = dumped.items
    if local is not None and not dumped.per_part:
        items = items * len(local)  # one part per target; the block holds one copy
    mine = list(local) if local is not None else [True] * len(items)
    if dumped.per_part or local is None:
        groups = [bufs if m else [] for (_, bufs), m in zip(items, mine, strict=True)]
    else:
        groups = [dumped.items[0][1]]
    refs: list[list[list[int]]] = [[] for _ in groups]
    release = None
    if any(groups):
        pool = shm.local().pool
        try:
            got = pool.share(groups, readers)
        except OSError:  # no memory for a block, no descriptor left...: the network then
            return None
        if got is None:
            return None
        refs, (ino, generation) = got
        release = functools.partial(pool.release, ino, generation)
    out: list[tuple[bytes, list[Any]]] = []
    for i, ((content, bufs), m) in enumerate(zip(items, mine, strict=True)):
        if not m:
            out.append((content, bufs))
            continue
        r = refs[0] if local is not None and not dumped.per_part else refs[i]
        env = shm.Envelope(
            bytes(content), r, node, shared, node if reply else "", holder if reply else 0
        )
        out.append((env.to_bytes(), []))
    if local is None and not dumped.per_part:
        return Payload(content=out[0][0], release=release)
    payload = plan_dumped(Dumped(out, True))
    payload.release = release
    return payload
