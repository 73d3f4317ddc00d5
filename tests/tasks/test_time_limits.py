"""Time limits interrupt running task code and keep the engine, its namespace included."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from helpers import call_within, finish

from multiengine import MapTask, StringTask
from multiengine.cluster.cluster import Cluster
from multiengine.errors import TaskTimeout


def test_time_limit_stops_a_busy_loop_and_keeps_the_engine(
    fresh_cluster: Callable[..., Cluster],
) -> None:
    c = fresh_cluster(1)
    mec, tc = c.multiengine_client(), c.task_client()
    mec.execute("keep = 42")
    tid = tc.run(StringTask("x = 1\nwhile True: pass", time_limit=0.5))
    finish(tc, tid)  # the loop never ends by itself: only the limit can end it
    with pytest.raises(TaskTimeout):  # a StringTask's timeout is raised, not returned
        tc.get_task_result(tid)
    # the engine is the same process, with its namespace (what the task set included)
    assert mec.get_ids() == [0]
    assert mec.pull(["keep", "x"]) == [[42, 1]]
    mec.execute("y = keep + 1")
    assert mec.pull("y") == [43]

    def spin() -> None:
        while True:
            pass

    tid = tc.run(MapTask(spin, time_limit=0.3))
    finish(tc, tid)
    with pytest.raises(TaskTimeout):
        tc.get_task_result(tid)
    # a task within its limit is not disturbed, and the limit does not outlive its task
    tr = tc.run(
        StringTask("import time; time.sleep(0.1)\nz = 3", pull="z", time_limit=1.0), block=True
    )
    assert tr.ns.z == 3
    tid = tc.run(StringTask("import time; time.sleep(1.5)\nw = 4", pull="w"))
    finish(tc, tid)
    assert tc.get_task_result(tid).ns.w == 4


def test_map_options_reach_every_task(fresh_cluster: Callable[..., Cluster]) -> None:
    tc = fresh_cluster(2).task_client()

    def f(x: int) -> int:
        while x == 2:
            pass
        return x

    # item 2 never ends by itself: only the time limit given to map can end it
    with pytest.raises(TaskTimeout):
        call_within(lambda: tc.map(f, range(4), time_limit=0.5), message="map with a time limit")
    assert tc.map(f, [0, 1, 3], priority=3, time_limit=5) == [0, 1, 3]
