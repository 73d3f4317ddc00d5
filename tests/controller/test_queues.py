"""Each engine's queue: commands run in order, queue_status shows what runs and waits
(answered by the controller, decision 12), clear_queue drops what waits, and an error
clears what was queued behind it on that engine only."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from helpers import HANG, Latch, assert_cluster_works, assert_remote, error_types, pending

import multiengine
from multiengine.errors import CompositeError, QueueCleared


def test_commands_keep_their_order_on_each_engine(mec, latch):
    gate = latch()
    pr1 = mec.execute(f"{gate.wait_code}\nv = 1", block=False)
    pr2 = mec.execute("v = v + 1", block=False)
    assert not pr2.done()  # it waits behind the first command, which cannot end yet
    gate.set()
    assert pr2.r and pr1.r
    assert mec.pull("v") == [2] * 4


def test_clear_queue_of_one_engine(mec: multiengine.MultiEngineClient) -> None:
    # seed §A: testClearQueue. Contract decision 12: an idle engine's 'pending' is None (the seed
    # gave the string 'None').
    assert mec.clear_queue(targets=0) == [None]
    assert mec.queue_status(targets=0) == [(0, {"queue": [], "pending": None})]


def test_clear_queue_drops_queued_commands(
    mec: multiengine.MultiEngineClient, latch: Callable[[], Latch]
) -> None:
    # What clear_queue is for: a command waiting behind a running one is dropped with
    # QueueCleared, the running one finishes.
    gate = latch()
    running = mec.execute(f"{gate.wait_code}\ndone = 1", targets=0, block=False)
    queued = mec.execute("queued = 1", targets=0, block=False)
    assert mec.clear_queue(targets=0) == [None]
    gate.set()
    assert running.r[0]["number"] == 1
    with pytest.raises(CompositeError) as excinfo:
        queued.get_result()
    assert isinstance(excinfo.value.elist[0][1], multiengine.errors.QueueCleared)
    assert mec.pull("done", targets=0) == [1]
    assert_remote(NameError, mec.pull, "queued", targets=0)


def test_clear_queue(mec: multiengine.MultiEngineClient) -> None:
    # seed §B: testClearQueue
    assert mec.clear_queue() == 4 * [None]


def test_clear_queue_nonblocking(mec: multiengine.MultiEngineClient) -> None:
    # seed §B: testClearQueue (Synchronous)
    assert mec.clear_queue() == 4 * [None]
    assert pending(mec.clear_queue(block=False)).r == 4 * [None]


def test_queue_status_while_a_command_runs(
    mec: multiengine.MultiEngineClient, latch: Callable[[], Latch]
) -> None:
    # seed §A: testQueueStatus: the dict has 'queue' and 'pending'; while a command runs, it is the
    # 'pending' one and the next waits in 'queue'.
    ((eid, status),) = mec.queue_status(targets=0)
    assert eid == 0
    assert set(status) == {"queue", "pending"}
    gate = latch()
    running = mec.execute(gate.wait_code, targets=0, block=False)
    queued = mec.execute("a=1", targets=0, block=False)
    ((eid, status),) = mec.queue_status(targets=0)
    assert eid == 0
    assert status["pending"] is not None and gate.wait_code in status["pending"]
    assert len(status["queue"]) == 1 and "a=1" in status["queue"][0]
    gate.set()
    mec.barrier([running, queued])
    assert queued.r[0]["number"] == 2
    assert mec.queue_status(targets=0) == [(0, {"queue": [], "pending": None})]


def test_queue_status(mec: multiengine.MultiEngineClient) -> None:
    # seed §B: testQueueStatus: per engine a tuple (id, {'queue', 'pending'}). Contract decision 12:
    # 'pending' is None when idle (the seed gave 'None').
    r = mec.queue_status(targets=0)
    assert isinstance(r[0], tuple)
    assert r == [(0, {"queue": [], "pending": None})]
    assert mec.queue_status(targets=[3, 1]) == [
        (3, {"queue": [], "pending": None}),
        (1, {"queue": [], "pending": None}),
    ]


def test_queue_status_nonblocking(mec: multiengine.MultiEngineClient) -> None:
    # seed §B: testQueueStatus (Synchronous)
    r = mec.queue_status(targets=0)
    assert isinstance(r[0], tuple) and r[0][0] == 0
    r = pending(mec.queue_status(targets=0, block=False)).r
    assert isinstance(r[0], tuple)
    assert r == [(0, {"queue": [], "pending": None})]


def test_queue_status_names_running_and_queued_commands(mec, latch):
    # contract decision 12
    assert mec.queue_status() == [(i, {"queue": [], "pending": None}) for i in range(4)]
    gate = latch()
    running = mec.execute(gate.wait_code, targets=0, block=False)
    queued = mec.execute("a=1", targets=0, block=False)
    status = mec.queue_status(targets=0)
    assert status == [(0, {"queue": ["execute('a=1')"], "pending": f"execute({gate.wait_code!r})"})]
    gate.set()
    mec.barrier([running, queued])
    assert mec.queue_status(targets=0) == [(0, {"queue": [], "pending": None})]


def test_queue_status_answers_while_an_engine_is_busy(
    mec: multiengine.MultiEngineClient, latch: Callable[[], Latch]
) -> None:
    gate = latch()
    pr = mec.execute(gate.wait_code, targets=1, block=False)
    # answered by the controller, not behind the command, which cannot end before the gate opens
    status = mec.queue_status(targets=1, block=False)
    assert status.wait(HANG), "queue_status waited behind the running command"
    assert status.r == [(1, {"queue": [], "pending": f"execute({gate.wait_code!r})"})]
    gate.set()
    pr.get_result()


def test_an_error_clears_the_queue_behind_it_and_keeps_the_namespace(
    mec: multiengine.MultiEngineClient, latch: Callable[[], Latch]
) -> None:
    mec.execute("kept = 5")
    gate = latch()  # the command fails only once the others wait behind it
    failing = mec.execute(f"import time\n{gate.wait_code}\n1/0", block=False)
    queued_exec = mec.execute("after = 2", block=False)
    queued_push = mec.push({"pushed": 3}, block=False)
    gate.set()
    assert failing.wait(HANG) and queued_exec.wait(HANG) and queued_push.wait(HANG)
    with pytest.raises(CompositeError) as info:
        _ = failing.r
    assert error_types(info.value) == [ZeroDivisionError] * 4
    for pr in (queued_exec, queued_push):
        with pytest.raises(CompositeError) as info:
            _ = pr.r
        assert error_types(info.value) == [QueueCleared] * 4
    # the failing engines keep their namespace; the cleared commands never ran
    assert mec.pull("kept") == [5] * 4
    keys = mec.keys()
    for k in keys:
        assert "kept" in k and "time" in k
        assert "after" not in k and "pushed" not in k
    # the queue is usable again
    mec.push({"pushed": 3})
    assert mec.pull("pushed") == [3] * 4


def test_an_error_on_one_engine_clears_only_that_engines_queue(
    mec: multiengine.MultiEngineClient, latch: Callable[[], Latch]
) -> None:
    gate = latch()  # the command fails only once the next one waits behind it
    failing = mec.execute(f"{gate.wait_code}\nif id == 0: 1/0", block=False)
    queued = mec.execute("after = id", block=False)
    gate.set()
    assert failing.wait(HANG) and queued.wait(HANG)
    with pytest.raises(CompositeError) as info:
        _ = failing.r
    assert error_types(info.value) == [ZeroDivisionError]
    with pytest.raises(CompositeError) as info:
        _ = queued.r
    assert error_types(info.value) == [QueueCleared]
    assert mec.pull("after", targets=[1, 2, 3]) == [1, 2, 3]
    assert_cluster_works(mec)
