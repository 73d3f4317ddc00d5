"""Large receive buffers, used again once nothing refers to them.

A large array that arrives in pieces is put back together in new writable memory
(``multiengine.wire.chunks``). Fresh memory is slow to fill: the kernel zeroes each page
on first touch, which took about 40% of an engine's CPU while it received 80 MB pushes
over and over (``perf``: ``clear_page_erms``), more than the copy itself. So such memory
comes from anonymous mappings that are kept when the array made on them is garbage
collected, and handed out again for the next buffer of the same (rounded) size: its
pages are already in memory. The user still gets a writable numpy array of its own
(nothing else refers to that memory while it lives).

At most :data:`KEEP` bytes of unused mappings are kept per process, and a mapping
unused for :data:`IDLE` seconds is let go, both at the next take or :func:`prune`. Only a
process that calls :func:`enable` reuses memory: an engine, which prunes whenever it is
idle. Elsewhere (clients) :func:`take` makes new memory each time, so an array the user
dropped never stays mapped for lack of a later transfer. Without numpy, buffers are
plain ``bytearray``\\ s.
"""

from __future__ import annotations

import mmap
import threading
import time
import weakref
from collections import deque
from typing import Any

__all__ = ["IDLE", "KEEP", "MIN_SIZE", "discard", "enable", "prune", "take"]

MIN_SIZE = 1 << 20  # smaller buffers come from malloc, as usual
KEEP = 1 << 30  # bytes of unused mappings a process keeps at most
IDLE = 60.0  # seconds an unused mapping is kept
_ROUND = 2 << 20  # sizes are rounded up to huge pages, so near sizes share mappings

# unused mappings: (size, when freed, mapping). A deque: appended to from finalizers
# (which may run in any thread, even while take() runs), without a lock; only a holder
# of the lock removes items.
_free: deque[tuple[int, float, mmap.mmap]] = deque()
_lock = threading.Lock()  # one taker at a time (finalizers never take it)
_finalizers: dict[int, weakref.finalize[Any, Any]] = {}  # id of a live array -> what gives it back
_enabled = False


def enable() -> None:
    """Reuse memory in this process (one that calls :func:`prune` when idle)."""
    global _enabled
    _enabled = True


def take(size: int) -> Any:
    """A new writable buffer of ``size`` bytes (a numpy ``uint8`` array when numpy is
    installed), on memory used before when there is some of that size."""
    try:
        import numpy
    except ImportError:
        return bytearray(size)
    if size < MIN_SIZE or not _enabled:
        return numpy.empty(size, dtype="u1")
    rounded = -(-size // _ROUND) * _ROUND
    mm = _reuse(rounded)
    if mm is None:
        mm = mmap.mmap(-1, rounded)
        if hasattr(mmap, "MADV_HUGEPAGE"):
            mm.madvise(mmap.MADV_HUGEPAGE)  # fewer, cheaper faults on the first fill
    array = numpy.frombuffer(mm, dtype="u1", count=size)
    key = id(array)
    _finalizers[key] = weakref.finalize(array, _give_back, key, rounded, mm)
    return array


def discard(buffer: Any) -> None:
    """``buffer`` (from :func:`take`) is not to be used again: its memory goes back to
    the system once it is collected (a transfer that broke off)."""
    fin = _finalizers.pop(id(buffer), None)
    if fin is not None:
        fin.detach()


def _reuse(rounded: int) -> mmap.mmap | None:
    with _lock:
        _prune(time.monotonic())
        # (by index: a finalizer may append meanwhile, which moves no earlier item)
        for i in range(len(_free)):
            if _free[i][0] == rounded:
                mm = _free[i][2]
                del _free[i]
                return mm
    return None


def _give_back(key: int, rounded: int, mm: mmap.mmap) -> None:
    """The array on ``mm`` is gone: keep the mapping for the next buffer of its size."""
    _finalizers.pop(key, None)
    _free.append((rounded, time.monotonic(), mm))  # (trimmed to KEEP by the next _prune)


def _prune(now: float) -> None:
    """Drop the mappings unused for IDLE seconds, then the oldest past KEEP bytes (they
    are closed when collected). With the lock held."""
    while _free and now - _free[0][1] >= IDLE:
        _free.popleft()
    total = sum(item[0] for item in _free)
    while total > KEEP and _free:
        total -= _free.popleft()[0]


def prune() -> None:
    """Let go of the mappings unused for :data:`IDLE` seconds, and of the oldest past
    :data:`KEEP` bytes."""
    with _lock:
        _prune(time.monotonic())
