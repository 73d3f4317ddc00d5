"""A controller started again with ``--restore``, at the hub: what the one before it
left in ``results.db`` (unfinished tasks, task ids, submission keys) is taken up, and
clients of the earlier run are told to connect again before anything of theirs runs.

The first controller "dies" by stopping to write: its store is synced (what it had
committed stays) and dropped without the hub finishing anything. The real-process
test (a SIGKILLed controller process) is tests/cluster/test_controller_restore.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgpack
import pytest

from multiengine.controller.store import ResultStore
from multiengine.wire import protocol as P
from multiengine.wire.message import Message

from .fakes import FakeCluster, task


def controller(tmp_path: Path, engines: int = 1, restore: bool = False) -> FakeCluster:
    store = ResultStore(str(tmp_path / "results.db"), budget=1 << 20, history_limit=1000)
    cluster = FakeCluster(engines, store=store)
    if restore:
        cluster.hub.restore()
        cluster.hub.store.sync()
    return cluster


def die(cluster: FakeCluster) -> None:
    """The controller stops: what it committed stays on disk, nothing else is written."""
    store = cluster.hub.store
    store.sync()
    store._pending.clear()  # noqa: SLF001 - a dead process writes nothing more
    store.close()


def submit_keyed(cluster: FakeCluster, key: str, again: bool, *names: str) -> list[int]:
    chains = [task(n) for n in names]
    frames = [content for chain in chains for _, content in chain]
    header: dict[str, Any] = {
        "t": P.TASK_SUBMIT,
        "tasks": [[link.to_wire() for link, _ in chain] for chain in chains],
        "key": key,
    }
    if again:
        header["again"] = True
    return msgpack.unpackb(cluster.request(header, frames).content)  # type: ignore[no-any-return]


@pytest.mark.fault(
    section="a-controller-that-comes-back",
    fault="a task running when the controller died, with and without retries",
    outcome=(
        "with retries (and `retry_lost`): it runs again; without: `EngineError` naming the "
        "restart; with a recovery task: the recovery task runs"
    ),
    also=[
        "tests/controller/test_restore.py::test_a_running_task_without_retries_fails_with_engine_error",
        "tests/controller/test_restore.py::test_retry_lost_decides_for_a_task_that_ran",
    ],
)
def test_waiting_tasks_run_again_and_the_running_one_is_retried(tmp_path: Path) -> None:
    first = controller(tmp_path)
    a, b, c = first.submit(task("a", retries=1), task("b"), task("c"))
    assert first.running(0) == "a"
    die(first)

    second = controller(tmp_path, restore=True)
    # "a" lost its attempt with the controller and had a retry left: it runs again
    assert second.running(0) == "a"
    assert second.state(b) == P.SCHEDULED or second.state(b) == P.PENDING
    for _ in range(3):
        second.reply(0)
    assert [second.state(t) for t in (a, b, c)] == [P.SUCCEEDED] * 3
    # no task id is given twice
    (d,) = second.submit(task("d"))
    assert d == c + 1


def test_a_running_task_without_retries_fails_with_engine_error(tmp_path: Path) -> None:
    first = controller(tmp_path)
    (a,) = first.submit(task("a", retries=0))
    die(first)

    second = controller(tmp_path, restore=True)
    assert second.state(a) == P.FAILED
    assert second.error_of(a) == "EngineError"
    answer = second.request({"t": P.TASK_RESULT, "ids": [a], "mode": P.NOW})
    assert b"the controller restarted while task" in answer.buffers[0]


def test_tasks_that_finished_stay_finished_and_ids_go_on(tmp_path: Path) -> None:
    first = controller(tmp_path, engines=2)
    a, b = first.submit(task("a"), task("b"))
    first.reply(0)
    first.reply(1)
    die(first)

    second = controller(tmp_path, restore=True)
    assert [second.state(t) for t in (a, b)] == [P.SUCCEEDED, P.SUCCEEDED]
    assert second.commands_to(0) == []  # nothing ran again
    assert second.submit(task("c")) == [b + 1]


def test_of_a_submission_only_the_tasks_that_had_not_ended_run_again(tmp_path: Path) -> None:
    # one submission is one row on disk until all its tasks have ended: a task of it that
    # had ended stays ended, even once its result was cleared
    first = controller(tmp_path)
    a, b, c, d = first.submit(task("a"), task("b"), task("c", retries=1), task("d"))
    first.reply(0)
    first.reply(0)
    assert first.running(0) == "c"
    first.request({"t": P.TASK_CLEAR})  # a and b: forgotten, results and all
    die(first)

    second = controller(tmp_path, restore=True)
    assert second.running(0) == "c"  # it was running: it lost that attempt, and has a retry
    second.reply(0)
    second.reply(0)
    assert [second.state(t) for t in (c, d)] == [P.SUCCEEDED, P.SUCCEEDED]
    assert second.commands_to(0) == ["c", "d"]  # a and b did not run again
    assert [i.state for i in second.results(a, b).values()] == [P.UNKNOWN_TASK] * 2


def test_a_task_that_ran_and_ended_between_two_commits_leaves_no_row(tmp_path: Path) -> None:
    first = controller(tmp_path, engines=2)
    first.submit(task("a"), task("b"))
    first.reply(0)  # a ran and ended before anything was written of its start
    store = first.hub.store
    store.sync()
    assert _keys(store) == ["q:1", "s:0", "t:0"]  # b's progress (running); their submission
    first.reply(1)
    store.sync()
    # the submission's row stays, for the chains of its results (which do not hold them
    # again), until they are cleared; then nothing is left
    assert _keys(store) == ["s:0", "t:0", "t:1"]
    meta, frames = _row(store, "t:1")
    assert meta["row"] == "s:0"  # where b itself is
    assert len(frames) == 1  # b's result alone, not b's pickle again
    first.request({"t": P.TASK_CLEAR})
    store.sync()
    assert _keys(store) == []
    store.close()


def test_a_restored_controller_clears_the_rows_of_submissions_that_had_ended(
    tmp_path: Path,
) -> None:
    first = controller(tmp_path)
    a, b = first.submit(task("a"), task("b"))
    (c,) = first.submit(task("c", retries=1))
    first.reply(0)
    first.reply(0)  # a and b ended: their row stays for their chains
    die(first)

    second = controller(tmp_path, restore=True)
    assert second.running(0) == "c"  # it was running: it lost that attempt, and has a retry
    assert second.commands_to(0) == ["c"]  # a and b did not run again
    # a and b are on disk only: resubmitting a takes its chain from its submission's row
    assert a not in second.hub.scheduler.tasks
    again = second.request({"t": P.TASK_RESUBMIT, "ids": [a]})
    assert again.header["t"] == P.VALUE
    second.reply(0)  # c
    second.reply(0)  # a, again
    assert second.commands_to(0)[-2:] == ["c", "a"]
    second.request({"t": P.TASK_CLEAR})
    store = second.hub.store
    store.sync()
    assert _keys(store) == []  # both submissions' rows went with the results
    store.close()


def _keys(store: Any) -> list[str]:
    return sorted(k for (k,) in store._reader.execute("SELECT key FROM results"))  # noqa: SLF001


def _row(store: Any, key: str) -> tuple[Any, list[bytes]]:
    sql = "SELECT meta, frames FROM results WHERE key = ?"
    meta, frames = store._reader.execute(sql, (key,)).fetchone()  # noqa: SLF001
    return msgpack.unpackb(meta), msgpack.unpackb(frames)


@pytest.mark.fault(
    section="a-controller-that-comes-back",
    fault="a task submission sent again after the restart",
    outcome="the same task ids; nothing runs twice",
)
def test_a_submission_sent_again_is_not_run_twice(tmp_path: Path) -> None:
    first = controller(tmp_path)
    tids = submit_keyed(first, "k-1", False, "a", "b")
    die(first)

    second = controller(tmp_path, restore=True)
    assert submit_keyed(second, "k-1", True, "a", "b") == tids
    status = msgpack.unpackb(second.request({"t": P.TASK_STATUS, "verbose": True}).content)
    assert sorted(tid for ids in status.values() for tid in ids) == tids  # no new task
    # a new key is a new submission
    assert submit_keyed(second, "k-2", True, "c") == [tids[-1] + 1]


def test_a_submission_is_answered_once_it_is_on_disk(tmp_path: Path) -> None:
    cluster = controller(tmp_path)
    store = cluster.hub.store
    before = len(cluster.outbox.sent)
    header = {"t": P.TASK_SUBMIT, "tasks": [[task("a")[0][0].to_wire()]], "id": 7, "rt": b"c"}
    cluster.hub.on_client(Message([b"c"], header, b"", [b"a"]))
    answers = [s for s in cluster.outbox.sent[before:] if s.header.get("id") == 7]
    assert answers == []  # not yet: nothing was written
    store.sync()
    answers = [s for s in cluster.outbox.sent[before:] if s.header.get("id") == 7]
    assert [s.header["t"] for s in answers] == [P.VALUE]
    assert store.leftovers().tasks[0][0] == msgpack.unpackb(answers[0].content)[0]


@pytest.mark.fault(
    section="a-controller-that-comes-back",
    fault="a request from a client of the earlier run",
    outcome=(
        "refused (`ConnectAgain`), never run, until the client connects again; the client "
        "does so and sends it again"
    ),
)
def test_clients_of_the_earlier_run_connect_before_anything_runs(tmp_path: Path) -> None:
    cluster = FakeCluster(1, strict_clients=True)
    refused = cluster.request({"t": P.TASK_SUBMIT, "tasks": [[task("a")[0][0].to_wire()]]}, [b"a"])
    assert refused.header["t"] == P.ERROR and refused.header["ename"] == P.CONNECT_AGAIN
    assert cluster.hub.scheduler.tasks == {}  # nothing was taken
    pong = cluster.send({"t": P.PING})
    assert pong[0].header["run"] == cluster.hub.run
    hello = msgpack.unpackb(cluster.request({"t": P.CONNECT}).content)
    assert hello["run"] == cluster.hub.run
    assert cluster.submit(task("a")) == [0]


def test_fetching_a_call_of_the_earlier_run_says_it_was_lost(tmp_path: Path) -> None:
    first = controller(tmp_path)
    ack = first.request({"t": P.SUBMIT, "cmd": "execute", "targets": "all", "block": False})
    job = ack.header["job"]
    die(first)

    second = controller(tmp_path, restore=True)
    answer = second.request({"t": P.FETCH, "job": job, "block": True})
    assert answer.header["ename"] == "ControllerRestarted"
    unknown = second.request({"t": P.FETCH, "job": "not-a-job", "block": True})
    assert unknown.header["ename"] == "InvalidDeferredID"


@pytest.mark.parametrize("retry_lost", [True, False])
def test_retry_lost_decides_for_a_task_that_ran(tmp_path: Path, retry_lost: bool) -> None:
    first = controller(tmp_path)
    (a,) = first.submit(task("a", retries=2, retry_lost=retry_lost, recovery=["fix"]))
    die(first)

    second = controller(tmp_path, restore=True)
    assert second.running(0) == ("a" if retry_lost else "fix")
