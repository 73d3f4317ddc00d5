"""The direct path on one host (docs/protocol.md §6, "A direct path on one host"): a
small blocking command to one engine goes client -> engine -> client over IPC, the
controller told beside it. Real processes over real sockets; which path a call took is
read from the client (``direct_calls``) and the controller (``status()["direct_jobs"]``),
never from a timing."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import pytest
from helpers import HANG, error_types, in_thread, outcome_with_engine_killed, wait_until

import multiengine
from multiengine import Cluster
from multiengine.errors import CompositeError, EngineError
from multiengine.wire import protocol as P
from multiengine.wire import stream
from multiengine.wire.message import Signer, unpack


def direct_calls(mec: multiengine.MultiEngineClient) -> int:
    return mec._core.direct_calls


def warm(mec: multiengine.MultiEngineClient, eid: int) -> None:
    """Call engine ``eid`` until a call goes direct: the first call to an engine learns
    its address and goes through the controller, and on a loaded machine the connection
    may take a moment more."""
    before = direct_calls(mec)
    wait_until(
        lambda: mec.execute("pass", targets=eid) and direct_calls(mec) > before,
        HANG,
        0.01,
        f"a direct call to engine {eid}",
    )


def direct_url(mec: multiengine.MultiEngineClient, eid: int) -> str:
    """The IPC endpoint of engine ``eid``'s direct socket, as the controller lists it."""
    core = mec._core
    msg = core.wait(core.request({"t": P.DIRECT_ADDRS}), HANG)
    urls = {i: url for i, url in unpack(msg.content)}
    return str(urls[eid])


def running_on(mec: multiengine.MultiEngineClient, eid: int, desc: str) -> bool:
    return any(
        e["id"] == eid and str(e["running"]).startswith(desc) for e in mec.status()["engines"]
    )


def test_a_blocking_execute_on_one_engine_goes_direct(
    mec: multiengine.MultiEngineClient, tc: multiengine.TaskClient
) -> None:
    warm(mec, 0)
    before, jobs = direct_calls(mec), mec.status()["direct_jobs"]
    mec.execute("a = 20", targets=0)
    result = mec.execute("b = a + 1", targets=[0])
    assert direct_calls(mec) == before + 2
    assert mec.pull("b", targets=0) == [21]
    wait_until(lambda: mec.status()["direct_jobs"] >= jobs + 2, message="the controller's books")
    # the result and the history are those of any call
    assert "b = a + 1" in repr(result)
    rows = tc.history(kind="job", limit=5)
    assert any(r["id"] == result.result_id for r in rows), (result.result_id, rows)


# A client that makes quick direct calls, prints their job ids, and is killed: it never
# closes, and never sends the controller anything after its calls.
KILLED_CLIENT = """
import os, signal, sys
import multiengine
mec = multiengine.MultiEngineClient(connection_file=sys.argv[1])
before = mec._core.direct_calls
while mec._core.direct_calls == before:  # the first call learns the address
    mec.execute("pass", targets=0)
ids = [mec.execute(f"killed_{i} = {i}", targets=0).result_id for i in range(5)]
assert mec._core.direct_calls == before + 6, mec._core.direct_calls
print(" ".join(ids), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.fault(
    section="a-client-that-dies",
    fault="SIGKILL to a client right after quick direct calls (same host), before it closes",
    outcome=(
        "the calls' records reach the history all the same, reported by their engine (within "
        "50 ms, with no other message to it): succeeded, with their descriptions"
    ),
)
def test_quick_direct_calls_are_recorded_from_their_engine_when_their_client_is_killed(
    cluster: Cluster, mec: multiengine.MultiEngineClient, tc: multiengine.TaskClient
) -> None:
    jobs = mec.status()["direct_jobs"]
    run = subprocess.run(
        [sys.executable, "-c", KILLED_CLIENT, str(cluster.cluster_dir.client_file)],
        capture_output=True,
        text=True,
        timeout=HANG,
    )
    assert run.returncode == -signal.SIGKILL, run.stderr
    ids = run.stdout.split()
    assert len(ids) == 5, run.stdout

    def recorded() -> dict[str, Any]:
        rows = {r["id"]: r for r in tc.history(kind="job", limit=100)}
        return {i: rows[i] for i in ids} if all(i in rows for i in ids) else {}

    rows = wait_until(recorded, HANG, 0.02, "the killed client's direct calls in the history")
    assert [rows[i]["description"] for i in ids] == [
        f"execute('killed_{i} = {i}')" for i in range(5)
    ]
    assert all(r["status"] == P.SUCCEEDED and r["engines"] == [0] for r in rows.values())
    assert all(r["started"] <= r["completed"] <= r["started"] + 1 for r in rows.values())
    assert mec.status()["direct_jobs"] >= jobs + 5
    assert mec.pull("killed_4", targets=0) == [4]


def test_function_calls_go_direct_and_keep_their_values(
    mec: multiengine.MultiEngineClient,
) -> None:
    warm(mec, 1)
    before = direct_calls(mec)
    assert mec.raw_map(lambda x: x * 3, [[1, 2, 3]], targets=1) == [3, 6, 9]
    assert mec.raw_map(lambda x, y: x - y, [[4, 5], [1, 1]], targets=[1]) == [3, 4]
    assert direct_calls(mec) >= before + 2


def test_pulls_go_direct_long_lists_whole_and_large_arrays_by_shared_memory(
    mec: multiengine.MultiEngineClient,
) -> None:
    """A blocking pull from one engine goes direct too. A long list (which through the
    controller comes in slices) comes whole; a large array comes through shared memory,
    read-only with ``shared=True``; a name that is not there fails as it would anywhere."""
    warm(mec, 0)
    mec.execute("import numpy; xs = list(range(100_000)); arr = numpy.arange(2e6)", targets=0)
    before = direct_calls(mec)
    assert mec.pull("id", targets=0) == [0]
    assert mec.pull("xs", targets=0) == [list(range(100_000))]
    (arr,) = mec.pull("arr", targets=[0], shared=True)
    assert arr[-1] == 1_999_999.0 and not arr.flags.writeable
    (copy,) = mec.pull("arr", targets=0)
    assert copy.flags.writeable and copy.sum() == arr.sum()
    with pytest.raises(CompositeError) as excinfo:
        mec.pull("not_defined_here", targets=0)
    assert error_types(excinfo.value) == [NameError]
    assert direct_calls(mec) == before + 5
    del arr


def test_fifo_with_calls_through_the_controller(mec: multiengine.MultiEngineClient) -> None:
    warm(mec, 0)
    # a push through the controller, then a direct execute that uses it
    mec.push({"seen": []}, targets=0)
    mec.execute("seen.append(1)", targets=0)
    # non-blocking calls keep the next blocking ones on the controller's path until
    # their results are in: they run in order
    pr = mec.execute("import time; time.sleep(0.2); seen.append(2)", targets=0, block=False)
    before = direct_calls(mec)
    mec.execute("seen.append(3)", targets=0)
    assert direct_calls(mec) == before  # not direct: something was outstanding
    pr.get_result()
    mec.execute("seen.append(4)", targets=0)
    assert direct_calls(mec) == before + 1  # nothing outstanding any more
    assert mec.pull("seen", targets=0) == [[1, 2, 3, 4]]


def test_a_later_call_through_the_controller_waits_behind_a_direct_one(
    mec: multiengine.MultiEngineClient, cluster: Cluster
) -> None:
    warm(mec, 2)
    mec.execute("order = []", targets=2)
    watcher = cluster.multiengine_client()
    try:
        slow = "import time; time.sleep(0.5); order.append(1)"
        before = direct_calls(mec)
        t, out = in_thread(lambda: mec.execute(slow, targets=2))
        wait_until(lambda: running_on(watcher, 2, "execute('import time"), HANG, 0.005)
        assert direct_calls(mec) == before + 1
        ((_, queue),) = watcher.queue_status(targets=2)  # the controller lists it
        assert str(queue["pending"]).startswith("execute('import time")
        # another thread of the same client: through the controller (the direct call
        # is outstanding), and the controller holds it behind the direct one
        pr = mec.execute("order.append(2)", targets=2, block=False)
        t.join(HANG)
        assert not isinstance(out[0], BaseException), out
        pr.get_result()
        assert mec.pull("order", targets=2) == [[1, 2]]
    finally:
        watcher.close()


def test_two_clients_at_once(mec: multiengine.MultiEngineClient, cluster: Cluster) -> None:
    other = cluster.multiengine_client()
    try:
        mec.execute("hits = []", targets=3)
        warm(mec, 3)
        warm(other, 3)

        def many(client: multiengine.MultiEngineClient, tag: str) -> int:
            for i in range(100):
                client.execute(f"hits.append(({tag!r}, {i}))", targets=3)
            return direct_calls(client)

        t1, out1 = in_thread(lambda: many(mec, "a"))
        t2, out2 = in_thread(lambda: many(other, "b"))
        t1.join(HANG)
        t2.join(HANG)
        assert out1[0] > 0 and out2[0] > 0, (out1, out2)
        (hits,) = mec.pull("hits", targets=3)
        for tag in "ab":  # each client's commands ran in its order
            assert [i for t, i in hits if t == tag] == list(range(100))
    finally:
        other.close()


def test_an_error_in_a_direct_command(
    mec: multiengine.MultiEngineClient, tc: multiengine.TaskClient
) -> None:
    warm(mec, 1)
    before = direct_calls(mec)
    with pytest.raises(CompositeError) as excinfo:
        mec.execute("def f():\n    1/0\nf()", targets=1)
    assert direct_calls(mec) == before + 1
    e = excinfo.value
    ((et, _, _),) = e.elist
    assert et is ZeroDivisionError
    printed = "".join(traceback.format_exception(e))
    assert "[engine 1] execute, the engine's traceback:" in printed
    assert "in f" in printed and "1/0" in printed  # the engine's own frames
    assert "f()" in repr(mec.get_result(targets=1))  # the engine's history has it
    rows = tc.history(kind="job", status="failed", limit=5)
    assert rows and rows[0]["error"] == "ZeroDivisionError"
    mec.execute("ok = 1", targets=1)  # the engine goes on
    assert mec.pull("ok", targets=1) == [1]


def test_numbering_goes_on_across_both_paths(mec: multiengine.MultiEngineClient) -> None:
    warm(mec, 0)
    first = mec.execute("x1 = 1", targets=0)
    pr = mec.execute("x2 = 2", targets=0, block=False)  # through the controller
    second = pr.get_result()
    third = mec.execute("x3 = 3", targets=0)  # direct again
    texts = [repr(r) for r in (first, second, third)]
    ns = [int(t.split("In [")[1].split("]")[0]) for t in texts]
    assert ns == [ns[0], ns[0] + 1, ns[0] + 2], texts


@pytest.mark.fault(
    section="hostile-input",
    fault="a forged or replayed message on an engine's direct socket (docs/protocol.md §6)",
    outcome=(
        "dropped, logged and counted in the engine's `dropped_messages`, never run; the signed "
        "original ran once"
    ),
)
def test_a_forged_or_replayed_direct_message_is_dropped_and_counted(
    mec: multiengine.MultiEngineClient, any_header: None
) -> None:
    mec.execute("ran = []", targets=0)
    url = direct_url(mec, 0)
    assert url.startswith("unix://")
    before = _engine_count(mec)
    conn = stream.connect(url)
    try:
        import pickle

        code = pickle.dumps(("ran.append(1)",))
        order = {"t": P.DIRECT, "id": 1, "rt": b"nobody", "cmd": "t-1", "name": "execute"}
        order["job"] = "0" * 40
        good = Signer(mec._core.info.key).frames(dict(order), code)
        forged = Signer(b"another key").frames(dict(order, cmd="t-2"), code)
        assert conn.send(forged)
        assert conn.send(good)
        assert conn.send(good)  # the same message again: a replay
        wait_until(lambda: _engine_count(mec) >= before + 2, HANG, 0.05, "two drops on engine 0")
        assert mec.pull("ran", targets=0) == [[1]]  # the signed one ran once
    finally:
        conn.close()


def test_bytes_that_are_no_message_stream_close_their_connection_and_are_counted(
    mec: multiengine.MultiEngineClient,
) -> None:
    """A peer on the direct socket that writes anything but framed messages (here a
    message of zero frames, then an absurd frame count) has its connection closed,
    the drop counted; the engine goes on, and direct calls with it."""
    url = direct_url(mec, 0)
    before = _engine_count(mec)
    for junk in (b"\0\0\0\0" + b"x" * 64, b"\xff\xff\xff\x7f" + b"y" * 64):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(str(stream.path_of(url)))
            s.sendall(junk)
            s.settimeout(HANG)
            assert s.recv(1) == b""  # the engine closed it
        finally:
            s.close()
    wait_until(lambda: _engine_count(mec) >= before + 2, HANG, 0.05, "two drops on engine 0")
    calls = direct_calls(mec)
    assert mec.execute("x = 7", targets=0) and mec.pull("x", targets=0) == [7]
    assert direct_calls(mec) == calls + 2


def _engine_count(mec: multiengine.MultiEngineClient) -> int:
    mec.execute(
        "from multiengine.engine import get_engine; n = get_engine().dropped_messages", targets=0
    )
    return int(mec.pull("n", targets=0)[0])


@pytest.mark.fault(
    section="engines-that-die",
    fault="SIGKILL to an engine while it runs a command a client sent it directly (same host)",
    outcome=(
        "the call fails with `EngineError` (`engine 1 ... with execute(...) on it`), sent by the "
        "controller, which knew of the command from the client's `direct_job`; the other engines "
        "go on"
    ),
)
def test_an_engine_killed_under_a_direct_command(
    fresh_cluster: Callable[..., Cluster],
) -> None:
    c = fresh_cluster(2)
    mec = c.multiengine_client()
    watcher = c.multiengine_client()
    warm(mec, 1)
    before = direct_calls(mec)
    pid = c.engine_pids()[1]
    outcome = outcome_with_engine_killed(
        lambda: mec.execute("import time; time.sleep(30)", targets=1),
        watcher,
        1,
        pid,
        "execute('import time",
    )
    assert direct_calls(mec) == before + 1
    assert isinstance(outcome, CompositeError), outcome
    ((et, ev, _),) = outcome.elist
    assert et is EngineError and "engine 1" in str(ev)
    mec.execute("y = 7", targets=0)  # the cluster goes on
    assert mec.pull("y", targets=0) == [7]


@pytest.mark.fault(
    section="engines-that-die",
    fault=(
        "an engine that took direct commands is killed while idle and comes back under its id "
        "(the cluster restarts it) with a new direct socket"
    ),
    outcome=(
        "the client's next call to that id reaches the new engine (through the controller while "
        "the old address fails), and calls go direct again to the new address"
    ),
)
def test_a_restarted_engine_gets_direct_calls_at_its_new_address(
    fresh_cluster: Callable[..., Cluster],
) -> None:
    c = fresh_cluster(1)
    mec = c.multiengine_client()
    warm(mec, 0)
    old = c.engine_pids()[0]
    os.kill(old, signal.SIGKILL)
    wait_until(
        lambda: c.engine_pids().get(0) not in (None, old) and mec.get_ids() == [0],
        HANG,
        0.05,
        "engine 0 to come back",
    )
    mec.execute("import os; z = os.getpid()", targets=0)  # the old address is stale here
    assert mec.pull("z", targets=0) == [c.engine_pids()[0]]
    warm(mec, 0)  # and direct again, to the new engine
    mec.execute("z = z + 1", targets=0)
    assert mec.pull("z", targets=0) == [c.engine_pids()[0] + 1]


def test_off_in_the_client(mec: multiengine.MultiEngineClient, cluster: Cluster) -> None:
    os.environ["MULTIENGINE_DIRECT"] = "off"
    try:
        client = cluster.multiengine_client()
    finally:
        del os.environ["MULTIENGINE_DIRECT"]
    try:
        client.execute("pass", targets=0)
        client.execute("pass", targets=0)
        assert direct_calls(client) == 0
    finally:
        client.close()


def test_engines_without_a_direct_socket_use_the_controller(
    fresh_cluster: Callable[..., Cluster], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MULTIENGINE_DIRECT", "off")  # as engines of another host: none
    c = fresh_cluster(1)
    monkeypatch.delenv("MULTIENGINE_DIRECT")
    mec = c.multiengine_client()
    mec.execute("a = 1", targets=0)
    mec.execute("b = a + 1", targets=0)
    assert mec.pull("b", targets=0) == [2]
    assert direct_calls(mec) == 0
    assert mec.status()["direct_jobs"] == 0


def test_executor_calls_on_one_engine_go_direct(mec: multiengine.MultiEngineClient) -> None:
    warm(mec, 1)
    with mec.executor(targets=1) as ex:
        before = direct_calls(mec)
        assert ex.submit(abs, -5).result(HANG) == [5]
        assert direct_calls(mec) == before + 1
        with pytest.raises(CompositeError) as excinfo:
            ex.submit(divmod, 1, 0).result(HANG)
        assert error_types(excinfo.value) == [ZeroDivisionError]
        # many at once: the first may go direct, the rest through the controller, in order
        futures = [ex.submit(pow, 2, i) for i in range(20)]
        assert [f.result(HANG) for f in futures] == [[2**i] for i in range(20)]
        assert not futures[0].cancel()  # sent: it is the engine's now


class _Interrupted(BaseException):
    """What a signal handler raises here: a BaseException, as Ctrl-C's KeyboardInterrupt."""


def test_an_interrupt_while_waiting_for_an_executors_direct_call_reaches_the_caller(
    mec: multiengine.MultiEngineClient,
) -> None:
    """The thread that waits for a direct call's result reads its answer itself; a
    signal's exception raised meanwhile (Ctrl-C) goes to the caller, not swallowed into
    a wait that never ends, and the call still completes."""
    warm(mec, 1)
    main = threading.main_thread().ident

    def interrupted(signum: int, frame: Any) -> None:
        raise _Interrupted

    old = signal.signal(signal.SIGUSR1, interrupted)
    try:
        with mec.executor(targets=1) as ex:
            before = direct_calls(mec)
            fut = ex.submit(time.sleep, 1.0)
            assert direct_calls(mec) == before + 1
            timer = threading.Timer(0.2, signal.pthread_kill, (main, signal.SIGUSR1))
            timer.start()
            with pytest.raises(_Interrupted):
                fut.result(HANG)
            timer.join()
            assert fut.result(HANG) == [None]  # the call went on, and is answered
    finally:
        signal.signal(signal.SIGUSR1, old)


def test_an_executors_direct_call_completes_with_no_thread_waiting_for_it(
    mec: multiengine.MultiEngineClient,
) -> None:
    """The thread that asks for a direct call's result reads the answer itself; when none
    asks (callbacks, ``wait``, ``as_completed``), the I/O thread does."""
    warm(mec, 2)
    with mec.executor(targets=2) as ex:
        before = direct_calls(mec)
        called: list[Any] = []
        fut = ex.submit(pow, 3, 4)
        fut.add_done_callback(lambda f: called.append(f.result()))
        done, _ = concurrent.futures.wait([fut], timeout=HANG)
        assert fut in done and direct_calls(mec) == before + 1
        wait_until(lambda: called, HANG, 0.005, "the done-callback")
        assert called == [[81]] and fut.result(0) == [81]
        # and one whose result is asked for at once, as many callers do
        assert ex.submit(pow, 2, 5).result(HANG) == [32]
        assert direct_calls(mec) == before + 2


def test_live_output_of_a_direct_command_comes_before_its_answer(
    mec: multiengine.MultiEngineClient,
) -> None:
    shown: list[tuple[int, str, str]] = []
    warm(mec, 2)
    mec.live_output = True
    mec.output_hook = lambda engine, name, text: shown.append((engine, name, text))
    before = direct_calls(mec)
    mec.execute("import sys\nprint('to out')\nprint('to err', file=sys.stderr)", targets=2)
    assert direct_calls(mec) == before + 1
    # the blocking call returns once its output has been shown
    assert (2, "stdout", "to out\n") in shown and (2, "stderr", "to err\n") in shown


def test_executor_calls_with_live_output_go_direct(mec: multiengine.MultiEngineClient) -> None:
    shown: list[tuple[int, str, str]] = []
    mec.live_output = True
    mec.output_hook = lambda engine, name, text: shown.append((engine, name, text))
    warm(mec, 3)
    with mec.executor(targets=3) as ex:
        before = direct_calls(mec)
        assert ex.submit(print, "from the executor").result(HANG) == [None]
        assert direct_calls(mec) == before + 1
    # its result is completed after the output that came before it
    assert (3, "stdout", "from the executor\n") in shown


def test_the_first_direct_call_is_read_while_other_calls_keep_the_engine_busy(
    fresh_cluster: Callable[..., Cluster],
) -> None:
    """A fresh engine waits on the controller's socket alone until the controller tells
    it that a client has learned its endpoint (``direct_on``, sent before the client
    has it): a client's first direct call is then read between another client's
    commands, not only once the engine has been idle for a while."""
    c = fresh_cluster(1)
    a, b = c.multiengine_client(), c.multiengine_client()
    try:
        direct = a._core._direct
        assert direct is not None
        assert direct.route(0) is not None  # learned and connected: the next call goes direct
        b.execute("import time; order = []", targets=0)
        busy = [
            b.execute("time.sleep(0.05); order.append('b')", targets=0, block=False)
            for _ in range(40)
        ]  # two seconds of the controller's commands, queued before the direct one
        a.execute("order.append('a')", targets=0)
        assert direct_calls(a) == 1
        for pr in busy:
            assert pr.wait(HANG)
        order = b.pull("order", targets=0)[0]
        assert order.count("b") == 40 and order[-1] == "b", order  # 'a' did not wait for all
    finally:
        a.close()
        b.close()
