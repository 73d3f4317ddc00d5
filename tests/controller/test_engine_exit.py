"""``engine_exit``: the process supervising an engine reports that it ended. Driven through
the controller's hub with fake engines (no process, no socket): the engine is unregistered
at once, its work fails with the cause, its tasks are retried, and ``status`` keeps the
restart count and the last cause per engine id. tests/cluster/test_supervision.py does the
same with real processes."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from multiengine.wire import protocol as P
from multiengine.wire.message import Message
from multiengine.wire.protocol import ErrorReport, PartHeader

from .fakes import FakeCluster, task


def exit_(c: FakeCluster, eid: int, cause: str, **fields: Any) -> Any:
    """Send ``engine_exit`` for engine ``eid``; the controller's answer (a value)."""
    answer = c.request({"t": P.ENGINE_EXIT, "engine": eid, "cause": cause, **fields})
    assert answer.header["t"] == P.VALUE, answer.header
    return msgpack.unpackb(answer.content)


def job_error(c: FakeCluster, msg_id: int) -> ErrorReport:
    """The one error part of the result answered to request ``msg_id``."""
    (result,) = [s for s in c.answers_to(msg_id) if s.header["t"] == P.RESULT]
    (part,) = [PartHeader.from_wire(p) for p in result.header["parts"]]
    assert part.status == P.STATUS_ERROR
    return ErrorReport.from_bytes(result.buffers[0])


def reregister(c: FakeCluster, eid: int, pid: int, desired: int | None) -> None:
    """A new process registers (a new identity), asking for ``desired``."""
    header = {"t": P.REGISTER, "desired_id": desired, "pid": pid, "host": "fake"}
    c.hub.on_engine(Message([b"e-new-%d" % pid], header, b"", []))


def test_the_work_of_a_dead_engine_fails_at_once_with_its_cause() -> None:
    c = FakeCluster(n=2)
    c.send({"t": P.SUBMIT, "cmd": "execute", "targets": [0], "block": True, "desc": "execute(x)"})
    running = c.last_id
    c.send({"t": P.SUBMIT, "cmd": "push", "targets": [0], "block": True, "desc": "push(y)"})
    queued = c.last_id
    assert exit_(c, 0, "died (killed by SIGKILL)", pid=100, restarts=1, fate="restarting") is True
    assert c.hub.ids() == [1]
    for msg_id, desc in ((running, "execute(x)"), (queued, "push(y)")):
        err = job_error(c, msg_id)
        assert err.ename == "EngineError"
        assert err.evalue == f"engine 0 died (killed by SIGKILL) with {desc} on it"


def test_an_engine_that_ends_while_running_kill_has_done_it() -> None:
    """Its supervisor's report may come before the kill's answer (another connection):
    the kill succeeded either way; only what was queued behind it fails."""
    c = FakeCluster(n=2)
    c.send({"t": P.SUBMIT, "cmd": "kill", "targets": [0, 1], "block": True, "desc": "kill()"})
    kill = c.last_id
    c.send({"t": P.SUBMIT, "cmd": "execute", "targets": [0], "block": True, "desc": "execute(x)"})
    queued = c.last_id
    assert exit_(c, 0, "exited with status 0", pid=100) is True
    c.reply(1)
    (result,) = [s for s in c.answers_to(kill) if s.header["t"] == P.RESULT]
    parts = [PartHeader.from_wire(p) for p in result.header["parts"]]
    assert [p.status for p in parts] == [P.STATUS_OK, P.STATUS_OK]
    assert msgpack.unpackb(result.buffers[0]) is None
    err = job_error(c, queued)
    assert err.evalue == "engine 0 exited with status 0 with execute(x) on it"


def test_a_task_on_a_dead_engine_is_retried_elsewhere() -> None:
    c = FakeCluster(n=2)
    (tid,) = c.submit(task("t", retries=1))
    victim = next(i for i in (0, 1) if c.running(i) == "t")
    exit_(c, victim, "exited with status 3", pid=100)
    c.advance(2.0)  # past the failure penalty
    assert c.running(1 - victim) == "t"
    c.reply(1 - victim)
    assert c.state(tid) == P.SUCCEEDED


def test_a_task_without_retries_fails_naming_the_cause() -> None:
    c = FakeCluster(n=1)
    (tid,) = c.submit(task("t"))
    exit_(c, 0, "died of a segmentation fault (SIGSEGV)")
    assert c.state(tid) == P.FAILED
    answer = c.request({"t": P.TASK_RESULT, "ids": [tid], "mode": P.NOW})
    err = ErrorReport.from_bytes(answer.buffers[0])
    assert err.ename == "EngineError"
    assert "engine 0 died of a segmentation fault (SIGSEGV) while running task" in err.evalue


@pytest.mark.fault(
    section="engines-that-die",
    fault=(
        "the controller told of a death for a pid it no longer has under that id, or for an "
        "engine already lost"
    ),
    outcome=(
        "the engine now holding the id is left alone; a report for a lost engine is kept for "
        "`status`"
    ),
    also=[
        "tests/controller/test_engine_exit.py::test_a_report_for_an_engine_already_gone_is_kept",
    ],
)
def test_another_engine_holding_the_id_is_left_alone() -> None:
    c = FakeCluster(n=1)
    # the report names a pid that is not the registered engine's (one that came back)
    assert exit_(c, 0, "died (killed by SIGKILL)", pid=999) is False
    assert c.hub.ids() == [0]
    assert c.hub.status()["engines"][0]["last_exit"] is None
    assert c.hub.status()["down"] == []


def test_status_keeps_restarts_and_the_last_cause_per_id() -> None:
    c = FakeCluster(n=2)
    exit_(c, 1, "died (killed by SIGKILL)", pid=100, restarts=1, fate="restarting")
    st = c.hub.status()
    assert [e["id"] for e in st["engines"]] == [0]
    assert st["down"] == [
        {"id": 1, "restarts": 1, "last_exit": "died (killed by SIGKILL)", "fate": "restarting"}
    ]
    reregister(c, 1, pid=200, desired=1)  # the restarted engine asks for its id
    st = c.hub.status()
    assert st["down"] == []
    assert st["engines"][1] == {
        "id": 1,
        "pid": 200,
        "host": "fake",
        "node": "",
        "queue": 0,
        "running": None,
        "restarts": 1,
        "last_exit": "died (killed by SIGKILL)",
        "link": "zmq",  # (a fake hub: no stream)
    }
    assert st["engines"][0]["restarts"] == 0


def test_an_engine_that_stays_down_says_why() -> None:
    c = FakeCluster(n=1)
    fate = "stays down: restarted 2 times within the last hour (engine_restarts = 2)"
    exit_(c, 0, "exited with status 3", pid=100, restarts=2, fate=fate)
    assert c.hub.status()["down"] == [
        {"id": 0, "restarts": 2, "last_exit": "exited with status 3", "fate": fate}
    ]


def test_a_new_engine_on_the_id_starts_with_a_clean_record() -> None:
    c = FakeCluster(n=1)
    exit_(c, 0, "was stopped on request", pid=100, restarts=0, fate="not restarted")
    reregister(c, 0, pid=300, desired=None)  # someone else's engine, given the free id
    st = c.hub.status()
    assert st["engines"][0]["pid"] == 300
    assert (st["engines"][0]["restarts"], st["engines"][0]["last_exit"]) == (0, None)
    assert st["down"] == []


def test_a_report_for_an_engine_already_gone_is_kept() -> None:
    c = FakeCluster(n=1)
    c.lose(0)  # the heartbeat was faster
    assert exit_(c, 0, "died (killed by SIGKILL)", pid=100, restarts=1) is False
    assert c.hub.status()["down"][0]["last_exit"] == "died (killed by SIGKILL)"


def test_a_malformed_report_is_a_protocol_error() -> None:
    c = FakeCluster(n=1)
    answer = c.request({"t": P.ENGINE_EXIT, "engine": "zero", "cause": "x"})
    assert answer.header["t"] == P.ERROR and answer.header["ename"] == "ProtocolError"
    assert c.hub.ids() == [0]
