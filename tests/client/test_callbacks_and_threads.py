"""User code never runs where it can block the client's I/O; asyncio needs no thread
per call; output of calls that did not block shows up as it arrives."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from helpers import Latch, wait_until

import multiengine


def test_an_output_hook_may_call_the_client(mec: multiengine.MultiEngineClient) -> None:
    seen: list[tuple[int, str, list[int]]] = []
    threads: set[str] = set()

    def hook(engine: int, name: str, text: str) -> None:
        threads.add(threading.current_thread().name)
        seen.append((engine, text.strip(), mec.get_ids()))  # re-enters the client

    mec.live_output = True
    mec.output_hook = hook
    results = mec.execute("print('hi from', id)", targets=[0, 1])
    assert [r["stdout"].strip() for r in results] == ["hi from 0", "hi from 1"]
    # the hooks ran (with working client calls) before execute returned
    assert sorted(seen) == [(0, "hi from 0", [0, 1, 2, 3]), (1, "hi from 1", [0, 1, 2, 3])]
    assert threads == {"multiengine-callbacks"}  # never the thread that reads the socket


def test_a_hook_may_run_a_live_execute_itself(mec: multiengine.MultiEngineClient) -> None:
    lines: list[str] = []

    def hook(engine: int, name: str, text: str) -> None:
        lines.append(text.strip())
        if text.strip() == "outer":
            mec.execute("print('inner')", targets=1)

    mec.live_output = True
    mec.output_hook = hook
    mec.execute("print('outer')", targets=0)
    assert lines == ["outer", "inner"]


def test_a_callback_of_a_pending_result_may_call_the_client(
    mec: multiengine.MultiEngineClient,
) -> None:
    pr = mec.execute("x = 1", block=False)
    pr.add_callback(lambda value: (value, mec.pull("x")))
    value, pulled = pr.r
    assert pulled == [1, 1, 1, 1] and len(value) == 4


def test_output_of_a_call_that_did_not_block_appears_while_it_runs(
    mec: multiengine.MultiEngineClient, latch: Callable[[], Latch]
) -> None:
    seen: list[str] = []
    mec.live_output = True
    mec.output_hook = lambda engine, name, text: seen.append(text.strip())
    gate = latch()
    code = "print('started', flush=True)\n" + gate.wait_code + "\n"
    pr = mec.execute(code, targets=2, block=False)
    # no thread of the test waits on the client: the line must arrive on its own
    wait_until(lambda: seen == ["started"])
    assert not pr.done()
    gate.set()
    assert pr.r[0]["stdout"] == "started\n"


def test_close_inside_a_hook_does_not_hang(cluster: multiengine.Cluster) -> None:
    client = cluster.multiengine_client()
    closed = threading.Event()

    def hook(engine: int, name: str, text: str) -> None:
        client.close()
        closed.set()

    client.live_output = True
    client.output_hook = hook
    try:
        client.execute("print('bye')", targets=0)
    except multiengine.errors.ControllerConnectionError:
        pass  # closed under the call: it fails with that, never hangs
    wait_until(closed.is_set)


def test_asyncio_gather_of_200_calls_uses_a_bounded_number_of_threads(
    cluster: multiengine.Cluster,
) -> None:
    async def main() -> tuple[list[object], int]:
        before = threading.active_count()
        async with multiengine.AsyncMultiEngineClient(cluster_dir=cluster.cluster_dir.path) as amec:
            peak = before

            async def one(i: int) -> object:
                nonlocal peak
                peak = max(peak, threading.active_count())
                return await amec.pull("id", targets=i % 4)

            results = await asyncio.gather(*(one(i) for i in range(200)))
            peak = max(peak, threading.active_count())
        return results, peak - before

    results, extra_threads = asyncio.run(main())
    assert results == [[i % 4] for i in range(200)]
    assert extra_threads <= 3  # the I/O thread and the delivery thread, not one per call


def test_asyncio_calls_and_pending_results(cluster: multiengine.Cluster) -> None:
    async def main() -> None:
        amec = multiengine.AsyncMultiEngineClient(cluster_dir=cluster.cluster_dir.path)
        try:
            pr = await amec.execute("y = id * 10", block=False)
            assert isinstance(pr, multiengine.PendingResult)
            await pr
            assert await amec.pull("y", targets=[1, 2], block=True) == [10, 20]
            await amec.scatter("s", list(range(8)))
            assert await amec.gather("s") == list(range(8))
            assert await amec.map(lambda v: v + 1, range(4)) == [1, 2, 3, 4]
        finally:
            await amec.close()

    asyncio.run(main())
