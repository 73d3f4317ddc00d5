"""asyncio clients: every method of the blocking clients, as a coroutine.

``await amec.execute('x = 1')`` runs the blocking client's ``execute`` on a worker
thread, so the event loop never blocks and several calls can be in flight at once:
the blocking core is safe for concurrent threads (whichever thread waits reads the
replies for all of them). A ``PendingResult`` is awaitable (``await pr``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from .multiengine import MultiEngineClient
from .taskclient import TaskClient

__all__ = ["AsyncMultiEngineClient", "AsyncTaskClient"]


def _coroutine(name: str) -> Callable[..., Coroutine[Any, Any, Any]]:
    """A coroutine method that calls the blocking client's ``name`` on a worker thread."""

    async def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(getattr(self.sync, name), *args, **kwargs)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"``await`` form of the blocking client's ``{name}``."
    return method


class _AsyncBase:
    sync: Any

    async def close(self) -> None:
        await asyncio.to_thread(self.sync.close)

    async def __aenter__(self) -> Any:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} over {self.sync!r}>"


class AsyncMultiEngineClient(_AsyncBase):
    """The MultiEngine client for asyncio code (same arguments as MultiEngineClient)."""

    def __init__(
        self,
        profile: str | None = "default",
        cluster_dir: str | os.PathLike[str] | None = None,
        connection_file: str | os.PathLike[str] | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.sync = MultiEngineClient(profile, cluster_dir, connection_file, timeout)

    @property
    def block(self) -> bool:
        return self.sync.block

    @block.setter
    def block(self, value: bool) -> None:
        self.sync.block = value

    @property
    def targets(self) -> Any:
        return self.sync.targets

    @targets.setter
    def targets(self, value: Any) -> None:
        self.sync.targets = value

    execute = _coroutine("execute")
    run = _coroutine("run")
    push = _coroutine("push")
    pull = _coroutine("pull")
    push_function = _coroutine("push_function")
    pull_function = _coroutine("pull_function")
    push_serialized = _coroutine("push_serialized")
    pull_serialized = _coroutine("pull_serialized")
    scatter = _coroutine("scatter")
    gather = _coroutine("gather")
    zip_pull = _coroutine("zip_pull")
    map = _coroutine("map")
    raw_map = _coroutine("raw_map")
    get_result = _coroutine("get_result")
    reset = _coroutine("reset")
    keys = _coroutine("keys")
    kill = _coroutine("kill")
    clear_queue = _coroutine("clear_queue")
    queue_status = _coroutine("queue_status")
    get_ids = _coroutine("get_ids")
    status = _coroutine("status")
    interrupt = _coroutine("interrupt")
    barrier = _coroutine("barrier")
    flush = _coroutine("flush")
    clear_pending_results = _coroutine("clear_pending_results")
    get_pending_deferred = _coroutine("get_pending_deferred")
    benchmark = _coroutine("benchmark")
    set_properties = _coroutine("set_properties")
    get_properties = _coroutine("get_properties")
    has_properties = _coroutine("has_properties")
    del_properties = _coroutine("del_properties")
    clear_properties = _coroutine("clear_properties")

    def mapper(self, dist: str = "b", targets: Any = None, block: Any = None) -> Any:
        return self.sync.mapper(dist, targets, block)


class AsyncTaskClient(_AsyncBase):
    """The Task client for asyncio code (same arguments as TaskClient)."""

    def __init__(
        self,
        profile: str | None = "default",
        cluster_dir: str | os.PathLike[str] | None = None,
        connection_file: str | os.PathLike[str] | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.sync = TaskClient(profile, cluster_dir, connection_file, timeout)

    run = _coroutine("run")
    get_ids = _coroutine("get_ids")
    get_task_result = _coroutine("get_task_result")
    abort = _coroutine("abort")
    barrier = _coroutine("barrier")
    spin = _coroutine("spin")
    queue_status = _coroutine("queue_status")
    clear = _coroutine("clear")
    map = _coroutine("map")

    def mapper(self, *args: Any, **kwargs: Any) -> Any:
        """The blocking client's TaskMapper (its ``map`` blocks; use ``await atc.map``)."""
        return self.sync.mapper(*args, **kwargs)

    def executor(self, **task_options: Any) -> Any:
        """A ``concurrent.futures`` executor;
        ``asyncio.wrap_future`` makes its Futures awaitable."""
        return self.sync.executor(**task_options)

    async def imap(
        self, func: Callable[..., Any], *iterables: Any, **options: Any
    ) -> AsyncIterator[Any]:
        """The lazy load-balanced map, as an async iterator."""
        done = object()
        iterator = self.sync.imap(func, *iterables, **options)
        while (item := await asyncio.to_thread(next, iterator, done)) is not done:
            yield item
