"""The blocking MultiEngine client: explicit engines, the seed's full interface.

Every method takes ``targets`` (``'all'``, an int, or a list/tuple of ints) and
``block``; ``None`` means the instance's ``mec.targets``/``mec.block``. With
``block=False`` a :class:`PendingResult` comes back at once. Multiplexed methods
return one entry per target, in target order; if any engine failed they raise a
:class:`~multiengine.errors.CompositeError` holding the failures.

The calls themselves are defined once, in ``calls.py``; this class runs them on the
calling thread (``drive.run``). It is long because it is the typed surface of the
seed's ~40 methods: each method with ``block`` has overloads, so a type checker knows
that ``block=True`` gives the values and ``block=False`` a ``PendingResult``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal, overload

from ..wire import protocol as P
from ..wire.serialize import Serialized
from .calls import MultiEngineCalls, Targets
from .connected import Connected
from .drive import Op, run
from .live import LiveOutputSettings
from .mapper import MultiEngineMapper, ParallelFunction
from .results import PendingResult, ResultList

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


class MultiEngineClient(Connected, LiveOutputSettings):
    """A client of one controller's engines (``profile``, ``cluster_dir`` or
    ``connection_file`` say which; ``timeout``: how long to wait for it to answer)."""

    _calls: MultiEngineCalls

    def _make_calls(self) -> MultiEngineCalls:
        return MultiEngineCalls(self._core)

    def _run(self, op: Op[Any]) -> Any:
        return run(self._core, op)

    # ------------------------------------------------------------ settings
    @property
    def block(self) -> bool:
        """Whether calls wait for their results (default True); per call: ``block=``."""
        return self._calls.block

    @block.setter
    def block(self, value: bool) -> None:
        self._calls.block = self._calls.find_block(value)

    @property
    def targets(self) -> Targets:
        """The engines calls go to by default: ``'all'``, an id, or a list of ids."""
        return self._calls.targets

    @targets.setter
    def targets(self, value: Targets) -> None:
        if value is None:
            raise ValueError("targets must be a str, list, tuple or int")
        self._calls.targets = self._calls.find_targets(value)

    @property
    def progress(self) -> bool | None:
        """A bar for blocking waits over two seconds: True, False, or None (the default:
        on at a terminal or in IPython)."""
        return self._calls.progress

    @progress.setter
    def progress(self, value: bool | None) -> None:
        self._calls.progress = value

    # ------------------------------------------------------------ calls with block
    @overload
    def execute(
        self, lines: str, targets: Targets | None = None, *, block: Literal[True]
    ) -> ResultList: ...
    @overload
    def execute(
        self, lines: str, targets: Targets | None = None, *, block: Literal[False]
    ) -> PendingResult[ResultList]: ...
    @overload
    def execute(
        self, lines: str, targets: Targets | None = None, block: bool | None = None
    ) -> ResultList | PendingResult[ResultList]: ...
    def execute(
        self, lines: str, targets: Targets | None = None, block: bool | None = None
    ) -> ResultList | PendingResult[ResultList]:
        """Run ``lines`` on the engines; a ResultList of result dicts, one per engine."""
        return self._run(self._calls.execute(lines, targets, block))  # type: ignore[no-any-return]

    @overload
    def run(
        self,
        filename: str | os.PathLike[str],
        targets: Targets | None = None,
        *,
        block: Literal[True],
    ) -> list[Any]: ...
    @overload
    def run(
        self,
        filename: str | os.PathLike[str],
        targets: Targets | None = None,
        *,
        block: Literal[False],
    ) -> PendingResult[list[Any]]: ...
    @overload
    def run(
        self,
        filename: str | os.PathLike[str],
        targets: Targets | None = None,
        block: bool | None = None,
    ) -> list[Any] | PendingResult[list[Any]]: ...
    def run(
        self,
        filename: str | os.PathLike[str],
        targets: Targets | None = None,
        block: bool | None = None,
    ) -> list[Any] | PendingResult[list[Any]]:
        """Run a local Python file on the engines (compiled locally first)."""
        return self._run(self._calls.run(filename, targets, block))  # type: ignore[no-any-return]

    @overload
    def push(
        self,
        namespace: dict[str, Any],
        targets: Targets | None = None,
        *,
        block: Literal[True],
        shared: bool = False,
    ) -> list[None]: ...
    @overload
    def push(
        self,
        namespace: dict[str, Any],
        targets: Targets | None = None,
        *,
        block: Literal[False],
        shared: bool = False,
    ) -> PendingResult[list[None]]: ...
    @overload
    def push(
        self,
        namespace: dict[str, Any],
        targets: Targets | None = None,
        block: bool | None = None,
        *,
        shared: bool = False,
    ) -> list[None] | PendingResult[list[None]]: ...
    def push(
        self,
        namespace: dict[str, Any],
        targets: Targets | None = None,
        block: bool | None = None,
        *,
        shared: bool = False,
    ) -> list[None] | PendingResult[list[None]]:
        """Send the values of ``namespace`` into each engine's namespace.

        Large buffers (numpy arrays, bytes) reach engines of this host through shared
        memory: copied once for all of them, and copied out by each engine into its own
        writable memory. ``shared=True``: the engines get read-only numpy arrays mapped on
        that one copy (no copy at all); the memory stays until the engines drop them
        (docs/client.md, "Large data on one host").
        """
        return self._run(self._calls.push(namespace, targets, block, shared))  # type: ignore[no-any-return]

    @overload
    def pull(
        self,
        keys: str | Sequence[str],
        targets: Targets | None = None,
        *,
        block: Literal[True],
        shared: bool = False,
    ) -> list[Any]: ...
    @overload
    def pull(
        self,
        keys: str | Sequence[str],
        targets: Targets | None = None,
        *,
        block: Literal[False],
        shared: bool = False,
    ) -> PendingResult[list[Any]]: ...
    @overload
    def pull(
        self,
        keys: str | Sequence[str],
        targets: Targets | None = None,
        block: bool | None = None,
        *,
        shared: bool = False,
    ) -> list[Any] | PendingResult[list[Any]]: ...
    def pull(
        self,
        keys: str | Sequence[str],
        targets: Targets | None = None,
        block: bool | None = None,
        *,
        shared: bool = False,
    ) -> list[Any] | PendingResult[list[Any]]:
        """Per engine: the value of ``keys`` (a str), or a list of values (a list/tuple of keys).

        Large numpy arrays from engines of this host come through shared memory, copied
        into writable memory here. ``shared=True`` (a blocking pull): read-only arrays
        mapped on the engine's copy instead, with no copy here; the engine reuses that
        memory once they are gone (docs/client.md, "Large data on one host").
        """
        return self._run(self._calls.pull(keys, targets, block, shared))  # type: ignore[no-any-return]

    @overload
    def push_function(
        self,
        namespace: dict[str, Callable[..., Any]],
        targets: Targets | None = None,
        *,
        block: Literal[True],
    ) -> list[None]: ...
    @overload
    def push_function(
        self,
        namespace: dict[str, Callable[..., Any]],
        targets: Targets | None = None,
        *,
        block: Literal[False],
    ) -> PendingResult[list[None]]: ...
    @overload
    def push_function(
        self,
        namespace: dict[str, Callable[..., Any]],
        targets: Targets | None = None,
        block: bool | None = None,
    ) -> list[None] | PendingResult[list[None]]: ...
    def push_function(
        self,
        namespace: dict[str, Callable[..., Any]],
        targets: Targets | None = None,
        block: bool | None = None,
    ) -> list[None] | PendingResult[list[None]]:
        """Push functions; they run with the engine's namespace as their globals."""
        return self._run(self._calls.push_function(namespace, targets, block))  # type: ignore[no-any-return]

    @overload
    def pull_function(
        self, keys: str | Sequence[str], targets: Targets | None = None, *, block: Literal[True]
    ) -> list[Any]: ...
    @overload
    def pull_function(
        self, keys: str | Sequence[str], targets: Targets | None = None, *, block: Literal[False]
    ) -> PendingResult[list[Any]]: ...
    @overload
    def pull_function(
        self, keys: str | Sequence[str], targets: Targets | None = None, block: bool | None = None
    ) -> list[Any] | PendingResult[list[Any]]: ...
    def pull_function(
        self, keys: str | Sequence[str], targets: Targets | None = None, block: bool | None = None
    ) -> list[Any] | PendingResult[list[Any]]:
        """Per engine: the function(s) named ``keys``."""
        return self._run(self._calls.pull_function(keys, targets, block))  # type: ignore[no-any-return]

    @overload
    def push_serialized(
        self,
        namespace: dict[str, Serialized],
        targets: Targets | None = None,
        *,
        block: Literal[True],
    ) -> list[None]: ...
    @overload
    def push_serialized(
        self,
        namespace: dict[str, Serialized],
        targets: Targets | None = None,
        *,
        block: Literal[False],
    ) -> PendingResult[list[None]]: ...
    @overload
    def push_serialized(
        self,
        namespace: dict[str, Serialized],
        targets: Targets | None = None,
        block: bool | None = None,
    ) -> list[None] | PendingResult[list[None]]: ...
    def push_serialized(
        self,
        namespace: dict[str, Serialized],
        targets: Targets | None = None,
        block: bool | None = None,
    ) -> list[None] | PendingResult[list[None]]:
        """Push values already serialized with ``multiengine.serialize``."""
        return self._run(self._calls.push_serialized(namespace, targets, block))  # type: ignore[no-any-return]

    @overload
    def pull_serialized(
        self, keys: str | Sequence[str], targets: Targets | None = None, *, block: Literal[True]
    ) -> list[Any]: ...
    @overload
    def pull_serialized(
        self, keys: str | Sequence[str], targets: Targets | None = None, *, block: Literal[False]
    ) -> PendingResult[list[Any]]: ...
    @overload
    def pull_serialized(
        self, keys: str | Sequence[str], targets: Targets | None = None, block: bool | None = None
    ) -> list[Any] | PendingResult[list[Any]]: ...
    def pull_serialized(
        self, keys: str | Sequence[str], targets: Targets | None = None, block: bool | None = None
    ) -> list[Any] | PendingResult[list[Any]]:
        """Per engine: ``Serialized`` value(s) of ``keys``."""
        return self._run(self._calls.pull_serialized(keys, targets, block))  # type: ignore[no-any-return]

    @overload
    def get_result(
        self, i: int | None = None, targets: Targets | None = None, *, block: Literal[True]
    ) -> ResultList: ...
    @overload
    def get_result(
        self, i: int | None = None, targets: Targets | None = None, *, block: Literal[False]
    ) -> PendingResult[ResultList]: ...
    @overload
    def get_result(
        self, i: int | None = None, targets: Targets | None = None, block: bool | None = None
    ) -> ResultList | PendingResult[ResultList]: ...
    def get_result(
        self, i: int | None = None, targets: Targets | None = None, block: bool | None = None
    ) -> ResultList | PendingResult[ResultList]:
        """The result dict of command ``i`` (default: the last one, failed ones included)."""
        return self._run(self._calls.get_result(i, targets, block))  # type: ignore[no-any-return]

    @overload
    def reset(self, targets: Targets | None = None, *, block: Literal[True]) -> list[None]: ...
    @overload
    def reset(
        self, targets: Targets | None = None, *, block: Literal[False]
    ) -> PendingResult[list[None]]: ...
    @overload
    def reset(
        self, targets: Targets | None = None, block: bool | None = None
    ) -> list[None] | PendingResult[list[None]]: ...
    def reset(
        self, targets: Targets | None = None, block: bool | None = None
    ) -> list[None] | PendingResult[list[None]]:
        """Clear the engines' namespaces (queued commands are dropped first)."""
        return self._run(self._calls.reset(targets, block))  # type: ignore[no-any-return]

    @overload
    def keys(self, targets: Targets | None = None, *, block: Literal[True]) -> list[list[str]]: ...
    @overload
    def keys(
        self, targets: Targets | None = None, *, block: Literal[False]
    ) -> PendingResult[list[list[str]]]: ...
    @overload
    def keys(
        self, targets: Targets | None = None, block: bool | None = None
    ) -> list[list[str]] | PendingResult[list[list[str]]]: ...
    def keys(
        self, targets: Targets | None = None, block: bool | None = None
    ) -> list[list[str]] | PendingResult[list[list[str]]]:
        """Per engine: the names defined in its namespace."""
        return self._run(self._calls.keys(targets, block))  # type: ignore[no-any-return]

    @overload
    def kill(
        self, controller: bool = False, targets: Targets | None = None, *, block: Literal[True]
    ) -> list[None]: ...
    @overload
    def kill(
        self, controller: bool = False, targets: Targets | None = None, *, block: Literal[False]
    ) -> PendingResult[list[None]]: ...
    @overload
    def kill(
        self, controller: bool = False, targets: Targets | None = None, block: bool | None = None
    ) -> list[None] | PendingResult[list[None]]: ...
    def kill(
        self, controller: bool = False, targets: Targets | None = None, block: bool | None = None
    ) -> list[None] | PendingResult[list[None]]:
        """Stop engines; with ``controller=True`` every engine and then the controller."""
        return self._run(self._calls.kill(controller, targets, block))  # type: ignore[no-any-return]

    @overload
    def clear_queue(
        self, targets: Targets | None = None, *, block: Literal[True]
    ) -> list[None]: ...
    @overload
    def clear_queue(
        self, targets: Targets | None = None, *, block: Literal[False]
    ) -> PendingResult[list[None]]: ...
    @overload
    def clear_queue(
        self, targets: Targets | None = None, block: bool | None = None
    ) -> list[None] | PendingResult[list[None]]: ...
    def clear_queue(
        self, targets: Targets | None = None, block: bool | None = None
    ) -> list[None] | PendingResult[list[None]]:
        """Drop the commands queued (not running) on the engines."""
        return self._run(self._calls.clear_queue(targets, block))  # type: ignore[no-any-return]

    @overload
    def queue_status(
        self, targets: Targets | None = None, *, block: Literal[True]
    ) -> list[tuple[Any, ...]]: ...
    @overload
    def queue_status(
        self, targets: Targets | None = None, *, block: Literal[False]
    ) -> PendingResult[list[tuple[Any, ...]]]: ...
    @overload
    def queue_status(
        self, targets: Targets | None = None, block: bool | None = None
    ) -> list[tuple[Any, ...]] | PendingResult[list[tuple[Any, ...]]]: ...
    def queue_status(
        self, targets: Targets | None = None, block: bool | None = None
    ) -> list[tuple[Any, ...]] | PendingResult[list[tuple[Any, ...]]]:
        """Per engine ``(id, {'queue': [queued commands], 'pending': running command or None})``."""
        return self._run(self._calls.queue_status(targets, block))  # type: ignore[no-any-return]

    @overload
    def scatter(
        self,
        key: str,
        seq: Any,
        dist: str = "b",
        flatten: bool = False,
        targets: Targets | None = None,
        *,
        block: Literal[True],
        shared: bool = False,
    ) -> list[None]: ...
    @overload
    def scatter(
        self,
        key: str,
        seq: Any,
        dist: str = "b",
        flatten: bool = False,
        targets: Targets | None = None,
        *,
        block: Literal[False],
        shared: bool = False,
    ) -> PendingResult[list[None]]: ...
    @overload
    def scatter(
        self,
        key: str,
        seq: Any,
        dist: str = "b",
        flatten: bool = False,
        targets: Targets | None = None,
        block: bool | None = None,
        *,
        shared: bool = False,
    ) -> list[None] | PendingResult[list[None]]: ...
    def scatter(
        self,
        key: str,
        seq: Any,
        dist: str = "b",
        flatten: bool = False,
        targets: Targets | None = None,
        block: bool | None = None,
        *,
        shared: bool = False,
    ) -> list[None] | PendingResult[list[None]]:
        """Partition ``seq`` and push part ``p`` to the p-th target as ``key``
        (``shared=True``: read-only arrays on shared memory, as for ``push``)."""
        return self._run(self._calls.scatter(key, seq, dist, flatten, targets, block, shared))  # type: ignore[no-any-return]

    @overload
    def gather(
        self, key: str, dist: str = "b", targets: Targets | None = None, *, block: Literal[True]
    ) -> Any: ...
    @overload
    def gather(
        self, key: str, dist: str = "b", targets: Targets | None = None, *, block: Literal[False]
    ) -> PendingResult[Any]: ...
    @overload
    def gather(
        self, key: str, dist: str = "b", targets: Targets | None = None, block: bool | None = None
    ) -> Any | PendingResult[Any]: ...
    def gather(
        self, key: str, dist: str = "b", targets: Targets | None = None, block: bool | None = None
    ) -> Any | PendingResult[Any]:
        """Pull ``key`` from each target and join the parts into one sequence."""
        return self._run(self._calls.gather(key, dist, targets, block))

    @overload
    def zip_pull(
        self, keys: str | Sequence[str], targets: Targets | None = None, *, block: Literal[True]
    ) -> Any: ...
    @overload
    def zip_pull(
        self, keys: str | Sequence[str], targets: Targets | None = None, *, block: Literal[False]
    ) -> PendingResult[Any]: ...
    @overload
    def zip_pull(
        self, keys: str | Sequence[str], targets: Targets | None = None, block: bool | None = None
    ) -> Any | PendingResult[Any]: ...
    def zip_pull(
        self, keys: str | Sequence[str], targets: Targets | None = None, block: bool | None = None
    ) -> Any | PendingResult[Any]:
        """Pull ``keys`` from each target, zipped across engines."""
        return self._run(self._calls.zip_pull(keys, targets, block))

    @overload
    def raw_map(
        self,
        func: Callable[..., Any] | str,
        seqs: Sequence[Any],
        dist: str = "b",
        targets: Targets | None = None,
        *,
        block: Literal[True],
    ) -> list[Any]: ...
    @overload
    def raw_map(
        self,
        func: Callable[..., Any] | str,
        seqs: Sequence[Any],
        dist: str = "b",
        targets: Targets | None = None,
        *,
        block: Literal[False],
    ) -> PendingResult[list[Any]]: ...
    @overload
    def raw_map(
        self,
        func: Callable[..., Any] | str,
        seqs: Sequence[Any],
        dist: str = "b",
        targets: Targets | None = None,
        block: bool | None = None,
    ) -> list[Any] | PendingResult[list[Any]]: ...
    def raw_map(
        self,
        func: Callable[..., Any] | str,
        seqs: Sequence[Any],
        dist: str = "b",
        targets: Targets | None = None,
        block: bool | None = None,
    ) -> list[Any] | PendingResult[list[Any]]:
        """``map(func, *seqs)`` on the engines; ``func``: a callable, or the name of one there."""
        return self._run(self._calls.raw_map(func, seqs, dist, targets, block))  # type: ignore[no-any-return]

    # ------------------------------------------------------------ other calls
    def map(
        self, func: Callable[..., Any] | str, *sequences: Any
    ) -> list[Any] | PendingResult[list[Any]]:
        """A parallel ``map`` over the client's current targets, honouring ``mec.block``."""
        return self._run(self._calls.raw_map(func, sequences, "b", None, None))  # type: ignore[no-any-return]

    def mapper(
        self, dist: str = "b", targets: Targets | None = None, block: bool | None = None
    ) -> MultiEngineMapper:
        return MultiEngineMapper(
            self, dist, self._calls.find_targets(targets), self._calls.find_block(block)
        )

    def parallel(
        self, dist: str = "b", targets: Targets | None = None, block: bool | None = None
    ) -> ParallelFunction:
        if targets is not None:
            self._calls.find_targets(targets)
        if block is not None:
            self._calls.find_block(block)
        return ParallelFunction(self, dist, targets, block)

    def interrupt(self, targets: Targets | None = None) -> list[None]:
        """Interrupt what runs on the engines now (KeyboardInterrupt in the user code).

        The interrupted commands fail with KeyboardInterrupt inside their CompositeError,
        which, as any error, clears the MultiEngine commands queued behind them.
        """
        return self._run(self._calls.interrupt(targets))  # type: ignore[no-any-return]

    def get_ids(self) -> list[int]:
        """The ids of the registered engines (always blocking)."""
        return self._run(self._calls.ask({"t": P.GET_IDS}))  # type: ignore[no-any-return]

    def status(self) -> dict[str, Any]:
        """The controller's view: engines, queues, pending results."""
        return self._run(self._calls.ask({"t": P.STATUS}))  # type: ignore[no-any-return]

    def monitor(self, since: int = 0) -> dict[str, Any]:
        """What a live view shows: ``{"status": status(), "run": tag, "seq": n, "events": [...],
        "usage": [{"engine", "rss", "cpu", "at"}, ...]}``.

        ``events`` are the starts and ends of commands and tasks numbered above
        ``since`` (pass the last ``seq`` to get only new ones), each
        ``[seq, time, engine, what, kind, desc]``. ``usage`` is each engine's resident
        memory (bytes) and CPU time (seconds) as last reported; asking refreshes it at
        most once a second, for the next call (docs/protocol.md, ``monitor``).
        """
        header = {"t": P.MONITOR, "since": int(since)}
        return self._run(self._calls.ask(header))  # type: ignore[no-any-return]

    def _repr_html_(self) -> str:
        from .view import status_html

        title = f"MultiEngineClient {self._core.url}"
        try:
            return status_html(title, self.status())
        except Exception as e:  # a notebook's display must not raise
            return status_html(title, None, f"{type(e).__name__}: {e}")

    def barrier(self, pendingResults: Iterable[PendingResult[Any]]) -> None:
        """Wait for every PendingResult; errors are kept for their own ``.r``."""
        self._run(self._calls.barrier(pendingResults))

    def flush(self) -> None:
        """Forget every result of this client the controller still holds."""
        self._run(self._calls.flush())

    clear_pending_results = flush

    def get_pending_deferred(self, deferredID: str, block: bool = True) -> Any:
        """Fetch a pending result by id, as the seed's client did."""
        return self._run(self._calls.get_pending_deferred(deferredID, block))

    def benchmark(self, push_size: int = 10000) -> dict[str, tuple[float, str]]:
        """Latency of ``execute("pass")`` and throughput of pushing float64s (best of 3x10)."""
        return self._run(self._calls.benchmark(push_size))  # type: ignore[no-any-return]

    def activate(self) -> None:
        """Make this client the one the IPython magics (%px, %autopx, %result) use; inside
        IPython it loads them first if ``%load_ext multiengine`` was not run."""
        ipython = sys.modules.get("IPython")  # imported by whoever runs IPython, not here
        shell = ipython.get_ipython() if ipython is not None else None
        if activate_magics is None and shell is not None:  # load them: as %load_ext does
            shell.extension_manager.load_extension("multiengine")
        if activate_magics is None:  # multiengine.magics was never loaded
            print(MAGICS_NOT_LOADED if shell is not None else MAGICS_NEED_IPYTHON)
            return
        activate_magics(self)

    def executor(self, targets: Targets | None = None) -> MultiEngineExecutor:
        """A ``concurrent.futures.Executor``: each ``submit(fn, *args)`` runs on every target
        engine and its Future gets the list of their results."""
        from .executor import MultiEngineExecutor

        return MultiEngineExecutor(self, targets)

    # ------------------------------------------------------------ properties (deprecated)
    def set_properties(
        self, properties: dict[Any, Any], targets: Targets | None = None, block: bool | None = None
    ) -> Any:
        return self._run(self._calls.properties("set_properties", (properties,), targets, block))

    def get_properties(
        self, keys: Any = None, targets: Targets | None = None, block: bool | None = None
    ) -> Any:
        return self._run(self._calls.properties("get_properties", (keys,), targets, block))

    def has_properties(
        self, keys: Any, targets: Targets | None = None, block: bool | None = None
    ) -> Any:
        return self._run(self._calls.properties("has_properties", (keys,), targets, block))

    def del_properties(
        self, keys: Any, targets: Targets | None = None, block: bool | None = None
    ) -> Any:
        return self._run(self._calls.properties("del_properties", (keys,), targets, block))

    def clear_properties(self, targets: Targets | None = None, block: bool | None = None) -> Any:
        return self._run(self._calls.properties("clear_properties", (), targets, block))

    # ------------------------------------------------------------ dict interface
    def __setitem__(self, key: str, value: Any) -> None:
        self.push({key: value})

    def __getitem__(self, key: str) -> Any:
        if not isinstance(key, str):
            raise TypeError("__getitem__ only takes strs")
        return self.pull(key)

    def __len__(self) -> int:
        return len(self.get_ids())

    def __enter__(self) -> MultiEngineClient:
        return self

    def __repr__(self) -> str:
        return f"<MultiEngineClient {self._core.url} targets={self.targets!r} block={self.block}>"
