"""A controller killed with SIGKILL comes back (the process that started the cluster
starts it again with ``--restore``), and work in flight carries on: a ``tc.map`` of
1,000 tasks returns every result once and in order, results kept before the crash are
fetched after it, a call that was running fails with a clear error, and the history
survives. Real processes throughout; the restart is the cluster's own supervisor."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_until

import multiengine
from multiengine import Cluster, MapTask
from multiengine.errors import ControllerRestarted, KernelError


def logged_square(x: int, log: str) -> int:
    """x*x, and a line in ``log`` (so the test knows the map is under way)."""
    import time

    with open(log, "a") as f:
        f.write(f"{x}\n")
    time.sleep(0.002)
    return x * x


def kill_controller(c: Cluster) -> None:
    assert c.controller is not None
    old = c.controller.pid
    os.kill(old, signal.SIGKILL)
    wait_until(
        lambda: c.controller is not None and c.controller.pid != old,
        message="the supervisor starts the controller again",
    )


def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.mark.fault(
    section="a-controller-that-comes-back",
    fault=(
        "SIGKILL to the controller in the middle of `tc.map` of 1,000 tasks (the cluster "
        "restarts it with `--restore`)"
    ),
    outcome=(
        "the map returns all 1,000 results, once and in order, in the same call; every item "
        "ran, fewer than 100 twice; the history has all 1,000 tasks"
    ),
)
def test_a_map_of_1000_tasks_survives_a_killed_controller(
    fresh_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    c = fresh_cluster(2, heartbeat_period=0.25, heartbeat_timeout=1.5)
    tc = c.task_client()
    log = tmp_path / "ran.txt"
    out: dict[str, Any] = {}

    def run_map() -> None:
        try:
            out["results"] = tc.map(logged_square, range(1000), [str(log)] * 1000, retries=2)
        except BaseException as e:  # noqa: BLE001 - the test reports it
            out["error"] = e

    t = threading.Thread(target=run_map, daemon=True)
    t.start()
    wait_until(lambda: lines(log) >= 100, message="a tenth of the map has run")
    kill_controller(c)
    t.join(120)
    assert not t.is_alive(), "the map did not finish after the controller came back"
    assert "error" not in out, out.get("error")
    assert out["results"] == [x * x for x in range(1000)]  # every result, once, in order
    ran = [int(v) for v in log.read_text().split()]
    assert set(ran) == set(range(1000))  # nothing vanished (a lost attempt may run twice)
    # what ran again: the attempts the crash cut short, and tasks whose result had not
    # reached results.db yet (the last group commit, about 20 ms of work); not the rest
    assert len(ran) - 1000 < 100
    history = tc.history(limit=2000)
    assert {h["id"] for h in history if h["kind"] == "task"} >= set(range(1000))


@pytest.mark.fault(
    section="a-controller-that-comes-back",
    fault=(
        "SIGKILL to the controller with finished tasks and a finished non-blocking call not fetched"
    ),
    outcome=(
        "the same client fetches all of them after the restart without doing anything; a new "
        "client fetches them too"
    ),
)
def test_results_kept_before_the_crash_are_fetched_after_it(
    fresh_cluster: Callable[..., Cluster],
) -> None:
    c = fresh_cluster(2, heartbeat_period=0.25, heartbeat_timeout=1.5)
    tc = c.task_client()
    mec = c.multiengine_client()
    tids = [tc.run(MapTask(pow, (i, 2))) for i in range(20)]
    tc.barrier(tids)
    done = mec.execute("b = 6", targets=0, block=False)
    # on disk (a result kept less than a group commit, ~20 ms, before a crash is lost)
    wait_until(lambda: mec.status()["results_on_disk"] >= 21, message="results on disk")
    kill_controller(c)
    # this client carries on by itself: no new client, no reconnect call
    assert [tc.get_task_result(t, block=True) for t in tids] == [i * i for i in range(20)]
    assert done.get_result()[0]["input"]["raw"] == "b = 6"
    with multiengine.TaskClient(cluster_dir=c.cluster_dir.path, timeout=10) as other:
        assert other.get_task_result(tids[7], block=True) == 49  # another client too


@pytest.mark.fault(
    section="a-controller-that-comes-back",
    fault="SIGKILL to the controller while a non-blocking `execute` runs",
    outcome=(
        "fetching its result raises `ControllerRestarted` (it may or may not have run); the "
        "engine is back with its namespace"
    ),
)
def test_a_call_running_when_the_controller_died_fails_clearly(
    fresh_cluster: Callable[..., Cluster],
) -> None:
    c = fresh_cluster(1, heartbeat_period=0.25, heartbeat_timeout=1.5)
    mec = c.multiengine_client()
    pending = mec.execute("import time; time.sleep(30)", block=False)
    wait_until(lambda: mec.queue_status()[0][1]["pending"] is not None, message="it runs")
    kill_controller(c)
    with pytest.raises((ControllerRestarted, KernelError)) as info:
        pending.get_result(block=True)
    assert "restarted" in str(info.value)


@pytest.mark.fault(
    section="a-controller-that-comes-back",
    fault=(
        "SIGKILL to the controller while a blocking `execute` runs on the direct path (an "
        "engine of the client's host)"
    ),
    outcome=(
        "the engine runs it to the end and answers the client itself: the call returns its "
        "result, its names are set; later calls go direct again"
    ),
)
def test_a_direct_call_running_when_the_controller_died_ends_normally(
    fresh_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    c = fresh_cluster(1, heartbeat_period=0.25, heartbeat_timeout=1.5)
    mec = c.multiengine_client()
    wait_until(
        lambda: mec.execute("x = 1", targets=0) and mec._core.direct_calls,
        message="a call to go direct",
    )
    started, release = tmp_path / "started", tmp_path / "release"
    code = (
        "import os, time\n"
        f"open({str(started)!r}, 'w').close()\n"
        f"while not os.path.exists({str(release)!r}): time.sleep(0.01)\n"
        "y = x + 4"
    )
    done: dict[str, Any] = {}

    def call() -> None:
        try:
            done["value"] = mec.execute(code, targets=0)
        except BaseException as e:
            done["error"] = e

    direct_before = mec._core.direct_calls
    thread = threading.Thread(target=call)
    thread.start()
    try:
        wait_until(started.exists, message="the call to run")
        assert mec._core.direct_calls == direct_before + 1  # it went direct
        kill_controller(c)
    finally:
        release.touch()
        thread.join(30)
    assert not thread.is_alive()
    assert "error" not in done, done
    assert done["value"][0]["input"]["raw"] == code  # its own result, from the engine

    def engine_back() -> bool:  # (a call sent before the client saw the restart fails)
        try:
            return mec.get_ids() == [0]
        except ControllerRestarted:
            return False

    wait_until(engine_back, message="the engine to register with the new controller")
    assert mec.pull("y", targets=0) == [5]
    taken = mec._core.direct_calls
    wait_until(
        lambda: mec.execute("z = y", targets=0) and mec._core.direct_calls > taken,
        message="calls to go direct again",
    )


def test_restore_after_a_clean_stop_keeps_results_and_history(
    fresh_cluster: Callable[..., Cluster], multiengine_dir: Path
) -> None:
    first = fresh_cluster(1, profile="kept")
    tc = first.task_client()
    tids = [tc.run(MapTask(pow, (i, 3))) for i in range(5)]
    tc.barrier(tids)
    first.stop()

    again = fresh_cluster(1, profile="kept", restore=True)
    with multiengine.TaskClient(cluster_dir=again.cluster_dir.path, timeout=10) as tc2:
        assert [tc2.get_task_result(t, block=True) for t in tids] == [i**3 for i in range(5)]
        assert {h["id"] for h in tc2.history() if h["kind"] == "task"} >= set(tids)
        assert tc2.run(MapTask(pow, (2, 2))) == tids[-1] + 1  # task ids go on
    again.stop()

    fresh = fresh_cluster(1, profile="kept")  # without restore: a clean slate
    with multiengine.TaskClient(cluster_dir=fresh.cluster_dir.path, timeout=10) as tc3:
        assert tc3.history() == []
