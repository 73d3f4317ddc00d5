"""concurrent.futures executors over real engines (issue 5, part 5)."""

from __future__ import annotations

import concurrent.futures as cf
import gc
import threading
import weakref
from collections.abc import Callable
from typing import Any

import pytest
from helpers import HANG, Latch, wait_for_path, wait_until

import multiengine
from multiengine.errors import InvalidEngineID


def test_task_executor_submit_result_and_exception(tc: multiengine.TaskClient) -> None:
    with tc.executor() as ex:
        assert isinstance(ex, cf.Executor)
        futures = [ex.submit(pow, 2, i) for i in range(12)]
        assert [f.result(10) for f in futures] == [2**i for i in range(12)]
        bad = ex.submit(lambda: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            bad.result(10)
        assert isinstance(bad.exception(), ZeroDivisionError)


def test_task_executor_completes_quick_work_before_slow(
    tc: multiengine.TaskClient, latch: Callable[[], Latch]
) -> None:
    gate = latch()
    with tc.executor() as ex:
        slow = ex.submit(wait_for_path, str(gate.path))  # cannot end before the gate opens
        quick = ex.submit(abs, -5)
        assert quick.result(HANG) == 5
        assert not slow.done()  # each Future completes when its own task does
        done = list(cf.as_completed([ex.submit(abs, -i) for i in range(6)], timeout=HANG))
        assert sorted(f.result() for f in done) == list(range(6))
        gate.set()
        assert slow.result(HANG) is None


def test_task_executor_map_callbacks_and_shutdown(tc: multiengine.TaskClient) -> None:
    ex = tc.executor(retries=1)
    assert list(ex.map(lambda x, y: x * y, range(20), range(20))) == [x * x for x in range(20)]
    seen: list[int] = []
    f = ex.submit(abs, -7)
    f.add_done_callback(lambda fut: seen.append(fut.result()))
    ex.shutdown(wait=True)
    assert f.result() == 7
    wait_until(lambda: seen, message="the done-callback to run")
    assert seen == [7]
    with pytest.raises(RuntimeError, match="after shutdown"):
        ex.submit(abs, 1)


def test_multiengine_executor_runs_on_every_target(mec: multiengine.MultiEngineClient) -> None:
    mec.push({"base": 100})
    with mec.executor(targets=[1, 3]) as ex:
        f = ex.submit(lambda x: base + x, 5)  # noqa: F821 - ``base`` lives on the engines
        assert f.result(10) == [105, 105]
        bad = ex.submit(lambda: 1 / 0)
        with pytest.raises(multiengine.CompositeError) as info:
            bad.result(10)
        assert isinstance(info.value.elist[0][1], ZeroDivisionError)
        assert ex.submit(abs, -3).result(10) == [3, 3]  # the engines go on


class _DecodedHere:
    """Unpickles as the thread that unpickles it (the engine pickles it by reference to
    ``threading.current_thread``)."""

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        import threading

        return threading.current_thread, ()


def test_multiengine_executor_value_is_unpickled_by_the_caller_and_callbacks_run_apart(
    mec: multiengine.MultiEngineClient,
) -> None:
    callback_threads: list[str] = []
    with mec.executor(targets=0) as ex:
        fut = ex.submit(_DecodedHere)
        fut.add_done_callback(lambda f: callback_threads.append(threading.current_thread().name))
        (decoded_by,) = fut.result(HANG)
        assert decoded_by is threading.current_thread()  # not the client's I/O thread
        assert fut.result() == [decoded_by]  # decoded once
        assert fut.engine_ids == [0] and fut.metadata[0]["status"] == "ok"
        wait_until(lambda: callback_threads, message="the done-callback to run")
        assert callback_threads == ["multiengine-callbacks"]


def test_multiengine_executor_failure_wakes_a_wait_for_the_first_exception(
    mec: multiengine.MultiEngineClient, latch: Callable[[], Latch]
) -> None:
    gate = latch()
    with mec.executor(targets=1) as one, mec.executor(targets=2) as other:
        slow = one.submit(wait_for_path, str(gate.path))
        bad = other.submit(lambda: 1 / 0)
        done, _ = cf.wait([slow, bad], timeout=HANG, return_when=cf.FIRST_EXCEPTION)
        assert done == {bad} and not slow.done()
        assert isinstance(bad.exception(), multiengine.CompositeError)
        gate.set()
        assert slow.result(HANG) == [None]


def test_multiengine_executor_bad_targets_fail_the_future(
    mec: multiengine.MultiEngineClient,
) -> None:
    with mec.executor(targets=[0, 99]) as ex:
        fut = ex.submit(abs, -1)
        with pytest.raises(InvalidEngineID):
            fut.result(HANG)
    assert mec.executor(targets=0).submit(abs, -2).result(HANG) == [2]


@pytest.mark.parametrize("live", [False, True])
def test_multiengine_executor_future_is_freed_once_dropped_without_the_cycle_collector(
    mec: multiengine.MultiEngineClient, live: bool
) -> None:
    before = mec.live_output
    mec.live_output = live  # with live output its answer is completed on the delivery thread
    try:
        with mec.executor(targets=0) as ex:
            fut = ex.submit(abs, -1)
            assert fut.result(HANG) == [1]
            ref = weakref.ref(fut)
            gc.disable()
            try:
                del fut
                wait_until(lambda: ref() is None, message="the Future to be freed")
            finally:
                gc.enable()
    finally:
        mec.live_output = before
