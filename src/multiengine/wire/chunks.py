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

__all__ = ["PIECE", "STREAM_THRESHOLD", "split", "assemble", "total_size"]

PIECE = 4 * 1024 * 1024
STREAM_THRESHOLD = 8 * 1024 * 1024


def _mv(buf: Any) -> memoryview:
    b = buf.buffer if hasattr(buf, "buffer") and not isinstance(buf, memoryview) else buf
    return memoryview(b).cast("B")


def total_size(buffers: list[Any]) -> int:
    return sum(_mv(b).nbytes for b in buffers)


def split(buffers: list[Any]) -> tuple[list[int], list[memoryview]]:
    """The sizes of ``buffers`` and their pieces, in order, none over :data:`PIECE`."""
    sizes: list[int] = []
    pieces: list[memoryview] = []
    for b in buffers:
        mv = _mv(b)
        sizes.append(mv.nbytes)
        for off in range(0, mv.nbytes, PIECE):
            pieces.append(mv[off : off + PIECE])
        if mv.nbytes == 0:
            pieces.append(mv)
    return sizes, pieces


def assemble(sizes: list[int], pieces: list[Any]) -> list[Any]:
    """Rebuild buffers of ``sizes`` from ``pieces`` (zmq Frames or bytes-likes).

    A buffer that came as one piece is used as it is (no copy); others are copied
    into a new writable buffer. That buffer comes from numpy when it is installed:
    numpy asks for transparent huge pages, which makes filling fresh memory about
    four times faster than a bytearray (first-touch page faults dominate the copy).
    """
    out: list[Any] = []
    k = 0
    for size in sizes:
        n = max(1, -(-size // PIECE))
        if k + n > len(pieces):
            raise ValueError("fewer pieces than the announced buffer sizes need")
        if n == 1:
            out.append(pieces[k])
        else:
            buf = _new_buffer(size)
            view = memoryview(buf).cast("B")
            off = 0
            for piece in pieces[k : k + n]:
                mv = _mv(piece)
                view[off : off + mv.nbytes] = mv
                off += mv.nbytes
            if off != size:
                raise ValueError(f"pieces add up to {off} bytes, not the announced {size}")
            out.append(buf)
        k += n
    if k != len(pieces):
        raise ValueError("more pieces than the announced buffer sizes need")
    return out


def _new_buffer(size: int) -> Any:
    try:
        import numpy
    except ImportError:
        return bytearray(size)
    return numpy.empty(size, dtype="u1")


def count(sizes: list[int]) -> int:
    return sum(max(1, -(-s // PIECE)) for s in sizes)
