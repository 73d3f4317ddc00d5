"""The deprecated ``depend``: a task whose dependencies are never met does not hold up
the engines, and times out."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from helpers import finish

from multiengine import MapTask, StringTask
from multiengine.cluster.cluster import Cluster
from multiengine.errors import TaskTimeout


def test_unmet_depend_times_out(fresh_cluster: Callable[..., Cluster]) -> None:
    c = fresh_cluster(1, task_timeout=3.0)
    tc = c.task_client()
    with pytest.warns(DeprecationWarning):
        never = StringTask("a = 1", depend=lambda props: False)
    with pytest.warns(DeprecationWarning):
        always = MapTask(lambda: 7, depend=lambda props: True)
    tid = tc.run(never)
    # the engine is not held up by the task it cannot take...
    assert tc.run(StringTask("b = 2", pull="b"), block=True).ns.b == 2
    assert tc.run(always, block=True) == 7
    # ...which still waits for its dependencies meanwhile, and times out only later
    assert tid in tc.queue_status(True)["scheduled"]
    finish(tc, tid)
    with pytest.raises(TaskTimeout, match="unmet dependencies"):
        tc.get_task_result(tid)
    assert tc.queue_status() == {"scheduled": 0, "pending": 0, "succeeded": 2, "failed": 1}
