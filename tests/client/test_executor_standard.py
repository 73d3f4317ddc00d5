"""The executors behave as ``concurrent.futures`` says: running, cancel, map timeouts,
shutdown(cancel_futures=True), and no reference kept to results already yielded."""

from __future__ import annotations

import concurrent.futures as cf
import gc
import os
import time
import weakref
from collections.abc import Callable

import pytest
from helpers import Latch, call_within, wait_until

import multiengine


def hold(path: str, value: int = 0) -> int:
    """Runs on an engine until ``path`` exists."""

    while not os.path.exists(path):
        time.sleep(0.01)
    return value


def test_a_task_future_is_running_while_its_call_runs_and_cannot_be_cancelled(
    tc: multiengine.TaskClient, latch: Callable[[], Latch]
) -> None:
    gate = latch()
    with tc.executor() as ex:
        fut = ex.submit(hold, str(gate.path), 7)
        wait_until(fut.running)
        assert not fut.done()
        assert fut.cancel() is False
        gate.set()
        assert fut.result(30) == 7


def test_a_task_future_cancelled_before_it_starts_never_runs(
    tc: multiengine.TaskClient, mec: multiengine.MultiEngineClient, latch: Callable[[], Latch]
) -> None:
    gate = latch()
    with tc.executor() as ex:
        blockers = [ex.submit(hold, str(gate.path)) for _ in range(4)]  # every engine busy
        wait_until(lambda: all(f.running() for f in blockers))
        waiting = ex.submit(mec.__class__.__name__.__len__)  # would run after them
        assert waiting.cancel() is True
        assert waiting.cancelled()
        gate.set()
        cf.wait(blockers, timeout=30)
    wait_until(lambda: tc.queue_status()["scheduled"] == 0 and tc.queue_status()["pending"] == 0)
    assert tc.queue_status()["failed"] >= 1  # the cancelled call was aborted, not run


def test_shutdown_cancel_futures_keeps_running_calls(
    tc: multiengine.TaskClient, latch: Callable[[], Latch]
) -> None:
    gate = latch()
    ex = tc.executor()
    running = [ex.submit(hold, str(gate.path), i) for i in range(4)]
    wait_until(lambda: all(f.running() for f in running))
    queued = [ex.submit(hold, str(gate.path), 10 + i) for i in range(3)]
    ex.shutdown(wait=False, cancel_futures=True)
    assert all(f.cancelled() for f in queued)
    gate.set()
    assert [f.result(30) for f in running] == [0, 1, 2, 3]


def test_map_timeout_raises_while_the_calls_still_run(
    tc: multiengine.TaskClient, latch: Callable[[], Latch]
) -> None:
    gate = latch()
    with tc.executor() as ex:
        results = ex.map(hold, [str(gate.path)] * 3, range(3), timeout=0.2)
        with pytest.raises(TimeoutError):
            next(results)
        assert not gate.is_set()  # raised in time: the calls could not have finished
        gate.set()


def test_map_keeps_no_reference_to_results_it_yielded(tc: multiengine.TaskClient) -> None:
    with tc.executor() as ex:
        results = ex.map(lambda n: __import__("numpy").full(4, n), range(6))
        first = next(results)
        ref = weakref.ref(first)
        del first
        second = next(results)
        gc.collect()
        assert ref() is None
        assert list(second) == [1, 1, 1, 1]
        assert [int(a[0]) for a in results] == [2, 3, 4, 5]


def test_map_chunks(tc: multiengine.TaskClient) -> None:
    with tc.executor() as ex:
        assert list(ex.map(pow, range(10), [2] * 10, chunksize=3)) == [i * i for i in range(10)]


def test_multiengine_future_is_running_while_its_call_runs(
    mec: multiengine.MultiEngineClient, latch: Callable[[], Latch]
) -> None:
    gate = latch()
    with mec.executor(targets=[0, 1]) as ex:
        fut = ex.submit(hold, str(gate.path), 5)
        wait_until(fut.running)
        assert fut.cancel() is False
        gate.set()
        assert fut.result(30) == [5, 5]


def test_multiengine_call_cancelled_before_it_starts_never_runs(
    mec: multiengine.MultiEngineClient, latch: Callable[[], Latch]
) -> None:
    gate = latch()
    mec.execute("ran = False")
    with mec.executor(targets=[2]) as ex:
        first = ex.submit(hold, str(gate.path))
        wait_until(first.running)
        second = ex.submit(exec, "global ran; ran = True")
        assert second.cancel() is True
        gate.set()
        first.result(30)
    assert mec.pull("ran", targets=2) == [False]


def test_joblib_backend_refuses_zero_jobs_as_joblib_does(cluster: multiengine.Cluster) -> None:
    import joblib

    multiengine.register_joblib_backend()
    with joblib.parallel_backend("multiengine", cluster_dir=cluster.cluster_dir.path):
        with pytest.raises(ValueError, match="n_jobs == 0 in Parallel has no meaning"):
            joblib.Parallel(n_jobs=0)(joblib.delayed(abs)(-1) for _ in range(2))


def test_shutdown_that_waits_with_cancel_futures_returns(
    tc: multiengine.TaskClient, latch: Callable[[], Latch]
) -> None:
    gate = latch()
    ex = tc.executor()
    running = [ex.submit(hold, str(gate.path), i) for i in range(4)]
    wait_until(lambda: all(f.running() for f in running))
    queued = ex.submit(hold, str(gate.path), 99)
    assert queued.cancel()
    done, _ = cf.wait([queued], timeout=0)  # a cancelled future counts as done at once
    assert done == {queued}
    gate.set()
    call_within(lambda: ex.shutdown(wait=True, cancel_futures=True))
    assert [f.result() for f in running] == [0, 1, 2, 3]
