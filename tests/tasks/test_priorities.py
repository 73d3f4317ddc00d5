"""Priorities: waiting tasks run highest priority first, first come first among equals."""

from __future__ import annotations

from collections.abc import Callable

from helpers import Latch, finish, wait_until

from multiengine import StringTask
from multiengine.cluster.cluster import Cluster


def test_priority_orders_waiting_tasks_fifo_among_equals(
    fresh_cluster: Callable[..., Cluster], latch: Callable[[], Latch]
) -> None:
    c = fresh_cluster(1)
    mec, tc = c.multiengine_client(), c.task_client()
    mec.execute("order = []")
    gate = latch()
    blocker = tc.run(StringTask(gate.wait_code))  # holds the engine until every task is in
    wait_until(lambda: blocker in tc.queue_status(True)["pending"], message="the blocker to start")
    # Two tasks of the highest priority first: they are the ones a prefetching scheduler
    # may already have handed to the busy engine (at most two), and they run first anyway.
    first = [tc.run(StringTask(f"order.append('first{i}')", priority=100)) for i in range(2)]
    mixed = [("a", 0), ("b", 5), ("c", -1), ("d", 5), ("e", 0), ("f", 10)]
    ids = [tc.run(StringTask(f"order.append({name!r})", priority=pri)) for name, pri in mixed]
    gate.set()
    finish(tc, [blocker, *first, *ids])
    assert mec.pull("order") == [["first0", "first1", "f", "b", "d", "a", "e", "c"]]
