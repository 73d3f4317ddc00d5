"""The controller's books of direct commands (docs/protocol.md §6, "A direct path on one
host"), driven through the hub with a recording outbox: ``direct_job`` and
``direct_done`` in either order, quick commands reported by their engine alone
(``direct_dones``), the engine's queue held behind a direct command, its loss,
interrupts. What a user notices of it runs on real processes in
tests/client/test_direct_path.py."""

from __future__ import annotations

from typing import Any

from multiengine.wire import protocol as P
from multiengine.wire.message import Message, unpack
from multiengine.wire.protocol import ErrorReport

from .fakes import FakeCluster


def notice(
    fc: FakeCluster, eid: int, cmd: str, job: str = "", answered: bool = False, url: str = ""
) -> int:
    """The client tells the controller of direct command ``cmd`` on engine ``eid`` (sent
    to its endpoint ``url``, when given)."""
    header: dict[str, Any] = {
        "t": P.DIRECT_JOB,
        "cmd": cmd,
        "name": "execute",
        "engine": eid,
        "desc": f"execute({cmd})",
        "cid": FakeCluster.CLIENT,
    }
    if job:
        header["job"] = job
    if url:
        header["url"] = url
    answers = fc.send(header)
    assert bool(answers) == answered  # no answer while all goes well
    return fc.last_id


def report(cmd: str, ename: str = "", job: str = "", cid: bytes = FakeCluster.CLIENT) -> dict:
    """An engine's report of direct command ``cmd`` (as in ``direct_done``)."""
    entry: dict[str, Any] = {
        "cmd": cmd,
        "elapsed": 0.001,
        "status": P.STATUS_ERROR if ename else P.STATUS_OK,
        "job": job or cmd.ljust(40, "0"),
        "id": 7,
        "rt": FakeCluster.CLIENT,
        "cid": cid,
        "name": "execute",
        "desc": f"execute({cmd})",
        "started": 1234.5,
    }
    if ename:
        entry["ename"] = ename
    return entry


def done(fc: FakeCluster, eid: int, cmd: str, ename: str = "") -> None:
    """Engine ``eid`` says it answered direct command ``cmd``."""
    header = {"t": P.DIRECT_DONE, **report(cmd, ename)}
    fc.hub.on_engine(Message([fc.idents[eid]], header, b"", []))


def dones(fc: FakeCluster, eid: int, *entries: dict) -> None:
    """Engine ``eid`` reports several quick direct commands at once."""
    header = {"t": P.DIRECT_DONES, "dones": list(entries)}
    fc.hub.on_engine(Message([fc.idents[eid]], header, b"", []))


def history(fc: FakeCluster) -> list[dict[str, Any]]:
    return fc.hub.store.history(kind="job")


def test_the_notice_then_done_keeps_a_record_and_sends_nothing_to_the_client() -> None:
    fc = FakeCluster(2)
    mid = notice(fc, 0, "c-1", job="j" * 40)
    assert fc.hub.status()["engines"][0]["running"] == "execute(c-1)"
    assert not fc.engine(0).idle
    done(fc, 0, "c-1")
    assert fc.engine(0).idle
    assert fc.answers_to(mid) == []  # the engine answered the client itself
    (row,) = history(fc)
    assert row["id"] == "j" * 40 and row["status"] == P.SUCCEEDED
    assert fc.hub.status()["direct_jobs"] == 1


def test_done_before_the_notice_makes_the_record_and_the_notice_adds_nothing() -> None:
    fc = FakeCluster(2)
    done(fc, 1, "c-2", ename="ZeroDivisionError")
    (row,) = history(fc)
    assert row["status"] == P.FAILED and row["error"] == "ZeroDivisionError"
    assert row["engines"] == "1" and row["description"] == "execute(c-2)"
    mid = notice(fc, 1, "c-2")  # its client's notice, late: already recorded
    assert fc.engine(1).idle  # nothing left open
    assert fc.answers_to(mid) == []
    assert len(history(fc)) == 1
    assert fc.hub.status()["direct_jobs"] == 1


def test_quick_commands_reported_together_are_recorded_without_a_notice() -> None:
    fc = FakeCluster(2)
    dones(fc, 0, report("q-1", job="a" * 40), report("q-2", job="b" * 40))
    rows = {r["id"]: r for r in history(fc)}
    assert set(rows) == {"a" * 40, "b" * 40}
    assert all(r["status"] == P.SUCCEEDED and r["engines"] == "0" for r in rows.values())
    assert fc.hub.status()["direct_jobs"] == 2
    assert fc.engine(0).idle and fc.outbox.sent[-1].header["t"] != P.RESULT  # none answered
    events = [e for e in fc.hub.dispatch.timeline.since(0) if e[3] == "job " + "a" * 40]
    assert [e[4] for e in events] == ["start", "ok"] and events[0][1] == 1234.5
    notice(fc, 0, "q-2")  # a notice that crossed the report on the way: nothing more
    assert len(history(fc)) == 2 and fc.engine(0).idle


def test_a_report_in_a_batch_closes_an_announced_command_and_sends_the_queue_on() -> None:
    fc = FakeCluster(1)
    notice(fc, 0, "c-12")
    fc.send({"t": P.SUBMIT, "cmd": "execute", "targets": 0, "block": False})
    assert fc.commands_to(0) == []  # held behind the announced command
    dones(fc, 0, report("q-3"), report("c-12"), {"cmd": 5}, "not a report")
    assert fc.commands_to(0) == ["execute"]
    assert len(history(fc)) == 2  # q-3 and c-12; the malformed entries are dropped


def test_a_report_without_what_makes_a_record_is_dropped() -> None:
    fc = FakeCluster(1)
    entry = report("q-4")
    del entry["rt"]
    dones(fc, 0, entry)
    assert history(fc) == [] and fc.hub.status()["direct_jobs"] == 0


def flushes(fc: FakeCluster, eid: int) -> int:
    """How many times engine ``eid`` was asked for the reports it holds."""
    sent = fc.outbox.sent
    return sum(s.header["t"] == P.DIRECT_FLUSH and s.to == fc.idents[eid] for s in sent)


def test_the_engines_queue_waits_behind_a_direct_command() -> None:
    fc = FakeCluster(2)
    notice(fc, 0, "c-3")
    assert flushes(fc, 0) == 0
    fc.send({"t": P.SUBMIT, "cmd": "execute", "targets": 0, "block": False})
    assert fc.commands_to(0) == []  # held: the engine may not have read the direct one yet
    assert flushes(fc, 0) == 1  # and asked for its report, which it may hold
    fc.send({"t": P.SUBMIT, "cmd": "keys", "targets": 0, "block": False})
    assert flushes(fc, 0) == 1  # once
    dones(fc, 0, report("c-3"))
    assert fc.commands_to(0) == ["execute"]  # now it goes
    assert flushes(fc, 1) == 0


def test_only_commands_queued_after_a_direct_one_wait_for_it() -> None:
    fc = FakeCluster(1)
    submit = {"t": P.SUBMIT, "cmd": "execute", "targets": 0, "block": False}
    fc.send(submit)  # runs
    fc.send({**submit, "cmd": "keys"})  # queued before the direct command was heard of
    notice(fc, 0, "c-8")
    fc.send({**submit, "cmd": "push"})  # queued after it
    notice(fc, 0, "c-9")  # another one, heard of later still
    fc.reply(0)
    assert fc.commands_to(0) == ["execute", "keys"]  # not held: it came before
    fc.reply(0)
    assert fc.commands_to(0) == ["execute", "keys"]  # push waits for c-8
    done(fc, 0, "c-8")
    assert fc.commands_to(0) == ["execute", "keys", "push"]  # c-9 came after it


def test_a_lost_engine_fails_its_direct_commands_to_their_clients() -> None:
    fc = FakeCluster(2)
    mid = notice(fc, 0, "c-4")
    fc.lose(0)
    (answer,) = fc.answers_to(mid)
    assert answer.header["t"] == P.RESULT
    report = ErrorReport.from_bytes(answer.buffers[0])
    assert report.ename == "EngineError" and "execute(c-4)" in report.evalue
    later = notice(fc, 0, "c-5", answered=True)  # to an engine already gone: fails at once
    (answer,) = fc.answers_to(later)
    assert ErrorReport.from_bytes(answer.buffers[0]).ename == "EngineError"


def test_a_command_sent_to_an_engine_that_came_back_elsewhere_fails_and_holds_nothing() -> None:
    fc = FakeCluster(1)
    old = fc.register(direct="unix:///tmp/x/old-d")
    notice(fc, 1, "c-9", url="unix:///tmp/x/old-d")  # the endpoint it has: taken
    done(fc, 1, "c-9")
    fc.lose(1)  # it died; it comes back under its id with another endpoint
    fc.advance(0.1)
    new = fc.register(desired=1, direct="unix:///tmp/x/new-d")
    assert fc.registered_id(new) == 1 and new != old
    mid = notice(fc, 1, "c-10", url="unix:///tmp/x/old-d", answered=True)
    (answer,) = fc.answers_to(mid)
    report = ErrorReport.from_bytes(answer.buffers[0])
    assert report.ename == "EngineError" and "execute(c-10)" in report.evalue
    assert fc.engine(1).idle  # nothing holds the new engine's queue
    assert fc.hub.status()["engines"][1]["running"] is None
    notice(fc, 1, "c-11", url="unix:///tmp/x/new-d")  # its new endpoint: taken as usual
    assert not fc.engine(1).idle


def test_interrupt_reaches_a_direct_command_and_queue_status_shows_it() -> None:
    fc = FakeCluster(2)
    notice(fc, 1, "c-6")
    fc.send({"t": P.INTERRUPT, "targets": [1]})
    sent = [s.header for s in fc.outbox.sent if s.channel == "heartbeat"]
    assert [(h["t"], h["cmd"], h["why"]) for h in sent] == [(P.INTERRUPT, "c-6", P.WHY_INTERRUPT)]
    answer = fc.request({"t": P.SUBMIT, "cmd": "queue_status", "targets": [1], "block": True})
    assert b"execute(c-6)" in answer.buffers[0]


def test_an_answer_the_engine_could_not_deliver_goes_through_the_controller() -> None:
    fc = FakeCluster(1)
    mid = notice(fc, 0, "c-7")
    header = {"t": P.DIRECT_DONE, "cmd": "c-7", "status": P.STATUS_OK, "enc": P.PICKLE}
    fc.hub.on_engine(Message([fc.idents[0]], header, b"pickled value", []))
    (answer,) = fc.answers_to(mid)
    assert answer.header["t"] == P.RESULT and answer.buffers == [b"pickled value"]


def test_a_failed_direct_command_clears_what_other_clients_queued_behind_it() -> None:
    """As behind any failed command, the commands queued behind it are cleared, except
    its own client's: that client had the failure straight from the engine and may have
    sent them after it saw it, while the ``direct_done`` was still on its way."""
    fc = FakeCluster(1)
    notice(fc, 0, "c-5")
    submit = {"t": P.SUBMIT, "cmd": "execute", "targets": 0, "block": True}
    fc.send({**submit, "desc": "execute(mine)"})
    mine = fc.last_id
    fc.send({**submit, "desc": "execute(theirs)", "cid": b"c-other"})
    theirs = fc.last_id
    done(fc, 0, "c-5", ename="ZeroDivisionError")
    assert fc.commands_to(0) == ["execute"]  # its client's command runs
    (result,) = [s for s in fc.answers_to(theirs) if s.header["t"] == P.RESULT]
    assert ErrorReport.from_bytes(result.buffers[0]).ename == "QueueCleared"
    fc.reply(0)
    (result,) = [s for s in fc.answers_to(mine) if s.header["t"] == P.RESULT]
    assert P.PartHeader.from_wire(result.header["parts"][0]).status == P.STATUS_OK


def direct_ons(fc: FakeCluster) -> list[bytes]:
    """The engines sent ``direct_on``, in order (one entry per message)."""
    return [s.to for s in fc.outbox.sent if s.channel == "engine" and s.header["t"] == P.DIRECT_ON]


def test_engines_are_told_to_read_their_direct_socket_before_a_client_learns_it() -> None:
    fc = FakeCluster(1)  # engine 0 has no direct socket
    a = fc.register(direct="unix:///tmp/x/a-d")
    b = fc.register(direct="unix:///tmp/x/b-d")
    assert direct_ons(fc) == []  # no client asked: the engines wait on one socket
    before = len(fc.outbox.sent)
    answer = fc.request({"t": P.DIRECT_ADDRS})
    after = fc.outbox.sent[before:]
    assert [s.to for s in after if s.header["t"] == P.DIRECT_ON] == [a, b]
    assert after[-1] is answer  # told before the client has the endpoints
    assert [eid for eid, _ in msgpack_value(answer)] == [1, 2]
    fc.request({"t": P.DIRECT_ADDRS})
    assert direct_ons(fc) == [a, b]  # once each
    # an engine registering from now on is told at once, after its ``registered``
    c = fc.register(direct="unix:///tmp/x/c-d")
    kinds = [s.header["t"] for s in fc.outbox.sent if s.to == c and s.channel == "engine"]
    assert kinds == [P.REGISTERED, P.DIRECT_ON]
    # and one that registers again (a new connection: a new registration) too
    fc.register(a, epoch=1, direct="unix:///tmp/x/a-d")
    assert direct_ons(fc) == [a, b, c, a]
    fc.register(b"e-plain")  # without a direct socket: nothing to read
    assert direct_ons(fc) == [a, b, c, a]


def msgpack_value(answer: Any) -> list[list[Any]]:
    assert answer.header["t"] == P.VALUE
    return list(unpack(answer.content))
