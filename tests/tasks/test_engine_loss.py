"""Engines dying under tasks: retried elsewhere when allowed, EngineError otherwise, and
the tasks waiting behind them are not lost. The killed engines are not restarted here
(``restart_engines=False``), so "elsewhere" is another engine; tests/cluster/
test_supervision.py has engines that come back."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import pytest
from helpers import Latch, finish, process_running, running_engine, wait_until

from multiengine import MapTask, StringTask, TaskResult
from multiengine.cluster.cluster import Cluster
from multiengine.errors import EngineError


def slow_times_ten(x: int) -> tuple[int, int]:
    time.sleep(0.3)
    return 10 * x, id  # type: ignore[return-value]  # the engine's id


def test_engine_killed_mid_task_retried_on_another(
    fresh_cluster: Callable[..., Cluster], latch: Callable[[], Latch]
) -> None:
    c = fresh_cluster(2, heartbeat_timeout=1.0, restart_engines=False)
    mec, tc = c.multiengine_client(), c.task_client()
    gate = latch()  # the task cannot end before its engine is dead
    tid = tc.run(StringTask(f"{gate.wait_code}\nwho = id", pull="who", retries=1))
    victim = running_engine(mec)
    survivor = 1 - victim
    others = [tc.run(MapTask(slow_times_ten, (x,), retries=1)) for x in range(6)]
    pid = c.engine_pids()[victim]
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not process_running(pid), message="the killed engine to be gone")
    gate.set()
    finish(tc, [tid, *others])
    tr = tc.get_task_result(tid)
    assert tr.failure is None
    assert tr.ns.who == survivor and tr.engineid == survivor
    assert [tc.get_task_result(t)[0] for t in others] == [0, 10, 20, 30, 40, 50]  # nothing lost
    assert mec.get_ids() == [survivor]
    assert tc.queue_status() == {"scheduled": 0, "pending": 0, "succeeded": 7, "failed": 0}


@pytest.mark.fault(
    section="engines-that-die",
    fault="SIGKILL mid-task, no retries (engines not restarted)",
    outcome=(
        "the task fails with `EngineError` naming the engine; tasks waiting behind it run elsewhere"
    ),
    also=[
        "tests/tasks/test_engine_loss.py::test_tasks_waiting_on_a_dying_engine_are_not_lost",
    ],
)
def test_engine_killed_mid_task_without_retries_gives_engine_error(
    fresh_cluster: Callable[..., Cluster],
) -> None:
    c = fresh_cluster(2, heartbeat_timeout=1.0, restart_engines=False)
    mec, tc = c.multiengine_client(), c.task_client()

    def nap() -> int:
        time.sleep(600)
        return 1

    string_tid = tc.run(StringTask("import time; time.sleep(600)"))
    map_tid = tc.run(MapTask(nap))
    wait_until(
        lambda: all(q["pending"] for _, q in mec.queue_status()), message="both engines to be busy"
    )
    for pid in c.engine_pids().values():
        os.kill(pid, signal.SIGKILL)
    finish(tc, [string_tid, map_tid])  # the tasks cannot end: only the engines' loss ends them
    tr = tc.get_task_result(string_tid)
    assert isinstance(tr, TaskResult) and isinstance(tr.failure, EngineError)
    assert f"engine {tr.engineid}" in str(tr.failure)
    with pytest.raises(EngineError, match=r"engine \d"):
        tc.get_task_result(map_tid)
    assert tc.queue_status() == {"scheduled": 0, "pending": 0, "succeeded": 0, "failed": 2}


def test_tasks_waiting_on_a_dying_engine_are_not_lost(
    fresh_cluster: Callable[..., Cluster],
) -> None:
    # Without retries, only the task running when the engine dies fails (EngineError);
    # the tasks waiting behind it there (sent ahead, if the scheduler prefetches) have
    # not been tried, so they run elsewhere.
    c = fresh_cluster(1, heartbeat_timeout=1.0, restart_engines=False)
    mec, tc = c.multiengine_client(), c.task_client()
    doomed = tc.run(StringTask("import time; time.sleep(20)"))
    wait_until(lambda: doomed in tc.queue_status(True)["pending"], message="the task to start")
    waiting = [tc.run(StringTask(f"who = id\nk = {i}", pull=["who", "k"])) for i in range(4)]
    pid = c.engine_pids()[0]
    c.start_engines(1)
    assert mec.get_ids() == [0, 1]
    os.kill(pid, signal.SIGKILL)
    finish(tc, [doomed, *waiting], 10)
    assert isinstance(tc.get_task_result(doomed).failure, EngineError)
    results = [tc.get_task_result(t) for t in waiting]
    assert [r.failure for r in results] == [None] * 4
    assert [r.ns.k for r in results] == [0, 1, 2, 3]
    assert {r.ns.who for r in results} == {1}
