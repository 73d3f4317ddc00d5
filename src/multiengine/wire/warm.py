"""Warm memory: the arenas of the last long lists rebuilt here stay mapped.

Rebuilding a long list of small objects costs more in fresh memory than in unpickling.
CPython's object allocator (pymalloc) hands out small objects from arenas of 1 MiB and
unmaps an arena as soon as the last object in it is freed. A million ints are 32 MB of
objects; when a program drops such a list and then receives the next one (a ``gather``
in a loop, a ``scatter`` that replaces an engine's part), every page of the new list's
arenas is faulted in again, zeroed and charged by the kernel, and unmapped again when
that list is dropped. Measured in one process on the development machine
(``benchmarks/list_transfers.py`` prints these floors): unpickling two 500k-int halves,
joining them and freeing the list takes 37 ms into fresh arenas, 22 ms into arenas
still mapped; in a 1M-int ``gather`` the page faults were 40% of the client's CPU
(``perf``), which went from 43 to 33 ms per call.

So :func:`keep` holds on to one small item in every :data:`STRIDE` items of a rebuilt
list, if it is an ``int`` or a ``float`` (immutable, and no bigger than the items around
it); only the newest :data:`PINS` are kept. Each keeps its arena mapped after the list
is dropped, and the next list is allocated in those arenas' free pages. With 32-byte
ints that is four pins per arena, so the arenas of the last two million or so small
items (about 64 MiB) stay mapped: memory the process used a moment ago and is likely
to use again, reused by any allocation, and never more than :data:`PINS` arenas.
Lists of other objects (strings, arrays, instances) are never pinned by their items.
"""

from __future__ import annotations

from collections import deque
from typing import Any

__all__ = ["PINS", "STRIDE", "keep", "kept", "release"]

STRIDE = 8_192  # items between two pins: four in each 1 MiB arena of 32-byte ints
PINS = 256  # pins kept, the newest: at most as many arenas stay mapped

_pins: deque[Any] = deque(maxlen=PINS)


def keep(items: list[Any]) -> None:
    """Keep the arenas of ``items`` (a list just rebuilt) mapped after it is freed; a
    list shorter than :data:`STRIDE` is left alone."""
    if len(items) < STRIDE:
        return
    for item in items[::STRIDE]:
        if type(item) is int or type(item) is float:
            _pins.append(item)


def kept() -> int:
    """How many items are pinned now (what a test looks at)."""
    return len(_pins)


def release() -> None:
    """Let go of every pin: the arenas of lists already dropped go back to the system."""
    _pins.clear()
