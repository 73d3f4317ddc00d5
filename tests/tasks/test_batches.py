"""Tiny tasks travel to engines several in one message and come back several in one
message (docs/protocol.md §4, Tasks: batches): results stay right and in order, a tiny
task's result does not wait behind a long task of its batch, and an engine that dies in
the middle of a batch loses none of its tasks and fails only the one that killed it."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from helpers import Latch, wait_until

from multiengine.cluster.cluster import Cluster
from multiengine.errors import EngineError


def test_many_tiny_tasks_come_back_right_and_in_order(
    fresh_cluster: Callable[..., Cluster],
) -> None:
    tc = fresh_cluster(2).task_client()
    assert tc.map(lambda x: x * x, range(3000)) == [x * x for x in range(3000)]
    assert tc.map(lambda x, y: (x, y), "abc", range(3)) == [("a", 0), ("b", 1), ("c", 2)]
    assert tc.queue_status() == {"scheduled": 0, "pending": 0, "succeeded": 3003, "failed": 0}


def test_a_tiny_tasks_result_does_not_wait_behind_a_long_one(
    fresh_cluster: Callable[..., Cluster], latch: Callable[[], Latch]
) -> None:
    tc = fresh_cluster(1).task_client()
    assert tc.map(lambda x: x, range(300)) == list(range(300))  # tiny: sent in batches now
    gate = latch()
    code = gate.wait_code
    # one submission: the engine gets these together; the last holds it until the test ends
    ids = tc.mapper(block=False).map(lambda x: exec(code) if x < 0 else x, [0, 1, 2, 3, -1])
    wait_until(
        lambda: tc.queue_status()["succeeded"] == 304,
        message="the tiny tasks' results while the long one runs",
    )
    assert [tc.get_task_result(t) for t in ids[:4]] == [0, 1, 2, 3]
    assert tc.get_task_result(ids[-1]) is None  # still running
    gate.set()
    assert tc.get_task_result(ids[-1], block=True) is None


@pytest.mark.fault(
    section="engines-that-die",
    fault="`os._exit(1)` in a tiny task amid a batch of tiny tasks (engines not restarted)",
    outcome=(
        "that task fails with `EngineError`; every other task of the map succeeds (the tasks "
        "of the dead engine's batch run again, alone, on idle engines)"
    ),
)
def test_an_engine_that_dies_mid_batch_fails_only_the_task_that_killed_it(
    fresh_cluster: Callable[..., Cluster],
) -> None:
    # The engine held back the replies of the tasks of its batch it had run, so the
    # controller cannot tell which of them killed it: none counts as an attempt, and
    # each runs again alone, where the one that kills its engine is found out (it fails
    # with EngineError, as a task without retries does); every other task succeeds.
    c = fresh_cluster(3, heartbeat_timeout=1.0, restart_engines=False)
    tc = c.task_client()
    assert tc.map(lambda x: x, range(600)) == list(range(600))  # engines take batches

    def die_at_150(x: int) -> int:
        if x == 150:
            import os as os_

            os_._exit(1)
        return x

    ids = tc.mapper(block=False).map(die_at_150, range(400))
    tc.barrier(ids)
    for x, tid in enumerate(ids):
        if x == 150:
            with pytest.raises(EngineError):
                tc.get_task_result(tid)
        else:
            assert tc.get_task_result(tid) == x
    assert len(c.task_client().queue_status(True)["failed"]) == 1
