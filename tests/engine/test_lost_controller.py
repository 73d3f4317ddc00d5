"""An engine that loses the controller for a while (SIGSTOP past the heartbeat timeout,
then SIGCONT; a controller killed and started again) registers again under its old id
and keeps its namespace; what it was running when it was lost fails with EngineError
and does not go on (docs/protocol.md §7, docs/reliability.md)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import HANG, Latch, error_types, wait_until

import multiengine
from multiengine.errors import CompositeError, EngineError


def test_a_stopped_engine_comes_back_under_its_id_with_its_namespace(
    fresh_cluster: Callable[..., multiengine.Cluster], latch: Callable[[], Latch]
) -> None:
    c = fresh_cluster(2, heartbeat_period=0.2, heartbeat_timeout=1.0)
    mec = c.multiengine_client()
    mec.push({"kept": 41}, targets=0)
    pid = c.engine_pids()[0]
    gate, started = latch(), latch()
    running = mec.execute(
        f"{started.set_code}\n{gate.wait_code}\nafter_the_gate = 1", targets=0, block=False
    )
    queued = mec.execute("never_ran = 1", targets=0, block=False)
    started.wait()
    os.kill(pid, signal.SIGSTOP)  # alive but silent: only the heartbeats can tell
    try:
        # the silent engine is detected: gone from status, its id reserved for it
        wait_until(
            lambda: [e["id"] for e in mec.status()["engines"]] == [1],
            message="the stopped engine to be unregistered",
        )
        assert 0 in mec.status()["reserved_ids"]
        assert running.wait(HANG), "the command on the silent engine never failed"
        for pr in (running, queued):
            with pytest.raises(CompositeError) as info:
                pr.get_result()
            assert error_types(info.value) == [EngineError]
            assert "engine 0 was lost" in str(info.value.elist[0][1])
        # a new engine does not take the reserved id
        c.start_engines(1)
        wait_until(lambda: mec.get_ids() == [1, 2], message="the new engine to register")
    finally:
        os.kill(pid, signal.SIGCONT)
    wait_until(lambda: 0 in mec.get_ids(), message="the engine to register again")
    assert mec.get_ids() == [0, 1, 2]
    assert c.engine_pids()[0] == pid  # the same process, so the same namespace
    assert mec.status()["reserved_ids"] == []
    gate.set()  # had the interrupted code gone on, it would pass the gate now
    assert mec.pull("kept", targets=0) == [41]
    assert mec.execute("probe = kept + 1", targets=0)[0]["number"] >= 1
    assert mec.pull("probe", targets=0) == [42]
    for name in ("after_the_gate", "never_ran"):
        with pytest.raises(CompositeError) as info:
            mec.pull(name, targets=0)
        assert error_types(info.value) == [NameError]


# ------------------------------------------------------------ the controller comes back
def _controller(cdir: Path) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "multiengine", "controller", "--cluster-dir", str(cdir)]
    argv += ["--reuse", "--heartbeat-period", "0.2", "--heartbeat-timeout", "1.0"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[Any]]]:
    started: list[subprocess.Popen[Any]] = []
    yield started
    for p in started:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            p.wait()


def test_engines_register_again_with_a_controller_started_again(
    tmp_path: Path, processes: list[subprocess.Popen[Any]]
) -> None:
    cdir = tmp_path / "cluster"
    engine_file = cdir / "security" / "engine.json"
    ctl = _controller(cdir)
    processes.append(ctl)
    wait_until(engine_file.exists, message="the controller's connection files")
    engines = [
        subprocess.Popen(
            [sys.executable, "-m", "multiengine", "engine", "--cluster-dir", str(cdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(2)
    ]
    processes.extend(engines)
    mec = multiengine.MultiEngineClient(cluster_dir=cdir, timeout=HANG)
    try:
        wait_until(lambda: mec.get_ids() == [0, 1], message="two engines to register")
        mec.execute("name = 'engine %d' % id")
        before = mec.pull("name")
    finally:
        mec.close()
    old = engine_file.read_text()
    os.kill(ctl.pid, signal.SIGKILL)  # a crash: no shutdown notice, so the engines wait
    ctl.wait()
    ctl = _controller(cdir)  # the same key and ports (--reuse); new IPC endpoints
    processes.append(ctl)
    wait_until(
        lambda: engine_file.exists() and engine_file.read_text() not in ("", old),
        message="the new controller's connection files",
    )
    mec = multiengine.MultiEngineClient(cluster_dir=cdir, timeout=HANG)
    try:
        wait_until(lambda: mec.get_ids() == [0, 1], message="the engines to register again")
        assert all(e.poll() is None for e in engines)
        assert mec.pull("name") == before == ["engine 0", "engine 1"]
    finally:
        mec.close()
