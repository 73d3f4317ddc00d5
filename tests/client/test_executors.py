"""concurrent.futures executors over real engines (issue 5, part 5)."""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Callable

import pytest
from helpers import HANG, Latch, wait_for_path, wait_until

import multiengine


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
