"""Long lists in slices: pickled a slice at a time, unpickled as the slices arrive.

A blocking ``gather`` of a 1M-int list from two engines used to wait for each engine's
whole pickle to be made, relayed and verified before the client started unpickling,
and unpickling (making the int objects) is most of the work: about 30 ms of the ~57.
An engine's answer to ``pull`` that is a list of at least :data:`MIN_ITEMS` items is
therefore sent with encoding ``s`` (``SLICES`` in ``wire/protocol.py``): the reply
announces how many slices follow, and each slice (:data:`FIRST_ITEMS` items, then
:data:`SLICE_ITEMS` each) is pickled and sent as a piece of its own at once, so that
the client unpickles the first slices while the engine still pickles the later ones
and the controller relays them (docs/protocol.md §5, §6).

The slices are pickled by one pickler, one after the other, so they share its memo: an
object met in an early slice is referred to, not copied, by the later ones (items that
are the same object stay the same object), and the list itself is memo entry 0, so a
list that contains itself comes back containing the rebuilt list. They must therefore be
unpickled in order (:class:`Loader`); while slices memoize nothing but themselves (see
``_COMPACT``), both sides start each one with a fresh memo.

Slices are pickle streams, so never ``raw``: each travels with its SHA-256 digest in
the signed header (``dg``, checked by the client; the controller passes it on), and a
receiver refuses to unpickle a slice that came in a ``raw`` frame. A slice that needs a
class or function (anything but the built-in containers and scalars) is not unpickled
on the thread that reads the socket: the loader then leaves the whole list to
:meth:`Loader.finish`, on the thread that asked for it, so that no user code runs on a
thread that holds a socket.
"""

from __future__ import annotations

import io
import pickle
import sys
from collections.abc import Iterator
from typing import Any

import cloudpickle

from . import warm

__all__ = [
    "APPENDED",
    "FIRST_ITEMS",
    "Appended",
    "Chain",
    "MIN_ITEMS",
    "SLICE_ITEMS",
    "Loader",
    "Pieces",
    "count",
    "dump",
    "dumps",
    "failed",
    "load",
]

MIN_ITEMS = 65_536  # shorter lists travel as one pickle, as any value
FIRST_ITEMS = 16_384  # the first slice is short: the receiver starts on it sooner
SLICE_ITEMS = 65_536  # items per later slice: a 500k-int list is 9 slices of <330 kB


def _bounds(n: int) -> list[tuple[int, int]]:
    starts = [0, *range(FIRST_ITEMS, n, SLICE_ITEMS)] if n > FIRST_ITEMS else [0]
    return [(a, b) for a, b in zip(starts, [*starts[1:], n], strict=True)]


def count(value: list[Any]) -> int:
    """How many slices :func:`dumps` makes of ``value``."""
    return len(_bounds(len(value)))


def dumps(value: list[Any]) -> Iterator[bytes]:
    """The pickles of ``value``'s slices, in order, each made when asked for (one
    pickler, one memo: see the module's docstring)."""
    f = io.BytesIO()
    pickler = cloudpickle.Pickler(f, protocol=5)
    seed = {id(value): (0, value)}  # the list itself: memo entry 0 (see Loader)
    pickler.memo = seed
    compact = True
    for start, stop in _bounds(len(value)):
        pickler.dump(value[start:stop])
        yield f.getvalue()
        f.seek(0)
        f.truncate()
        if compact:  # (the Loader does the same, after the same slice)
            compact = len(pickler.memo.copy()) <= _COMPACT
            if compact:
                pickler.clear_memo()
                pickler.memo = seed


# While the memo holds no more than the list and the last slice (a slice of numbers,
# say: they are not memoized), both sides clear it after each slice: a later slice
# cannot refer to anything in it, and the memo would keep each slice's list alive
# (unpickling 500k ints took 26 ms instead of 19: fresh memory for every slice).
_COMPACT = 2


def dump(value: list[Any]) -> list[bytes]:
    """The pickles of all of ``value``'s slices."""
    return list(dumps(value))


def failed(e: BaseException) -> bytes:
    """What is sent for a slice that could not be pickled: the exception its list
    becomes on the receiving side (the slices after it are sent empty)."""
    from ..errors import SerializationError

    err = SerializationError(f"cannot serialize a slice of the list: {type(e).__name__}: {e}")
    return pickle.dumps(err, protocol=5)


class _NeedsCode(Exception):
    """A slice refers to a class or function: it is unpickled later, elsewhere."""


# A pickle whose value is persistent id 0, memoized as entry 0: loaded first, it makes
# the list being rebuilt memo entry 0 (setting ``Unpickler.memo`` to a dict loses its
# entries in CPython 3.11).
_SEED = b"\x80\x05K\x00Q\x94."


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: Any, entry0: Any) -> None:
        super().__init__(file)
        self.entry0 = entry0  # what memo entry 0 (the list itself) stands for
        self.early = False  # on a thread that reads a socket: no user code may run

    def persistent_load(self, pid: Any) -> Any:
        if pid != 0:
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r} in a slice")
        return self.entry0

    def find_class(self, module: str, name: str) -> Any:
        if self.early:
            raise _NeedsCode(f"{module}.{name}")
        return super().find_class(module, name)


class Appended:
    """The value of a part of a gather whose items went into the list of the parts
    before it (see :class:`Chain`): the gather's join skips it."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<appended to the part before>"


APPENDED = Appended()


class Loader:
    """Rebuilds one list from its slices, unpickling each as it is added, in order.

    :meth:`add` with ``early`` True (the reading thread) unpickles only slices made of
    built-in containers and scalars; once one is not, the rest waits for
    :meth:`finish`, which unpickles everything from the start on its own thread. A
    loader that ``holds`` only keeps its slices until :meth:`append_to` (a
    :class:`Chain`) or :meth:`finish`.
    """

    def __init__(self, holds: bool = False) -> None:
        self.datas: list[Any] = []  # the slices' pickles, kept for a late start
        self.result: list[Any] = []
        self.error: BaseException | None = None
        self.deferred = False
        self.holds = holds
        self._file = io.BytesIO()
        self._compact = True  # see _COMPACT
        self._sentinel: object | None = None  # memo entry 0 while appending to another list
        self._start = 0  # where its items begin in result
        self._unpickler = self._new_unpickler()
        self._loaded = 0  # slices unpickled into result so far

    def _new_unpickler(self) -> _Unpickler:
        self.result = []
        self._start = 0
        self._sentinel = None
        self._loaded = 0
        self._compact = True
        return self._seeded()

    def _seeded(self) -> _Unpickler:
        """A new unpickler whose memo holds the list as entry 0 (as the pickler's
        does: a cleared memo would not start numbering again from 1)."""
        entry0 = self.result if self._sentinel is None else self._sentinel
        u = _Unpickler(self._file, entry0)
        self._feed(_SEED)
        u.load()
        return u

    @property
    def appended(self) -> bool:
        """All its slices went into another part's list (see :meth:`append_to`)."""
        return self._sentinel is not None

    def add(self, data: Any, early: bool = False) -> None:
        """One more slice (bytes-like), unpickled now unless held, deferred or failed."""
        self.datas.append(data)
        self.load_pending(early)

    def load_pending(self, early: bool) -> None:
        while not self.holds and not self.deferred and self.error is None:
            if self._loaded >= len(self.datas):
                return
            self._load_next(early)

    def append_to(self, target: list[Any], early: bool) -> None:
        """Unpickle its slices onto the end of ``target`` from now on (the list of the
        parts before it). Memo entry 0 is then a sentinel: a slice that refers to the
        list itself (one that contains itself) shows as a reference to it, and the
        chain then has this part unpickled on its own (:meth:`detach`)."""
        self.result = target
        self._start = len(target)
        self._sentinel = object()
        self._unpickler = self._seeded()
        self.holds = False
        self.load_pending(early)

    def refers_to_itself(self) -> bool:
        # references to the sentinel: its attribute here, the unpickler's, the
        # unpickler's memo's, getrefcount's argument; and one for each item that refers
        # to it
        return self._sentinel is not None and sys.getrefcount(self._sentinel) > 4

    def detach(self) -> None:
        """Stop appending to another list: what it put there is taken out, and its
        slices are unpickled into a list of its own, by :meth:`finish`."""
        if self._sentinel is not None:
            del self.result[self._start :]
        self.error = None
        self.deferred = False
        self._unpickler = self._new_unpickler()
        self.holds = True  # until finish

    def _load_next(self, early: bool) -> None:
        self._feed(self.datas[self._loaded])
        self._unpickler.early = early
        try:
            part = self._unpickler.load()
        except _NeedsCode:
            self.deferred = True
            return
        except Exception as e:  # a class missing here, a __reduce__ that raises...
            self.error = e
            return
        if type(part) is not list:  # the sender failed to pickle it (see failed)
            self.error = (
                part
                if isinstance(part, BaseException)
                else ValueError(f"a slice of a list is a {type(part).__name__}")
            )
            return
        warm.keep(part)  # (its arenas stay mapped for the next list: wire/warm.py)
        self.result.extend(part)
        self._loaded += 1
        if self._compact:  # as dumps does after the same slice
            self._compact = len(self._unpickler.memo.copy()) <= _COMPACT
            if self._compact:
                self._unpickler = self._seeded()

    def _feed(self, data: Any) -> None:
        f = self._file
        f.seek(0)
        f.truncate()
        f.write(data.buffer if hasattr(data, "buffer") else data)
        f.seek(0)

    def finish(self) -> Any:
        """The rebuilt list (:data:`APPENDED` if its items went into another part's);
        raises what unpickling a slice raised."""
        if self.appended:
            self._release()
            return APPENDED
        if self.deferred:
            self.deferred = False
            self._unpickler = self._new_unpickler()
        self.holds = False
        while self.error is None and self._loaded < len(self.datas):
            self._load_next(early=False)
        if self.error is not None:
            raise self.error
        result = self.result
        self._release()
        return result

    def _release(self) -> None:
        """Keep nothing of the list (the loader may live on in a message): the caller
        alone decides when it is freed."""
        self.datas = []
        self._unpickler = self._new_unpickler()


def load(buffers: list[Any]) -> Any:
    """The list that :func:`dump` sliced: from its slices' pickles, or from a
    :class:`Loader` that already took them (the only buffer then; :data:`APPENDED`
    when its items went into another part's list)."""
    if len(buffers) == 1 and type(buffers[0]) is Loader:
        return buffers[0].finish()
    loader = Loader()
    for data in buffers:
        loader.add(data)
    return loader.finish()


class Pieces:
    """The ``n`` pieces of a list in slices as they arrive, one whole slice each: each
    is unpickled at once, on the reading thread when ``early`` (see :meth:`Loader.add`),
    or, as part ``index`` of a :class:`Chain`, when the chain comes to it. Used where
    :class:`~.chunks.Assembler` is for the pieces of buffers."""

    def __init__(self, n: int, early: bool, chain: Chain | None = None, index: int = 0) -> None:
        self.expected = n
        self.received = 0
        self.early = early
        self.chain = chain
        self.loader = Loader(holds=chain is not None and index > 0)
        if chain is not None:
            chain.parts[index] = self

    @property
    def done(self) -> bool:
        return self.received >= self.expected

    @property
    def loaded(self) -> bool:
        """Every slice is in and unpickled (in its own list, or appended)."""
        ld = self.loader
        return self.done and not ld.holds and ld._loaded == self.expected and ld.error is None

    @property
    def buffers(self) -> list[Any]:
        """What the part's buffers become: the loader, which :func:`load` finishes."""
        return [self.loader]

    def add(self, piece: Any) -> None:
        if self.done:
            raise ValueError("more slices than announced")
        self.received += 1
        self.loader.add(piece, self.early)
        if self.chain is not None:
            self.chain.pump()


class Chain:
    """The parts of one ``gather`` that come in slices, unpickled into one list.

    Joining two 500k-item lists after they were unpickled touched every item of the
    second again (a reference taken, then one dropped): about 5 ms of a 1M-int gather,
    on objects long out of the cache. Part 0 is unpickled into a list of its own as its
    slices come; once it is whole, part 1's slices are unpickled onto the end of that
    list, and so on, in part order (the slices of a later part wait for the parts
    before it). A part that cannot be appended (it failed, came incomplete, needs code
    unpickled on its own thread, or refers to itself) is taken back out of the list with
    every part after it; those are then unpickled on their own (:meth:`cut`).
    """

    def __init__(self) -> None:
        self.parts: dict[int, Pieces] = {}
        self.next = 0  # the part now being unpickled into the list
        self.broken = False

    def pump(self) -> None:
        """Go on appending while the part before is whole."""
        while not self.broken:
            cur = self.parts.get(self.next)
            if cur is None:
                return
            ld = cur.loader
            if self.next > 0 and ld.holds:
                ld.append_to(self.parts[0].loader.result, cur.early)
            if ld.error is not None or ld.deferred or ld.refers_to_itself():
                self.cut(self.next)
                return
            if not cur.loaded:
                return
            self.next += 1

    def cut(self, index: int) -> None:
        """Part ``index`` and the parts after it are unpickled on their own."""
        self.broken = True
        for i in sorted(self.parts):
            if i >= index and i > 0:
                self.parts[i].loader.detach()
