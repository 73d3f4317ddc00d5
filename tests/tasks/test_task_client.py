"""The TaskClient with StringTask and MapTask: task ids, clear_before/after, pushed and
pulled names, results and TaskResult, clear, barrier, queue_status (seed §C; contract
decision 11: every finished task is counted)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest
from helpers import Latch, wait_until

import multiengine
from multiengine import MapTask, StringTask, TaskResult
from multiengine.cluster.cluster import Cluster
from multiengine.errors import CompositeError, TaskAborted, TaskTimeout

STAMP = "%Y/%m/%d %H:%M:%S"


def test_task_ids(fresh_cluster: Callable[..., Cluster]) -> None:
    # seed §C: a fresh controller numbers its tasks 0, 1, 2, 3
    tc = fresh_cluster(1).task_client()
    assert [tc.run(StringTask("a=5")) for _ in range(4)] == [0, 1, 2, 3]
    tc.barrier([0, 1, 2, 3])


def test_clear_before_and_after(fresh_cluster: Callable[..., Cluster]) -> None:
    # seed §C
    c = fresh_cluster(1)
    mec, tc = c.multiengine_client(), c.task_client()
    mec.execute("b=1", targets=0)
    tr = tc.run(StringTask("a=1", clear_before=True, pull="b", clear_after=True), block=True)
    assert isinstance(tr, TaskResult)
    with pytest.raises(NameError):  # clear_before wiped b
        tr.raise_exception()
    assert isinstance(tr.failure, NameError)
    with pytest.raises(CompositeError) as info:  # clear_after wiped a
        mec.pull("a", targets=0)
    with pytest.raises(NameError):
        info.value.raise_exception()


def test_setup_ns(fresh_cluster: Callable[..., Cluster]) -> None:
    # seed §C
    c = fresh_cluster(1)
    mec, tc = c.multiengine_client(), c.task_client()
    mec.execute("a=0")
    tr = tc.run(StringTask("", push=dict(a=1, b=0), pull=["a", "b"]), block=True)
    assert {"a": tr.ns.a, "b": tr["b"]} == {"a": 1, "b": 0}
    assert mec.pull(["a", "b"]) == [[1, 0]]  # pushed into the engine's namespace


def test_string_task_results(tc: multiengine.TaskClient) -> None:
    # seed §C
    tr = tc.run(StringTask("a=5", pull="a"), block=True)
    assert (tr.ns.a, tr["a"], tr.failure, tr.raise_exception()) == (5, 5, None, None)
    assert tr.results == {"a": 5} and tr.keys == ["a"]

    tr = tc.run(StringTask("7=5"), block=True)
    assert isinstance(tr, TaskResult)  # a failed StringTask is returned, not raised
    with pytest.raises(SyntaxError):
        tr.ns  # noqa: B018
    with pytest.raises(SyntaxError):
        tr.raise_exception()
    assert tr.results == {} and tr.keys == []

    tr = tc.run(StringTask("", pull="b"), block=True)
    with pytest.raises(NameError):
        tr.ns  # noqa: B018
    with pytest.raises(NameError):
        tr["b"]

    tr = tc.run(StringTask("x = 1"), block=True)  # no pull
    assert tr.results == {} and tr.failure is None


def test_map_task(tc: multiengine.TaskClient) -> None:
    # seed §C
    assert tc.get_task_result(tc.run(MapTask(lambda x: 2 * x, (10,))), block=True) == 20
    assert tc.get_task_result(tc.run(MapTask(lambda: 20)), block=True) == 20
    assert tc.get_task_result(tc.run(MapTask(lambda x: x, (), {"x": 20})), block=True) == 20


def test_map_task_failure(tc: multiengine.TaskClient) -> None:
    # seed §C
    tid = tc.run(MapTask(lambda x: 1 / 0, (10,)))
    with pytest.raises(ZeroDivisionError):  # raised, not wrapped
        tc.get_task_result(tid, block=True)
    with pytest.raises(ZeroDivisionError):  # and again: the result stays
        tc.get_task_result(tid)
    with pytest.raises(ZeroDivisionError):
        tc.run(MapTask(lambda x: 1 / 0, (10,)), block=True)


def test_clear(fresh_cluster: Callable[..., Cluster]) -> None:
    # seed §C
    tc = fresh_cluster(1).task_client()
    assert tc.run(MapTask(lambda x: 2 * x, (10,))) == 0
    assert tc.get_task_result(0, block=True) == 20
    tc.clear()
    with pytest.raises(IndexError, match="task ID not registered: 0"):
        tc.get_task_result(0, block=True)
    with pytest.raises(IndexError, match="task ID not registered: 999"):
        tc.get_task_result(999)


def test_get_task_result_of_an_unfinished_task_without_block_is_none(
    tc: multiengine.TaskClient, latch: Callable[[], Latch]
) -> None:
    gate = latch()
    tid = tc.run(StringTask(gate.wait_code))
    assert tc.get_task_result(tid) is None  # it cannot have finished: the gate is closed
    gate.set()
    assert tc.get_task_result(tid, block=True).failure is None


def test_barrier_waits_and_swallows_errors(tc: multiengine.TaskClient) -> None:
    ids = [tc.run(MapTask(lambda x: 1 / x, (x,))) for x in (0, 1, 2)]
    slow = tc.run(StringTask("import time; time.sleep(0.3)"))
    assert tc.barrier(ids + [slow]) is None  # no ZeroDivisionError here
    assert tc.barrier(slow) is None  # an int is fine too
    st = tc.queue_status(True)
    assert set(ids + [slow]) <= set(st["succeeded"]) | set(st["failed"])
    assert tc.get_task_result(ids[2]) == 0.5


def test_task_result_repr_and_times(tc: multiengine.TaskClient) -> None:
    before = datetime.now().replace(microsecond=0)
    tid = tc.run(StringTask("import time; time.sleep(0.3)\na = 5", pull="a"))
    tr = tc.get_task_result(tid, block=True)
    after = datetime.now()
    assert repr(tr) == f"TaskResult[ID:{tid}]:{{'a': 5}}"
    assert tr.taskid == tid and tr.engineid in (0, 1, 2, 3)
    submitted = datetime.strptime(tr.submitted, STAMP)
    completed = datetime.strptime(tr.completed, STAMP)
    assert before <= submitted <= completed <= after
    assert isinstance(tr.duration, float)
    assert tr.duration >= 0.3  # it slept that long
    empty = tc.run(StringTask("b = 1"), block=True)
    assert repr(empty) == f"TaskResult[ID:{empty.taskid}]:{{}}"
    assert 0.0 <= empty.duration < tr.duration


def test_duration_is_running_time(fresh_cluster: Callable[..., Cluster]) -> None:
    # .duration is the task's running time (the seed: from hand-out to a free engine
    # until done), not the time it spent waiting for the engine to finish other work:
    # the quick tasks waited behind the slow one about as long as it ran, but their
    # durations are a fraction of its own
    tc = fresh_cluster(1).task_client()
    slow = tc.run(StringTask("import time; time.sleep(0.6)"))
    quick = [tc.run(StringTask(f"q = {i}")) for i in range(3)]
    tc.barrier([slow, *quick])
    slow_duration = tc.get_task_result(slow).duration
    assert slow_duration >= 0.6
    assert [tc.get_task_result(t).duration < slow_duration / 2 for t in quick] == [True] * 3


def test_queue_status_buckets(
    fresh_cluster: Callable[..., Cluster], latch: Callable[[], Latch]
) -> None:
    c = fresh_cluster(1)
    tc = c.task_client()
    ok_string = tc.run(StringTask("a = 1"), block=True).taskid
    ok_map = tc.run(MapTask(lambda: 1))
    bad_string = tc.run(StringTask("1/0"))
    bad_map = tc.run(MapTask(lambda: 1 / 0))
    timed_out = tc.run(StringTask("while True: pass", time_limit=0.3))
    tc.barrier([ok_map, bad_string, bad_map, timed_out])
    with pytest.raises(TaskTimeout):
        tc.get_task_result(timed_out)
    # the engine is busy; with one engine, at most three tasks can be on it (one running,
    # two prefetched), so of six waiting tasks at least three are still in the controller
    gate = latch()
    running = tc.run(StringTask(gate.wait_code))
    waiting = [tc.run(StringTask(f"w = {i}")) for i in range(5)]
    wait_until(
        lambda: running in tc.queue_status(True)["pending"], message="the blocker to be handed out"
    )
    st = tc.queue_status(True)
    assert running in st["pending"]
    assert sorted(st["pending"] + st["scheduled"]) == sorted([running, *waiting])
    assert len(st["scheduled"]) >= 3
    assert waiting[-1] in st["scheduled"]
    assert sorted(st["succeeded"]) == sorted([ok_string, ok_map])
    assert sorted(st["failed"]) == sorted([bad_string, bad_map, timed_out])
    counts = tc.queue_status()
    assert counts == {k: len(v) for k, v in st.items()}
    tc.abort(waiting[-1])  # an aborted task is counted as failed
    with pytest.raises(TaskAborted):
        tc.get_task_result(waiting[-1])
    gate.set()
    tc.barrier([running, *waiting])
    st = tc.queue_status(True)
    assert st["scheduled"] == [] and st["pending"] == []
    assert sorted(st["succeeded"]) == sorted([ok_string, ok_map, running, *waiting[:-1]])
    assert sorted(st["failed"]) == sorted([bad_string, bad_map, timed_out, waiting[-1]])
    assert tc.queue_status() == {"scheduled": 0, "pending": 0, "succeeded": 7, "failed": 4}
    tc.clear()
    assert tc.queue_status() == {"scheduled": 0, "pending": 0, "succeeded": 0, "failed": 0}


def test_spin(tc: multiengine.TaskClient) -> None:
    # nothing waiting: nothing to hand out
    assert tc.spin() is False
    tc.barrier(tc.run(StringTask("a = 1")))
    assert tc.spin() is False
