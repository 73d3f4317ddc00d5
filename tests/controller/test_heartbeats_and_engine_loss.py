"""Engines keep answering heartbeats while user code runs; an engine that falls silent or
dies is dropped, its work fails with EngineError, and the cluster goes on."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

import pytest
from helpers import HANG, assert_cluster_works, error_types, wait_until

import multiengine
from multiengine.errors import CompositeError, EngineError, InvalidEngineID


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


@pytest.mark.fault(
    section="engines-that-die",
    fault="an engine stopped by SIGSTOP (alive, silent)",
    outcome=(
        "not a death: the heartbeat timeout unregisters it, its work fails with `EngineError "
        "... was lost (no heartbeat for 1 s)`"
    ),
)
@pytest.mark.fault(
    section="an-engine-that-loses-the-controller",
    fault="an engine stops answering (SIGSTOP, a stalled host) for longer than `heartbeat_timeout`",
    outcome=(
        "the controller unregisters it within `heartbeat_timeout` (`status()` no longer lists "
        "it; its id is listed in `reserved_ids`); its running and queued commands fail with "
        "`EngineError` (`engine 0 was lost (no heartbeat for 3 s, or its connection closed) "
        "with ...`); tasks are retried elsewhere or fail with `EngineError` (`retry_lost`)"
    ),
    also=[
        "tests/engine/test_lost_controller.py::test_a_stopped_engine_comes_back_under_its_id_with_its_namespace",
        "tests/controller/test_engine_ids_and_liveness.py::test_a_silent_engine_is_unregistered_its_work_fails_and_its_id_is_reserved",
    ],
)
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


def test_an_engine_killed_mid_execute_gives_engine_error(
    fresh_cluster: Callable[..., multiengine.Cluster],
) -> None:
    # the engine stays dead (no restart): the cluster goes on without it
    c = fresh_cluster(2, restart_engines=False)
    mec = c.multiengine_client()
    assert mec.get_ids() == [0, 1]
    running = mec.execute("import time; time.sleep(600)", targets=0, block=False)
    queued = mec.execute("never = 1", targets=0, block=False)
    wait_until(
        lambda: mec.status()["engines"][0]["running"] is not None,
        message="engine 0 to start the command",
    )
    pid = c.engine_pids()[0]
    os.kill(pid, signal.SIGKILL)
    assert running.wait(HANG), "the command on the killed engine never failed"
    for pr in (running, queued):
        with pytest.raises(CompositeError) as info:
            _ = pr.r
        assert error_types(info.value) == [EngineError]
        assert "engine 0" in str(info.value.elist[0][1])
    assert mec.get_ids() == [1]
    with pytest.raises(InvalidEngineID, match="Engine with id 0 is not registered"):
        mec.execute("a = 1", targets=0)
    assert_cluster_works(mec, targets=1)
    assert_cluster_works(mec)
