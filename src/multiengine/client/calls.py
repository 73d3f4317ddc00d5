"""The MultiEngine interface, once: every call as an operation (see ``drive.py``).

:class:`MultiEngineCalls` holds what a MultiEngine client remembers between calls (its
default ``targets`` and ``block``, how a key was scattered, live output and progress
settings) and builds each call as a generator that yields requests and turns the
answers into values. ``MultiEngineClient`` runs them blocking,
``AsyncMultiEngineClient`` awaits them; neither repeats the logic.
"""

from __future__ import annotations

import os
import time
import types
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, TypeAlias

from .. import errors
from ..wire import protocol as P
from ..wire import shm
from ..wire.message import Message, unpack
from ..wire.serialize import Serialized
from .answers import check, decode_parts, decode_result, metadata, raise_direct
from .core import ClientCore, OutputHook
from .drive import Call, Op, Request, Steps
from .live import print_output, wanted
from .partition import check_dist, join, partition
from .payload import Dumped, Payload, dump_payload, plan_dumped, plan_reply, plan_shared
from .progress import bar
from .results import PendingResult, ResultList

__all__ = ["MultiEngineCalls", "Targets"]

Targets: TypeAlias = Literal["all"] | int | Sequence[int]
"""Which engines a call goes to: ``'all'``, one engine id, or a list or tuple of ids."""

# how long the engines' nodes (a ``nodes`` request) are trusted before asking again
NODES_TTL = 2.0

# commands that run user code: what it prints is streamed when live output is on
LIVE_COMMANDS = frozenset({"execute", "apply", "map"})

PROPERTIES_WARNING = (
    "Engine properties are deprecated: we are currently refactoring the task dependency "
    "system; use TaskRejectError in task code instead."
)


def short(x: Any, limit: int = 120) -> str:
    r = repr(x)
    return r if len(r) <= limit else r[: limit - 3] + "..."


def _value(msg: Message) -> Any:
    raise_direct(msg)
    return unpack(msg.content)


class MultiEngineCalls:
    """A MultiEngine client's settings, and its calls as operations."""

    def __init__(self, core: ClientCore) -> None:
        self.core = core
        self.block = True
        self.targets: Targets = "all"
        self.flattened: dict[str, tuple[list[int], list[bool]]] = {}  # scatter(flatten=True)
        self.live_output: bool | None = None  # None: on at an interactive prompt
        self.output_hook: OutputHook = print_output
        self.progress: bool | None = None  # None: on at a terminal or in IPython
        self._nodes: tuple[float, dict[int, str]] | None = None  # (when, engine id -> node)

    # ------------------------------------------------------------ arguments
    def find_block(self, block: Any = None) -> bool:
        if block is None:
            return self.block
        if block in (True, False) and isinstance(block, (bool, int)):
            return bool(block)
        raise ValueError("block must be True or False")

    def find_targets(self, targets: Any = None) -> Targets:
        if targets is None:
            return self.targets
        if not isinstance(targets, (str, list, tuple, int)):
            raise ValueError("targets must be a str, list, tuple or int")
        return targets  # type: ignore[return-value]

    @staticmethod
    def check_namespace(namespace: Any) -> None:
        if not isinstance(namespace, dict):
            raise TypeError(f"namespace must be a dict, not {type(namespace).__name__}")
        for k in namespace:
            if not isinstance(k, str) or not k.isidentifier():
                raise TypeError(f"names must be identifier strings, not {k!r}")

    @staticmethod
    def check_keys(keys: Any) -> str | list[str]:
        if isinstance(keys, str):
            return keys
        if isinstance(keys, (list, tuple)):
            return list(keys)
        raise TypeError(f"keys must be a str or a list/tuple of strs, not {type(keys).__name__}")

    # ------------------------------------------------------------ the one submit
    def submit(
        self,
        cmd: str,
        args: tuple[Any, ...] = (),
        targets: Any = None,
        block: Any = None,
        desc: str | None = None,
        parts: list[tuple[Any, ...]] | None = None,
        post: Callable[[list[Any]], Any] | None = None,
        extra: dict[str, Any] | None = None,
        *,
        shared: bool = False,
        reply_shm: bool = False,
        reply_shared: bool = False,
        chain_parts: bool = False,
    ) -> Op[Any]:
        """Run ``cmd`` on the targets: their values (after ``post``), or a PendingResult.

        Large buffers go to engines of this host through shared memory (read-only
        zero-copy arrays there with ``shared``); ``reply_shm``: a blocking call whose
        large answers may come back the same way (``pull``), mapped here read-only with
        ``reply_shared``. ``chain_parts``: ``post`` joins the parts into one list (a
        blocking ``gather``), so long lists in slices may be unpickled into one
        (``wire.slices.Chain``).
        """
        targets = self.find_targets(targets)
        block = self.find_block(block)
        header: dict[str, Any] = {
            "t": P.SUBMIT,
            "cmd": cmd,
            "targets": list(targets) if isinstance(targets, tuple) else targets,
            "block": block,
            "desc": desc or f"{cmd}()",
            "cid": self.core.identity,
        }
        if extra:
            header.update(extra)
        dumped = dump_payload(args, parts)
        size = dumped.size
        # (nothing to map when there are no buffers and no answer may come by shared
        # memory: most small calls, which then do not read the setting)
        limit = shm.threshold() if size or (reply_shm and block) else 0
        if limit and shm.node_identity():
            holder = os.getpid() if reply_shared else 0
            if size >= limit:
                return self._submit_local(
                    cmd,
                    header,
                    dumped,
                    targets,
                    block,
                    post,
                    shared,
                    reply_shm and block,
                    holder,
                    chain_parts,
                )
            asked = plan_reply(dumped, holder) if reply_shm and block else None
            if asked is not None:
                return self._call(cmd, header, asked, targets, block, post, chain_parts)
        return self._call(cmd, header, plan_dumped(dumped), targets, block, post, chain_parts)

    def _submit_local(
        self,
        cmd: str,
        header: dict[str, Any],
        dumped: Dumped,
        targets: Targets,
        block: bool,
        post: Callable[[list[Any]], Any] | None,
        shared: bool,
        reply: bool,
        holder: int = 0,
        chain_parts: bool = False,
    ) -> Steps[Any]:
        """``submit`` through shared memory to the targets that are engines of this host."""
        found = yield from self.local_ids(targets)
        payload = None
        readers: list[int] = []  # the engines that read the block
        if found is not None:
            ids, local = found
            readers = [i for i, m in zip(ids, local, strict=True) if m]
            slots = [s for s in map(shm.engine_slot, readers) if s is not None]
            mixed = None if all(local) else local  # the others: a part each, by the network
            payload = plan_shared(
                dumped, slots, shared=shared, reply=reply, holder=holder, local=mixed
            )
            if payload is not None:
                header["targets"] = ids  # exactly the engines the block waits for
        if payload is None:
            payload = plan_dumped(dumped)
        call = self._call(cmd, header, payload, targets, block, post, chain_parts)
        if payload.release is None or not block:
            return (yield from call)
        msg: Message | None = None
        try:
            msg = yield call.request
            return call.finish(msg)
        finally:  # answered: the engines that will never read the block let go of it
            payload.release(_unread_slots(msg, readers, shared))

    def local_ids(self, targets: Targets) -> Steps[tuple[list[int], list[bool]] | None]:
        """The ids ``targets`` names and, for each, whether it is an engine of this host
        that takes shared memory; None when none is (or an id is unknown or named
        twice): the bytes then go over the network."""
        now = time.monotonic()
        # which engines 'all' names must not come from an older answer (an engine that
        # joined since would be left out); explicit ids may use it (an unknown one goes
        # by the network)
        if targets == "all" or self._nodes is None or now - self._nodes[0] > NODES_TTL:
            pairs = yield from self.ask({"t": P.NODES})
            nodes = {int(i): str(node) for i, node in pairs}
            self._nodes = (now, nodes)
        nodes = self._nodes[1]
        if targets == "all":
            ids = sorted(nodes)
        elif isinstance(targets, int) and not isinstance(targets, bool):
            ids = [targets]
        elif isinstance(targets, (list, tuple)):
            ids = list(targets)
        else:
            return None
        if len(set(ids)) != len(ids):  # an engine named twice would read the block twice,
            return None  # the second time perhaps after its flag freed it for reuse
        me = shm.node_identity()
        if any(type(i) is not int or i not in nodes for i in ids):
            return None  # the controller answers that one
        local = [nodes[i] == me and shm.engine_slot(i) is not None for i in ids]
        return (ids, local) if any(local) else None

    def _call(
        self,
        cmd: str,
        header: dict[str, Any],
        payload: Payload,
        targets: Targets,
        block: bool,
        post: Callable[[list[Any]], Any] | None,
        chain_parts: bool = False,
    ) -> Call[Any]:
        header.update(payload.fields)
        listener = None
        if cmd in LIVE_COMMANDS and wanted(self.live_output):
            header["live"] = True
            listener = self.output_hook
        n = len(targets) if isinstance(targets, (list, tuple)) else None
        if isinstance(targets, int):
            n = 1
        if block and n != 1 and wanted(self.progress, on_a_terminal=True):
            header["progress"] = True  # a bar may show: the controller counts the answers
        request = Request(
            header,
            payload.content,
            payload.buffers,
            payload.pieces,
            listener,
            keep_listening=listener is not None and not block,
            progress=self.progress if block else False,
            progress_label=cmd,
            progress_total=n,
            chain_parts=chain_parts,
        )
        core = self.core

        def finish(msg: Message) -> Any:
            raise_direct(msg)
            if not block:
                return PendingResult(core, msg.header["job"], cmd, post, live=listener is not None)
            if post is ResultList:  # execute, get_result: the list carries the metadata
                values, parts, outputs = decode_result(msg, cmd)
                result = ResultList(check(values, cmd))
                result.result_id = msg.header.get("job", "")
                result.metadata = metadata(result.result_id, parts, outputs, values)
                return result
            values = check(decode_parts(msg, cmd), cmd)
            return post(values) if post is not None else values

        return Call(request, finish)

    def ask(self, header: dict[str, Any]) -> Call[Any]:
        """A request the controller answers with a value."""
        return Call(Request(header), _value)

    def ids_for(self, targets: Targets) -> Steps[list[int]]:
        """The engine ids a targets spec names (client-side, for partitioning)."""
        if targets == "all":
            return (yield from self.ask({"t": P.GET_IDS}))  # type: ignore[no-any-return]
        if isinstance(targets, int) and not isinstance(targets, bool):
            return [targets]
        if isinstance(targets, (list, tuple)):
            return list(targets)
        raise errors.InvalidEngineID(
            f"targets argument is not an int, list of ints or 'all': {targets!r}"
        )

    # ------------------------------------------------------------ the seed's calls
    def execute(self, lines: str, targets: Any, block: Any) -> Op[Any]:
        if not isinstance(lines, str):
            raise TypeError(f"execute takes a string of code, not {type(lines).__name__}")
        desc = f"execute({short(lines)})"
        return self.submit("execute", (lines,), targets, block, desc, post=ResultList)

    def push(
        self, namespace: dict[str, Any], targets: Any, block: Any, shared: bool = False
    ) -> Op[Any]:
        self.check_namespace(namespace)
        for key in namespace:
            self.flattened.pop(key, None)
        desc = f"push({', '.join(namespace)})"
        return self.submit("push", (namespace,), targets, block, desc, shared=bool(shared))

    def pull(self, keys: Any, targets: Any, block: Any, shared: bool = False) -> Op[Any]:
        keys = self.check_keys(keys)
        desc = f"pull({short(keys)})"
        return self.submit(
            "pull", (keys,), targets, block, desc, reply_shm=True, reply_shared=bool(shared)
        )

    def push_function(self, namespace: dict[str, Any], targets: Any, block: Any) -> Op[Any]:
        self.check_namespace(namespace)
        for v in namespace.values():
            if not isinstance(v, types.FunctionType):
                raise TypeError("function object expected")
        desc = f"push_function({', '.join(namespace)})"
        return self.submit("push_function", (namespace,), targets, block, desc)

    def pull_function(self, keys: Any, targets: Any, block: Any) -> Op[Any]:
        keys = self.check_keys(keys)
        return self.submit(
            "pull_function", (keys,), targets, block, f"pull_function({short(keys)})"
        )

    def push_serialized(
        self, namespace: dict[str, Serialized], targets: Any, block: Any
    ) -> Op[Any]:
        self.check_namespace(namespace)
        for k, v in namespace.items():
            if not isinstance(v, Serialized):
                raise TypeError(
                    "push_serialized takes Serialized values (multiengine.serialize(obj)); "
                    f"{k!r} is not"
                )
        desc = f"push_serialized({', '.join(namespace)})"
        return self.submit("push_serialized", (namespace,), targets, block, desc)

    def pull_serialized(self, keys: Any, targets: Any, block: Any) -> Op[Any]:
        keys = self.check_keys(keys)
        desc = f"pull_serialized({short(keys)})"
        return self.submit("pull_serialized", (keys,), targets, block, desc)

    def get_result(self, i: int | None, targets: Any, block: Any) -> Op[Any]:
        desc = f"get_result({i!r})"
        return self.submit("get_result", (i,), targets, block, desc, post=ResultList)

    def reset(self, targets: Any, block: Any) -> Op[Any]:
        return self.submit("reset", (), targets, block, "reset()")

    def keys(self, targets: Any, block: Any) -> Op[Any]:
        return self.submit("keys", (), targets, block, "keys()")

    def kill(self, controller: bool, targets: Any, block: Any) -> Steps[Any]:
        if controller:
            extra = {"controller": True}
            result = yield from self.submit("kill", (), "all", True, "kill()", extra=extra)
            if not self.find_block(block):
                return PendingResult(self.core, "", "kill", value=result)
            return result
        return (yield from self.submit("kill", (), targets, block, "kill()"))

    def clear_queue(self, targets: Any, block: Any) -> Op[Any]:
        return self.submit("clear_queue", (), targets, block, "clear_queue()")

    def queue_status(self, targets: Any, block: Any) -> Op[Any]:
        def post(v: list[Any]) -> list[tuple[Any, ...]]:
            return [tuple(x) for x in v]

        return self.submit("queue_status", (), targets, block, "queue_status()", post=post)

    def interrupt(self, targets: Any) -> Op[list[None]]:
        targets = self.find_targets(targets)
        wire = list(targets) if isinstance(targets, tuple) else targets
        return self.ask({"t": P.INTERRUPT, "targets": wire})

    def flush(self) -> Steps[None]:
        yield from self.ask({"t": P.FLUSH, "cid": self.core.identity})

    def get_pending_deferred(self, deferred_id: str, block: bool) -> Steps[Any]:
        pr: PendingResult[Any] = PendingResult(self.core, deferred_id, "get_pending_deferred")
        return (yield from fetch(pr, block))

    # ------------------------------------------------------------ scatter / gather
    def scatter(
        self,
        key: str,
        seq: Any,
        dist: str,
        flatten: bool,
        targets: Any,
        block: Any,
        shared: bool = False,
    ) -> Steps[Any]:
        check_dist(dist)
        targets = self.find_targets(targets)
        block = self.find_block(block)
        ids = yield from self.ids_for(targets)
        if not ids:
            return [] if block else PendingResult(self.core, "", "scatter", value=[])
        pieces = partition(seq, len(ids), dist, views=True)  # (pickled below, at once)
        self.flattened.pop(key, None)
        if flatten:
            flags = [len(p) == 1 for p in pieces]
            pieces = [p[0] if f else p for p, f in zip(pieces, flags, strict=True)]
            self.flattened[key] = (list(ids), flags)
        parts = [({key: p},) for p in pieces]
        desc = f"scatter({key})"
        return (
            yield from self.submit("push", (), ids, block, desc, parts=parts, shared=bool(shared))
        )

    def gather(self, key: str, dist: str, targets: Any, block: Any) -> Steps[Any]:
        check_dist(dist)
        targets = self.find_targets(targets)
        flattened = None
        if key in self.flattened:  # undo scatter(flatten=True) when gathering from the same engines
            ids, flags = self.flattened[key]
            if (yield from self.ids_for(targets)) == ids:
                flattened = flags

        owned = self.find_block(block)  # a blocking call's parts are dropped after post

        def post(parts: list[Any]) -> Any:
            return join(parts, dist, flattened, owned)

        desc = f"gather({key})"
        chain = owned and dist == "b" and flattened is None  # one list, parts in order
        return (
            yield from self.submit(
                "pull", (key,), targets, block, desc, post=post, reply_shm=True, chain_parts=chain
            )
        )

    def zip_pull(self, keys: Any, targets: Any, block: Any) -> Steps[Any]:
        targets = self.find_targets(targets)
        multi = False if isinstance(targets, int) else len((yield from self.ids_for(targets))) > 1
        several = not isinstance(keys, str)  # a list of keys gives a list per engine (decision 5)

        def post(values: list[Any]) -> Any:
            if not multi:
                return values[0] if values else values
            if several:
                return list(zip(*values))
            return list(values)

        desc = f"zip_pull({short(keys)})"
        keys = self.check_keys(keys)
        return (
            yield from self.submit("pull", (keys,), targets, block, desc, post=post, reply_shm=True)
        )

    # ------------------------------------------------------------ map
    def raw_map(self, func: Any, seqs: Any, dist: str, targets: Any, block: Any) -> Steps[Any]:
        if not isinstance(seqs, (list, tuple)):
            raise TypeError("seqs must be a list or tuple of sequences")
        if not (callable(func) or isinstance(func, str)):
            raise TypeError(
                f"func must be callable or the name of a callable on the engines, not {func!r}"
            )
        check_dist(dist)
        seqs = [list(s) if not hasattr(s, "__len__") else s for s in seqs]
        if len({len(s) for s in seqs}) > 1:
            raise ValueError("all sequences must have equal length")
        targets = self.find_targets(targets)
        ids = yield from self.ids_for(targets)
        if not ids:
            if targets == "all":
                raise errors.NoEnginesRegistered(errors.NO_ENGINES_REGISTERED)
            return [] if self.find_block(block) else PendingResult(self.core, "", "map", value=[])
        name = getattr(func, "__name__", str(func))

        def post(parts: list[Any]) -> Any:
            return join(parts, dist) if parts else []

        if len(seqs) == 1:  # the items themselves, not 1-tuples: an engine calls func(item)
            chunks = partition(seqs[0], len(ids), dist, keep_ranges=True)
            parts: list[tuple[Any, ...]] = [(func, c, True) for c in chunks]
        else:
            chunks = partition(list(zip(*seqs)), len(ids), dist)
            parts = [(func, c) for c in chunks]
        return (
            yield from self.submit("map", (), ids, block, f"map({name})", parts=parts, post=post)
        )

    # ------------------------------------------------------------ extras
    def run(self, filename: str | os.PathLike[str], targets: Any, block: Any) -> Steps[Any]:
        with open(filename) as f:
            source = f.read()
        compile(source, str(filename), "exec")
        desc = f"run({short(str(filename))})"
        if not self.find_block(block):
            return (yield from self.submit("execute", (source,), targets, False, desc, post=list))
        return list((yield from self.execute(source, targets, True)))

    def barrier(self, pending: Iterable[PendingResult[Any]]) -> Steps[None]:
        prs = list(pending)
        for pr in prs:
            if not isinstance(pr, PendingResult):
                raise errors.NotAPendingResult(
                    "Objects passed to barrier must be PendingResult instances"
                )
        progress = bar(self.progress, len(prs), "barrier", "result")
        try:
            for pr in sorted(prs):
                try:
                    yield from fetch(pr, block=True)
                except Exception:
                    pass
                progress.update(1)
        finally:
            progress.close()

    def benchmark(self, push_size: int) -> Steps[dict[str, tuple[float, str]]]:
        """Best of 3 x 10: ``execute('pass')`` on one and on all engines, and pushes of
        ``push_size`` float64s to all and to one (the push entries need numpy)."""
        out: dict[str, tuple[float, str]] = {}
        first = (yield from self.ids_for("all"))[0]

        def best(make: Callable[[], Op[Any]]) -> Steps[float]:
            times = []
            for _ in range(3):
                start = time.perf_counter()
                for _ in range(10):
                    yield from make()
                times.append((time.perf_counter() - start) / 10)
            return min(times)

        t = yield from best(lambda: self.execute("pass", first, True))
        out["single_engine_latency"] = (1000 * t, "msec")
        t = yield from best(lambda: self.execute("pass", "all", True))
        out["all_engine_latency"] = (1000 * t, "msec")
        try:
            import numpy as np
        except ImportError:
            return out
        d = {"a": np.zeros(push_size, dtype="float64")}
        t = yield from best(lambda: self.push(d, "all", True))
        out["all_engine_push"] = (1e-6 * push_size * 8 / t, "MB/sec")
        t = yield from best(lambda: self.push(d, first, True))
        out["single_engine_push"] = (1e-6 * push_size * 8 / t, "MB/sec")
        return out

    def properties(self, cmd: str, args: tuple[Any, ...], targets: Any, block: Any) -> Op[Any]:
        warnings.warn(PROPERTIES_WARNING, DeprecationWarning, stacklevel=4)
        return self.submit(cmd, args, targets, block, f"{cmd}()")


def _unread_slots(msg: Message | None, ids: list[int], shared: bool) -> list[int]:
    """The reader slots of engines done with a block once its command is answered: all
    of them, except engines that keep ``shared=True`` arrays on it (whose part succeeded:
    they let go themselves, when the arrays are collected)."""
    keep: set[int] = set()
    if shared and msg is not None and msg.type == P.RESULT:
        for wire in msg.header.get("parts") or ():
            part = P.PartHeader.from_wire(wire)
            if part.status == P.STATUS_OK:
                keep.add(part.engine_id)
    return [s for i in ids if i not in keep and (s := shm.engine_slot(i)) is not None]


def fetch(pr: PendingResult[Any], block: bool) -> Steps[Any]:
    """A PendingResult's value, as an operation (``get_pending_deferred``, ``barrier``)."""
    if pr.called:
        return pr._cached()
    header = {"t": P.FETCH, "job": pr.result_id, "block": block}
    if pr._inflight is not None:  # a blocking fetch is already waiting for it
        msg = yield Request(header, sent=pr._inflight)
    else:
        msg = yield Request(header)
    if not block and msg.type == P.ERROR and msg.header.get("ename") == "ResultNotCompleted":
        return None
    return pr._finish(msg)
