"""The seed's documented task examples (seed-tests §F 3, 4, 21, 22) on real engines."""

from __future__ import annotations

from collections.abc import Callable

import pytest

import multiengine
from multiengine import MapTask, StringTask, TaskRejectError
from multiengine.cluster.cluster import Cluster
from multiengine.errors import CompositeError


def test_f3_tc_map_power(tc: multiengine.TaskClient) -> None:
    # §F 3
    assert tc.map(lambda x: x**10, range(32)) == [x**10 for x in range(32)]


def test_f4_tc_parallel(tc: multiengine.TaskClient) -> None:
    # §F 4
    @tc.parallel()
    def f(x: float) -> float:
        return 10.0 * x**4

    assert f(range(32)) == [10.0 * x**4 for x in range(32)]
    assert f(range(32))[:3] == [0.0, 10.0, 160.0]


def test_f21_task1(tc: multiengine.TaskClient, mec: multiengine.MultiEngineClient) -> None:
    # §F 21 (task1.py)
    mec.push(dict(d=30))
    t1 = StringTask(
        "a = 5\nb = 10*d\nc = a*b*d", clear_before=False, clear_after=True, pull=["a", "b", "c"]
    )
    tr = tc.get_task_result(tc.run(t1), block=True)
    assert tr.raise_exception() is None
    assert (tr.ns.a, tr.ns.b, tr.ns.c) == (5, 300, 45000)
    assert tr["c"] == 45000
    # clear_after reset the engine that ran it: d is gone there, still on the others
    with pytest.raises(CompositeError):
        mec.pull("d", targets=tr.engineid)
    others = [e for e in range(4) if e != tr.engineid]
    assert mec.pull("d", targets=others) == [30, 30, 30]


def test_f22_taskreject(fresh_cluster: Callable[..., Cluster]) -> None:
    # §F 22 (taskreject.py). A longer failure penalty than the shared cluster's, so that
    # rejections do not burn 20 retries in the moment between submitting and 'run=True'.
    c = fresh_cluster(4, task_failure_penalty=0.2)
    mec, tc = c.multiengine_client(), c.task_client()
    mec.execute("run = False")

    def map_task() -> tuple[float, int]:
        if not run:  # type: ignore[name-defined]  # noqa: F821  (the engine's namespace)
            raise TaskRejectError("task dependency not met")
        return 3.0e8, id  # type: ignore[return-value]  # the engine's id

    ids = [tc.run(MapTask(map_task, retries=20)) for _ in range(10)]
    mec.execute("run=True", targets=[0, 1])
    tc.barrier(ids)
    results = [tc.get_task_result(t) for t in ids]
    assert [r[0] for r in results] == [3.0e8] * 10
    assert {r[1] for r in results} <= {0, 1}
    assert tc.queue_status() == {"scheduled": 0, "pending": 0, "succeeded": 10, "failed": 0}
