"""The ``batch_scheduling`` engine setting: engines (and every thread they start) run
as SCHED_BATCH by default on Linux, and as ordinary threads when it is off."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from multiengine.cluster.cluster import Cluster
from multiengine.config import EngineConfig
from multiengine.engine.cli import use_batch_scheduling

pytestmark = pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="SCHED_BATCH is Linux's")

# what a user sees from code running on the engine: its main thread's policy, and that
# of a thread it starts
PROBE = (
    "import os, threading\n"
    "seen = []\n"
    "t = threading.Thread(target=lambda: seen.append(os.sched_getscheduler(0)))\n"
    "t.start(); t.join()\n"
    "policies = (os.sched_getscheduler(0), seen[0])"
)


def _threads_policies(pid: int) -> set[int]:
    return {os.sched_getscheduler(int(t)) for t in os.listdir(f"/proc/{pid}/task")}


def test_every_source_sets_it() -> None:
    assert EngineConfig().batch_scheduling is True
    assert EngineConfig.from_sources(toml={"batch_scheduling": False}).batch_scheduling is False
    env = {"MULTIENGINE_BATCH_SCHEDULING": "0"}
    assert EngineConfig.from_sources(env=env).batch_scheduling is False
    assert EngineConfig(batch_scheduling=False).to_argv() == ["--no-batch-scheduling"]


def test_engines_and_their_threads_run_as_batch(tmp_path: Path) -> None:
    with Cluster(n=2, cluster_dir=tmp_path) as c:
        mec = c.multiengine_client()
        mec.execute(PROBE)
        assert mec.pull("policies") == [(os.SCHED_BATCH, os.SCHED_BATCH)] * 2
        for pid in c.engine_pids().values():  # zmq's I/O thread and the heartbeat's too
            assert _threads_policies(pid) == {os.SCHED_BATCH}
        # the controller and this client stay ordinary: their wake-ups come first
        assert os.sched_getscheduler(mec.status()["pid"]) == os.SCHED_OTHER
        assert mec.execute("1 + 1")[0]["display"]["repr"] == "2"
        mec.close()


def test_off_in_cluster_toml_leaves_engines_ordinary(tmp_path: Path) -> None:
    (tmp_path / "cluster.toml").write_text("[engine]\nbatch_scheduling = false\n")
    with Cluster(n=1, cluster_dir=tmp_path) as c:
        mec = c.multiengine_client()
        mec.execute(PROBE)
        assert mec.pull("policies") == [(os.SCHED_OTHER, os.SCHED_OTHER)]
        (pid,) = c.engine_pids().values()
        assert _threads_policies(pid) == {os.SCHED_OTHER}
        mec.close()


def test_use_batch_scheduling_in_a_thread_of_its_own() -> None:
    import threading

    got: list[object] = []

    def run() -> None:  # (the policy is per thread: this one alone changes)
        got.append(use_batch_scheduling())
        got.append(os.sched_getscheduler(0))

    t = threading.Thread(target=run)
    t.start()
    t.join(10)
    assert got == [True, os.SCHED_BATCH]
    assert os.sched_getscheduler(0) == os.SCHED_OTHER
