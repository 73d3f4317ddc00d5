"""Hub-level (fake engines, hand-moved clock): what the controller adds for output from
functions and for result metadata. Tasks of a ``live`` submission stream their output
to the submitting client; every part of a result carries when it started, when it
completed and how long its engine ran it."""

from __future__ import annotations

from typing import Any

import msgpack

from multiengine.wire import protocol as P
from multiengine.wire.message import Message
from multiengine.wire.protocol import PartHeader

from .fakes import FakeCluster, task


def output(c: FakeCluster, eid: int, text: bytes, name: str = "stdout") -> None:
    """Engine ``eid`` sends live output of the command it runs."""
    engine = c.engine(eid)
    header: dict[str, Any] = {"t": P.OUTPUT, "cmd": engine.current.cmd_id, "name": name}
    c.hub.on_engine(Message([c.idents[eid]], header, text, []))


def client_outputs(c: FakeCluster) -> list[tuple[Any, int, str, bytes]]:
    return [
        (s.header["id"], s.header["engine"], s.header["name"], s.content)
        for s in c.outbox.sent
        if s.channel == "client" and s.header["t"] == P.OUTPUT
    ]


def test_tasks_of_a_live_submission_stream_their_output_to_its_client() -> None:
    c = FakeCluster(n=1)
    links = [[link.to_wire() for link, _ in task("a")], [link.to_wire() for link, _ in task("b")]]
    answer = c.request({"t": P.TASK_SUBMIT, "tasks": links, "live": True}, [b"a", b"b"])
    submit_id = answer.header["id"]
    assert msgpack.unpackb(answer.content) == [0, 1]
    sent = [s for s in c.outbox.sent if s.channel == "engine" and s.header["t"] == P.CMD]
    assert all(s.header.get("live") for s in sent)  # "a" runs, "b" is sent ahead
    output(c, 0, b"from a\n")
    c.reply(0)
    output(c, 0, b"from b\n", "stderr")
    assert client_outputs(c) == [
        (submit_id, 0, "stdout", b"from a\n"),
        (submit_id, 0, "stderr", b"from b\n"),
    ]


def test_tasks_without_live_send_no_output() -> None:
    c = FakeCluster(n=1)
    c.submit(task("quiet"))
    sent = [s for s in c.outbox.sent if s.channel == "engine" and s.header["t"] == P.CMD]
    assert not sent[0].header.get("live")
    output(c, 0, b"lost\n")  # (an engine would not send it; the controller drops it)
    assert client_outputs(c) == []


def test_result_parts_carry_started_completed_and_elapsed() -> None:
    c = FakeCluster(n=2)
    c.send({"t": P.SUBMIT, "cmd": "execute", "targets": [0, 1], "block": True, "desc": "x"})
    msg_id = c.last_id
    c.reply(1)
    c.reply(0)
    (result,) = [s for s in c.answers_to(msg_id) if s.header["t"] == P.RESULT]
    parts = [PartHeader.from_wire(p) for p in result.header["parts"]]
    assert [p.engine_id for p in parts] == [0, 1]
    for p in parts:
        assert p.started is not None and p.completed is not None
        assert p.started <= p.completed
        assert p.elapsed == 0.01  # the engine's own figure, from its reply


def test_a_part_the_controller_fails_has_a_completion_time() -> None:
    c = FakeCluster(n=1)
    c.send({"t": P.SUBMIT, "cmd": "execute", "targets": [0], "block": True, "desc": "busy"})
    c.send({"t": P.SUBMIT, "cmd": "execute", "targets": [0], "block": True, "desc": "queued"})
    queued = c.last_id
    c.reply(0, ok=False)  # the failure clears the queue: "queued" fails with QueueCleared
    (result,) = [s for s in c.answers_to(queued) if s.header["t"] == P.RESULT]
    (part,) = [PartHeader.from_wire(p) for p in result.header["parts"]]
    assert part.status == P.STATUS_ERROR and part.started is None
    assert part.completed is not None and part.elapsed is None


def test_old_six_field_part_headers_still_decode() -> None:
    part = PartHeader.from_wire([3, P.STATUS_OK, P.PICKLE, 0, None, None])
    assert part.engine_id == 3 and part.started is None and part.elapsed is None
    assert len(PartHeader(0, P.STATUS_OK, P.PICKLE, 0).to_wire()) == 9


def progress_of(c: FakeCluster, msg_id: Any) -> list[tuple[int, int]]:
    return [
        (s.header["done"], s.header["total"])
        for s in c.answers_to(msg_id)
        if s.header["t"] == P.PROGRESS
    ]


def test_a_long_blocking_call_hears_each_engine_that_answered(monkeypatch: Any) -> None:
    from multiengine.controller import hub

    monkeypatch.setattr(hub, "PROGRESS_AFTER", 0.0)  # as if the call had waited 1 s
    c = FakeCluster(n=3)
    header = {"t": P.SUBMIT, "cmd": "execute", "targets": [0, 1, 2], "block": True}
    c.send({**header, "desc": "x", "progress": True})
    msg_id = c.last_id
    c.reply(2)
    c.reply(0)
    assert progress_of(c, msg_id) == [(1, 3), (2, 3)]
    c.reply(1)  # the last answer is the result itself
    assert progress_of(c, msg_id) == [(1, 3), (2, 3)]
    assert [s.header["t"] for s in c.answers_to(msg_id)][-1] == P.RESULT


def test_quick_or_unasked_calls_hear_no_progress(monkeypatch: Any) -> None:
    c = FakeCluster(n=2)
    header = {"t": P.SUBMIT, "cmd": "execute", "targets": [0, 1], "desc": "x"}
    c.send({**header, "block": True, "progress": True})  # answered within PROGRESS_AFTER
    quick = c.last_id
    c.reply(0)
    c.reply(1)
    from multiengine.controller import hub

    monkeypatch.setattr(hub, "PROGRESS_AFTER", 0.0)
    c.send({**header, "block": True})  # not asked
    unasked = c.last_id
    c.send({**header, "block": False, "progress": True})  # not blocking
    nonblocking = c.last_id
    for _ in range(2):
        c.reply(0)
        c.reply(1)
    assert progress_of(c, quick) == progress_of(c, unasked) == progress_of(c, nonblocking) == []
