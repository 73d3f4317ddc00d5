"""The seed's tasktest.py + test_task.py + test_taskfc.py (seed-tests.md §C), and the task
examples of the docs (§F 3, 4, 21, 22).

The seed ran these against an in-process controller with 1 engine and
``failurePenalty = 0``. Here they run against real engines through the blocking
TaskClient: the shared 4-engine cluster (``tc``, engines reset and finished tasks cleared
before each test), or a cluster of the test's own (``fresh_cluster``) where the outcome
depends on a fresh controller (task ids 0, 1, 2...) or on there being one engine.

* ``tc.run(task)`` gives the id; ``tc.get_task_result(tid, block=True)`` the TaskResult
  (StringTask) or the value (MapTask), as the seed's Deferreds did.
* ``addErrback(lambda f: self.assertRaises(X, f.raiseException))`` becomes
  ``pytest.raises(X)``.
* The seed's async TaskMapper wrapped map failures in a CompositeError; the blocking
  client raises the first failing item's exception directly (seed-system.md §3).
* ``queue_status`` counts every finished task (contract decision 11), where the seed
  missed MapTasks and aborted or timed-out tasks.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest
from helpers import Latch, wait_until

import multiengine
from multiengine import MapTask, StringTask, TaskRejectError, TaskResult
from multiengine.cluster.cluster import Cluster
from multiengine.errors import CompositeError, TaskAborted, TaskTimeout

TC = multiengine.TaskClient
MEC = multiengine.MultiEngineClient
STAMP = "%Y/%m/%d %H:%M:%S"


# ---------------------------------------------------------------------------------------------
# tasktest.py (ITaskControllerTestCase)


def test_task_ids(fresh_cluster: Callable[..., Cluster]) -> None:
    # a fresh controller numbers its tasks 0, 1, 2, 3
    tc = fresh_cluster(1).task_client()
    assert [tc.run(StringTask("a=5")) for _ in range(4)] == [0, 1, 2, 3]
    tc.barrier([0, 1, 2, 3])


def test_abort(fresh_cluster: Callable[..., Cluster]) -> None:
    tc = fresh_cluster(1).task_client()
    with pytest.raises(IndexError, match="No task #0"):
        tc.abort(0)  # before any task
    tid = tc.run(StringTask("a=5"))
    tc.get_task_result(tid, block=True)
    with pytest.raises(IndexError, match="Task Already Completed"):
        tc.abort(tid)
    with pytest.raises(IndexError, match="No task #9999"):
        tc.abort(9999)


def test_abort_type(tc: TC) -> None:
    with pytest.raises(TypeError, match="an integer task id expected: 'asdfadsf'"):
        tc.abort("asdfadsf")  # type: ignore[arg-type]


def test_clear_before_and_after(fresh_cluster: Callable[..., Cluster]) -> None:
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


def test_simple_retries(fresh_cluster: Callable[..., Cluster]) -> None:
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


def test_recovery_tasks(tc: TC) -> None:
    t2 = StringTask("raise Exception", recovery_task=StringTask("i=16", pull="i"), retries=2)
    tid = tc.run(t2)
    tr = tc.get_task_result(tid, block=True)
    assert tr.ns.i == 16
    assert tr.taskid == tid  # the recovery task ran under the same id


def test_setup_ns(fresh_cluster: Callable[..., Cluster]) -> None:
    c = fresh_cluster(1)
    mec, tc = c.multiengine_client(), c.task_client()
    mec.execute("a=0")
    tr = tc.run(StringTask("", push=dict(a=1, b=0), pull=["a", "b"]), block=True)
    assert {"a": tr.ns.a, "b": tr["b"]} == {"a": 1, "b": 0}
    assert mec.pull(["a", "b"]) == [[1, 0]]  # pushed into the engine's namespace


def test_string_task_results(tc: TC) -> None:
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


def test_map_task(tc: TC) -> None:
    assert tc.get_task_result(tc.run(MapTask(lambda x: 2 * x, (10,))), block=True) == 20
    assert tc.get_task_result(tc.run(MapTask(lambda: 20)), block=True) == 20
    assert tc.get_task_result(tc.run(MapTask(lambda x: x, (), {"x": 20})), block=True) == 20


def test_map_task_failure(tc: TC) -> None:
    tid = tc.run(MapTask(lambda x: 1 / 0, (10,)))
    with pytest.raises(ZeroDivisionError):  # raised, not wrapped
        tc.get_task_result(tid, block=True)
    with pytest.raises(ZeroDivisionError):  # and again: the result stays
        tc.get_task_result(tid)
    with pytest.raises(ZeroDivisionError):
        tc.run(MapTask(lambda x: 1 / 0, (10,)), block=True)


def test_map_task_args() -> None:
    with pytest.raises(TypeError):
        MapTask("asdfasdf")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        MapTask(lambda x: x, 10)
    with pytest.raises(TypeError):
        MapTask(lambda x: x, (10,), 30)  # type: ignore[arg-type]


def test_clear(fresh_cluster: Callable[..., Cluster]) -> None:
    tc = fresh_cluster(1).task_client()
    assert tc.run(MapTask(lambda x: 2 * x, (10,))) == 0
    assert tc.get_task_result(0, block=True) == 20
    tc.clear()
    with pytest.raises(IndexError, match="task ID not registered: 0"):
        tc.get_task_result(0, block=True)
    with pytest.raises(IndexError, match="task ID not registered: 999"):
        tc.get_task_result(999)


def test_get_task_result_of_an_unfinished_task_without_block_is_none(
    tc: TC, latch: Callable[[], Latch]
) -> None:
    gate = latch()
    tid = tc.run(StringTask(gate.wait_code))
    assert tc.get_task_result(tid) is None  # it cannot have finished: the gate is closed
    gate.set()
    assert tc.get_task_result(tid, block=True).failure is None


def test_barrier_waits_and_swallows_errors(tc: TC) -> None:
    ids = [tc.run(MapTask(lambda x: 1 / x, (x,))) for x in (0, 1, 2)]
    slow = tc.run(StringTask("import time; time.sleep(0.3)"))
    assert tc.barrier(ids + [slow]) is None  # no ZeroDivisionError here
    assert tc.barrier(slow) is None  # an int is fine too
    st = tc.queue_status(True)
    assert set(ids + [slow]) <= set(st["succeeded"]) | set(st["failed"])
    assert tc.get_task_result(ids[2]) == 0.5


# ---------------------------------------------------------------------------------------------
# test_taskfc.py extras


def test_mapper(tc: TC) -> None:
    m = tc.mapper()
    assert m.task_controller is tc
    assert m.clear_before is False
    assert m.clear_after is False
    assert m.retries == 0
    assert m.recovery_task is None
    assert m.depend is None
    assert m.block is True


def test_map_default(tc: TC) -> None:
    m = tc.mapper()
    assert m.map(lambda x: 2 * x, range(10)) == [2 * x for x in range(10)]
    assert tc.map(lambda x: 2 * x, range(10)) == [2 * x for x in range(10)]


def test_map_noblock(fresh_cluster: Callable[..., Cluster]) -> None:
    tc = fresh_cluster(2).task_client()
    ids = tc.mapper(block=False).map(lambda x: 2 * x, range(10))
    assert ids == list(range(10))  # the task ids of a fresh controller
    tc.barrier(ids)
    assert [tc.get_task_result(t) for t in ids] == [2 * x for x in range(10)]


def test_mapper_fail(tc: TC) -> None:
    with pytest.raises(ZeroDivisionError):
        tc.mapper().map(lambda x: 1 / 0, range(10))
    with pytest.raises(ZeroDivisionError):
        tc.map(lambda x: 1 / 0, range(10))


def test_map_unequal_lengths(tc: TC) -> None:
    with pytest.raises(ValueError):
        tc.map(lambda x, y: x + y, range(3), range(4))
    with pytest.raises(ValueError):
        tc.mapper().map(lambda x, y: x + y, range(3), range(4))


def test_parallel(tc: TC) -> None:
    p = tc.parallel()
    assert callable(p)

    @p
    def double(x: int) -> int:
        """Twice x."""
        return 2 * x

    assert double.__name__ == "double" and double.__doc__ == "Twice x."
    assert double(range(10)) == [2 * x for x in range(10)]


def test_parallel_noblock(fresh_cluster: Callable[..., Cluster]) -> None:
    tc = fresh_cluster(2).task_client()

    @tc.parallel(block=False)
    def double(x: int) -> int:
        return 2 * x

    ids = double(range(10))
    assert ids == list(range(10))
    tc.barrier(ids)
    assert [tc.get_task_result(t) for t in ids] == [2 * x for x in range(10)]


def test_parallel_fail(tc: TC) -> None:
    @tc.parallel()
    def f(x: int) -> float:
        return 1 / 0

    with pytest.raises(ZeroDivisionError):
        f(range(10))


# ---------------------------------------------------------------------------------------------
# docs examples (seed-tests.md §F)


def test_doc_tc_map_power(tc: TC) -> None:
    # §F 3
    assert tc.map(lambda x: x**10, range(32)) == [x**10 for x in range(32)]


def test_doc_tc_parallel(tc: TC) -> None:
    # §F 4
    @tc.parallel()
    def f(x: float) -> float:
        return 10.0 * x**4

    assert f(range(32)) == [10.0 * x**4 for x in range(32)]
    assert f(range(32))[:3] == [0.0, 10.0, 160.0]


def test_doc_task1(tc: TC, mec: MEC) -> None:
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


def test_doc_taskreject(fresh_cluster: Callable[..., Cluster]) -> None:
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


def test_task_reject_without_retries_fails_with_the_reject(tc: TC) -> None:
    def reject() -> None:
        raise TaskRejectError("not here")

    with pytest.raises(TaskRejectError, match="not here"):
        tc.run(MapTask(reject), block=True)


# ---------------------------------------------------------------------------------------------
# TaskResult and queue_status


def test_task_result_repr_and_times(tc: TC) -> None:
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


def test_spin(tc: TC) -> None:
    # nothing waiting: nothing to hand out
    assert tc.spin() is False
    tc.barrier(tc.run(StringTask("a = 1")))
    assert tc.spin() is False


def test_result_ns_doctest() -> None:
    # §F 24
    ns = multiengine.ResultNS({"a": 17, "foo": list(range(3))})
    assert repr(ns) == "NS{'a': 17, 'foo': [0, 1, 2]}"
    assert ns.a == 17 and ns["foo"] == [0, 1, 2]
