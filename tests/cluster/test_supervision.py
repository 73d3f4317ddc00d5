"""Engines that come back, and changing a running cluster, with real processes and
injected faults: the process that started a cluster restarts a local engine that dies
(SIGKILL, ``os._exit``, a segfault, its memory past the limit) under the same id, the
work it held fails at once with ``EngineError`` naming the cause, ``status`` says how
often and why; a crashed controller is started again; ``cluster engines add|stop|restart``
and ``Cluster.from_profile`` change a cluster another process runs.

"At once" is shown without timing anything: these clusters have a heartbeat timeout of
60 s, longer than the tests wait (``helpers.HANG``), so only the supervisor's
``engine_exit`` can fail the work in time. Every process is ended by PID (the clusters'
fixtures, or the ``cleanup`` below for clusters started from the command line).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    Latch,
    assert_cluster_works,
    call_within,
    finish,
    kill_pids,
    process_running,
    processes_using,
    run_cli,
    running,
    wait_until,
)

import multiengine
from multiengine import StringTask
from multiengine.cluster.cluster import Cluster
from multiengine.cluster.supervisor import backoff, exit_cause
from multiengine.config import ClusterConfig, format_size, parse_size
from multiengine.errors import (
    ClusterNotRunning,
    CompositeError,
    ConfigError,
    EngineError,
    InvalidEngineID,
    KernelError,
)

SLOW_HEARTBEAT = {"heartbeat_period": 0.5, "heartbeat_timeout": 60.0}


def engine_error(call: Callable[[], Any]) -> str:
    """``call()`` fails with a CompositeError holding one EngineError: its text."""
    with pytest.raises(CompositeError) as info:
        call_within(call, message="the call on the dying engine")
    (err,) = [ev for _, ev, _ in info.value.elist]
    assert isinstance(err, EngineError), repr(err)
    return str(err)


def back(mec: multiengine.MultiEngineClient, ids: list[int], old_pids: dict[int, int]) -> None:
    """Wait until ``ids`` are registered, each by a process other than the one in ``old_pids``."""

    def ready() -> bool:
        now = {e["id"]: e["pid"] for e in mec.status()["engines"]}
        return sorted(now) == ids and all(now[i] != p for i, p in old_pids.items())

    wait_until(ready, message=f"engines {sorted(old_pids)} to come back")


def states(c: Cluster) -> dict[int, str]:
    """Engine id -> what the cluster's supervisor knows of its process."""
    assert c.supervisor is not None
    return {s["id"]: s["state"] for s in c.supervisor.describe()}


def record(mec: multiengine.MultiEngineClient, eid: int) -> tuple[int, str | None]:
    (e,) = [e for e in mec.status()["engines"] if e["id"] == eid]
    return e["restarts"], e["last_exit"]


# ---------------------------------------------------------------- engines that die
@pytest.mark.fault(
    section="engines-that-die",
    fault="SIGKILL to an engine mid-`execute` (local)",
    outcome=(
        "the call fails at once (heartbeat timeout 60 s) with `EngineError: engine 0 died "
        "(killed by SIGKILL) with execute(...) on it`; the engine is back under id 0 with a "
        "fresh namespace and runs the next call; `status`: `restarts` 1, `last_exit` `died "
        "(killed by SIGKILL)`; the other engine untouched"
    ),
)
def test_an_engine_killed_mid_execute_comes_back_under_its_id(
    fresh_cluster: Callable[..., Cluster], latch: Callable[[], Latch]
) -> None:
    c = fresh_cluster(2, **SLOW_HEARTBEAT)
    mec = c.multiengine_client()
    mec.push({"a": 1}, targets=0)
    started, gate = latch(), latch()
    pr = mec.execute(f"{started.set_code}\n{gate.wait_code}", targets=0, block=False)
    started.wait()
    old = c.engine_pids()
    os.kill(old[0], signal.SIGKILL)
    text = engine_error(lambda: pr.r)
    assert text.startswith("engine 0 died (killed by SIGKILL) with execute("), text
    back(mec, [0, 1], {0: old[0]})
    assert c.engine_pids()[1] == old[1]  # the other engine was left alone
    mec.execute("b = id * 10", targets=0)  # the next call runs, on a fresh namespace
    assert mec.pull("b", targets=0) == [0]
    with pytest.raises(CompositeError):
        mec.pull("a", targets=0)
    assert record(mec, 0) == (1, "died (killed by SIGKILL)")
    assert record(mec, 1) == (0, None)
    assert_cluster_works(mec)


@pytest.mark.fault(
    section="engines-that-die",
    fault="SIGKILL to the only engine mid-task, `retries=1`",
    outcome="the task is retried on the engine that came back, and succeeds",
)
def test_an_engine_killed_mid_task_with_retries_the_task_succeeds(
    fresh_cluster: Callable[..., Cluster], latch: Callable[[], Latch], tmp_path: Path
) -> None:
    # one engine: the retry can only run on the engine that came back
    c = fresh_cluster(1, **SLOW_HEARTBEAT)
    tc = c.task_client()
    marker, gate = tmp_path / "first-attempt", latch()
    code = (
        f"import os\nif not os.path.exists({str(marker)!r}):\n"
        f"    open({str(marker)!r}, 'w').close()\n    {gate.wait_code}\nwho = id"
    )
    tid = tc.run(StringTask(code, pull="who", retries=1))
    wait_until(marker.exists, message="the first attempt to start")
    old = c.engine_pids()[0]
    os.kill(old, signal.SIGKILL)
    finish(tc, tid)
    tr = tc.get_task_result(tid)
    assert tr.failure is None and tr.ns.who == 0
    assert c.engine_pids()[0] != old


@pytest.mark.fault(
    section="engines-that-die",
    fault="SIGKILL to the only engine mid-task, no retries",
    outcome=(
        "the task fails with `EngineError: engine 0 died (killed by SIGKILL) while running "
        "task N`; the engine is back under id 0 and runs the next task"
    ),
)
def test_an_engine_killed_mid_task_without_retries_fails_naming_the_cause(
    fresh_cluster: Callable[..., Cluster], latch: Callable[[], Latch]
) -> None:
    c = fresh_cluster(1, **SLOW_HEARTBEAT)
    mec, tc = c.multiengine_client(), c.task_client()
    started, gate = latch(), latch()
    tid = tc.run(StringTask(f"{started.set_code}\n{gate.wait_code}"))
    started.wait()
    old = c.engine_pids()
    os.kill(old[0], signal.SIGKILL)
    finish(tc, tid)  # the task cannot end by itself: only the engine's death ends it
    failure = tc.get_task_result(tid).failure
    assert isinstance(failure, EngineError), repr(failure)
    assert str(failure) == f"engine 0 died (killed by SIGKILL) while running task {tid}"
    assert tc.queue_status() == {"scheduled": 0, "pending": 0, "succeeded": 0, "failed": 1}
    back(mec, [0], old)
    again = tc.run(StringTask("who = id", pull="who"))  # the engine back under id 0 takes it
    finish(tc, again)
    assert tc.get_task_result(again).ns.who == 0
    assert record(mec, 0) == (1, "died (killed by SIGKILL)")


@pytest.mark.fault(
    section="engines-that-die",
    fault=(
        "SIGKILL to an engine mid-push of 80 MB (to both engines; engine 0 is SIGSTOPped "
        "first so the kill lands while the controller is sending it the pieces)"
    ),
    outcome=(
        "engine 0's part fails with `EngineError: engine 0 died (killed by SIGKILL) with "
        "push(big) on it`, engine 1 has the array; engine 0 is back under its id and takes "
        "the same 80 MB push"
    ),
)
def test_an_engine_killed_mid_push_of_80_mb_comes_back(
    fresh_cluster: Callable[..., Cluster],
) -> None:
    np = pytest.importorskip("numpy")
    c = fresh_cluster(2, **SLOW_HEARTBEAT)
    mec = c.multiengine_client()
    big = np.arange(10_000_000, dtype=np.float64)  # 80 MB: streamed in pieces
    assert big.nbytes == 80_000_000
    old = c.engine_pids()
    # Engine 0 is stopped first, so the push is caught on its way: the controller has
    # given it the command and is sending it the pieces, which it cannot take in.
    os.kill(old[0], signal.SIGSTOP)
    try:
        pr = mec.push({"big": big}, block=False)
        wait_until(
            lambda: mec.status()["engines"][0]["running"] is not None,
            message="engine 0 to be given the push",
        )
        os.kill(old[0], signal.SIGKILL)
    finally:  # never leave a stopped engine behind (it may be gone and reaped already)
        with contextlib.suppress(ProcessLookupError):
            os.kill(old[0], signal.SIGKILL)
    with pytest.raises(CompositeError) as info:
        call_within(lambda: pr.r, message="the push to the killed engine")
    (err,) = [ev for _, ev, _ in info.value.elist]  # engine 1 took it; engine 0 failed
    assert isinstance(err, EngineError), info.value.elist
    assert str(err).startswith("engine 0 died (killed by SIGKILL) with push("), str(err)
    assert mec.execute("n = len(big)", targets=1) and mec.pull("n", targets=1) == [10_000_000]
    back(mec, [0, 1], {0: old[0]})
    assert c.engine_pids()[1] == old[1]
    mec.push({"big": big}, targets=0)  # the engine that came back takes the same push
    (got,) = mec.pull("big", targets=0)
    np.testing.assert_array_equal(got, big)
    assert record(mec, 0) == (1, "died (killed by SIGKILL)")
    assert_cluster_works(mec)


@pytest.mark.fault(
    section="engines-that-die",
    fault="the same engine killed twice (`engine_restarts=3`)",
    outcome=(
        "the first restart is at once, the second waits 1 s (`fate`: `restarting in 1 s`); "
        "`restarts` 2"
    ),
)
def test_a_second_restart_within_the_hour_backs_off(
    fresh_cluster: Callable[..., Cluster],
) -> None:
    c = fresh_cluster(1, engine_restarts=3, **SLOW_HEARTBEAT)
    mec = c.multiengine_client()
    assert c.supervisor is not None
    first = c.engine_pids()
    os.kill(first[0], signal.SIGKILL)
    back(mec, [0], first)
    (slot,) = c.supervisor.describe()
    assert (slot["restarts"], slot["fate"]) == (1, "restarting")  # the first: at once
    second = c.engine_pids()
    os.kill(second[0], signal.SIGKILL)
    back(mec, [0], second)
    (slot,) = c.supervisor.describe()
    assert (slot["restarts"], slot["fate"]) == (2, "restarting in 1 s")  # then 1 s, 2 s, ...
    assert record(mec, 0) == (2, "died (killed by SIGKILL)")
    assert_cluster_works(mec)


@pytest.mark.parametrize(
    ("code", "cause"),
    [
        pytest.param(
            "import os; os._exit(3)",
            "exited with status 3",
            id="os._exit(3)",
            marks=pytest.mark.fault(
                section="engines-that-die",
                fault="`os._exit(3)` in user code",
                outcome=(
                    "`EngineError: engine 0 exited with status 3 with "
                    "execute('import os; os._exit(3)') on it`; the engine comes back"
                ),
            ),
        ),
        pytest.param(
            "import ctypes; ctypes.string_at(0)",
            "died of a segmentation fault (SIGSEGV)",
            id="segfault",
            marks=pytest.mark.fault(
                section="engines-that-die",
                fault="a segmentation fault (`ctypes.string_at(0)`)",
                outcome=(
                    "`EngineError: engine 0 died of a segmentation fault (SIGSEGV) with ...`; "
                    "the engine comes back"
                ),
            ),
        ),
    ],
)
def test_a_crashing_engine_names_the_cause(
    fresh_cluster: Callable[..., Cluster], code: str, cause: str
) -> None:
    c = fresh_cluster(1, **SLOW_HEARTBEAT)
    mec = c.multiengine_client()
    old = c.engine_pids()
    text = engine_error(lambda: mec.execute(code))
    assert text == f"engine 0 {cause} with execute({code!r}) on it"
    back(mec, [0], old)
    assert record(mec, 0) == (1, cause)
    assert_cluster_works(mec)


@pytest.mark.fault(
    section="engines-that-die",
    fault="the engine killed again past `engine_restarts` (1)",
    outcome=(
        'it stays down: `status()["down"]` and `cluster status` say `stays down: restarted '
        "once within the last hour (engine_restarts = 1)`; `restart_engines` brings it back"
    ),
)
def test_an_engine_past_its_restart_limit_stays_down(
    fresh_cluster: Callable[..., Cluster],
) -> None:
    c = fresh_cluster(2, engine_restarts=1, **SLOW_HEARTBEAT)
    mec = c.multiengine_client()
    first = c.engine_pids()
    os.kill(first[0], signal.SIGKILL)
    back(mec, [0, 1], {0: first[0]})
    second = c.engine_pids()[0]
    os.kill(second, signal.SIGKILL)
    wait_until(lambda: mec.status()["down"], message="engine 0 to be reported down")
    assert mec.status()["down"] == [
        {
            "id": 0,
            "restarts": 1,
            "last_exit": "died (killed by SIGKILL)",
            "fate": "stays down: restarted once within the last hour (engine_restarts = 1)",
        }
    ]
    assert mec.get_ids() == [1]
    assert states(c) == {0: "down", 1: "running"}
    assert not process_running(second)
    r = run_cli("cluster", "status", "--cluster-dir", str(c.cluster_dir.path))
    assert r.returncode == 0, r.stderr
    assert (
        "engine 0: down, it died (killed by SIGKILL); stays down: restarted once within the "
        "last hour (engine_restarts = 1)"
    ) in r.stdout
    # asked for, it comes back (with a new budget of restarts)
    assert c.restart_engines(0) == [0]
    assert mec.get_ids() == [0, 1]


@pytest.mark.fault(
    section="engines-that-die",
    fault='an engine allocating 300 MB under `engine_memory_limit="150MB"`',
    outcome=(
        "within about a second it is killed; its call fails with `engine 0 was restarted: its "
        "memory (3xx MB) passed the limit of 150 MB with execute(...) on it`; it comes back "
        "and works"
    ),
)
def test_an_engine_past_its_memory_limit_is_restarted(
    fresh_cluster: Callable[..., Cluster], latch: Callable[[], Latch]
) -> None:
    c = fresh_cluster(1, engine_memory_limit="150MB", **SLOW_HEARTBEAT)
    mec = c.multiengine_client()
    old = c.engine_pids()
    mec.execute("small = bytearray(10_000_000)")  # well under the limit: nothing happens
    gate = latch()
    text = engine_error(lambda: mec.execute(f"hog = bytearray(300_000_000)\n{gate.wait_code}"))
    m = re.fullmatch(
        r"engine 0 was restarted: its memory \((\d+) MB\) passed the limit of 150 MB "
        r"with execute\(.*\) on it",
        text,
    )
    assert m, text
    assert int(m[1]) > 300
    back(mec, [0], old)
    restarts, last = record(mec, 0)
    assert restarts == 1 and last is not None and last.startswith("was restarted: its memory")
    assert_cluster_works(mec)


@pytest.mark.fault(
    section="engines-that-die",
    fault="SIGKILL with `restart_engines=False` (and `cluster start --no-restart-engines`)",
    outcome=(
        "the call fails at once naming SIGKILL; the engine stays down, `fate` `not restarted "
        "(restart_engines is off)`"
    ),
    also=[
        "tests/cluster/test_supervision.py::test_cli_no_restart_engines_reaches_the_daemon",
    ],
)
def test_with_no_restarts_a_dead_engine_stays_down(
    fresh_cluster: Callable[..., Cluster], latch: Callable[[], Latch]
) -> None:
    c = fresh_cluster(2, restart_engines=False, **SLOW_HEARTBEAT)
    mec = c.multiengine_client()
    gate = latch()
    pr = mec.execute(gate.wait_code, targets=1, block=False)
    wait_until(lambda: mec.status()["engines"][1]["running"], message="engine 1 to be busy")
    os.kill(c.engine_pids()[1], signal.SIGKILL)
    text = engine_error(lambda: pr.r)  # still at once: the death is reported all the same
    assert text.startswith("engine 1 died (killed by SIGKILL) with execute("), text
    assert mec.get_ids() == [0]
    assert mec.status()["down"] == [
        {
            "id": 1,
            "restarts": 0,
            "last_exit": "died (killed by SIGKILL)",
            "fate": "not restarted (restart_engines is off)",
        }
    ]
    assert_cluster_works(mec)


@pytest.mark.fault(
    section="engines-that-die",
    fault="`mec.kill(targets=1)` (exit status 0)",
    outcome="not restarted",
)
def test_an_engine_killed_from_a_client_is_not_restarted(
    fresh_cluster: Callable[..., Cluster],
) -> None:
    c = fresh_cluster(2)
    mec = c.multiengine_client()
    pid = c.engine_pids()[1]
    mec.kill(targets=1)  # exits with status 0: stopped on purpose
    wait_until(lambda: not process_running(pid), message="the killed engine to exit")
    wait_until(lambda: states(c) == {0: "running", 1: "exited"}, message="the exit to be seen")
    assert mec.get_ids() == [0]


@pytest.mark.fault(
    section="engines-that-die",
    fault="SIGKILL to the controller",
    outcome=(
        "a new controller is started at once with `--restore`; both engines are back under "
        "ids 0 and 1 and work"
    ),
)
def test_a_crashed_controller_is_started_again(fresh_cluster: Callable[..., Cluster]) -> None:
    c = fresh_cluster(2, heartbeat_period=0.25, heartbeat_timeout=1.0)
    assert c.controller is not None
    old = c.controller.pid
    os.kill(old, signal.SIGKILL)
    wait_until(
        lambda: c.controller is not None and c.controller.pid != old,
        message="a new controller process",
    )

    def engines_back() -> bool:
        try:
            with multiengine.MultiEngineClient(cluster_dir=c.cluster_dir.path, timeout=2) as m:
                return bool(m.get_ids() == [0, 1])
        except (KernelError, OSError):
            return False

    wait_until(engines_back, message="both engines, under their ids, on the new controller")
    with multiengine.MultiEngineClient(cluster_dir=c.cluster_dir.path, timeout=5) as mec:
        assert_cluster_works(mec)
        # on the new controller's engine stream (docs/protocol.md §1), as on the first's
        assert [e["link"] for e in mec.status()["engines"]] == ["unix", "unix"]


# ---------------------------------------------------------------- changing a running cluster
@pytest.fixture
def cleanup(multiengine_dir: Path) -> Iterator[Callable[[str], None]]:
    """``cleanup(profile)`` marks a command-line cluster to be stopped, and its processes
    killed by PID, at the end of the test."""
    profiles: list[str] = []
    yield profiles.append
    for profile in profiles:
        cdir = multiengine_dir / f"cluster_{profile}"
        if processes_using(cdir):
            run_cli("cluster", "stop", "-p", profile, timeout=30)
        kill_pids(processes_using(cdir))


def start_daemon(profile: str, *args: str) -> None:
    r = run_cli("cluster", "start", "-p", profile, "--daemon", *args, timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr


def pids_of(profile: str) -> dict[int, int]:
    with multiengine.MultiEngineClient(profile=profile, timeout=10) as mec:
        return {e["id"]: e["pid"] for e in mec.status()["engines"]}


@pytest.mark.fault(
    section="engines-that-die",
    fault=(
        "`cluster engines add -n 2`, `stop 1`, `restart 0 2` on a `--daemon` cluster, from "
        "another shell; then SIGKILL to an added engine"
    ),
    outcome=(
        "new engines 2 and 3; engine 1 stops and stays down (`down, it was stopped on "
        "request; not restarted`); 0 and 2 come back with new pids, same ids; the added "
        "engine is restarted like the others"
    ),
)
@pytest.mark.fault(
    section="engines-that-die",
    fault=(
        "`cluster engines restart 9` (no such engine); any `cluster engines` with no cluster "
        "running"
    ),
    outcome=(
        "one line (`unknown engine id 9: the engines of cluster 'x' are 0, 2, 3`, exit 1; `no "
        "cluster is running for profile 'x'`, exit 11); nothing changes"
    ),
)
def test_cli_engines_add_stop_restart_on_a_daemon_cluster(
    cleanup: Callable[[str], None],
) -> None:
    profile = f"engines-{uuid.uuid4().hex[:8]}"
    cleanup(profile)
    start_daemon(profile, "-n", "2", "--engine-restarts", "3")
    r = run_cli("cluster", "engines", "add", "-p", profile, "-n", "2")
    assert (r.returncode, r.stdout) == (0, f"cluster {profile!r}: started 2 engines: 2, 3\n")
    r = run_cli("cluster", "engines", "stop", "-p", profile, "1")
    assert (r.returncode, r.stdout) == (0, f"cluster {profile!r}: stopped engine 1\n")
    before = pids_of(profile)
    assert sorted(before) == [0, 2, 3]
    r = run_cli("cluster", "engines", "restart", "-p", profile, "0", "2")
    assert (r.returncode, r.stdout) == (0, f"cluster {profile!r}: restarted 2 engines: 0, 2\n")
    after = pids_of(profile)
    assert sorted(after) == [0, 2, 3]
    assert after[0] != before[0] and after[2] != before[2] and after[3] == before[3]
    # an engine the daemon added is supervised like the first ones
    os.kill(after[3], signal.SIGKILL)
    wait_until(
        lambda: pids_of(profile).get(3) not in (None, after[3]), message="engine 3 to come back"
    )
    r = run_cli("cluster", "status", "-p", profile)
    assert r.returncode == 0, r.stderr
    assert "restarted once (last: was restarted on request)" in r.stdout
    assert "restarted once (last: died (killed by SIGKILL))" in r.stdout
    assert "engine 1: down, it was stopped on request; not restarted" in r.stdout
    # one clear line for an unknown id; nothing happens
    r = run_cli("cluster", "engines", "restart", "-p", profile, "9")
    assert r.returncode == 1
    assert r.stderr == (
        f"multiengine: error: unknown engine id 9: the engines of cluster {profile!r} are 0, 2, 3\n"
    )
    assert sorted(pids_of(profile)) == [0, 2, 3]
    r = run_cli("cluster", "stop", "-p", profile, timeout=30)
    assert r.returncode == 0, r.stderr
    r = run_cli("cluster", "engines", "add", "-p", profile)
    assert r.returncode == 11
    assert r.stderr == f"multiengine: no cluster is running for profile {profile!r}\n"


def test_cli_no_restart_engines_reaches_the_daemon(cleanup: Callable[[str], None]) -> None:
    profile = f"norestart-{uuid.uuid4().hex[:8]}"
    cleanup(profile)
    start_daemon(profile, "-n", "2", "--no-restart-engines")
    pid = pids_of(profile)[0]
    os.kill(pid, signal.SIGKILL)
    with multiengine.MultiEngineClient(profile=profile, timeout=10) as mec:
        wait_until(lambda: mec.status()["down"], message="engine 0 to be reported down")
        assert mec.status()["down"][0]["fate"] == "not restarted (restart_engines is off)"
        assert mec.get_ids() == [1]


@pytest.mark.fault(
    section="engines-that-die",
    fault=(
        "`Cluster.from_profile` on a daemon cluster: `start_engines`, `restart_engines`, "
        "`stop_engines` with an unknown id, `stop()`"
    ),
    outcome=(
        "the daemon adds, restarts (fresh namespace, same id) and stops engines; an unknown "
        "id raises `InvalidEngineID` and stops nothing; `stop()` stops the daemon; with none "
        "running, `ClusterNotRunning`"
    ),
)
def test_cluster_from_profile_changes_a_daemon_cluster(cleanup: Callable[[str], None]) -> None:
    profile = f"attach-{uuid.uuid4().hex[:8]}"
    cleanup(profile)
    with pytest.raises(ClusterNotRunning):
        Cluster.from_profile(profile)
    start_daemon(profile, "-n", "1")
    daemon = int(
        (Path(os.environ["MULTIENGINE_DIR"]) / f"cluster_{profile}/pid/cluster.pid").read_text()
    )
    c = Cluster.from_profile(profile)
    assert c.attached and c.launcher == "local" and c.n == 1
    mec = c.multiengine_client()
    assert c.start_engines(1) == [1]
    assert mec.get_ids() == [0, 1]
    mec.push({"a": 1})
    old = c.engine_pids()
    assert c.restart_engines([0]) == [0]
    assert c.engine_pids()[0] != old[0] and c.engine_pids()[1] == old[1]
    assert mec.pull("a", targets=1) == [1]
    with pytest.raises(CompositeError):
        mec.pull("a", targets=0)  # a fresh namespace
    with pytest.raises(InvalidEngineID, match="unknown engine id 5"):
        c.stop_engines([1, 5])
    assert mec.get_ids() == [0, 1]  # nothing was stopped
    assert c.stop_engines(1) == [1]
    assert mec.get_ids() == [0]
    with c:  # leaving the block only detaches
        pass
    assert process_running(daemon)
    c.stop()
    wait_until(lambda: not process_running(daemon), message="the daemon to stop")
    with pytest.raises(ClusterNotRunning):
        Cluster.from_profile(profile)


@pytest.mark.fault(
    section="engines-that-die",
    fault="a cluster directory whose control socket path is longer than a Unix socket address",
    outcome="the socket is reached through `/proc/self/fd`",
)
def test_from_profile_reaches_a_cluster_run_by_python_in_a_long_directory(
    multiengine_dir: Path,
) -> None:
    # a directory whose control socket path is longer than a socket address can hold
    deep = multiengine_dir / ("d" * 60) / ("e" * 60) / "cluster_deep"
    owner = Cluster(1, cluster_dir=deep, heartbeat_period=0.25, heartbeat_timeout=1.5)
    with owner:
        assert len(str(deep / "security" / "control.sock")) > 108
        attached = Cluster.from_profile(cluster_dir=deep)
        ids = attached.start_engines(1)
        assert ids == [1]
        assert sorted(owner.engine_pids()) == [0, 1]
        assert owner.restart_engines(ids) == ids  # the owner's own methods work the same
    assert running([p.pid for p in owner.engines]) == []
    with pytest.raises(ClusterNotRunning):
        Cluster.from_profile(cluster_dir=deep)


def test_bad_requests_change_nothing(fresh_cluster: Callable[..., Cluster]) -> None:
    c = fresh_cluster(1)
    for bad in ("0", [0.5], [-1], [], True):
        with pytest.raises((TypeError, ValueError)):
            c.stop_engines(bad)  # type: ignore[arg-type]
    for n in (0, -1, 1.5, True):
        with pytest.raises(ValueError):
            c.start_engines(n)  # type: ignore[arg-type]
    assert c.multiengine_client().get_ids() == [0]


# ---------------------------------------------------------------- settings and policy
def test_supervision_settings_are_checked_before_anything_starts(multiengine_dir: Path) -> None:
    with pytest.raises(ConfigError, match="engine_memory_limit: 'lots' is not a size"):
        Cluster(1, engine_memory_limit="lots")
    with pytest.raises(ConfigError, match="engine_restarts must not be negative"):
        Cluster(1, engine_restarts=-1)
    assert Cluster(1, engine_memory_limit=2**30).cluster_config.memory_limit == 2**30
    r = run_cli("cluster", "start", "-p", "never", "--engine-memory-limit", "5 parsecs")
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1, r.stderr
    assert "(from --engine-memory-limit)" in r.stderr
    env = {"MULTIENGINE_RESTART_ENGINES": "no", "MULTIENGINE_ENGINE_MEMORY_LIMIT": "2GiB"}
    c = Cluster(1, env=env)
    assert c.cluster_config.restart_engines is False
    assert c.cluster_config.memory_text(c.cluster_config.memory_limit or 0) == "2 GiB"


def test_sizes_causes_and_back_off() -> None:
    assert [parse_size(s) for s in ("500MB", "2GiB", "1.5 GB", "800000", "512M")] == [
        500 * 10**6,
        2 * 2**30,
        15 * 10**8,
        800000,
        512 * 2**20,
    ]
    for bad in ("", "MB", "-5MB", "0", "5 XB"):
        with pytest.raises(ValueError):
            parse_size(bad)
    assert format_size(612_000_000) == "612 MB" and format_size(1.5 * 2**30, True) == "1.5 GiB"
    assert ClusterConfig(engine_memory_limit="500MB").memory_text(612_345_678) == "612 MB"
    assert exit_cause(-signal.SIGKILL) == "died (killed by SIGKILL)"
    assert exit_cause(-signal.SIGSEGV) == "died of a segmentation fault (SIGSEGV)"
    assert exit_cause(-signal.SIGKILL, oom=True).endswith("out of memory, the kernel's OOM killer)")
    assert exit_cause(3) == "exited with status 3"
    assert [backoff(n) for n in range(9)] == [0, 1, 2, 4, 8, 16, 32, 60, 60]
