"""Load-balanced tasks beyond the seed (issue 4): priorities, time limits, aborting and
interrupting running work, engines dying under tasks, ``retry_on``, paced retries,
chunked and lazy ``map``/``imap``, argument checking, and the queue that tasks share
with MultiEngine commands (contract.md §7 "Tasks and the queue", "Task outcomes",
"Retries are paced", decision 10).

Tests that interrupt, kill or time out engines run on a cluster of their own
(``fresh_cluster``). Waits that might never end when something is broken poll with a
deadline (``finish``) instead of blocking.
"""

from __future__ import annotations

import itertools
import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import helpers
import pytest
from helpers import running_engine, wait_until

import multiengine
from multiengine import MapTask, StringTask, TaskResult
from multiengine.cluster.cluster import Cluster
from multiengine.errors import CompositeError, EngineError, QueueCleared, TaskAborted, TaskTimeout

TC = multiengine.TaskClient
MEC = multiengine.MultiEngineClient


def finish(tc: TC, tids: int | list[int], timeout: float = 10.0) -> float:
    """Wait until every task has finished; the seconds waited."""
    t0 = time.monotonic()
    helpers.finish(tc, tids, timeout)
    return time.monotonic() - t0


# ---------------------------------------------------------------------------------------------
# priorities


def test_priority_orders_waiting_tasks_fifo_among_equals(
    fresh_cluster: Callable[..., Cluster],
) -> None:
    c = fresh_cluster(1)
    mec, tc = c.multiengine_client(), c.task_client()
    mec.execute("order = []")
    sleeper = tc.run(StringTask("import time; time.sleep(0.5)"))
    wait_until(lambda: sleeper in tc.queue_status(True)["pending"], message="the sleeper to start")
    # Two tasks of the highest priority first: they are the ones a prefetching scheduler
    # may already have handed to the busy engine (at most two), and they run first anyway.
    first = [tc.run(StringTask(f"order.append('first{i}')", priority=100)) for i in range(2)]
    mixed = [("a", 0), ("b", 5), ("c", -1), ("d", 5), ("e", 0), ("f", 10)]
    ids = [tc.run(StringTask(f"order.append({name!r})", priority=pri)) for name, pri in mixed]
    finish(tc, [sleeper, *first, *ids])
    assert mec.pull("order") == [["first0", "first1", "f", "b", "d", "a", "e", "c"]]


def test_map_options_reach_every_task(fresh_cluster: Callable[..., Cluster]) -> None:
    tc = fresh_cluster(2).task_client()

    def f(x: int) -> int:
        while x == 2:
            pass
        return x

    t0 = time.monotonic()
    with pytest.raises(TaskTimeout):
        tc.map(f, range(4), time_limit=0.5)
    assert time.monotonic() - t0 < 5
    assert tc.map(f, [0, 1, 3], priority=3, time_limit=5) == [0, 1, 3]


# ---------------------------------------------------------------------------------------------
# time limits


def test_time_limit_stops_a_busy_loop_and_keeps_the_engine(
    fresh_cluster: Callable[..., Cluster],
) -> None:
    c = fresh_cluster(1)
    mec, tc = c.multiengine_client(), c.task_client()
    mec.execute("keep = 42")
    tid = tc.run(StringTask("x = 1\nwhile True: pass", time_limit=0.5))
    elapsed = finish(tc, tid, 10)
    assert 0.4 <= elapsed < 2.5
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
    assert finish(tc, tid, 10) < 2.5
    with pytest.raises(TaskTimeout):
        tc.get_task_result(tid)
    # a task within its limit is not disturbed, and the limit does not outlive its task
    tr = tc.run(
        StringTask("import time; time.sleep(0.1)\nz = 3", pull="z", time_limit=0.4), block=True
    )
    assert tr.ns.z == 3
    tid = tc.run(StringTask("import time; time.sleep(0.8)\nw = 4", pull="w"))
    finish(tc, tid, 10)
    assert tc.get_task_result(tid).ns.w == 4


# ---------------------------------------------------------------------------------------------
# abort and interrupt


def test_abort_of_a_running_task_interrupts_it(fresh_cluster: Callable[..., Cluster]) -> None:
    c = fresh_cluster(1)
    mec, tc = c.multiengine_client(), c.task_client()
    tid = tc.run(StringTask("x = 1\nimport time\ntime.sleep(30)"))
    wait_until(lambda: tid in tc.queue_status(True)["pending"], message="the task to start")
    time.sleep(0.2)  # surely running on the engine now
    assert tc.abort(tid) is None
    assert finish(tc, tid, 10) < 2.5
    with pytest.raises(TaskAborted):  # raised for a StringTask too
        tc.get_task_result(tid)
    with pytest.raises(IndexError, match="Task Already"):
        tc.abort(tid)
    assert mec.get_ids() == [0]
    assert mec.pull("x") == [1]  # the namespace survived the interrupt
    assert tc.run(StringTask("y = x + 1", pull="y"), block=True).ns.y == 2

    def nap() -> int:
        time.sleep(30)
        return 1

    tid = tc.run(MapTask(nap))
    wait_until(lambda: tid in tc.queue_status(True)["pending"], message="the map task to start")
    time.sleep(0.2)
    tc.abort(tid)
    assert finish(tc, tid, 10) < 2.5
    with pytest.raises(TaskAborted):
        tc.get_task_result(tid)
    assert tc.queue_status() == {"scheduled": 0, "pending": 0, "succeeded": 1, "failed": 2}


def test_abort_right_after_run_interrupts_a_task_still_arriving(
    fresh_cluster: Callable[..., Cluster],
) -> None:
    # The user aborts a task the moment tc.run() returns; it is already handed to the
    # engine, which is still receiving its 200 MB of pushed data. The abort must not be
    # lost: the task must end with TaskAborted without sleeping its 10 s out.
    c = fresh_cluster(1)
    tc = c.task_client()
    tid = tc.run(StringTask("import time; time.sleep(10)", push={"big": b"x" * (200 * 2**20)}))
    tc.abort(tid)
    assert finish(tc, tid, 15) < 4.0
    with pytest.raises(TaskAborted):
        tc.get_task_result(tid)


def test_abort_of_waiting_tasks(fresh_cluster: Callable[..., Cluster]) -> None:
    c = fresh_cluster(1)
    mec, tc = c.multiengine_client(), c.task_client()
    mec.execute("ran = []")
    sleeper = tc.run(StringTask("import time; time.sleep(0.5)"))
    wait_until(lambda: sleeper in tc.queue_status(True)["pending"], message="the sleeper to start")
    waiting = [tc.run(StringTask(f"ran.append({i})")) for i in range(6)]
    for tid in waiting[::2]:  # sent ahead to the engine or still in the controller: both abort
        tc.abort(tid)
    finish(tc, waiting[::2], 5)
    for tid in waiting[::2]:
        with pytest.raises(TaskAborted):
            tc.get_task_result(tid)
        with pytest.raises(IndexError, match="Task Already"):
            tc.abort(tid)
    finish(tc, [sleeper, *waiting])
    assert mec.pull("ran") == [[1, 3, 5]]  # the aborted ones never ran
    st = tc.queue_status(True)
    assert sorted(st["failed"]) == waiting[::2]
    assert sorted(st["succeeded"]) == sorted([sleeper, *waiting[1::2]])


def test_interrupt_stops_running_execute(fresh_cluster: Callable[..., Cluster]) -> None:
    c = fresh_cluster(2)
    mec = c.multiengine_client()
    pr0 = mec.execute("x = 1\nimport time\ntime.sleep(30)", targets=0, block=False)
    behind = mec.execute("z = 3", targets=0, block=False)
    pr1 = mec.execute("import time\ntime.sleep(0.6)\ny = 2", targets=1, block=False)
    wait_until(
        lambda: all(q["pending"] for _, q in mec.queue_status()),
        5,
        message="both engines to be busy",
    )
    time.sleep(0.2)
    t0 = time.monotonic()
    assert mec.interrupt(targets=0) == [None]
    assert pr0.wait(5), "the interrupted command did not end"
    assert time.monotonic() - t0 < 2.0
    with pytest.raises(CompositeError) as info:
        pr0.get_result()
    assert len(info.value.elist) == 1 and isinstance(info.value.elist[0][1], KeyboardInterrupt)
    assert "[0:execute]: KeyboardInterrupt" in str(info.value)
    with pytest.raises(CompositeError) as info:  # as any error, it clears what was queued behind
        behind.get_result()
    assert isinstance(info.value.elist[0][1], QueueCleared)
    assert pr1.wait(5)
    pr1.get_result()  # engine 1 was not interrupted
    assert mec.get_ids() == [0, 1]
    assert mec.pull("x", targets=0) == [1]
    assert mec.pull("y", targets=1) == [2]
    mec.execute("x += 1", targets=0)
    assert mec.pull("x", targets=0) == [2]


def test_interrupt_right_after_execute_is_not_lost(fresh_cluster: Callable[..., Cluster]) -> None:
    # interrupt() the moment the command has been sent: the engine may not have started
    # it yet, but the controller already counts it as running, so it must be interrupted.
    # A long comment makes the command take a while to arrive and be decoded, so the
    # interrupt surely comes before the code starts; then a few plain attempts.
    c = fresh_cluster(1)
    mec = c.multiengine_client()
    big = "import time\ntime.sleep(5)\n#" + "x" * (16 * 2**20)
    for attempt, code in enumerate([big] + ["import time; time.sleep(5)"] * 10):
        pr = mec.execute(code, block=False)
        mec.interrupt()
        assert pr.wait(3), f"attempt {attempt}: the interrupt was lost, the command ran on"
        with pytest.raises(CompositeError) as info:
            pr.get_result()
        assert isinstance(info.value.elist[0][1], KeyboardInterrupt)


def test_interrupt_stops_a_running_task(fresh_cluster: Callable[..., Cluster]) -> None:
    c = fresh_cluster(1)
    mec, tc = c.multiengine_client(), c.task_client()
    tid = tc.run(StringTask("x = 1\nimport time\ntime.sleep(30)", retries=2))
    after = tc.run(StringTask("y = x + 1", pull="y"))
    wait_until(lambda: tid in tc.queue_status(True)["pending"], message="the task to start")
    time.sleep(0.2)
    mec.interrupt()
    assert finish(tc, tid, 10) < 2.5  # not retried into another 30 s sleep
    try:
        outcome: BaseException | None = tc.get_task_result(tid).failure
    except TaskAborted as e:
        outcome = e
    assert isinstance(outcome, (KeyboardInterrupt, TaskAborted))
    finish(tc, after, 5)
    assert tc.get_task_result(after).ns.y == 2  # the engine goes on, with its namespace
    assert mec.get_ids() == [0]


def test_interrupt_of_idle_engines_is_harmless(mec: MEC) -> None:
    assert mec.interrupt() == [None, None, None, None]
    time.sleep(0.1)
    # no stray KeyboardInterrupt hits the next command
    r = mec.execute("import time; time.sleep(0.2)\na = 1")
    assert [x["number"] for x in r] == [1, 1, 1, 1]
    assert mec.pull("a") == [1, 1, 1, 1]


# ---------------------------------------------------------------------------------------------
# engines dying under tasks


def slow_times_ten(x: int) -> tuple[int, int]:
    time.sleep(0.3)
    return 10 * x, id  # type: ignore[return-value]  # the engine's id


def test_engine_killed_mid_task_retried_on_another(fresh_cluster: Callable[..., Cluster]) -> None:
    c = fresh_cluster(2, heartbeat_timeout=1.0)
    mec, tc = c.multiengine_client(), c.task_client()
    tid = tc.run(StringTask("import time\ntime.sleep(1.0)\nwho = id", pull="who", retries=1))
    victim = running_engine(mec)
    survivor = 1 - victim
    others = [tc.run(MapTask(slow_times_ten, (x,), retries=1)) for x in range(6)]
    os.kill(c.engine_pids()[victim], signal.SIGKILL)
    finish(tc, [tid, *others], 15)
    tr = tc.get_task_result(tid)
    assert tr.failure is None
    assert tr.ns.who == survivor and tr.engineid == survivor
    assert [tc.get_task_result(t)[0] for t in others] == [0, 10, 20, 30, 40, 50]  # nothing lost
    assert mec.get_ids() == [survivor]
    assert tc.queue_status() == {"scheduled": 0, "pending": 0, "succeeded": 7, "failed": 0}


def test_engine_killed_mid_task_without_retries_gives_engine_error(
    fresh_cluster: Callable[..., Cluster],
) -> None:
    c = fresh_cluster(2, heartbeat_timeout=1.0)
    mec, tc = c.multiengine_client(), c.task_client()

    def nap() -> int:
        time.sleep(20)
        return 1

    string_tid = tc.run(StringTask("import time; time.sleep(20)"))
    map_tid = tc.run(MapTask(nap))
    wait_until(
        lambda: all(q["pending"] for _, q in mec.queue_status()),
        5,
        message="both engines to be busy",
    )
    for pid in c.engine_pids().values():
        os.kill(pid, signal.SIGKILL)
    assert finish(tc, [string_tid, map_tid], 10) < 6
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
    c = fresh_cluster(1, heartbeat_timeout=1.0)
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


def test_retry_on_engine_retries_only_engine_loss(fresh_cluster: Callable[..., Cluster]) -> None:
    c = fresh_cluster(2, heartbeat_timeout=1.0)
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
    tid = tc.run(
        StringTask(
            "import time\ntime.sleep(1.0)\nwho = id", pull="who", retries=1, retry_on="engine"
        )
    )
    victim = running_engine(mec)
    os.kill(c.engine_pids()[victim], signal.SIGKILL)
    finish(tc, tid, 15)
    assert tc.get_task_result(tid).ns.who == 1 - victim


def test_retry_on_exception_classes(tc: TC, mec: MEC) -> None:
    mec.execute("tries = []")
    code = "tries.append(1)\nraise {}('x')"
    tr = tc.run(StringTask(code.format("KeyError"), retries=2, retry_on=(ValueError,)), block=True)
    assert isinstance(tr.failure, KeyError)
    assert sum(len(t) for t in mec.pull("tries")) == 1
    tr = tc.run(StringTask(code.format("ValueError"), retries=2, retry_on=ValueError), block=True)
    assert isinstance(tr.failure, ValueError)
    assert sum(len(t) for t in mec.pull("tries")) == 1 + 3


# ---------------------------------------------------------------------------------------------
# retries


def test_always_failing_task_fails_after_paced_retries(
    fresh_cluster: Callable[..., Cluster],
) -> None:
    c = fresh_cluster(1, task_failure_penalty=0.3)
    mec, tc = c.multiengine_client(), c.task_client()
    mec.execute("attempts = []")
    tid = tc.run(StringTask("attempts.append(1)\nraise ValueError('always')", retries=3))
    elapsed = finish(tc, tid, 10)
    assert 0.9 <= elapsed < 4.0  # three retries, each after the 0.3 s penalty
    assert isinstance(tc.get_task_result(tid).failure, ValueError)
    assert mec.pull("attempts") == [[1, 1, 1, 1]]

    def always() -> None:
        raise ValueError("always")

    t0 = time.monotonic()
    with pytest.raises(ValueError, match="always"):
        tc.run(MapTask(always, retries=3), block=True)
    assert time.monotonic() - t0 >= 0.9


def test_retry_goes_to_another_engine(
    fresh_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    # decision 10: the retry goes to the other, free engine, although that engine was
    # handed a task more recently (plain round robin would pick the failing one again)
    c = fresh_cluster(2, task_failure_penalty=0.0)
    tc = c.task_client()
    log = tmp_path / "attempts"
    code = (
        "with open(path, 'a') as f:\n"
        "    f.write(f'{id}\\n')\n"
        "import time\n"
        "time.sleep(0.4)\n"
        "if len(open(path).read().split()) < 2:\n"
        "    raise ValueError('first attempt')\n"
        "who = id\n"
    )
    tid = tc.run(StringTask(code, push={"path": str(log)}, pull="who", retries=1))
    quick = tc.run(StringTask("import time; time.sleep(0.05)"))
    finish(tc, [tid, quick], 10)
    first, second = (int(x) for x in log.read_text().split())
    assert first != second
    tr = tc.get_task_result(tid)
    assert tr.ns.who == second == tr.engineid
    assert tc.get_task_result(quick).engineid == second


def test_unmet_depend_times_out(fresh_cluster: Callable[..., Cluster]) -> None:
    c = fresh_cluster(1, task_timeout=1.0)
    tc = c.task_client()
    with pytest.warns(DeprecationWarning):
        never = StringTask("a = 1", depend=lambda props: False)
    with pytest.warns(DeprecationWarning):
        always = MapTask(lambda: 7, depend=lambda props: True)
    t0 = time.monotonic()
    tid = tc.run(never)
    # the engine is not held up by the task it cannot take
    assert tc.run(StringTask("b = 2", pull="b"), block=True).ns.b == 2
    assert time.monotonic() - t0 < 0.9
    assert tc.run(always, block=True) == 7
    elapsed = finish(tc, tid, 10)
    assert 0.9 <= time.monotonic() - t0 and elapsed < 5
    with pytest.raises(TaskTimeout, match="unmet dependencies"):
        tc.get_task_result(tid)
    assert tc.queue_status() == {"scheduled": 0, "pending": 0, "succeeded": 2, "failed": 1}


# ---------------------------------------------------------------------------------------------
# map and imap


def test_map_chunksize_keeps_order(tc: TC) -> None:
    assert tc.map(lambda x: x * x, range(100), chunksize=7) == [x * x for x in range(100)]
    assert tc.map(lambda a, b: a - b, range(10), range(10, 20), chunksize=3) == [-10] * 10
    assert tc.map(lambda x: x, [], chunksize=4) == []
    assert list(tc.imap(lambda x: -x, range(23), chunksize=5)) == [-x for x in range(23)]


def test_map_chunksize_makes_fewer_tasks(fresh_cluster: Callable[..., Cluster]) -> None:
    tc = fresh_cluster(2).task_client()
    assert tc.map(lambda x: x + 1, range(100), chunksize=7) == list(range(1, 101))
    assert tc.queue_status()["succeeded"] == 15  # ceil(100 / 7)


def test_imap_over_an_unbounded_generator(fresh_cluster: Callable[..., Cluster]) -> None:
    c = fresh_cluster(2)
    tc = c.task_client()
    it = tc.imap(lambda x: x * x, itertools.count())
    assert list(itertools.islice(it, 50)) == [x * x for x in range(50)]
    it.close()  # stop consuming: no hang, no error

    pulled = 0

    def source() -> Any:
        nonlocal pulled
        for i in itertools.count():
            pulled += 1
            yield i

    it2 = tc.imap(lambda x: x + 1, source(), window=16)
    assert list(itertools.islice(it2, 30)) == list(range(1, 31))
    assert pulled <= 30 + 16  # lazy: only a window ahead of what was consumed
    del it2
    # the client goes on working, and what was submitted ahead drains
    assert tc.map(lambda x: 2 * x, range(5)) == [0, 2, 4, 6, 8]
    wait_until(
        lambda: (s := tc.queue_status())["scheduled"] + s["pending"] == 0,
        20,
        message="the queue to drain",
    )


def test_imap_unordered(tc: TC) -> None:
    def f(x: int) -> int:
        time.sleep(0.6 if x == 0 else 0.0)
        return x

    out = list(tc.imap(f, range(12), ordered=False))
    assert Counter(out) == Counter(range(12))
    assert out[0] != 0  # the slow first item does not hold back the others
    assert list(tc.imap(f, range(12))) == list(range(12))
    assert Counter(tc.imap(lambda x: x % 3, range(30), ordered=False, chunksize=4)) == Counter(
        x % 3 for x in range(30)
    )


def test_map_failing_item_raises_its_exception(tc: TC) -> None:
    with pytest.raises(ZeroDivisionError):
        tc.map(lambda x: 1 / (x - 3), range(6))
    with pytest.raises(ZeroDivisionError):
        tc.map(lambda x: 1 / (x - 3), range(6), chunksize=2)
    it = tc.imap(lambda x: 12 // (x - 3), range(6))
    assert [next(it), next(it), next(it)] == [-4, -6, -12]  # the items before it arrive
    with pytest.raises(ZeroDivisionError):
        next(it)


def test_imap_bad_arguments(tc: TC) -> None:
    with pytest.raises(TypeError):
        tc.imap(42, range(3))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        tc.imap(abs, range(3), chunksize=0)


# ---------------------------------------------------------------------------------------------
# argument checking


def _f(x: int) -> int:
    return x


BAD_TASKS: list[Any] = [
    pytest.param(lambda: StringTask(5), id="expression-not-str"),
    pytest.param(lambda: StringTask(b"a=1"), id="expression-bytes"),
    pytest.param(lambda: StringTask("a=1", pull=5), id="pull-int"),
    pytest.param(lambda: StringTask("a=1", pull=["a", 5]), id="pull-list-with-int"),
    pytest.param(lambda: StringTask("a=1", push=[("a", 1)]), id="push-not-dict"),
    pytest.param(lambda: MapTask("asdfasdf"), id="function-str"),
    pytest.param(lambda: MapTask(None), id="function-none"),
    pytest.param(lambda: MapTask(_f, 10), id="args-int"),
    pytest.param(lambda: MapTask(_f, (10,), 30), id="kwargs-int"),
    pytest.param(lambda: StringTask("a=1", retries=-1), id="retries-negative"),
    pytest.param(lambda: MapTask(_f, (1,), retries=1.5), id="retries-float"),
    pytest.param(lambda: StringTask("a=1", priority="high"), id="priority-str"),
    pytest.param(lambda: MapTask(_f, (1,), priority=1.5), id="priority-float"),
    pytest.param(lambda: StringTask("a=1", time_limit=0), id="time-limit-zero"),
    pytest.param(lambda: MapTask(_f, (1,), time_limit=-1.0), id="time-limit-negative"),
    pytest.param(lambda: StringTask("a=1", time_limit="10"), id="time-limit-str"),
    pytest.param(lambda: StringTask("a=1", retry_on="garbage"), id="retry-on-str"),
    pytest.param(lambda: MapTask(_f, (1,), retry_on=42), id="retry-on-int"),
    pytest.param(lambda: MapTask(_f, (1,), retry_on=int), id="retry-on-not-exception"),
    pytest.param(lambda: StringTask("a=1", retry_on=(ValueError, "x")), id="retry-on-mixed"),
    pytest.param(lambda: StringTask("a=1", recovery_task="a=2"), id="recovery-not-task"),
]


@pytest.mark.parametrize("make", BAD_TASKS)
def test_bad_task_arguments_raise_type_error(make: Callable[[], Any]) -> None:
    with pytest.raises(TypeError):
        make()


def test_good_task_arguments_are_accepted() -> None:
    t = StringTask(
        "a=1", pull=("a",), push={}, retries=2, priority=-3, time_limit=1, retry_on="engine"
    )
    assert (t.retries, t.priority, t.time_limit) == (2, -3, 1)
    m = MapTask(_f, [1], {}, retry_on=(ValueError, KeyError), time_limit=0.5, recovery_task=t)
    assert m.recovery_task is t


def test_run_rejects_what_is_not_a_task(tc: TC) -> None:
    with pytest.raises(TypeError):
        tc.run("a = 1")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# tasks and MultiEngine commands share the engines' queues


def test_a_task_waits_behind_a_running_execute(fresh_cluster: Callable[..., Cluster]) -> None:
    c = fresh_cluster(1)
    mec, tc = c.multiengine_client(), c.task_client()
    pr = mec.execute("import time; time.sleep(0.6)\nx = 1", block=False)
    tid = tc.run(StringTask("y = x + 1", pull="y"))
    elapsed = finish(tc, tid, 10)
    assert elapsed >= 0.45
    assert tc.get_task_result(tid).ns.y == 2  # it ran after the command, in its namespace
    assert pr.wait(5)
    # and the other way round: a command waits behind a running task
    tid = tc.run(StringTask("import time; time.sleep(0.6)\nz = 3"))
    wait_until(lambda: tid in tc.queue_status(True)["pending"], message="the task to start")
    t0 = time.monotonic()
    pr = mec.execute("w = z + 1", block=False)
    assert pr.wait(5)
    assert time.monotonic() - t0 >= 0.3
    assert mec.pull("w") == [4]


def test_a_failing_task_clears_no_other_task(fresh_cluster: Callable[..., Cluster]) -> None:
    c = fresh_cluster(1)
    tc = c.task_client()
    bad = tc.run(StringTask("import time; time.sleep(0.2)\n1/0"))
    good = [tc.run(StringTask(f"v = {i}", pull="v")) for i in range(4)]
    good.append(tc.run(MapTask(lambda: "map")))
    finish(tc, [bad, *good])
    assert isinstance(tc.get_task_result(bad).failure, ZeroDivisionError)
    assert [tc.get_task_result(t).ns.v for t in good[:4]] == [0, 1, 2, 3]
    assert tc.get_task_result(good[4]) == "map"


def test_a_failing_execute_clears_commands_but_not_tasks(
    fresh_cluster: Callable[..., Cluster],
) -> None:
    c = fresh_cluster(1)
    mec, tc = c.multiengine_client(), c.task_client()
    failing = mec.execute("import time; time.sleep(0.3)\n1/0", block=False)
    behind = mec.execute("z = 1", block=False)
    tid = tc.run(StringTask("w = 5", pull="w"))
    finish(tc, tid, 10)
    assert tc.get_task_result(tid).ns.w == 5
    assert failing.wait(5) and behind.wait(5)
    with pytest.raises(CompositeError) as info:
        failing.get_result()
    assert isinstance(info.value.elist[0][1], ZeroDivisionError)
    with pytest.raises(CompositeError) as info:
        behind.get_result()
    assert isinstance(info.value.elist[0][1], QueueCleared)
