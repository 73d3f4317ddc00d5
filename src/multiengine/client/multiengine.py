"""The blocking MultiEngine client: explicit engines, the seed's full interface.

Every method takes ``targets`` (``'all'``, an int, or a list/tuple of ints) and
``block``; ``None`` means the instance's ``mec.targets``/``mec.block``. With
``block=False`` a :class:`PendingResult` comes back at once. Multiplexed methods
return one entry per target, in target order; if any engine failed they raise a
:class:`~multiengine.errors.CompositeError` holding the failures.
"""

from __future__ import annotations

import os
import sys
import types
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from .. import errors
from ..wire import chunks
from ..wire.message import Message, unpack
from ..wire.serialize import Serialized, dumps
from .connected import Connected
from .live import print_output
from .live import wanted as live_wanted
from .mapper import MultiEngineMapper, ParallelFunction
from .partition import check_dist, join, partition
from .progress import DELAY, bar
from .results import PendingResult, ResultList, check, decode_parts, raise_direct

if TYPE_CHECKING:
    from .executor import MultiEngineExecutor

__all__ = ["MultiEngineClient"]

MAGICS_NEED_IPYTHON = (
    "The IPython parallel magics (%result, %px, %autopx) only work within IPython."
)
MAGICS_NOT_LOADED = "You must first load the multiengine extension by doing '%load_ext multiengine'"
# How activate() reaches the IPython magics without importing them (they sit in a layer
# above the clients): multiengine.magics puts its activate function here when it loads.
activate_magics: Callable[[MultiEngineClient], None] | None = None

_PROPERTIES_WARNING = (
    "Engine properties are deprecated: we are currently refactoring the task dependency "
    "system; use TaskRejectError in task code instead."
)


def _short(x: Any, limit: int = 120) -> str:
    r = repr(x)
    return r if len(r) <= limit else r[: limit - 3] + "..."


class MultiEngineClient(Connected):
    def __init__(
        self,
        profile: str | None = "default",
        cluster_dir: str | os.PathLike[str] | None = None,
        connection_file: str | os.PathLike[str] | None = None,
        timeout: float = 10.0,
    ) -> None:
        super().__init__(profile, cluster_dir, connection_file, timeout)
        self._block = True
        self._targets: Any = "all"
        self._flattened: dict[
            str, tuple[list[int], list[bool]]
        ] = {}  # scatter(flatten=True) by key
        # Live output of execute/run: None = on at an interactive prompt (IPython, python -i).
        self.live_output: bool | None = None
        self.output_hook: Callable[[int, str, str], None] = print_output
        # A bar for blocking waits over two seconds: None = on at a terminal or in IPython.
        self.progress: bool | None = None

    @property
    def block(self) -> bool:
        """Whether calls wait for their results (default True); per call: ``block=``."""
        return self._block

    @block.setter
    def block(self, value: bool) -> None:
        self._block = self._find_block(value)

    @property
    def targets(self) -> Any:
        """The engines calls go to by default: ``'all'``, an id, or a list of ids."""
        return self._targets

    @targets.setter
    def targets(self, value: Any) -> None:
        if value is None:
            raise ValueError("targets must be a str, list, tuple or int")
        self._targets = self._find_targets(value)

    # ------------------------------------------------------------ plumbing
    def _live(self) -> bool:
        return live_wanted(self.live_output)

    def _find_block(self, block: Any = None) -> bool:
        if block is None:
            return self._block
        if block in (True, False) and isinstance(block, (bool, int)):
            return bool(block)
        raise ValueError("block must be True or False")

    def _find_targets(self, targets: Any = None) -> Any:
        if targets is None:
            return self._targets
        if not isinstance(targets, (str, list, tuple, int)):
            raise ValueError("targets must be a str, list, tuple or int")
        return targets

    def _wire_targets(self, targets: Any) -> Any:
        if isinstance(targets, tuple):
            return list(targets)
        return targets

    def _wait(self, fut: Future[Message], timeout: float | None = None) -> Message:
        return self._core.wait(fut, timeout)

    def _wait_with_progress(self, fut: Future[Message], targets: Any, cmd: str) -> Message:
        """Wait; past two seconds, show a bar (the engines answer all at once at the end)."""
        try:
            return self._wait(fut, DELAY)
        except TimeoutError:
            pass
        n = len(targets) if isinstance(targets, (list, tuple)) else None
        progress = bar(self.progress, n, f"{cmd} on {n or 'all'} engines", "engine", delay=0)
        try:
            msg = self._wait(fut)
            progress.update(n or 0)
            return msg
        finally:
            progress.close()

    def _fetch(self, job_id: str, block: bool) -> Future[Message]:
        return self._core.request({"t": "fetch", "job": job_id, "block": block})

    def get_pending_deferred(self, deferredID: str, block: bool = True) -> Any:
        """Fetch a pending result by id, as the seed's client did."""
        return PendingResult(self, deferredID, "get_pending_deferred").get_result(block=block)

    def _submit(
        self,
        cmd: str,
        args: tuple[Any, ...] = (),
        targets: Any = None,
        block: Any = None,
        desc: str | None = None,
        parts: list[tuple[Any, ...]] | None = None,
        post: Callable[[list[Any]], Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Any:
        targets = self._find_targets(targets)
        block = self._find_block(block)
        header: dict[str, Any] = {
            "t": "submit",
            "cmd": cmd,
            "targets": self._wire_targets(targets),
            "block": block,
            "desc": desc or f"{cmd}()",
        }
        if extra:
            header.update(extra)
        pieces: list[tuple[int, Any]] = []
        if parts is None:
            content, buffers = dumps(args) if args else (b"", [])
            if buffers and chunks.total_size(buffers) >= chunks.STREAM_THRESHOLD:
                sizes, cut = chunks.split(buffers)
                header["xfer"] = {"sizes": [sizes], "n": [len(cut)], "piece": chunks.PIECE}
                pieces = [(0, c) for c in cut]
                buffers = []
            elif buffers:
                header["raw"] = True
        else:
            content, buffers = b"", []
            dumped = [dumps(p) for p in parts]
            stream = sum(chunks.total_size(b) for _, b in dumped) >= chunks.STREAM_THRESHOLD
            counts, all_sizes, ns, raw = [], [], [], []  # type: list[int], list[list[int]], list[int], list[int]
            for i, (c, bufs) in enumerate(dumped):
                buffers.append(c)
                raw.extend(range(len(buffers), len(buffers) + (0 if stream else len(bufs))))
                if stream:
                    sizes, cut = chunks.split(bufs)
                    all_sizes.append(sizes)
                    ns.append(len(cut))
                    pieces.extend((i, x) for x in cut)
                    counts.append(0)
                else:
                    buffers.extend(bufs)
                    counts.append(len(bufs))
            header["parts"] = counts
            if raw:
                header["raw"] = raw
            if stream:
                header["xfer"] = {"sizes": all_sizes, "n": ns, "piece": chunks.PIECE}
        listener = None
        if cmd == "execute" and self._live():
            header["live"] = True
            listener = self.output_hook
        fut = self._core.request(header, content, buffers, pieces, listener)
        msg = self._wait_with_progress(fut, targets, cmd) if block else self._wait(fut)
        if block and listener is not None:
            self._core.unlisten(header["id"])
        raise_direct(msg)
        if not block:
            return PendingResult(self, msg.header["job"], cmd, post)
        values = check(decode_parts(msg, cmd), cmd)
        return post(values) if post is not None else values

    def _ids_for(self, targets: Any) -> list[int]:
        """The engine ids a targets spec names (client-side, for partitioning)."""
        if targets == "all":
            return self.get_ids()
        if isinstance(targets, int) and not isinstance(targets, bool):
            return [targets]
        if isinstance(targets, (list, tuple)):
            return list(targets)
        raise errors.InvalidEngineID(
            f"targets argument is not an int, list of ints or 'all': {targets!r}"
        )

    # ------------------------------------------------------------ core methods
    def execute(self, lines: str, targets: Any = None, block: Any = None) -> Any:
        """Run ``lines`` on the engines; returns a ResultList of result dicts."""
        if not isinstance(lines, str):
            raise TypeError(f"execute takes a string of code, not {type(lines).__name__}")
        return self._submit(
            "execute", (lines,), targets, block, f"execute({_short(lines)})", post=ResultList
        )

    def push(self, namespace: dict[str, Any], targets: Any = None, block: Any = None) -> Any:
        """Send the values of ``namespace`` into each engine's namespace."""
        self._check_namespace(namespace)
        for key in namespace:
            self._flattened.pop(key, None)
        return self._submit("push", (namespace,), targets, block, f"push({', '.join(namespace)})")

    def pull(self, keys: Any, targets: Any = None, block: Any = None) -> Any:
        """Per engine: the value of ``keys`` (a str), or a list of values (a list/tuple of keys)."""
        keys = self._check_keys(keys)
        return self._submit("pull", (keys,), targets, block, f"pull({_short(keys)})")

    def push_function(
        self, namespace: dict[str, Any], targets: Any = None, block: Any = None
    ) -> Any:
        """Push functions; they run with the engine's namespace as their globals."""
        self._check_namespace(namespace)
        for v in namespace.values():
            if not isinstance(v, types.FunctionType):
                raise TypeError("function object expected")
        return self._submit(
            "push_function", (namespace,), targets, block, f"push_function({', '.join(namespace)})"
        )

    def pull_function(self, keys: Any, targets: Any = None, block: Any = None) -> Any:
        keys = self._check_keys(keys)
        return self._submit(
            "pull_function", (keys,), targets, block, f"pull_function({_short(keys)})"
        )

    def push_serialized(
        self, namespace: dict[str, Serialized], targets: Any = None, block: Any = None
    ) -> Any:
        self._check_namespace(namespace)
        for k, v in namespace.items():
            if not isinstance(v, Serialized):
                raise TypeError(
                    "push_serialized takes Serialized values (multiengine.serialize(obj)); "
                    f"{k!r} is not"
                )
        return self._submit(
            "push_serialized",
            (namespace,),
            targets,
            block,
            f"push_serialized({', '.join(namespace)})",
        )

    def pull_serialized(self, keys: Any, targets: Any = None, block: Any = None) -> Any:
        keys = self._check_keys(keys)
        return self._submit(
            "pull_serialized", (keys,), targets, block, f"pull_serialized({_short(keys)})"
        )

    def get_result(self, i: int | None = None, targets: Any = None, block: Any = None) -> Any:
        """The result dict of command ``i`` (default: the last one, failed ones included)."""
        return self._submit(
            "get_result", (i,), targets, block, f"get_result({i!r})", post=ResultList
        )

    def reset(self, targets: Any = None, block: Any = None) -> Any:
        """Clear the engines' namespaces (queued commands are dropped first)."""
        return self._submit("reset", (), targets, block, "reset()")

    def keys(self, targets: Any = None, block: Any = None) -> Any:
        return self._submit("keys", (), targets, block, "keys()")

    def kill(self, controller: bool = False, targets: Any = None, block: Any = None) -> Any:
        """Stop engines; with ``controller=True`` every engine and then the controller."""
        if controller:
            result = self._submit("kill", (), "all", True, "kill()", extra={"controller": True})
            if not self._find_block(block):
                return PendingResult(self, "", "kill", value=result)
            return result
        return self._submit("kill", (), targets, block, "kill()")

    def activate(self) -> None:
        """Make this client the one the IPython magics (%px, %autopx, %result) use."""
        if activate_magics is None:  # multiengine.magics was never loaded
            print(MAGICS_NOT_LOADED if "IPython" in sys.modules else MAGICS_NEED_IPYTHON)
            return
        activate_magics(self)

    def executor(self, targets: Any = None) -> MultiEngineExecutor:
        """A ``concurrent.futures.Executor``: each ``submit(fn, *args)`` runs on every target
        engine and its Future gets the list of their results."""
        from .executor import MultiEngineExecutor

        return MultiEngineExecutor(self, targets)

    def interrupt(self, targets: Any = None) -> list[None]:
        """Interrupt what runs on the engines now (KeyboardInterrupt in the user code).

        The interrupted commands fail with KeyboardInterrupt inside their CompositeError,
        which, as any error, clears the MultiEngine commands queued behind them.
        """
        targets = self._find_targets(targets)
        msg = self._request({"t": "interrupt", "targets": self._wire_targets(targets)})
        raise_direct(msg)
        return unpack(msg.content)  # type: ignore[no-any-return]

    def clear_queue(self, targets: Any = None, block: Any = None) -> Any:
        return self._submit("clear_queue", (), targets, block, "clear_queue()")

    def queue_status(self, targets: Any = None, block: Any = None) -> Any:
        """Per engine ``(id, {'queue': [queued commands], 'pending': running command or None})``."""
        return self._submit(
            "queue_status",
            (),
            targets,
            block,
            "queue_status()",
            post=lambda v: [tuple(x) for x in v],
        )

    def get_ids(self) -> list[int]:
        """The ids of the registered engines (always blocking)."""
        return unpack(self._request({"t": "get_ids"}).content)  # type: ignore[no-any-return]

    def status(self) -> dict[str, Any]:
        """The controller's view: engines, queues, pending results."""
        return unpack(self._request({"t": "status"}).content)  # type: ignore[no-any-return]

    # ------------------------------------------------------------ scatter / gather
    def scatter(
        self,
        key: str,
        seq: Any,
        dist: str = "b",
        flatten: bool = False,
        targets: Any = None,
        block: Any = None,
    ) -> Any:
        """Partition ``seq`` and push part ``p`` to the p-th target as ``key``."""
        check_dist(dist)
        targets = self._find_targets(targets)
        block = self._find_block(block)
        ids = self._ids_for(targets)
        if not ids:
            return [] if block else PendingResult(self, "", "scatter", value=[])
        pieces = partition(seq, len(ids), dist)
        self._flattened.pop(key, None)
        if flatten:
            flags = [len(p) == 1 for p in pieces]
            pieces = [p[0] if f else p for p, f in zip(pieces, flags, strict=True)]
            self._flattened[key] = (list(ids), flags)
        return self._submit(
            "push", (), ids, block, f"scatter({key})", parts=[({key: p},) for p in pieces]
        )

    def gather(self, key: str, dist: str = "b", targets: Any = None, block: Any = None) -> Any:
        """Pull ``key`` from each target and join the parts into one sequence."""
        check_dist(dist)
        targets = self._find_targets(targets)
        flattened = None
        if (
            key in self._flattened
        ):  # undo scatter(flatten=True) when gathering from the same engines
            ids, flags = self._flattened[key]
            if self._ids_for(targets) == ids:
                flattened = flags
        return self._submit(
            "pull",
            (key,),
            targets,
            block,
            f"gather({key})",
            post=lambda parts: join(parts, dist, flattened),
        )

    def zip_pull(self, keys: Any, targets: Any = None, block: Any = None) -> Any:
        targets = self._find_targets(targets)
        multi = len(self._ids_for(targets)) > 1 if not isinstance(targets, int) else False
        several = not isinstance(keys, str)  # a list of keys gives a list per engine (decision 5)

        def post(values: list[Any]) -> Any:
            if not multi:
                return values[0] if values else values
            if several:
                return list(zip(*values))
            return list(values)

        return self._submit(
            "pull",
            (self._check_keys(keys),),
            targets,
            block,
            f"zip_pull({_short(keys)})",
            post=post,
        )

    # ------------------------------------------------------------ map
    def raw_map(
        self, func: Any, seqs: Any, dist: str = "b", targets: Any = None, block: Any = None
    ) -> Any:
        """``map(func, *seqs)`` on the engines; ``func`` may be a callable or the name of
        one there."""
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
        items = list(zip(*seqs))
        targets = self._find_targets(targets)
        ids = self._ids_for(targets)
        if not ids:
            if targets == "all":
                raise errors.NoEnginesRegistered(errors.NO_ENGINES_REGISTERED)
            return [] if self._find_block(block) else PendingResult(self, "", "map", value=[])
        chunks = partition(items, len(ids), dist)
        name = getattr(func, "__name__", str(func))
        return self._submit(
            "map",
            (),
            ids,
            block,
            f"map({name})",
            parts=[(func, c) for c in chunks],
            post=lambda parts: join(parts, dist) if parts else [],
        )

    def map(self, func: Any, *sequences: Any) -> Any:
        """A parallel ``map`` over the client's current targets, honouring ``mec.block``."""
        return self.mapper().map(func, *sequences)

    def mapper(self, dist: str = "b", targets: Any = None, block: Any = None) -> MultiEngineMapper:
        return MultiEngineMapper(self, dist, self._find_targets(targets), self._find_block(block))

    def parallel(self, dist: str = "b", targets: Any = None, block: Any = None) -> ParallelFunction:
        if targets is not None:
            self._find_targets(targets)
        if block is not None:
            self._find_block(block)
        return ParallelFunction(self, dist, targets, block)

    # ------------------------------------------------------------ extras
    def run(self, filename: str | os.PathLike[str], targets: Any = None, block: Any = None) -> Any:
        """Run a local Python file on the engines (compiled locally first)."""
        with open(filename) as f:
            source = f.read()
        compile(source, str(filename), "exec")
        block = self._find_block(block)
        if not block:
            return self._submit(
                "execute", (source,), targets, False, f"run({_short(str(filename))})", post=list
            )
        return list(self.execute(source, targets, block))

    def barrier(self, pendingResults: Iterable[PendingResult]) -> None:
        """Wait for every PendingResult; errors are kept for their own ``.r``."""
        prs = list(pendingResults)
        for pr in prs:
            if not isinstance(pr, PendingResult):
                raise errors.NotAPendingResult(
                    "Objects passed to barrier must be PendingResult instances"
                )
        progress = bar(self.progress, len(prs), "barrier", "result")
        try:
            for pr in sorted(prs):
                try:
                    pr.get_result(block=True)
                except Exception:
                    pass
                progress.update(1)
        finally:
            progress.close()

    def flush(self) -> None:
        """Forget every result of this client the controller still holds."""
        self._request({"t": "flush"})

    clear_pending_results = flush

    def benchmark(self, push_size: int = 10000) -> dict[str, tuple[float, str]]:
        """Latency of ``execute('pass')`` and throughput of pushing a float64 array
        (best of 3x10)."""
        from .timing import benchmark

        return benchmark(self, push_size)

    # ------------------------------------------------------------ properties (deprecated)
    def _props(self, cmd: str, args: tuple[Any, ...], targets: Any, block: Any) -> Any:
        warnings.warn(_PROPERTIES_WARNING, DeprecationWarning, stacklevel=3)
        return self._submit(cmd, args, targets, block, f"{cmd}()")

    def set_properties(
        self, properties: dict[Any, Any], targets: Any = None, block: Any = None
    ) -> Any:
        return self._props("set_properties", (properties,), targets, block)

    def get_properties(self, keys: Any = None, targets: Any = None, block: Any = None) -> Any:
        return self._props("get_properties", (keys,), targets, block)

    def has_properties(self, keys: Any, targets: Any = None, block: Any = None) -> Any:
        return self._props("has_properties", (keys,), targets, block)

    def del_properties(self, keys: Any, targets: Any = None, block: Any = None) -> Any:
        return self._props("del_properties", (keys,), targets, block)

    def clear_properties(self, targets: Any = None, block: Any = None) -> Any:
        return self._props("clear_properties", (), targets, block)

    # ------------------------------------------------------------ dict interface
    def __setitem__(self, key: str, value: Any) -> None:
        self.push({key: value})

    def __getitem__(self, key: str) -> Any:
        if not isinstance(key, str):
            raise TypeError("__getitem__ only takes strs")
        return self.pull(key)

    def __len__(self) -> int:
        return len(self.get_ids())

    def __repr__(self) -> str:
        return f"<MultiEngineClient {self._core.url} targets={self.targets!r} block={self.block}>"

    # ------------------------------------------------------------ validation
    @staticmethod
    def _check_namespace(namespace: Any) -> None:
        if not isinstance(namespace, dict):
            raise TypeError(f"namespace must be a dict, not {type(namespace).__name__}")
        for k in namespace:
            if not isinstance(k, str) or not k.isidentifier():
                raise TypeError(f"names must be identifier strings, not {k!r}")

    @staticmethod
    def _check_keys(keys: Any) -> Any:
        if isinstance(keys, str):
            return keys
        if isinstance(keys, (list, tuple)):
            return list(keys)
        raise TypeError(f"keys must be a str or a list/tuple of strs, not {type(keys).__name__}")
