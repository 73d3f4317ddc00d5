"""Large buffers travel in pieces, so the controller can relay them as they arrive.

ZeroMQ hands a multipart message over only once all of it has arrived, so a relay
holding an 80 MB message would sit idle while it arrives and then send it: half the
throughput of a direct link (shared/spec/limits.md). Buffers past
:data:`STREAM_THRESHOLD` bytes in total are therefore cut into pieces of at most
:data:`PIECE` bytes, each sent as its own small ``chunk`` message after the message
that announces them (``header["xfer"]``: the buffer sizes and the piece count). The
controller forwards each piece the moment it has it; the receiver puts the pieces back
into buffers of the announced sizes.
"""

from __future__ import annotations

from typing import Any

from . import recycle
from .protocol import Xfer

__all__ = ["PIECE", "STREAM_THRESHOLD", "Assembler", "assemble", "cut", "split", "total_size"]

PIECE = 4 * 1024 * 1024
STREAM_THRESHOLD = 8 * 1024 * 1024


def _mv(buf: Any) -> memoryview:
    b = buf.buffer if hasattr(buf, "buffer") and not isinstance(buf, memoryview) else buf
    return memoryview(b).cast("B")


def total_size(buffers: list[Any]) -> int:
    return sum(_mv(b).nbytes for b in buffers)


def split(buffers: list[Any], piece: int | None = None) -> tuple[list[int], list[memoryview]]:
    """The sizes of ``buffers`` and their pieces, in order, none over ``piece`` bytes."""
    piece = piece or PIECE
    sizes: list[int] = []
    pieces: list[memoryview] = []
    for b in buffers:
        mv = _mv(b)
        sizes.append(mv.nbytes)
        for off in range(0, mv.nbytes, piece):
            pieces.append(mv[off : off + piece])
        if mv.nbytes == 0:
            pieces.append(mv)
    return sizes, pieces


class Assembler:
    """Puts pieces back into buffers of the announced ``sizes``, one piece at a time.

    Each piece is copied as it arrives, so the copy overlaps the wait for the next
    one. A buffer that comes as a single piece is used as it is (no copy). Buffers
    made of several pieces are new writable memory, from numpy when it is installed:
    numpy asks for transparent huge pages, which makes filling fresh memory about four
    times faster than a bytearray (first-touch page faults dominate such a copy).
    """

    def __init__(self, sizes: list[int], piece: int | None = None) -> None:
        self.sizes = list(sizes)
        self.piece = piece or PIECE
        self.buffers: list[Any] = []
        self.expected = count(self.sizes, self.piece)
        self.received = 0
        self._view: memoryview | None = None
        self._current: Any = None
        self._off = 0

    @property
    def done(self) -> bool:
        return self.received == self.expected

    def discard(self) -> None:
        """The transfer broke off: the memory of the partial buffer is not kept for reuse."""
        for buffer in (*self.buffers, self._current):
            if buffer is not None:
                recycle.discard(buffer)
        self._view = self._current = None

    def add(self, piece: Any) -> None:
        if self.done:
            raise ValueError("more pieces than the announced buffer sizes need")
        self.received += 1
        size = self.sizes[len(self.buffers)]
        if size <= self.piece:
            self.buffers.append(piece)
            return
        if self._view is None:
            self._current = _new_buffer(size)
            self._view = memoryview(self._current).cast("B")
            self._off = 0
        mv = _mv(piece)
        if self._off + mv.nbytes > size:
            raise ValueError(f"pieces overflow the announced size {size}")
        self._view[self._off : self._off + mv.nbytes] = mv
        self._off += mv.nbytes
        if self._off == size:
            self.buffers.append(self._current)
            self._view = self._current = None


def assemble(sizes: list[int], pieces: list[Any], piece: int | None = None) -> list[Any]:
    """Rebuild buffers of ``sizes`` from all their ``pieces`` (zmq Frames or bytes-likes)."""
    asm = Assembler(sizes, piece)
    for piece in pieces:
        asm.add(piece)
    if not asm.done:
        raise ValueError("fewer pieces than the announced buffer sizes need")
    return asm.buffers


def _new_buffer(size: int) -> Any:
    return recycle.take(size)


def count(sizes: list[int], piece: int | None = None) -> int:
    """How many pieces buffers of ``sizes`` are cut into."""
    piece = piece or PIECE
    return sum(max(1, -(-s // piece)) for s in sizes)


def cut(buffers: list[Any], piece: int | None = None) -> tuple[Xfer, list[memoryview]]:
    """The pieces of ``buffers``, and the ``xfer`` header item that announces them."""
    piece = piece or PIECE
    sizes, pieces = split(buffers, piece)
    return Xfer(sizes, len(pieces), piece), pieces
