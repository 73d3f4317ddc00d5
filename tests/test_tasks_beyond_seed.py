"""Load-balanced tasks beyond the seed (issue 4): priorities, time limits, aborting and
interrupting running work, engines dying under tasks, ``retry_on``, paced retries,
chunked and lazy ``map``/``imap``, argument checking, and the queue that tasks share
with MultiEngine commands (contract.md §7 "Tasks and the queue", "Task outcomes",
"Retries are paced", decision 10).

Tests that interrupt, kill or time out engines run on a cluster of their own
(``fresh_cluster``). Waits that might never end when something is broken poll with a
deadline (``finish``) instead of blocking. Engines are kept busy by latches, or by
sleeps far longer than any wait, so that only what the test does can end their work.
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

import pytest
from helpers import (
    HANG,
    Latch,
    call_within,
    finish,
    idle,
    process_running,
    running_engine,
    wait_for_path,
    wait_until,
)

import multiengine
from multiengine import MapTask, StringTask, TaskResult
from multiengine.cluster.cluster import Cluster
from multiengine.errors import CompositeError, EngineError, QueueCleared, TaskAborted, TaskTimeout

TC = multiengine.TaskClient
MEC = multiengine.MultiEngineClient


# ---------------------------------------------------------------------------------------------
# priorities


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


def test_map_options_reach_every_task(fresh_cluster: Callable[..., Cluster]) -> None:
    tc = fresh_cluster(2).task_client()

    def f(x: int) -> int:
        while x == 2:
            pass
        return x

    # item 2 never ends by itself: only the time limit given to map can end it
    with pytest.raises(TaskTimeout):
        call_within(lambda: tc.map(f, range(4), time_limit=0.5), message="map with a time limit")
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
    finish(tc, tid)  # the loop never ends by itself: only the limit can end it
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
    finish(tc, tid)
    with pytest.raises(TaskTimeout):
        tc.get_task_result(tid)
    # a task within its limit is not disturbed, and the limit does not outlive its task
    tr = tc.run(
        StringTask("import time; time.sleep(0.1)\nz = 3", pull="z", time_limit=1.0), block=True
    )
    assert tr.ns.z == 3
    tid = tc.run(StringTask("import time; time.sleep(1.5)\nw = 4", pull="w"))
    finish(tc, tid)
    assert tc.get_task_result(tid).ns.w == 4


# ---------------------------------------------------------------------------------------------
# abort and interrupt


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


def test_interrupt_stops_running_execute(
    fresh_cluster: Callable[..., Cluster], latch: Callable[[], Latch]
) -> None:
    c = fresh_cluster(2)
    mec = c.multiengine_client()
    started0, started1, gate1 = latch(), latch(), latch()
    # engine 0 sleeps far longer than any wait here: only the interrupt can end it in time
    code0 = f"x = 1\n{started0.set_code}\nimport time\ntime.sleep(600)"
    pr0 = mec.execute(code0, targets=0, block=False)
    behind = mec.execute("z = 3", targets=0, block=False)
    pr1 = mec.execute(f"{started1.set_code}\n{gate1.wait_code}\ny = 2", targets=1, block=False)
    started0.wait(message="engine 0 to run its command")
    started1.wait(message="engine 1 to run its command")
    assert mec.interrupt(targets=0) == [None]
    assert pr0.wait(HANG), "the interrupted command did not end"
    with pytest.raises(CompositeError) as info:
        pr0.get_result()
    assert len(info.value.elist) == 1 and isinstance(info.value.elist[0][1], KeyboardInterrupt)
    assert "[0:execute]: KeyboardInterrupt" in str(info.value)
    with pytest.raises(CompositeError) as info:  # as any error, it clears what was queued behind
        behind.get_result()
    assert isinstance(info.value.elist[0][1], QueueCleared)
    assert not pr1.done()  # engine 1 still runs its command...
    gate1.set()
    assert pr1.wait(HANG)
    pr1.get_result()  # ...which ends normally: engine 1 was not interrupted
    assert mec.get_ids() == [0, 1]
    assert mec.pull("x", targets=0) == [1]
    assert mec.pull("y", targets=1) == [2]
    mec.execute("x += 1", targets=0)
    assert mec.pull("x", targets=0) == [2]


def test_interrupt_right_after_execute_is_not_lost(fresh_cluster: Callable[..., Cluster]) -> None:
    # interrupt() the moment the command has been sent: the engine may not have started
    # it yet, but the controller already counts it as running, so it must be interrupted.
    # A long comment makes the command take a while to arrive and be decoded, so the
    # interrupt surely comes before the code starts; then a few plain attempts. Each
    # command sleeps far longer than the wait: only the interrupt can end it in time.
    c = fresh_cluster(1)
    mec = c.multiengine_client()
    big = "import time\ntime.sleep(600)\n#" + "x" * (16 * 2**20)
    for attempt, code in enumerate([big] + ["import time; time.sleep(600)"] * 10):
        pr = mec.execute(code, block=False)
        mec.interrupt()
        assert pr.wait(HANG), f"attempt {attempt}: the interrupt was lost, the command ran on"
        with pytest.raises(CompositeError) as info:
            pr.get_result()
        assert isinstance(info.value.elist[0][1], KeyboardInterrupt)


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


def test_interrupt_of_idle_engines_is_harmless(mec: MEC) -> None:
    assert mec.interrupt() == [None, None, None, None]
    # no stray KeyboardInterrupt hits the next command (which gives one time to land)
    r = mec.execute("import time; time.sleep(0.2)\na = 1")
    assert [x["number"] for x in r] == [1, 1, 1, 1]
    assert mec.pull("a") == [1, 1, 1, 1]


# ---------------------------------------------------------------------------------------------
# engines dying under tasks


def slow_times_ten(x: int) -> tuple[int, int]:
    time.sleep(0.3)
    return 10 * x, id  # type: ignore[return-value]  # the engine's id


def test_engine_killed_mid_task_retried_on_another(
    fresh_cluster: Callable[..., Cluster], latch: Callable[[], Latch]
) -> None:
    c = fresh_cluster(2, heartbeat_timeout=1.0)
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


def test_engine_killed_mid_task_without_retries_gives_engine_error(
    fresh_cluster: Callable[..., Cluster],
) -> None:
    c = fresh_cluster(2, heartbeat_timeout=1.0)
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


def test_retry_on_engine_retries_only_engine_loss(
    fresh_cluster: Callable[..., Cluster], latch: Callable[[], Latch]
) -> None:
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


def test_imap_unordered(tc: TC, latch: Callable[[], Latch]) -> None:
    gate = latch()
    path = str(gate.path)

    def f(x: int) -> int:
        if x == 0:
            wait_for_path(path)  # the first item is held back until the gate opens
        return x

    it = tc.imap(f, range(12), ordered=False)
    first = next(it)
    assert first != 0  # the held-back first item does not hold back the others
    gate.set()
    out = [first, *it]
    assert Counter(out) == Counter(range(12))
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
