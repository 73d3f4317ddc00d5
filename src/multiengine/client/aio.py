"""asyncio clients: every method of the blocking clients, as a coroutine.

``await amec.execute('x = 1')`` sends the request and awaits the core's own future: the
core's I/O thread reads the answer, so the event loop never blocks and no thread is
held per call (``asyncio.gather`` of hundreds of calls uses the same two threads). The
calls are the blocking clients' own operations (``calls.py``, ``taskcalls.py``),
driven by ``drive.arun``. A ``PendingResult`` is awaitable (``await pr``).

This module is long for the same reason as ``multiengine.py``: each method is typed for
``block=True`` (values) and ``block=False`` (a ``PendingResult``).
"""

from __future__ import annotations

import asyncio
import datetime
import os
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any, Literal, overload

from ..wire import protocol as P
from ..wire.serialize import Serialized
from .calls import MultiEngineCalls, Targets
from .connected import resolve_connection
from .core import ClientCore
from .drive import Op, aiterate, arun
from .live import LiveOutputSettings
from .results import PendingResult, ResultList
from .taskcalls import TaskCalls
from .tasks import BaseTask

__all__ = ["AsyncMultiEngineClient", "AsyncTaskClient"]


class _AsyncBase:
    """Connecting (in the constructor, which returns once the controller has answered)
    and closing (awaitable)."""

    _core: ClientCore

    def __init__(
        self,
        profile: str | None = "default",
        cluster_dir: str | os.PathLike[str] | None = None,
        connection_file: str | os.PathLike[str] | None = None,
        timeout: float = 10.0,
    ) -> None:
        self._core = ClientCore(resolve_connection(profile, cluster_dir, connection_file), timeout)
        self._calls = self._make_calls()

    def _make_calls(self) -> Any:
        return None

    async def _arun(self, op: Op[Any]) -> Any:
        return await arun(self._core, op)

    async def close(self) -> None:
        await asyncio.to_thread(self._core.close)

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._core.url}>"


class AsyncMultiEngineClient(_AsyncBase, LiveOutputSettings):
    """The MultiEngine client for asyncio code (same arguments as MultiEngineClient)."""

    _calls: MultiEngineCalls

    def _make_calls(self) -> MultiEngineCalls:
        return MultiEngineCalls(self._core)

    @property
    def block(self) -> bool:
        return self._calls.block

    @block.setter
    def block(self, value: bool) -> None:
        self._calls.block = self._calls.find_block(value)

    @property
    def targets(self) -> Targets:
        return self._calls.targets

    @targets.setter
    def targets(self, value: Targets) -> None:
        if value is None:
            raise ValueError("targets must be a str, list, tuple or int")
        self._calls.targets = self._calls.find_targets(value)

    @overload
    async def execute(
        self, lines: str, targets: Targets | None = None, *, block: Literal[True]
    ) -> ResultList: ...
    @overload
    async def execute(
        self, lines: str, targets: Targets | None = None, *, block: Literal[False]
    ) -> PendingResult[ResultList]: ...
    @overload
    async def execute(
        self, lines: str, targets: Targets | None = None, block: bool | None = None
    ) -> ResultList | PendingResult[ResultList]: ...
    async def execute(
        self, lines: str, targets: Targets | None = None, block: bool | None = None
    ) -> ResultList | PendingResult[ResultList]:
        """Run ``lines`` on the engines; a ResultList of result dicts, one per engine."""
        return await self._arun(self._calls.execute(lines, targets, block))  # type: ignore[no-any-return]

    @overload
    async def run(
        self,
        filename: str | os.PathLike[str],
        targets: Targets | None = None,
        *,
        block: Literal[True],
    ) -> list[Any]: ...
    @overload
    async def run(
        self,
        filename: str | os.PathLike[str],
        targets: Targets | None = None,
        *,
        block: Literal[False],
    ) -> PendingResult[list[Any]]: ...
    @overload
    async def run(
        self,
        filename: str | os.PathLike[str],
        targets: Targets | None = None,
        block: bool | None = None,
    ) -> list[Any] | PendingResult[list[Any]]: ...
    async def run(
        self,
        filename: str | os.PathLike[str],
        targets: Targets | None = None,
        block: bool | None = None,
    ) -> list[Any] | PendingResult[list[Any]]:
        """Run a local Python file on the engines (compiled locally first)."""
        return await self._arun(self._calls.run(filename, targets, block))  # type: ignore[no-any-return]

    @overload
    async def push(
        self,
        namespace: dict[str, Any],
        targets: Targets | None = None,
        *,
        block: Literal[True],
        shared: bool = False,
    ) -> list[None]: ...
    @overload
    async def push(
        self,
        namespace: dict[str, Any],
        targets: Targets | None = None,
        *,
        block: Literal[False],
        shared: bool = False,
    ) -> PendingResult[list[None]]: ...
    @overload
    async def push(
        self,
        namespace: dict[str, Any],
        targets: Targets | None = None,
        block: bool | None = None,
        *,
        shared: bool = False,
    ) -> list[None] | PendingResult[list[None]]: ...
    async def push(
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
        return await self._arun(self._calls.push(namespace, targets, block, shared))  # type: ignore[no-any-return]

    @overload
    async def pull(
        self,
        keys: str | Sequence[str],
        targets: Targets | None = None,
        *,
        block: Literal[True],
        shared: bool = False,
    ) -> list[Any]: ...
    @overload
    async def pull(
        self,
        keys: str | Sequence[str],
        targets: Targets | None = None,
        *,
        block: Literal[False],
        shared: bool = False,
    ) -> PendingResult[list[Any]]: ...
    @overload
    async def pull(
        self,
        keys: str | Sequence[str],
        targets: Targets | None = None,
        block: bool | None = None,
        *,
        shared: bool = False,
    ) -> list[Any] | PendingResult[list[Any]]: ...
    async def pull(
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
        return await self._arun(self._calls.pull(keys, targets, block, shared))  # type: ignore[no-any-return]

    @overload
    async def push_function(
        self,
        namespace: dict[str, Callable[..., Any]],
        targets: Targets | None = None,
        *,
        block: Literal[True],
    ) -> list[None]: ...
    @overload
    async def push_function(
        self,
        namespace: dict[str, Callable[..., Any]],
        targets: Targets | None = None,
        *,
        block: Literal[False],
    ) -> PendingResult[list[None]]: ...
    @overload
    async def push_function(
        self,
        namespace: dict[str, Callable[..., Any]],
        targets: Targets | None = None,
        block: bool | None = None,
    ) -> list[None] | PendingResult[list[None]]: ...
    async def push_function(
        self,
        namespace: dict[str, Callable[..., Any]],
        targets: Targets | None = None,
        block: bool | None = None,
    ) -> list[None] | PendingResult[list[None]]:
        """Push functions; they run with the engine's namespace as their globals."""
        return await self._arun(self._calls.push_function(namespace, targets, block))  # type: ignore[no-any-return]

    @overload
    async def pull_function(
        self, keys: str | Sequence[str], targets: Targets | None = None, *, block: Literal[True]
    ) -> list[Any]: ...
    @overload
    async def pull_function(
        self, keys: str | Sequence[str], targets: Targets | None = None, *, block: Literal[False]
    ) -> PendingResult[list[Any]]: ...
    @overload
    async def pull_function(
        self, keys: str | Sequence[str], targets: Targets | None = None, block: bool | None = None
    ) -> list[Any] | PendingResult[list[Any]]: ...
    async def pull_function(
        self, keys: str | Sequence[str], targets: Targets | None = None, block: bool | None = None
    ) -> list[Any] | PendingResult[list[Any]]:
        """Per engine: the function(s) named ``keys``."""
        return await self._arun(self._calls.pull_function(keys, targets, block))  # type: ignore[no-any-return]

    @overload
    async def push_serialized(
        self,
        namespace: dict[str, Serialized],
        targets: Targets | None = None,
        *,
        block: Literal[True],
    ) -> list[None]: ...
    @overload
    async def push_serialized(
        self,
        namespace: dict[str, Serialized],
        targets: Targets | None = None,
        *,
        block: Literal[False],
    ) -> PendingResult[list[None]]: ...
    @overload
    async def push_serialized(
        self,
        namespace: dict[str, Serialized],
        targets: Targets | None = None,
        block: bool | None = None,
    ) -> list[None] | PendingResult[list[None]]: ...
    async def push_serialized(
        self,
        namespace: dict[str, Serialized],
        targets: Targets | None = None,
        block: bool | None = None,
    ) -> list[None] | PendingResult[list[None]]:
        """Push values already serialized with ``multiengine.serialize``."""
        return await self._arun(self._calls.push_serialized(namespace, targets, block))  # type: ignore[no-any-return]

    @overload
    async def pull_serialized(
        self, keys: str | Sequence[str], targets: Targets | None = None, *, block: Literal[True]
    ) -> list[Any]: ...
    @overload
    async def pull_serialized(
        self, keys: str | Sequence[str], targets: Targets | None = None, *, block: Literal[False]
    ) -> PendingResult[list[Any]]: ...
    @overload
    async def pull_serialized(
        self, keys: str | Sequence[str], targets: Targets | None = None, block: bool | None = None
    ) -> list[Any] | PendingResult[list[Any]]: ...
    async def pull_serialized(
        self, keys: str | Sequence[str], targets: Targets | None = None, block: bool | None = None
    ) -> list[Any] | PendingResult[list[Any]]:
        """Per engine: ``Serialized`` value(s) of ``keys``."""
        return await self._arun(self._calls.pull_serialized(keys, targets, block))  # type: ignore[no-any-return]

    @overload
    async def get_result(
        self, i: int | None = None, targets: Targets | None = None, *, block: Literal[True]
    ) -> ResultList: ...
    @overload
    async def get_result(
        self, i: int | None = None, targets: Targets | None = None, *, block: Literal[False]
    ) -> PendingResult[ResultList]: ...
    @overload
    async def get_result(
        self, i: int | None = None, targets: Targets | None = None, block: bool | None = None
    ) -> ResultList | PendingResult[ResultList]: ...
    async def get_result(
        self, i: int | None = None, targets: Targets | None = None, block: bool | None = None
    ) -> ResultList | PendingResult[ResultList]:
        """The result dict of command ``i`` (default: the last one, failed ones included)."""
        return await self._arun(self._calls.get_result(i, targets, block))  # type: ignore[no-any-return]

    @overload
    async def reset(
        self, targets: Targets | None = None, *, block: Literal[True]
    ) -> list[None]: ...
    @overload
    async def reset(
        self, targets: Targets | None = None, *, block: Literal[False]
    ) -> PendingResult[list[None]]: ...
    @overload
    async def reset(
        self, targets: Targets | None = None, block: bool | None = None
    ) -> list[None] | PendingResult[list[None]]: ...
    async def reset(
        self, targets: Targets | None = None, block: bool | None = None
    ) -> list[None] | PendingResult[list[None]]:
        """Clear the engines' namespaces (queued commands are dropped first)."""
        return await self._arun(self._calls.reset(targets, block))  # type: ignore[no-any-return]

    @overload
    async def keys(
        self, targets: Targets | None = None, *, block: Literal[True]
    ) -> list[list[str]]: ...
    @overload
    async def keys(
        self, targets: Targets | None = None, *, block: Literal[False]
    ) -> PendingResult[list[list[str]]]: ...
    @overload
    async def keys(
        self, targets: Targets | None = None, block: bool | None = None
    ) -> list[list[str]] | PendingResult[list[list[str]]]: ...
    async def keys(
        self, targets: Targets | None = None, block: bool | None = None
    ) -> list[list[str]] | PendingResult[list[list[str]]]:
        """Per engine: the names defined in its namespace."""
        return await self._arun(self._calls.keys(targets, block))  # type: ignore[no-any-return]

    @overload
    async def kill(
        self, controller: bool = False, targets: Targets | None = None, *, block: Literal[True]
    ) -> list[None]: ...
    @overload
    async def kill(
        self, controller: bool = False, targets: Targets | None = None, *, block: Literal[False]
    ) -> PendingResult[list[None]]: ...
    @overload
    async def kill(
        self, controller: bool = False, targets: Targets | None = None, block: bool | None = None
    ) -> list[None] | PendingResult[list[None]]: ...
    async def kill(
        self, controller: bool = False, targets: Targets | None = None, block: bool | None = None
    ) -> list[None] | PendingResult[list[None]]:
        """Stop engines; with ``controller=True`` every engine and then the controller."""
        return await self._arun(self._calls.kill(controller, targets, block))  # type: ignore[no-any-return]

    @overload
    async def clear_queue(
        self, targets: Targets | None = None, *, block: Literal[True]
    ) -> list[None]: ...
    @overload
    async def clear_queue(
        self, targets: Targets | None = None, *, block: Literal[False]
    ) -> PendingResult[list[None]]: ...
    @overload
    async def clear_queue(
        self, targets: Targets | None = None, block: bool | None = None
    ) -> list[None] | PendingResult[list[None]]: ...
    async def clear_queue(
        self, targets: Targets | None = None, block: bool | None = None
    ) -> list[None] | PendingResult[list[None]]:
        """Drop the commands queued (not running) on the engines."""
        return await self._arun(self._calls.clear_queue(targets, block))  # type: ignore[no-any-return]

    @overload
    async def queue_status(
        self, targets: Targets | None = None, *, block: Literal[True]
    ) -> list[tuple[Any, ...]]: ...
    @overload
    async def queue_status(
        self, targets: Targets | None = None, *, block: Literal[False]
    ) -> PendingResult[list[tuple[Any, ...]]]: ...
    @overload
    async def queue_status(
        self, targets: Targets | None = None, block: bool | None = None
    ) -> list[tuple[Any, ...]] | PendingResult[list[tuple[Any, ...]]]: ...
    async def queue_status(
        self, targets: Targets | None = None, block: bool | None = None
    ) -> list[tuple[Any, ...]] | PendingResult[list[tuple[Any, ...]]]:
        """Per engine ``(id, {'queue': [queued commands], 'pending': running command or None})``."""
        return await self._arun(self._calls.queue_status(targets, block))  # type: ignore[no-any-return]

    @overload
    async def scatter(
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
    async def scatter(
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
    async def scatter(
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
    async def scatter(
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
        op = self._calls.scatter(key, seq, dist, flatten, targets, block, shared)
        return await self._arun(op)  # type: ignore[no-any-return]

    @overload
    async def gather(
        self, key: str, dist: str = "b", targets: Targets | None = None, *, block: Literal[True]
    ) -> Any: ...
    @overload
    async def gather(
        self, key: str, dist: str = "b", targets: Targets | None = None, *, block: Literal[False]
    ) -> PendingResult[Any]: ...
    @overload
    async def gather(
        self, key: str, dist: str = "b", targets: Targets | None = None, block: bool | None = None
    ) -> Any | PendingResult[Any]: ...
    async def gather(
        self, key: str, dist: str = "b", targets: Targets | None = None, block: bool | None = None
    ) -> Any | PendingResult[Any]:
        """Pull ``key`` from each target and join the parts into one sequence."""
        return await self._arun(self._calls.gather(key, dist, targets, block))

    @overload
    async def zip_pull(
        self, keys: str | Sequence[str], targets: Targets | None = None, *, block: Literal[True]
    ) -> Any: ...
    @overload
    async def zip_pull(
        self, keys: str | Sequence[str], targets: Targets | None = None, *, block: Literal[False]
    ) -> PendingResult[Any]: ...
    @overload
    async def zip_pull(
        self, keys: str | Sequence[str], targets: Targets | None = None, block: bool | None = None
    ) -> Any | PendingResult[Any]: ...
    async def zip_pull(
        self, keys: str | Sequence[str], targets: Targets | None = None, block: bool | None = None
    ) -> Any | PendingResult[Any]:
        """Pull ``keys`` from each target, zipped across engines."""
        return await self._arun(self._calls.zip_pull(keys, targets, block))

    @overload
    async def raw_map(
        self,
        func: Callable[..., Any] | str,
        seqs: Sequence[Any],
        dist: str = "b",
        targets: Targets | None = None,
        *,
        block: Literal[True],
    ) -> list[Any]: ...
    @overload
    async def raw_map(
        self,
        func: Callable[..., Any] | str,
        seqs: Sequence[Any],
        dist: str = "b",
        targets: Targets | None = None,
        *,
        block: Literal[False],
    ) -> PendingResult[list[Any]]: ...
    @overload
    async def raw_map(
        self,
        func: Callable[..., Any] | str,
        seqs: Sequence[Any],
        dist: str = "b",
        targets: Targets | None = None,
        block: bool | None = None,
    ) -> list[Any] | PendingResult[list[Any]]: ...
    async def raw_map(
        self,
        func: Callable[..., Any] | str,
        seqs: Sequence[Any],
        dist: str = "b",
        targets: Targets | None = None,
        block: bool | None = None,
    ) -> list[Any] | PendingResult[list[Any]]:
        """``map(func, *seqs)`` on the engines; ``func``: a callable, or the name of one there."""
        return await self._arun(self._calls.raw_map(func, seqs, dist, targets, block))  # type: ignore[no-any-return]

    async def map(
        self, func: Callable[..., Any] | str, *sequences: Any
    ) -> list[Any] | PendingResult[list[Any]]:
        """A parallel ``map`` over the client's current targets, honouring ``block``."""
        return await self._arun(self._calls.raw_map(func, sequences, "b", None, None))  # type: ignore[no-any-return]

    async def interrupt(self, targets: Targets | None = None) -> list[None]:
        """Interrupt what runs on the engines now."""
        return await self._arun(self._calls.interrupt(targets))  # type: ignore[no-any-return]

    async def get_ids(self) -> list[int]:
        """The ids of the registered engines."""
        return await self._arun(self._calls.ask({"t": P.GET_IDS}))  # type: ignore[no-any-return]

    async def status(self) -> dict[str, Any]:
        """The controller's view: engines, queues, pending results."""
        return await self._arun(self._calls.ask({"t": P.STATUS}))  # type: ignore[no-any-return]

    async def barrier(self, pendingResults: Iterable[PendingResult[Any]]) -> None:
        """Wait for every PendingResult; errors are kept for their own result."""
        await self._arun(self._calls.barrier(pendingResults))

    async def flush(self) -> None:
        """Forget every result of this client the controller still holds."""
        await self._arun(self._calls.flush())

    clear_pending_results = flush

    async def get_pending_deferred(self, deferredID: str, block: bool = True) -> Any:
        """Fetch a pending result by id."""
        return await self._arun(self._calls.get_pending_deferred(deferredID, block))

    async def benchmark(self, push_size: int = 10000) -> dict[str, tuple[float, str]]:
        """Latency of ``execute('pass')`` and push throughput (best of 3x10)."""
        return await self._arun(self._calls.benchmark(push_size))  # type: ignore[no-any-return]

    async def set_properties(
        self, properties: dict[Any, Any], targets: Targets | None = None, block: bool | None = None
    ) -> Any:
        return await self._arun(
            self._calls.properties("set_properties", (properties,), targets, block)
        )

    async def get_properties(
        self, keys: Any = None, targets: Targets | None = None, block: bool | None = None
    ) -> Any:
        return await self._arun(self._calls.properties("get_properties", (keys,), targets, block))

    async def has_properties(
        self, keys: Any, targets: Targets | None = None, block: bool | None = None
    ) -> Any:
        return await self._arun(self._calls.properties("has_properties", (keys,), targets, block))

    async def del_properties(
        self, keys: Any, targets: Targets | None = None, block: bool | None = None
    ) -> Any:
        return await self._arun(self._calls.properties("del_properties", (keys,), targets, block))

    async def clear_properties(
        self, targets: Targets | None = None, block: bool | None = None
    ) -> Any:
        return await self._arun(self._calls.properties("clear_properties", (), targets, block))


class AsyncTaskClient(_AsyncBase, LiveOutputSettings):
    """The Task client for asyncio code (same arguments as TaskClient)."""

    _calls: TaskCalls

    def _make_calls(self) -> TaskCalls:
        return TaskCalls()

    async def run(self, task: BaseTask, block: bool = False) -> Any:
        """Submit ``task``; its id, or with ``block=True`` its result."""
        return await self._arun(self._calls.run(task, block))

    async def get_task_result(self, taskid: int, block: bool = False) -> Any:
        """The task's result (see ``TaskClient.get_task_result``)."""
        return await self._arun(self._calls.get_task_result(taskid, block))

    async def abort(self, taskid: int) -> None:
        """Abort a waiting task, or interrupt a running one."""
        await self._arun(self._calls.abort(taskid))

    async def barrier(self, taskids: int | Iterable[int]) -> None:
        """Wait until every task has finished (errors are not raised here)."""
        await self._arun(self._calls.barrier(taskids))

    async def get_ids(self) -> list[int]:
        """The ids of the registered engines."""
        return await self._arun(self._calls.ask({"t": P.GET_IDS}))  # type: ignore[no-any-return]

    async def spin(self) -> bool:
        """Ask the scheduler to hand out waiting tasks now; True if it did."""
        return bool(await self._arun(self._calls.ask({"t": P.TASK_SPIN})))

    async def queue_status(self, verbose: bool = False) -> dict[str, Any]:
        """Counts (or, verbose, ids) of tasks scheduled, pending, succeeded and failed."""
        header = {"t": P.TASK_STATUS, "verbose": bool(verbose)}
        return await self._arun(self._calls.ask(header))  # type: ignore[no-any-return]

    async def clear(self) -> None:
        """Forget every finished task's result."""
        await self._arun(self._calls.ask({"t": P.TASK_CLEAR}))

    async def history(
        self,
        status: str | None = None,
        engine: int | None = None,
        since: float | datetime.datetime | None = None,
        limit: int | None = None,
        kind: str | None = None,
    ) -> list[dict[str, Any]]:
        """Records of finished tasks and MultiEngine calls (see ``TaskClient.history``)."""
        return await self._arun(self._calls.history(status, engine, since, limit, kind))  # type: ignore[no-any-return]

    async def resubmit(self, task_ids: int | Iterable[int]) -> list[int]:
        """Run finished tasks again, under new ids."""
        return await self._arun(self._calls.resubmit(task_ids))  # type: ignore[no-any-return]

    async def map(
        self, func: Callable[..., Any], *sequences: Any, chunksize: int = 1, **options: Any
    ) -> list[Any]:
        """``map(func, *sequences)`` load balanced (see ``TaskClient.map``)."""
        return await self._arun(self._calls.map(func, sequences, chunksize, options))  # type: ignore[no-any-return]

    def imap(
        self,
        func: Callable[..., Any],
        *iterables: Iterable[Any],
        chunksize: int = 1,
        ordered: bool = True,
        window: int | None = None,
        **options: Any,
    ) -> AsyncIterator[Any]:
        """The lazy load-balanced map, as an async iterator (see ``TaskClient.imap``)."""
        stream = self._calls.imap(func, iterables, chunksize, ordered, window, options)
        return aiterate(self._core, stream)
