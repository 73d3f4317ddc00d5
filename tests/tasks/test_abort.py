"""Aborting tasks, waiting or running (a running one is interrupted), and interrupting
an engine under a task: the engine and its namespace stay."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from helpers import Latch, finish, idle, wait_until

import multiengine
from multiengine import MapTask, StringTask
from multiengine.cluster.cluster import Cluster
from multiengine.errors import TaskAborted


def test_abort(fresh_cluster: Callable[..., Cluster]) -> None:
    # seed §C
    tc = fresh_cluster(1).task_client()
    with pytest.raises(IndexError, match="No task #0"):
        tc.abort(0)  # before any task
    tid = tc.run(StringTask("a=5"))
    tc.get_task_result(tid, block=True)
    with pytest.raises(IndexError, match="Task Already Completed"):
        tc.abort(tid)
    with pytest.raises(IndexError, match="No task #9999"):
        tc.abort(9999)


def test_abort_type(tc: multiengine.TaskClient) -> None:
    # seed §C
    with pytest.raises(TypeError, match="an integer task id expected: 'asdfadsf'"):
        tc.abort("asdfadsf")  # type: ignore[arg-type]


def test_abort_of_waiting_tasks(
    fresh_cluster: Callable[..., Cluster], latch: Callable[[], Latch]
) -> None:
    c = fresh_cluster(1)
    mec, tc = c.multiengine_client(), c.task_client()
    mec.execute("ran = []")
    gate = latch()
    blocker = tc.run(StringTask(gate.wait_code))  # holds the engine until the aborts are done
    wait_until(lambda: blocker in tc.queue_status(True)["pending"], message="the blocker to start")
    waiting = [tc.run(StringTask(f"ran.append({i})")) for i in range(6)]
    for tid in waiting[::2]:  # sent ahead to the engine or still in the controller: both abort
        tc.abort(tid)
    gate.set()  # (one sent ahead is answered by the engine once the blocker is done)
    finish(tc, [blocker, *waiting])
    for tid in waiting[::2]:
        with pytest.raises(TaskAborted):
            tc.get_task_result(tid)
        with pytest.raises(IndexError, match="Task Already"):
            tc.abort(tid)
    assert mec.pull("ran") == [[1, 3, 5]]  # the aborted ones never ran
    st = tc.queue_status(True)
    assert sorted(st["failed"]) == waiting[::2]
    assert sorted(st["succeeded"]) == sorted([blocker, *waiting[1::2]])


def test_abort_of_a_running_task_interrupts_it(
    fresh_cluster: Callable[..., Cluster], latch: Callable[[], Latch]
) -> None:
    c = fresh_cluster(1)
    mec, tc = c.multiengine_client(), c.task_client()
    started = latch()
    # sleeps far longer than any wait here: only the abort can end it in time
    tid = tc.run(StringTask(f"x = 1\n{started.set_code}\nimport time\ntime.sleep(600)"))
    started.wait(message="the task to run on the engine")
    assert tc.abort(tid) is None
    finish(tc, tid)
    with pytest.raises(TaskAborted):  # raised for a StringTask too
        tc.get_task_result(tid)
    with pytest.raises(IndexError, match="Task Already"):
        tc.abort(tid)
    assert mec.get_ids() == [0]
    assert mec.pull("x") == [1]  # the namespace survived the interrupt
    assert tc.run(StringTask("y = x + 1", pull="y"), block=True).ns.y == 2

    map_started = latch()
    path = str(map_started.path)

    def nap() -> int:
        open(path, "a").close()
        time.sleep(600)
        return 1

    tid = tc.run(MapTask(nap))
    map_started.wait(message="the map task to run on the engine")
    tc.abort(tid)
    finish(tc, tid)
    with pytest.raises(TaskAborted):
        tc.get_task_result(tid)
    assert tc.queue_status() == {"scheduled": 0, "pending": 0, "succeeded": 1, "failed": 2}


def test_abort_right_after_run_interrupts_a_task_still_arriving(
    fresh_cluster: Callable[..., Cluster],
) -> None:
    # The user aborts a task the moment tc.run() returns; it is already handed to the
    # engine, which is still receiving its 200 MB of pushed data. The abort must not be
    # lost: the task must end with TaskAborted, and the engine be free, without sleeping
    # out its sleep (far longer than the waits here).
    c = fresh_cluster(1)
    mec, tc = c.multiengine_client(), c.task_client()
    tid = tc.run(StringTask("import time; time.sleep(600)", push={"big": b"x" * (200 * 2**20)}))
    tc.abort(tid)
    finish(tc, tid)
    with pytest.raises(TaskAborted):
        tc.get_task_result(tid)
    wait_until(lambda: idle(mec), message="the engine to be free again")


def test_interrupt_stops_a_running_task(
    fresh_cluster: Callable[..., Cluster], latch: Callable[[], Latch]
) -> None:
    c = fresh_cluster(1)
    mec, tc = c.multiengine_client(), c.task_client()
    started = latch()
    code = f"x = 1\n{started.set_code}\nimport time\ntime.sleep(600)"
    tid = tc.run(StringTask(code, retries=2))
    after = tc.run(StringTask("y = x + 1", pull="y"))
    started.wait(message="the task to run on the engine")
    mec.interrupt()
    finish(tc, tid)  # ended by the interrupt, and not retried into another long sleep
    try:
        outcome: BaseException | None = tc.get_task_result(tid).failure
    except TaskAborted as e:
        outcome = e
    assert isinstance(outcome, (KeyboardInterrupt, TaskAborted))
    finish(tc, after)
    assert tc.get_task_result(after).ns.y == 2  # the engine goes on, with its namespace
    assert mec.get_ids() == [0]
