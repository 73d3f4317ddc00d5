"""Retries: the task's namespace persists across attempts, recovery tasks, retry_on,
paced retries that go to another engine (decision 10), and TaskRejectError."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import Latch, finish, process_running, running_engine, wait_until

import multiengine
from multiengine import MapTask, StringTask, TaskRejectError
from multiengine.cluster.cluster import Cluster


def test_simple_retries(fresh_cluster: Callable[..., Cluster]) -> None:
    # seed §C
    c = fresh_cluster(1)
    mec, tc = c.multiengine_client(), c.task_client()
    mec.execute("i=0")
    t = StringTask("i += 1\nassert i == 16", pull="i", retries=10)
    tr = tc.run(t, block=True)
    with pytest.raises(AssertionError):  # 11 attempts: i reaches 11
        tr.ns.i  # noqa: B018
    assert mec.pull("i") == [11]
    t2 = StringTask("i += 1\nassert i == 16", pull="i", retries=10)
    tr2 = tc.run(t2, block=True)
    assert tr2.ns.i == 16  # the namespace persisted across attempts
    assert tr2.failure is None


def test_recovery_tasks(tc: multiengine.TaskClient) -> None:
    # seed §C
    t2 = StringTask("raise Exception", recovery_task=StringTask("i=16", pull="i"), retries=2)
    tid = tc.run(t2)
    tr = tc.get_task_result(tid, block=True)
    assert tr.ns.i == 16
    assert tr.taskid == tid  # the recovery task ran under the same id


def test_retry_on_exception_classes(
    tc: multiengine.TaskClient, mec: multiengine.MultiEngineClient
) -> None:
    mec.execute("tries = []")
    code = "tries.append(1)\nraise {}('x')"
    tr = tc.run(StringTask(code.format("KeyError"), retries=2, retry_on=(ValueError,)), block=True)
    assert isinstance(tr.failure, KeyError)
    assert sum(len(t) for t in mec.pull("tries")) == 1
    tr = tc.run(StringTask(code.format("ValueError"), retries=2, retry_on=ValueError), block=True)
    assert isinstance(tr.failure, ValueError)
    assert sum(len(t) for t in mec.pull("tries")) == 1 + 3


def test_retry_on_engine_retries_only_engine_loss(
    fresh_cluster: Callable[..., Cluster], latch: Callable[[], Latch]
) -> None:
    c = fresh_cluster(2, heartbeat_timeout=1.0, restart_engines=False)
    mec, tc = c.multiengine_client(), c.task_client()
    # an exception in the task is not retried...
    mec.execute("tries = []")
    tr = tc.run(
        StringTask("tries.append(id)\nraise ValueError('no')", retries=3, retry_on="engine"),
        block=True,
    )
    assert isinstance(tr.failure, ValueError)
    assert sum(len(t) for t in mec.pull("tries")) == 1
    # ...where by default it is
    tr = tc.run(StringTask("tries.append(id)\nraise ValueError('no')", retries=3), block=True)
    assert isinstance(tr.failure, ValueError)
    assert sum(len(t) for t in mec.pull("tries")) == 1 + 4
    # the engine dying under it is retried
    gate = latch()  # the task cannot end before its engine is dead
    tid = tc.run(
        StringTask(f"{gate.wait_code}\nwho = id", pull="who", retries=1, retry_on="engine")
    )
    victim = running_engine(mec)
    pid = c.engine_pids()[victim]
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not process_running(pid), message="the killed engine to be gone")
    gate.set()
    finish(tc, tid)
    assert tc.get_task_result(tid).ns.who == 1 - victim


def test_always_failing_task_fails_after_paced_retries(
    fresh_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    # "Retries are paced": each retry starts at least the failure penalty (0.3 s) after
    # the attempt before it. The attempts note when they start, on the engine; only lower
    # bounds are checked, which no load on the machine can break.
    c = fresh_cluster(1, task_failure_penalty=0.3)
    mec, tc = c.multiengine_client(), c.task_client()
    mec.execute("attempts = []")
    code = "import time\nattempts.append(time.monotonic())\nraise ValueError('always')"
    tid = tc.run(StringTask(code, retries=3))
    finish(tc, tid)
    assert isinstance(tc.get_task_result(tid).failure, ValueError)
    (attempts,) = mec.pull("attempts")
    assert len(attempts) == 4  # the attempt and three retries
    assert [b - a >= 0.3 for a, b in zip(attempts, attempts[1:])] == [True] * 3

    log = tmp_path / "map-attempts"
    path = str(log)

    def always() -> None:
        with open(path, "a") as f:
            f.write(f"{time.monotonic()}\n")
        raise ValueError("always")

    with pytest.raises(ValueError, match="always"):
        tc.run(MapTask(always, retries=3), block=True)
    starts = [float(t) for t in log.read_text().split()]
    assert len(starts) == 4
    assert [b - a >= 0.3 for a, b in zip(starts, starts[1:])] == [True] * 3


def test_retry_goes_to_another_engine(
    fresh_cluster: Callable[..., Cluster], tmp_path: Path, latch: Callable[[], Latch]
) -> None:
    # decision 10: the retry goes to the other, free engine, although that engine was
    # handed a task more recently (plain round robin would pick the failing one again)
    c = fresh_cluster(2, task_failure_penalty=0.0)
    tc = c.task_client()
    log = tmp_path / "attempts"
    gate = latch()  # the first attempt fails only once the quick task is done elsewhere
    code = (
        "with open(path, 'a') as f:\n"
        "    f.write(f'{id}\\n')\n"
        "if len(open(path).read().split()) < 2:\n"
        f"    {gate.wait_code}\n"
        "    raise ValueError('first attempt')\n"
        "who = id\n"
    )
    tid = tc.run(StringTask(code, push={"path": str(log)}, pull="who", retries=1))
    wait_until(log.exists, message="the first attempt to start")
    quick = tc.run(StringTask("q = 1"))
    finish(tc, quick)
    gate.set()
    finish(tc, tid)
    first, second = (int(x) for x in log.read_text().split())
    assert first != second
    tr = tc.get_task_result(tid)
    assert tr.ns.who == second == tr.engineid
    assert tc.get_task_result(quick).engineid == second


def test_task_reject_without_retries_fails_with_the_reject(tc: multiengine.TaskClient) -> None:
    def reject() -> None:
        raise TaskRejectError("not here")

    with pytest.raises(TaskRejectError, match="not here"):
        tc.run(MapTask(reject), block=True)
