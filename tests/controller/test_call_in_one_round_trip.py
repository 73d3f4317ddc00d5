"""A non-blocking ``submit`` with ``fetch_id`` (what ``mec.executor()`` sends): the
``ack`` comes once the commands are on their way and says whether the job started, and
the result is sent under ``fetch_id`` as soon as the job ends, with no ``fetch``
request. Driven through the hub with a recording outbox (no processes); the executor's
behaviour on a real cluster is in tests/client/test_executors.py."""

from __future__ import annotations

from typing import Any

import pytest

from multiengine.wire import protocol as P

from .fakes import FakeCluster

FETCH_ID = 9999  # a request id the client chose and sent nothing under


def apply(fc: FakeCluster, targets: Any, **extra: Any) -> int:
    header = {"t": P.SUBMIT, "cmd": "apply", "targets": targets, "block": False, **extra}
    fc.send(header)
    return fc.last_id


def kinds(fc: FakeCluster, msg_id: int) -> list[str]:
    return [s.header["t"] for s in fc.answers_to(msg_id)]


def test_an_idle_engine_starts_before_the_ack_and_the_result_comes_unasked() -> None:
    fc = FakeCluster(1)
    before = len(fc.outbox.sent)
    sub = apply(fc, 0, fetch_id=FETCH_ID)
    sent = fc.outbox.sent[before:]
    assert [s.channel for s in sent] == ["engine", "client"]  # the engine first
    (ack,) = fc.answers_to(sub)
    assert ack.header["t"] == P.ACK and ack.header["started"] is True
    assert fc.answers_to(FETCH_ID) == []
    fc.reply(0)
    (result,) = fc.answers_to(FETCH_ID)
    assert result.header["t"] == P.RESULT and result.header["job"] == ack.header["job"]
    assert result.to == fc.CLIENT
    # fetched: the controller keeps nothing, and a later fetch of the job is refused
    assert fc.hub.status()["pending_results"] == 0
    again = fc.request({"t": P.FETCH, "job": ack.header["job"], "block": True})
    assert again.header["ename"] == "InvalidDeferredID"


def test_a_queued_job_is_acked_as_not_started_and_still_answered_when_it_ends() -> None:
    fc = FakeCluster(1)
    apply(fc, 0)  # keeps engine 0 busy
    sub = apply(fc, 0, fetch_id=FETCH_ID)
    (ack,) = fc.answers_to(sub)
    assert ack.header["started"] is False
    fc.reply(0)  # the first ends; ours starts
    assert fc.answers_to(FETCH_ID) == []
    fc.reply(0)
    assert kinds(fc, FETCH_ID) == [P.RESULT]


def test_a_cancelled_job_is_answered_under_fetch_id_with_queue_cleared() -> None:
    fc = FakeCluster(1)
    apply(fc, 0)
    sub = apply(fc, 0, fetch_id=FETCH_ID)
    (ack,) = fc.answers_to(sub)
    fc.request({"t": P.CANCEL, "job": ack.header["job"]})
    (result,) = fc.answers_to(FETCH_ID)
    (part,) = result.header["parts"]
    assert P.PartHeader.from_wire(part).status == P.STATUS_ERROR


@pytest.mark.parametrize("targets", [[], 7])
def test_no_targets_or_bad_targets(targets: Any) -> None:
    fc = FakeCluster(1)
    sub = apply(fc, targets, fetch_id=FETCH_ID)
    if targets == []:  # done at once: started (ended), and the empty result follows
        (ack,) = fc.answers_to(sub)
        assert ack.header["started"] is True
        assert kinds(fc, FETCH_ID) == [P.RESULT]
    else:  # nothing runs: only the submit is answered, with the error
        assert kinds(fc, sub) == [P.ERROR]
        assert fc.answers_to(FETCH_ID) == []


def test_without_fetch_id_the_ack_is_as_before() -> None:
    fc = FakeCluster(1)
    sub = apply(fc, 0)
    (ack,) = fc.answers_to(sub)
    assert "started" not in ack.header
    fc.reply(0)
    assert fc.hub.status()["pending_results"] == 1  # kept for a fetch
