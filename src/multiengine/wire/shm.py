"""Large buffers between processes of one host, through shared memory.

A process that sends large out-of-band buffers (:func:`~.serialize.dumps`) to readers on
its own host copies them once into a *block* and sends, instead of the bytes, an
*envelope*: the pickle stream and a reference to each buffer (``[pid, fd, inode,
offset, size]``). The envelope is the message's content frame, which the signature
hashes in full, so the references are signed like every header; the controller relays
it as any content and never opens it.

Blocks are anonymous files (``memfd_create``): they have no name in ``/dev/shm`` that
could outlive their processes. A reader opens the writer's descriptor through
``/proc/<pid>/fd/<fd>`` (same host, same user, same PID namespace: what
:func:`node_identity` stands for), checks the inode, and maps it. The memory is freed
when the last process holding it (writer, or a reader mapping it) is gone.

::

    writer (Pool)                               reader (Mappings)
    take a free block  ─ copy buffers in ─►  block  ◄─ map /proc/pid/fd/N (kept)
    envelope(refs) ─────── via the controller ──────►  copy out (default), or map
                                                        read-only (shared=True)
    block free again  ◄──── the reader sets its flag byte in the block's header

The first :data:`HEADER` bytes of a block are one flag byte per reader: slot 0 for a
client, ``1 + id`` for engine ``id``. The writer zeroes the flags of the readers it
expects; each reader sets its own once it no longer needs the block (after its copy,
or, for ``shared=True`` arrays, when the arrays are garbage collected). A block whose
expected flags are all set is reused by the next transfer: its pages are already
faulted in, which is what makes a reused block ten times faster to fill than a fresh
one (shared/spec/limits.md §3).

Readers copy into memory that is itself reused (:class:`Recycler`) once the values on it
are gone, so the copy out does not pay page faults either.

The module is longer than most because the writer's side (:class:`Pool`) and the
reader's (:class:`Mappings`, :class:`Recycler`) share the block layout, the reference
format and this process's state; split, each half would need the other's internals.
"""

from __future__ import annotations

import mmap
import os
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

from ..config import SHM_POOL_LIMIT, SHM_RECYCLE_LIMIT, SHM_THRESHOLD, parse_size
from ..errors import ConfigError
from ..runtime import pid_alive
from .parallel_copy import copy_into

__all__ = [
    "HEADER",
    "MAGIC",
    "ENVELOPE_START",
    "Envelope",
    "Mappings",
    "Pool",
    "client_slot",
    "engine_slot",
    "is_envelope",
    "node_identity",
    "threshold",
]

HEADER = 4096  # flag bytes at the start of a block: one per reader slot
MAGIC = b"\x00me-shm\x01"  # a pickle (protocol 5) starts with b"\x80": never confused
# An envelope's first byte: a content whose first byte differs is a pickle, told without
# a call to is_envelope (the hot paths look at this first)
ENVELOPE_START = MAGIC[0]
ALIGN = 64
IDLE = 60.0  # seconds after which a free block is given back rather than kept
ENV_THRESHOLD = "MULTIENGINE_SHM_THRESHOLD"


def client_slot() -> int:
    return 0


def engine_slot(engine_id: int) -> int | None:
    """The flag byte of engine ``engine_id``; None when past the header (no shm for it)."""
    slot = 1 + engine_id
    return slot if 0 < slot < HEADER else None


def threshold(env: Mapping[str, str] | None = None) -> int:
    """Out-of-band buffers of at least this many bytes in total go through shared memory;
    0: never. ``$MULTIENGINE_SHM_THRESHOLD`` (a size, or 0/off) of ``env`` (this
    process's environment by default), else the default; ConfigError if it is neither."""
    text = (os.environ if env is None else env).get(ENV_THRESHOLD, "").strip()
    if not text:
        return SHM_THRESHOLD
    if text.lower() in ("0", "off", "no", "false"):
        return 0
    try:
        return parse_size(text)
    except ValueError as e:
        raise ConfigError(f"${ENV_THRESHOLD}: {e}, or 0/off for never") from None


_node: str | None = None


def node_identity() -> str:
    """Who can map this process's blocks: boot, PID namespace and user ("" if none can).

    Two processes with the same identity run on one kernel, see each other's PIDs in
    ``/proc``, and may open each other's descriptors there. Hostnames are not used: two
    containers may share one, and one host may have many.
    """
    global _node
    if _node is None:
        try:
            with open("/proc/sys/kernel/random/boot_id") as f:
                boot = f.read().strip()
            pidns = os.stat("/proc/self/ns/pid").st_ino
            _node = f"{boot}/{pidns}/{os.getuid()}" if hasattr(os, "memfd_create") else ""
        except OSError:
            _node = ""
    return _node


def is_envelope(content: Any) -> bool:
    """Whether a content frame (bytes, memoryview or zmq Frame) is an :class:`Envelope`.
    Asked of every command's and answer's content: a pickle is told apart by its first
    byte, without a copy."""
    t = type(content)
    data = content if t is bytes or t is memoryview else getattr(content, "buffer", content)
    return len(data) >= len(MAGIC) and data[0] == 0 and bytes(data[: len(MAGIC)]) == MAGIC


@dataclass(slots=True)
class Envelope:
    """A content frame that carries its pickle and references to its buffers.

    ``refs``: ``[pid, fd, inode, offset, size]`` per out-of-band buffer, in order;
    ``shared``: the reader maps them read-only instead of copying them out;
    ``reply_node``: the sender would take a large answer through shared memory, and is
    on this node (a client's blocking ``pull``); ``reply_holder``: the sender's PID when
    it would keep that answer's arrays mapped read-only (``pull(..., shared=True)``), 0
    when it copies them out. The writer reuses the block once the holder lets go of the
    arrays, or has exited.
    """

    pickle: bytes
    refs: list[list[int]] = field(default_factory=list)
    node: str = ""
    shared: bool = False
    reply_node: str = ""
    reply_holder: int = 0

    def to_bytes(self) -> bytes:
        body = [self.node, self.refs, self.shared, self.reply_node, self.reply_holder, self.pickle]
        return MAGIC + msgpack.packb(body, use_bin_type=True)  # type: ignore[no-any-return]

    @classmethod
    def from_bytes(cls, content: Any) -> Envelope:
        data = memoryview(content.buffer if hasattr(content, "buffer") else content)
        node, refs, shared, reply_node, holder, pickle = msgpack.unpackb(data[len(MAGIC) :])
        return cls(bytes(pickle), list(refs), str(node), bool(shared), str(reply_node), int(holder))


# ---------------------------------------------------------------- the writer's blocks
@dataclass(eq=False, slots=True)
class _Block:
    fd: int
    ino: int
    size: int  # data bytes, after the header
    mm: mmap.mmap
    view: memoryview
    expected: tuple[int, ...] = ()  # reader slots that have not all let go of it yet
    used: float = 0.0
    generation: int = 0  # transfers it has carried
    holder: int = 0  # PID of a reader keeping read-only arrays on it, if any

    def free(self) -> bool:
        view = self.view
        for s in self.expected:
            if not view[s]:
                if self.holder and not pid_alive(self.holder):  # exited holding it
                    view[s] = 1
                    continue
                return False
        return True

    def close(self) -> None:
        self.view.release()
        try:
            self.mm.close()
        except BufferError:  # still exported somewhere: unmapped when collected
            pass
        os.close(self.fd)


class Pool:
    """This process's blocks, reused from one transfer to the next.

    ``share`` returns None when the blocks in use would pass ``limit`` bytes (readers
    that never let go, say): the caller then sends the bytes over the network.
    """

    def __init__(self, limit: int = SHM_POOL_LIMIT) -> None:
        self.limit = limit
        self.blocks: list[_Block] = []
        self.created = 0  # blocks made so far (a reused block makes none)
        self._lock = threading.Lock()

    def release(self, ino: int, generation: int, slots: Sequence[int]) -> None:
        """Readers ``slots`` will not read the block of that transfer (its command has
        been answered, or failed): as if they had set their flags."""
        with self._lock:
            for b in self.blocks:
                if b.ino == ino and b.generation == generation:
                    for s in slots:
                        b.view[s] = 1

    def share(
        self, buffers: Sequence[Sequence[Any]], readers: Sequence[int], holder: int = 0
    ) -> tuple[list[list[list[int]]], tuple[int, int]] | None:
        """Copy groups of buffers into one block: their references, group by group, and
        the block's (inode, generation) for :meth:`release`; None when full. ``holder``:
        the PID of the one reader that will keep read-only arrays on the block (its
        exit frees the block as its flag would)."""
        views = [[_bytes_view(b) for b in group] for group in buffers]
        need = sum(_aligned(v.nbytes) for group in views for v in group)
        with self._lock:
            block = self._take(need)
            if block is None:
                return None
            block.view[:HEADER] = bytes(HEADER)
            block.expected = tuple(readers)
            block.holder = holder
            block.used = time.monotonic()
            block.generation += 1
            key = (block.ino, block.generation)
        pid = os.getpid()
        out: list[list[list[int]]] = []
        off = HEADER
        for group in views:
            refs = []
            for v in group:
                n = v.nbytes
                copy_into(block.view[off : off + n], v)  # on several CPUs when large
                refs.append([pid, block.fd, block.ino, off, n])
                off += _aligned(n)
            out.append(refs)
        return out, key

    def _take(self, need: int) -> _Block | None:
        now = time.monotonic()
        for b in [b for b in self.blocks if now - b.used > IDLE and b.free()]:
            self.blocks.remove(b)  # not used for a while: give its memory back
            b.close()
        free = [b for b in self.blocks if b.free()]
        fitting = [b for b in free if need <= b.size <= 4 * need + (1 << 20)]
        if fitting:
            return min(fitting, key=lambda b: b.size)
        size = -(-need // (1 << 20)) * (1 << 20)
        for b in sorted(free, key=lambda b: b.used):  # make room: drop the idle ones first
            if self._in_use() + size <= self.limit:
                break
            self.blocks.remove(b)
            b.close()
        if self._in_use() + size > self.limit:
            return None
        block = _new_block(size)
        self.blocks.append(block)
        self.created += 1
        return block

    def _in_use(self) -> int:
        return sum(b.size for b in self.blocks)

    def close(self) -> None:
        with self._lock:
            for b in self.blocks:
                b.close()
            self.blocks.clear()


def _new_block(size: int) -> _Block:
    fd = os.memfd_create(f"multiengine-{os.getpid()}", os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, HEADER + size)
        flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)  # fault it in at once
        mm = mmap.mmap(fd, HEADER + size, flags=flags)
    except BaseException:
        os.close(fd)
        raise
    return _Block(fd, os.fstat(fd).st_ino, size, mm, memoryview(mm))


def _aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def _bytes_view(buf: Any) -> memoryview:
    b = buf.buffer if hasattr(buf, "buffer") and not isinstance(buf, memoryview) else buf
    return memoryview(b).cast("B")


# ---------------------------------------------------------------- the reader's side
@dataclass(eq=False, slots=True)
class _Mapped:
    pid: int
    fd: int  # our descriptor of the writer's block
    mm: mmap.mmap
    source: str  # /proc/<pid>/fd/<n>: the writer's descriptor
    ino: int
    used: float = 0.0

    def gone(self) -> bool:
        """Whether the writer has exited or closed the block (then it is not reused)."""
        try:
            return os.stat(self.source).st_ino != self.ino
        except OSError:
            return True


class Mappings:
    """Blocks of other processes this process has mapped, kept for the next transfer.

    A block whose writer has exited is let go (:meth:`prune`), so its memory is freed
    once no one else holds it; at most ``keep`` blocks stay mapped.
    """

    def __init__(self, keep: int = 8) -> None:
        self.keep = keep
        self._maps: dict[tuple[int, int], _Mapped] = {}
        self._lock = threading.Lock()

    def _get(self, pid: int, fd: int, ino: int) -> _Mapped:
        key = (pid, ino)
        m = self._maps.get(key)
        if m is None:
            path = f"/proc/{pid}/fd/{fd}"
            try:
                mine = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            except OSError as e:
                raise OSError(f"cannot open shared memory block {path}: {e}") from e
            try:
                st = os.fstat(mine)
                if st.st_ino != ino:
                    raise OSError(f"{path} is no longer the shared memory block sent")
                mm = mmap.mmap(mine, st.st_size)
            except BaseException:
                os.close(mine)
                raise
            m = self._maps[key] = _Mapped(pid, mine, mm, path, ino, time.monotonic())
            self._evict()
        m.used = time.monotonic()
        return m

    def _evict(self) -> None:
        if len(self._maps) <= self.keep:
            return
        by_age = sorted(self._maps.items(), key=lambda kv: kv[1].used)  # the newest last
        for key, m in by_age[: len(self._maps) - self.keep]:
            self._drop(key, m)

    def _drop(self, key: tuple[int, int], m: _Mapped) -> None:
        del self._maps[key]
        try:
            m.mm.close()
        except BufferError:
            pass  # shared=True arrays still use it: unmapped when they are collected
        os.close(m.fd)

    def prune(self) -> None:
        """Let go of the blocks whose writer has exited or dropped them."""
        with self._lock:
            self._prune()

    def _prune(self) -> None:
        for key, m in list(self._maps.items()):
            if m.gone():
                self._drop(key, m)

    def receive(self, env: Envelope, slot: int | None) -> list[Any]:
        """The buffers an envelope refers to: copies (writable), or read-only views that
        keep their block mapped as long as they live (``env.shared``). Our flag is set
        in the block once we no longer need it."""
        with self._lock:
            self._prune()
            for pid in {r[0] for r in env.refs}:
                if not pid_alive(pid):
                    raise OSError(f"the process {pid} that sent the shared memory has exited")
            out: list[Any] = []
            by_block: dict[tuple[int, int], _Mapped] = {}
            for pid, fd, ino, off, size in env.refs:
                m = by_block.get((pid, ino)) or self._get(pid, fd, ino)
                by_block[(pid, ino)] = m
                if env.shared:
                    out.append((m, off, size))
                else:
                    buf = _new_buffer(size)
                    copy_into(buf, memoryview(m.mm)[off : off + size])  # several CPUs if large
                    out.append(buf)
            if env.shared:
                out = self._read_only(by_block, out, slot)
            elif slot is not None:
                for m in by_block.values():
                    m.mm[slot] = 1
            return out

    def _read_only(
        self, by_block: dict[tuple[int, int], _Mapped], items: list[Any], slot: int | None
    ) -> list[Any]:
        ro: dict[int, memoryview] = {}
        for m in by_block.values():
            view = mmap.mmap(m.fd, len(m.mm), access=mmap.ACCESS_READ)
            if slot is not None:  # when the arrays on it are gone, the writer may reuse it
                weakref.finalize(view, _set_flag, m.mm, slot)
            ro[id(m)] = memoryview(view)
        return [ro[id(m)][off : off + size] for m, off, size in items]

    def close(self) -> None:
        with self._lock:
            for key, m in list(self._maps.items()):
                self._drop(key, m)


def _set_flag(mm: mmap.mmap, slot: int) -> None:
    try:
        mm[slot] = 1
    except ValueError:  # closed meanwhile: the writer's process is gone
        pass


class Recycler:
    """Memory for the copies a reader makes, used again once the values on it are gone.

    Filling fresh memory costs its page faults, about as much again as the copy itself;
    memory whose values have all been collected is faulted in already. Each copy is a
    slice of an anonymous mapping of its own (transparent huge pages asked for). Every
    array or memoryview made from the copy holds an export of that mapping, and a
    mapping with exports refuses to be resized: a mapping that can be resized (to its
    own size) is free again. At most ``keep`` bytes of free mappings are kept after a
    copy, and mappings are kept for reuse only up to twice that (in use or not), so at
    most that much memory stays after its values are gone.
    """

    def __init__(self, keep: int = SHM_RECYCLE_LIMIT) -> None:
        self.keep = keep
        self.maps: list[mmap.mmap] = []
        self._lock = threading.Lock()

    def get(self, size: int) -> memoryview:
        with self._lock:
            free = [m for m in self.maps if _unused(m)]
            fitting = [m for m in free if size <= len(m) <= 2 * size + (1 << 20)]
            mm = min(fitting, key=len) if fitting else None
            if mm is None:
                mm = _anonymous(size)
                if sum(len(m) for m in self.maps) + len(mm) > 2 * self.keep:
                    return memoryview(mm)[:size]  # not kept: freed with its values
                self.maps.append(mm)
            else:
                free.remove(mm)
            spare = sum(len(m) for m in free)
            for m in sorted(free, key=len, reverse=True):  # too many kept: let the largest go
                if spare <= self.keep:
                    break
                spare -= len(m)
                self.maps.remove(m)
                m.close()
            return memoryview(mm)[:size]


def _anonymous(size: int) -> mmap.mmap:
    mm = mmap.mmap(-1, max(size, 1))
    if hasattr(mmap, "MADV_HUGEPAGE"):
        mm.madvise(mmap.MADV_HUGEPAGE)
    return mm


def _unused(mm: mmap.mmap) -> bool:
    try:
        mm.resize(len(mm))
    except BufferError:  # arrays (or views) of a copy on it are still alive
        return False
    return True


def _new_buffer(size: int) -> memoryview:
    return local().recycler.get(size)


# ---------------------------------------------------------------- this process's
class _Local:
    """This process's pool, mappings and reader slot (made again in a forked child,
    which must not write into its parent's blocks)."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.pool = Pool()
        self.mappings = Mappings()
        self.recycler = Recycler()
        self.slot: int | None = client_slot()


_local: _Local | None = None


def local() -> _Local:
    global _local
    if _local is None or _local.pid != os.getpid():
        _local = _Local()
    return _local


def set_reader_slot(slot: int | None) -> None:
    """The flag byte this process sets in the blocks it reads (engines: their id's)."""
    local().slot = slot


def share(
    content: bytes,
    buffers: Sequence[Any],
    readers: Sequence[int],
    *,
    shared: bool = False,
    holder: int = 0,
) -> bytes | None:
    """An envelope for ``content`` with ``buffers`` copied into a block of this process's
    pool for the reader slots ``readers``; None when the pool is full. ``shared``: the
    readers map them read-only; ``holder``: the PID of the one reader that will (see
    :meth:`Pool.share`)."""
    try:
        got = local().pool.share([buffers], readers, holder)
    except OSError:  # no memory for a block, no descriptor left...: the network then
        return None
    if got is None:
        return None
    return Envelope(content, got[0][0], node_identity(), shared).to_bytes()


def receive(env: Envelope) -> list[Any]:
    """The buffers of an envelope (see :meth:`Mappings.receive`)."""
    if env.refs and env.node != node_identity():
        raise OSError("buffers sent through shared memory from another host")
    here = local()
    return here.mappings.receive(env, here.slot) if env.refs else []


def prune() -> None:
    """Let go of mapped blocks whose writer has exited (an idle engine calls this)."""
    if _local is not None:
        _local.mappings.prune()
