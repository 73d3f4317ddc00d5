"""Output from functions: what functions run by map, the executors, tasks and joblib
print or log reaches the client while they run, and stays with their results."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import HANG, Latch, call_within

import multiengine
from multiengine import StringTask

Event = tuple[int, str, str]


def recorder(client: object, then: Callable[[list[Event]], None] | None = None) -> list[Event]:
    """Live output on; record it as (engine, stream, text), calling ``then(events)``."""
    events: list[Event] = []
    lock = threading.Lock()

    def hook(engine: int, name: str, text: str) -> None:
        with lock:
            events.append((engine, name, text))
        if then is not None:
            then(events)

    client.live_output = True  # type: ignore[attr-defined]
    client.output_hook = hook  # type: ignore[attr-defined]
    return events


def release_on(word: str, count: int, gate: Latch) -> Callable[[list[Event]], None]:
    """A hook step that opens ``gate`` once ``word`` has arrived ``count`` times."""

    def step(events: list[Event]) -> None:
        if sum(text.count(word) for _, _, text in list(events)) >= count:
            gate.set()

    return step


def waiting_function(path: str) -> Callable[[int], int]:
    """A function that prints, then waits for ``path`` to exist, then prints again."""

    def f(x: int) -> int:
        import os
        import time

        print(f"begin {x}", flush=True)
        while not os.path.exists(path):
            time.sleep(0.01)
        print(f"end {x}")
        return x * 10

    return f


def test_map_output_is_live_and_kept(
    mec: multiengine.MultiEngineClient, latch: Callable[[], Latch]
) -> None:
    # each engine's function can only finish once its "begin" line reached the client
    gate = latch()
    events = recorder(mec, release_on("begin", 4, gate))
    pr = mec.mapper(block=False).map(waiting_function(str(gate.path)), range(4))
    assert call_within(lambda: pr.result(HANG)) == [0, 10, 20, 30]
    assert gate.is_set()
    assert pr.stdout == [f"begin {i}\nend {i}\n" for i in range(4)]
    assert pr.stderr == [""] * 4
    live = {e: "".join(t for eid, n, t in events if eid == e and n == "stdout") for e in range(4)}
    assert live == {i: f"begin {i}\nend {i}\n" for i in range(4)}


def test_blocking_map_streams_its_output(mec: multiengine.MultiEngineClient) -> None:
    events = recorder(mec)
    assert mec.map(lambda x: print("item", x) or x, range(8)) == list(range(8))
    text = "".join(t for _, _, t in events)
    assert sorted(text.splitlines()) == sorted(f"item {i}" for i in range(8))


def test_nothing_is_streamed_with_live_output_off(mec: multiengine.MultiEngineClient) -> None:
    events = recorder(mec)
    mec.live_output = False
    pr = mec.mapper(block=False, targets=0).map(lambda x: print("quiet") or x, [1])
    assert pr.result(HANG) == [1]
    assert pr.stdout == ["quiet\n"] and events == []


def test_logging_in_a_function_is_stderr(mec: multiengine.MultiEngineClient) -> None:
    def warn() -> int:
        import logging

        logging.getLogger("mine").warning("careful")
        logging.info("not shown: below WARNING")
        return 1

    mec.live_output = False
    with mec.executor(targets=[1]) as ex:
        fut = ex.submit(warn)
        assert fut.result(HANG) == [1]
    assert fut.stderr == "WARNING:mine:careful\n"  # type: ignore[attr-defined]
    assert fut.stdout == ""  # type: ignore[attr-defined]


def test_output_of_a_failing_function_is_kept(mec: multiengine.MultiEngineClient) -> None:
    def boom(x: int) -> int:
        print("about to fail on", x)
        raise ValueError(x)

    mec.live_output = False
    pr = mec.mapper(block=False, targets=[2, 3]).map(boom, [5, 6])
    assert isinstance(pr.exception(HANG), multiengine.CompositeError)
    assert pr.stdout == ["about to fail on 5\n", "about to fail on 6\n"]
    assert [m["status"] for m in pr.metadata] == ["error", "error"]


def test_executor_output_is_live_and_on_the_future(
    mec: multiengine.MultiEngineClient, latch: Callable[[], Latch]
) -> None:
    gate = latch()
    events = recorder(mec, release_on("begin", 2, gate))
    with mec.executor(targets=[0, 3]) as ex:
        fut = ex.submit(waiting_function(str(gate.path)), 7)
        assert fut.result(HANG) == [70, 70]
    assert fut.engine_ids == [0, 3]  # type: ignore[attr-defined]
    assert fut.stdout == "begin 7\nend 7\n" * 2  # type: ignore[attr-defined]
    assert {e for e, _, _ in events} == {0, 3}


def test_task_output_is_live_and_kept(
    tc: multiengine.TaskClient, latch: Callable[[], Latch]
) -> None:
    gate = latch()
    events = recorder(tc, release_on("begin", 3, gate))
    assert call_within(lambda: tc.map(waiting_function(str(gate.path)), range(3))) == [0, 10, 20]
    text = "".join(t for _, n, t in events if n == "stdout")
    assert sorted(text.splitlines()) == sorted(
        [f"begin {i}" for i in range(3)] + [f"end {i}" for i in range(3)]
    )


def test_a_blocking_task_result_comes_after_its_output_is_shown(
    tc: multiengine.TaskClient,
) -> None:
    shown: list[str] = []

    def slow_hook(engine: int, name: str, text: str) -> None:
        time.sleep(0.05)  # a slow display: the answer must still wait for it
        shown.append(text)

    tc.live_output = True
    tc.output_hook = slow_hook
    for i in range(3):
        tc.run(StringTask(f"print('done {i}')"), block=True)
        assert shown and shown[-1] == f"done {i}\n"


def test_string_task_result_keeps_what_it_printed(tc: multiengine.TaskClient) -> None:
    tc.live_output = False
    tid = tc.run(
        StringTask("print('hi'); import sys; print('oops', file=sys.stderr); a = 1", pull="a")
    )
    result = tc.get_task_result(tid, block=True)
    assert result.ns.a == 1
    assert result.stdout == "hi\n" and result.stderr == "oops\n"
    assert result.engineid is not None and result.started is not None


def test_task_executor_future_has_the_output_and_times(tc: multiengine.TaskClient) -> None:
    tc.live_output = False
    with tc.executor() as ex:
        fut = ex.submit(lambda: print("from a task") or 3)
        assert fut.result(HANG) == 3
    (meta,) = fut.metadata  # type: ignore[attr-defined]
    assert fut.stdout == "from a task\n"  # type: ignore[attr-defined]
    assert meta["submitted"] <= meta["started"] <= meta["completed"]
    assert meta["duration"] is not None and meta["engine_id"] in (0, 1, 2, 3)


def test_joblib_output_is_live(
    tc: multiengine.TaskClient, latch: Callable[[], Latch], tmp_path: Path
) -> None:
    joblib = pytest.importorskip("joblib")
    multiengine.register_joblib_backend()
    gate = latch()
    events = recorder(tc, release_on("begin", 2, gate))
    f = waiting_function(str(gate.path))

    def run() -> list[int]:
        with joblib.parallel_backend("multiengine", client=tc):  # (per thread)
            return joblib.Parallel(n_jobs=2)(joblib.delayed(f)(i) for i in range(2))  # type: ignore[no-any-return]

    out = call_within(run)
    assert out == [0, 10]
    assert sum("begin" in t for _, _, t in events) == 2
