"""interrupt(): running code stops with KeyboardInterrupt, the engine and its namespace
stay, an interrupt sent right after the command is not lost, and nothing stray hits
the next command."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from helpers import HANG, Latch

import multiengine
from multiengine.cluster.cluster import Cluster
from multiengine.engine.interpreter import MAX_CODE
from multiengine.errors import CompositeError, QueueCleared


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
    big = "import time\ntime.sleep(600)\n#" + "x" * (MAX_CODE - 64)  # the most execute takes
    for attempt, code in enumerate([big] + ["import time; time.sleep(600)"] * 10):
        pr = mec.execute(code, block=False)
        mec.interrupt()
        assert pr.wait(HANG), f"attempt {attempt}: the interrupt was lost, the command ran on"
        with pytest.raises(CompositeError) as info:
            pr.get_result()
        assert isinstance(info.value.elist[0][1], KeyboardInterrupt)


def test_interrupt_of_idle_engines_is_harmless(mec: multiengine.MultiEngineClient) -> None:
    assert mec.interrupt() == [None, None, None, None]
    # no stray KeyboardInterrupt hits the next command (which gives one time to land)
    r = mec.execute("import time; time.sleep(0.2)\na = 1")
    assert [x["number"] for x in r] == [1, 1, 1, 1]
    assert mec.pull("a") == [1, 1, 1, 1]
