"""Local engines forked from the fork server (``cluster/forkserver.py``) are engines
like any other: their own namespace, session and log file, the pid the controller and
``cluster engines`` show, stopped and restarted by the supervisor; killing the fork
server (or the process that owns the cluster) leaves no engine behind; with the
setting off every engine is a fresh process again.

Real processes throughout; every wait is on something observable; everything started
is ended by pid (the ``fresh_cluster`` fixture, or ``kill_pids`` below).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import assert_cluster_works, kill_pids, process_running, running, wait_until

import multiengine
from multiengine.cluster import forkserver
from multiengine.cluster.cluster import Cluster
from multiengine.cluster.forkserver import ForkedProcess
from multiengine.runtime import ClusterDir

pytestmark = pytest.mark.skipif(not forkserver.available(), reason="fork server: Linux only")

SLOW_HEARTBEAT = {"heartbeat_period": 0.5, "heartbeat_timeout": 60.0}


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def engine_pids(mec: multiengine.MultiEngineClient) -> dict[int, int]:
    return {e["id"]: e["pid"] for e in mec.status()["engines"]}


def server_pid(c: Cluster) -> int:
    assert c.fork_server is not None and c.fork_server.pid is not None
    return c.fork_server.pid


def assert_forked(c: Cluster, pids: dict[int, int]) -> None:
    """Every engine is a child of the cluster's fork server, in a session of its own."""
    server = server_pid(c)
    for eid, pid in pids.items():
        assert parent_of(pid) == server, f"engine {eid} (pid {pid}) is not a forked engine"
        assert os.getsid(pid) == pid, f"engine {eid} is not in a session of its own"


def test_forked_engines_are_engines_of_their_own(fresh_cluster: Callable[..., Cluster]) -> None:
    c = fresh_cluster(3)
    mec = c.multiengine_client()
    pids = engine_pids(mec)
    assert sorted(pids) == [0, 1, 2]
    assert_forked(c, pids)
    assert all(isinstance(p, ForkedProcess) for p in c.engines)
    assert sorted(p.pid for p in c.engines) == sorted(pids.values())
    # own namespace and state, own pid as the engine sees it
    mec.scatter("x", [10, 20, 30])
    mec.execute("import os; me = (id, os.getpid(), x[0])")
    assert mec.pull("me") == [(i, pids[i], 10 * (i + 1)) for i in range(3)]
    # stdout and stderr that bypass the capture land in the engine's own log file
    mark = uuid.uuid4().hex
    mec.execute(f"os.write(2, b'{mark}-%d' % id + b'\\n')")
    for i in range(3):
        log = c.cluster_dir.log / f"engine-{i + 1}.log"
        wait_until(lambda log=log: mark in log.read_text(), message=f"the mark in {log.name}")
    texts = [(c.cluster_dir.log / f"engine-{i + 1}.log").read_text() for i in range(3)]
    assert sorted(t.split(f"{mark}-")[1][0] for t in texts) == ["0", "1", "2"]
    # nothing of the fork server's is left open in an engine (its socket, pipes)
    for pid in pids.values():
        fds = os.listdir(f"/proc/{pid}/fd")
        targets = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in fds}
        logs = {t for t in targets if t.startswith(str(c.cluster_dir.log / "engine-"))}
        assert len(logs) == 1, targets  # its own log, as stdout and stderr
        kinds = {t.split(":")[0] for t in targets - logs - {os.devnull}}
        assert kinds <= {"anon_inode", "socket"}, targets  # zmq's eventfds and sockets
    assert_cluster_works(mec)


def ps_view(pid: int) -> tuple[str, str, bytes]:
    """What ``ps`` shows of ``pid``: its name (``comm``) and command line; and its
    environment as /proc has it."""
    with open(f"/proc/{pid}/comm") as f:
        name = f.read().strip()
    with open(f"/proc/{pid}/cmdline", "rb") as b:
        cmdline = b" ".join(a for a in b.read().split(b"\0") if a).decode()
    with open(f"/proc/{pid}/environ", "rb") as b:
        return name, cmdline, b.read()


@pytest.mark.parametrize("forked", [True, False], ids=["forked", "fresh"])
def test_ps_tells_the_engines_apart(
    fresh_cluster: Callable[..., Cluster], monkeypatch: pytest.MonkeyPatch, forked: bool
) -> None:
    # forked engines used to show the template's command line, all alike
    pytest.importorskip("setproctitle")  # (the test extra has it; the name needs no package)
    monkeypatch.setenv("MULTIENGINE_FORK_SERVER", "1" if forked else "0")
    monkeypatch.setenv("MULTIENGINE_PS_MARK", "seen")
    c = fresh_cluster(2)
    mec = c.multiengine_client()
    for eid, pid in engine_pids(mec).items():
        # an engine names itself once it has read its ``registered``, which the controller
        # counts it registered for as soon as it sends it
        named = f"engine-{eid}"
        wait_until(lambda p=pid, n=named: ps_view(p)[0] == n, message=f"{named}'s name")
        name, cmdline, environ = ps_view(pid)
        assert cmdline == f"multiengine engine {eid} --cluster-dir {c.cluster_dir.path}"
        assert b"MULTIENGINE_PS_MARK=seen" in environ.split(b"\0")  # not overwritten
    assert ps_view(mec.status()["pid"])[0] == "controller"
    # the title's means leave nothing behind in the engines' environment
    mec.execute("import os; leaked = 'SPT_NOENV' in os.environ")
    assert mec.pull("leaked") == [False, False]


def test_engines_killed_restarted_and_added_are_forked_too(
    fresh_cluster: Callable[..., Cluster],
) -> None:
    c = fresh_cluster(2, **SLOW_HEARTBEAT)
    mec = c.multiengine_client()
    old = engine_pids(mec)
    os.kill(old[0], signal.SIGKILL)  # the supervisor starts it again under id 0

    def back() -> bool:
        now = engine_pids(mec)
        return sorted(now) == [0, 1] and now[0] != old[0]

    wait_until(back, message="engine 0 to come back after SIGKILL")
    assert c.restart_engines([1]) == [1]  # restarted on request
    added = c.start_engines(2)
    assert added == [2, 3]
    now = engine_pids(mec)
    assert now[1] != old[1]
    assert_forked(c, now)
    assert mec.execute("y = id", block=True) is not None
    assert mec.pull("y") == [0, 1, 2, 3]
    assert c.stop_engines([3]) == [3]
    wait_until(lambda: not process_running(now[3]), message="engine 3 to stop")
    assert_cluster_works(mec, [0, 1, 2])


def test_stop_ends_every_process(fresh_cluster: Callable[..., Cluster]) -> None:
    c = fresh_cluster(3)
    pids = list(engine_pids(c.multiengine_client()).values())
    controller = c.controller
    assert controller is not None
    started = [*pids, server_pid(c), controller.pid]
    c.stop()
    assert running(started) == []


def test_a_killed_fork_server_takes_its_engines_and_they_come_back(
    fresh_cluster: Callable[..., Cluster],
) -> None:
    c = fresh_cluster(3, **SLOW_HEARTBEAT)
    mec = c.multiengine_client()
    old = engine_pids(mec)
    first = server_pid(c)
    os.kill(first, signal.SIGKILL)
    # no engine outlives its template ...
    wait_until(lambda: not running(old.values()), message="the forked engines to die")

    # ... and the supervisor starts every one again, through a new fork server
    def back() -> bool:
        now = engine_pids(mec)
        return sorted(now) == [0, 1, 2] and not set(now.values()) & set(old.values())

    wait_until(back, message="the engines to come back")
    assert server_pid(c) != first
    assert_forked(c, engine_pids(mec))
    assert_cluster_works(mec)


def test_with_the_setting_off_engines_are_fresh_processes(
    fresh_cluster: Callable[..., Cluster], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MULTIENGINE_FORK_SERVER", "0")
    c = fresh_cluster(2, **SLOW_HEARTBEAT)
    assert c.fork_server is None
    assert all(isinstance(p, subprocess.Popen) for p in c.engines)
    mec = c.multiengine_client()
    old = engine_pids(mec)
    assert {parent_of(p) for p in old.values()} == {os.getpid()}
    os.kill(old[1], signal.SIGKILL)
    wait_until(
        lambda: (now := engine_pids(mec)).keys() == {0, 1} and now[1] != old[1],
        message="engine 1 to come back",
    )
    assert parent_of(engine_pids(mec)[1]) == os.getpid()
    assert_cluster_works(mec)


def test_ipython_engines_are_forked(fresh_cluster: Callable[..., Cluster]) -> None:
    c = fresh_cluster(2, engine_ipython=True)
    mec = c.multiengine_client()
    assert_forked(c, engine_pids(mec))
    mec.execute("%%capture out\nprint('hidden')")
    mec.execute("z = !echo shell-ok")
    assert [list(z) for z in mec.pull("z")] == [["shell-ok"], ["shell-ok"]]


@pytest.fixture
def started_pids() -> Iterator[list[int]]:
    pids: list[int] = []
    yield pids
    kill_pids(pids)


def test_no_engine_outlives_a_killed_cluster_process(
    multiengine_dir: Path, started_pids: list[int]
) -> None:
    """SIGKILL to the process running the cluster: the fork server ends its engines
    (and the controller ends itself), so nothing it started is left."""
    cdir = multiengine_dir / f"killed-{uuid.uuid4().hex[:8]}"
    cmd = [sys.executable, "-m", "multiengine", "cluster", "start", "-n", "3"]
    owner = subprocess.Popen(
        [*cmd, "--cluster-dir", str(cdir), "--heartbeat-timeout", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    started_pids.append(owner.pid)
    assert owner.stdout is not None
    line = owner.stdout.readline()
    assert "running" in line, line
    client = multiengine.MultiEngineClient(cluster_dir=cdir, timeout=30)
    try:
        pids = [e["pid"] for e in client.status()["engines"]]
    finally:
        client.close()
    info = json.loads(ClusterDir.find(None, cdir).client_file.read_text())
    controller = int(info["controller_pid"])
    server = parent_of(pids[0])
    started_pids.extend([*pids, server, controller])
    assert {parent_of(p) for p in pids} == {server} and server != owner.pid
    owner.kill()
    owner.wait()
    owner.stdout.close()
    watched = [*pids, server, controller]
    wait_until(lambda: not running(watched), message="every process of the cluster to end")
