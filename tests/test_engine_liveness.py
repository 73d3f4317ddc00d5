"""Engines keep answering heartbeats while user code runs; silent ones are dropped."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

import pytest
from helpers import HANG, Latch

import multiengine
from multiengine.errors import EngineError


def test_long_running_code_does_not_lose_the_engine(
    fresh_cluster: Callable[..., multiengine.Cluster],
) -> None:
    c = fresh_cluster(1, heartbeat_period=0.2, heartbeat_timeout=0.8)
    mec = c.multiengine_client()
    # sleeping (GIL released) and a pure-Python busy loop (GIL held) both last well
    # past the heartbeat timeout; the engine's heartbeat thread must keep it alive
    mec.execute("import time; time.sleep(2.0)")
    mec.execute("t = time.time() + 2.0\nwhile time.time() < t: pass")
    assert mec.get_ids() == [0]
    assert mec.queue_status() == [(0, {"queue": [], "pending": None})]


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


def test_a_stopped_engine_is_unregistered_and_its_work_fails(
    fresh_cluster: Callable[..., multiengine.Cluster],
) -> None:
    c = fresh_cluster(2, heartbeat_period=0.2, heartbeat_timeout=1.0)
    mec = c.multiengine_client()
    pid = c.engine_pids()[0]
    pr = mec.execute("import time; time.sleep(20)", targets=0, block=False)
    queued = mec.push({"x": 1}, targets=0, block=False)
    os.kill(pid, signal.SIGSTOP)  # alive but silent: only the heartbeat can tell
    try:
        assert pr.wait(HANG), "the command on the silent engine never failed"
        with pytest.raises(multiengine.CompositeError) as info:
            pr.get_result()
        err = info.value.elist[0][1]
        assert isinstance(err, EngineError) and "engine 0" in str(err)
        with pytest.raises(multiengine.CompositeError) as info2:
            queued.get_result()
        assert isinstance(info2.value.elist[0][1], EngineError)
        assert mec.get_ids() == [1]
        assert mec.execute("y = 2", targets=1)[0]["number"] == 1
    finally:
        os.kill(pid, signal.SIGKILL)
