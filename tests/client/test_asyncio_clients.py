"""The asyncio clients, under pytest-asyncio, against real engines."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from helpers import HANG, Latch

import multiengine
from multiengine.cluster.cluster import Cluster


@pytest.mark.asyncio
async def test_async_multiengine_client(
    cluster: Cluster, mec: multiengine.MultiEngineClient
) -> None:
    async with multiengine.AsyncMultiEngineClient(cluster_dir=cluster.cluster_dir.path) as amec:
        assert await amec.get_ids() == [0, 1, 2, 3]
        await amec.push({"a": 5})
        assert await amec.pull("a") == [5] * 4
        result = await amec.execute("b = a * 2", targets=[0, 1])
        assert isinstance(result, multiengine.ResultList) and [r["id"] for r in result] == [0, 1]
        await amec.scatter("x", list(range(8)))
        assert await amec.gather("x") == list(range(8))
        assert await amec.map(lambda v: v + 1, range(4)) == [1, 2, 3, 4]
        with pytest.raises(multiengine.CompositeError):
            await amec.execute("1/0", targets=0)
        pending = await amec.execute("c = 1", block=False)
        assert isinstance(pending, multiengine.PendingResult)
        assert len(await pending) == 4  # a PendingResult is awaitable


@pytest.mark.asyncio
async def test_calls_run_concurrently_and_the_loop_stays_free(
    cluster: Cluster, mec: multiengine.MultiEngineClient, latch: Callable[[], Latch]
) -> None:
    # Each engine's command says it started, then waits for a release that a coroutine on
    # the event loop gives only once both have started. Both calls must be in flight at
    # once, and the loop must keep running while they are: otherwise nothing ends.
    started, release = [latch(), latch()], latch()

    async def releaser() -> None:
        while not all(s.is_set() for s in started):
            await asyncio.sleep(0.01)
        release.set()

    async with multiengine.AsyncMultiEngineClient(cluster_dir=cluster.cluster_dir.path) as amec:
        calls = [
            amec.execute(f"{started[i].set_code}\n{release.wait_code}", targets=i) for i in (0, 1)
        ]
        results = await asyncio.wait_for(asyncio.gather(*calls, releaser()), HANG)
    assert [[r["id"] for r in rl] for rl in results[:2]] == [[0], [1]]


@pytest.mark.asyncio
async def test_async_task_client(cluster: Cluster, tc: multiengine.TaskClient) -> None:
    async with multiengine.AsyncTaskClient(cluster_dir=cluster.cluster_dir.path) as atc:
        tid = await atc.run(multiengine.StringTask("y = 6 * 7", pull="y"))
        tr = await atc.get_task_result(tid, block=True)
        assert tr.ns.y == 42
        assert await atc.map(lambda v: v * v, range(10)) == [v * v for v in range(10)]
        seen = [v async for v in atc.imap(abs, [-1, -2, -3])]
        assert seen == [1, 2, 3]
        with pytest.raises(ZeroDivisionError):
            await atc.run(multiengine.MapTask(lambda: 1 / 0), block=True)
        status = await atc.queue_status()
        assert status["scheduled"] == 0 and status["pending"] == 0


@pytest.mark.asyncio
async def test_an_awaited_map_sends_submissions_ahead_and_keeps_order(
    cluster: Cluster, tc: multiengine.TaskClient
) -> None:
    async with multiengine.AsyncTaskClient(cluster_dir=cluster.cluster_dir.path) as atc:
        assert await atc.map(lambda v: v + 2, range(1500)) == [v + 2 for v in range(1500)]
        seen = [v async for v in atc.imap(lambda v: -v, range(500), window=30)]
        assert seen == [-v for v in range(500)]
        unordered = [v async for v in atc.imap(abs, range(500), ordered=False, window=30)]
        assert sorted(unordered) == list(range(500))
