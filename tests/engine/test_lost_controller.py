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


@pytest.mark.fault(
    section="an-engine-that-loses-the-controller",
    fault="... and then answers again (SIGCONT, the network is back)",
    outcome=(
        "its own libzmq saw the connection close: it interrupts the code it was running (the "
        "controller already failed that command; its answer is never sent), drops what it had "
        "not started, registers again asking for its old id, and gets it; its namespace is "
        "unchanged (same process)"
    ),
)
@pytest.mark.fault(
    section="an-engine-that-loses-the-controller",
    fault="a new engine registers while a lost engine's id is reserved",
    outcome=(
        "it gets another id; the lost engine's id stays reserved for `engine_id_grace` "
        "seconds (300 by default), then is free for anyone"
    ),
    also=[
        "tests/controller/test_engine_ids_and_liveness.py::test_reservations_expire_after_the_grace",
    ],
)
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


@pytest.mark.fault(
    section="an-engine-that-loses-the-controller",
    fault=(
        "the controller process dies and is started again with the same key and ports (`--reuse`)"
    ),
    outcome=(
        "engines keep trying; each registers again under its old id with its namespace (they "
        "re-read the connection file, since IPC endpoints change)"
    ),
)
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


def _engine(cdir: Path, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "multiengine", "engine", "--cluster-dir", str(cdir), *extra]
    with log.open("wb") as err:
        return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)


@pytest.mark.fault(
    section="an-engine-that-loses-the-controller",
    fault="the controller stops cleanly (Ctrl-C, SIGTERM as from `cluster stop`)",
    outcome=(
        "it sends `shutdown`; engines exit at once with status 3 (`engine 0 stopping: the "
        "controller stopped`)"
    ),
)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_controller_that_stops_cleanly_stops_its_engines(
    tmp_path: Path, processes: list[subprocess.Popen[Any]], sig: signal.Signals
) -> None:
    cdir = tmp_path / "cluster"
    ctl = _controller(cdir)
    processes.append(ctl)
    wait_until((cdir / "security" / "engine.json").exists, message="the connection files")
    log = tmp_path / "engine.log"
    engine = _engine(cdir, log)
    processes.append(engine)
    mec = multiengine.MultiEngineClient(cluster_dir=cdir, timeout=HANG)
    try:
        wait_until(lambda: mec.get_ids() == [0], message="the engine to register")
    finally:
        mec.close()
    os.kill(ctl.pid, sig)  # Ctrl-C, or what `cluster stop` and a lost parent send
    assert ctl.wait(HANG) == 0
    assert engine.wait(HANG) == 3  # at once: it does not wait for reconnect_timeout (300 s)
    assert "engine 0 stopping: the controller stopped" in log.read_text()


@pytest.mark.fault(
    section="an-engine-that-loses-the-controller",
    fault="the controller stays away longer than `reconnect_timeout` (2 s here; 300 s by default)",
    outcome=(
        "the engine logs `engine N stopping: could not register again within 2 s` and exits "
        "with status 3"
    ),
)
def test_an_engine_gives_up_after_its_reconnect_timeout(
    tmp_path: Path, processes: list[subprocess.Popen[Any]]
) -> None:
    cdir = tmp_path / "cluster"
    ctl = _controller(cdir)
    processes.append(ctl)
    wait_until((cdir / "security" / "engine.json").exists, message="the connection files")
    log = tmp_path / "engine.log"
    engine = _engine(cdir, log, "--reconnect-timeout", "2")
    processes.append(engine)
    mec = multiengine.MultiEngineClient(cluster_dir=cdir, timeout=HANG)
    try:
        wait_until(lambda: mec.get_ids() == [0], message="the engine to register")
    finally:
        mec.close()
    os.kill(ctl.pid, signal.SIGKILL)  # a crash: no shutdown notice, and nobody starts it again
    ctl.wait()
    assert engine.wait(HANG) == 3
    assert "engine 0 stopping: could not register again within 2 s" in log.read_text()
