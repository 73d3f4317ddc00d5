"""Tasks and MultiEngine commands share each engine's queue (contract §7 "Tasks and the
queue"): each waits behind the other, and a failure clears only commands."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from helpers import HANG, Latch, finish, wait_until

from multiengine import MapTask, StringTask
from multiengine.cluster.cluster import Cluster
from multiengine.errors import CompositeError, QueueCleared


def test_a_task_waits_behind_a_running_execute(
    fresh_cluster: Callable[..., Cluster], latch: Callable[[], Latch]
) -> None:
    c = fresh_cluster(1)
    mec, tc = c.multiengine_client(), c.task_client()
    gate = latch()
    pr = mec.execute(f"{gate.wait_code}\nx = 1", block=False)
    tid = tc.run(StringTask("y = x + 1", pull="y"))
    st = tc.queue_status(True)
    assert tid not in st["succeeded"] + st["failed"]  # it cannot run before the command ends
    gate.set()
    finish(tc, tid)
    assert tc.get_task_result(tid).ns.y == 2  # it ran after the command, in its namespace
    assert pr.wait(HANG)
    # and the other way round: a command waits behind a running task
    gate2 = latch()
    tid = tc.run(StringTask(f"{gate2.wait_code}\nz = 3"))
    wait_until(lambda: tid in tc.queue_status(True)["pending"], message="the task to start")
    pr = mec.execute("w = z + 1", block=False)
    assert not pr.done()  # it cannot run before the task ends
    gate2.set()
    assert pr.wait(HANG)
    assert mec.pull("w") == [4]


def test_a_failing_task_clears_no_other_task(
    fresh_cluster: Callable[..., Cluster], latch: Callable[[], Latch]
) -> None:
    c = fresh_cluster(1)
    tc = c.task_client()
    gate = latch()  # the failing task fails only once the others wait behind it
    bad = tc.run(StringTask(f"{gate.wait_code}\n1/0"))
    good = [tc.run(StringTask(f"v = {i}", pull="v")) for i in range(4)]
    good.append(tc.run(MapTask(lambda: "map")))
    gate.set()
    finish(tc, [bad, *good])
    assert isinstance(tc.get_task_result(bad).failure, ZeroDivisionError)
    assert [tc.get_task_result(t).ns.v for t in good[:4]] == [0, 1, 2, 3]
    assert tc.get_task_result(good[4]) == "map"


def test_a_failing_execute_clears_commands_but_not_tasks(
    fresh_cluster: Callable[..., Cluster], latch: Callable[[], Latch]
) -> None:
    c = fresh_cluster(1)
    mec, tc = c.multiengine_client(), c.task_client()
    gate = latch()  # the command fails only once the others wait behind it
    failing = mec.execute(f"{gate.wait_code}\n1/0", block=False)
    behind = mec.execute("z = 1", block=False)
    tid = tc.run(StringTask("w = 5", pull="w"))
    gate.set()
    finish(tc, tid)
    assert tc.get_task_result(tid).ns.w == 5
    assert failing.wait(HANG) and behind.wait(HANG)
    with pytest.raises(CompositeError) as info:
        failing.get_result()
    assert isinstance(info.value.elist[0][1], ZeroDivisionError)
    with pytest.raises(CompositeError) as info:
        behind.get_result()
    assert isinstance(info.value.elist[0][1], QueueCleared)
