"""The ``monitor`` request a live view polls, through the hub with fake engines: the
timeline of starts and ends, engines' memory and CPU asked on the heartbeat channel at
most once a second, and the status map's queue counting tasks sent ahead."""

from __future__ import annotations

from typing import Any

import msgpack

from multiengine.controller.dispatch import PREFETCH
from multiengine.controller.monitor import Timeline
from multiengine.wire import protocol as P
from multiengine.wire.message import Message

from .fakes import FakeCluster, task


def monitor(c: FakeCluster, since: int = 0) -> dict[str, Any]:
    answer = c.request({"t": P.MONITOR, "since": since})
    assert answer.header["t"] == P.VALUE
    return msgpack.unpackb(answer.content, strict_map_key=False)  # type: ignore[no-any-return]


def probes(c: FakeCluster) -> int:
    return sum(1 for s in c.outbox.sent if s.channel == "heartbeat" and s.header["t"] == P.PROBE)


def test_events_say_what_started_and_how_it_ended_on_which_engine():
    c = FakeCluster(n=2)
    a, b = c.submit(task("a"), task("b"))
    first = monitor(c)
    starts = [(e[2], e[3], e[4], e[5]) for e in first["events"]]
    assert starts == [(0, f"task {a}", "start", "a"), (1, f"task {b}", "start", "b")]
    c.reply(0)
    c.reply(1, ok=False)
    later = monitor(c, first["seq"])
    assert [(e[2], e[3], e[4]) for e in later["events"]] == [
        (0, f"task {a}", "ok"),
        (1, f"task {b}", "failed"),
    ]
    assert [e[0] for e in later["events"]] == [first["seq"] + 1, first["seq"] + 2]
    assert monitor(c, later["seq"])["events"] == []
    assert later["status"]["tasks"] == {"scheduled": 0, "pending": 0, "succeeded": 1, "failed": 1}


def test_a_multiengine_job_and_a_lost_engine_are_on_the_timeline():
    c = FakeCluster(n=1)
    c.send({"t": P.SUBMIT, "cmd": "execute", "targets": [0], "block": True, "desc": "execute"})
    c.lose(0)
    kinds = [(e[3].split()[0], e[4]) for e in monitor(c)["events"]]
    assert kinds == [("job", "start"), ("job", "lost")]


def test_engines_are_probed_at_most_once_a_second_and_their_answers_shown():
    c = FakeCluster(n=2)
    assert monitor(c)["usage"] == []
    assert probes(c) == 2
    monitor(c)
    monitor(c)
    assert probes(c) == 2  # several viewers within a second: one probe per engine
    for eid, ident in enumerate(c.idents):
        header = {"t": P.USAGE, "rss": 1000 * (eid + 1), "cpu": 0.5}
        c.hub.on_heartbeat(Message([ident], header, b"", []))
    usage = monitor(c)["usage"]
    assert [(u["engine"], u["rss"], u["cpu"]) for u in usage] == [(0, 1000, 0.5), (1, 2000, 0.5)]
    c.advance(1.0)
    monitor(c)
    assert probes(c) == 4
    c.lose(1)
    assert [u["engine"] for u in monitor(c)["usage"]] == [0]


def test_a_malformed_usage_or_since_is_refused_and_the_hub_goes_on():
    c = FakeCluster(n=1)
    c.hub.on_heartbeat(Message([c.idents[0]], {"t": P.USAGE, "rss": "lots", "cpu": None}, b"", []))
    assert monitor(c)["usage"] == []
    answer = c.request({"t": P.MONITOR, "since": "x"})
    assert answer.header["t"] == P.ERROR and "since" in answer.header["evalue"]
    assert monitor(c)["status"]["engines"][0]["id"] == 0


def test_the_status_queue_counts_tasks_sent_ahead():
    c = FakeCluster(n=1)
    c.submit(*[task(f"t{i}") for i in range(1 + PREFETCH + 1)])
    (engine,) = monitor(c)["status"]["engines"]
    assert engine["running"] == "t0"
    assert engine["queue"] == PREFETCH  # sent ahead; the last one waits in the scheduler


def test_the_timeline_is_bounded_and_says_where_it_starts():
    t = Timeline(capacity=3)
    for i in range(5):
        t.record(0, f"task {i}", "start", "x" * 500)
    assert [e[0] for e in t.since(0)] == [3, 4, 5]
    assert [e[0] for e in t.since(4)] == [5]
    assert t.since(5) == []
    assert len(t.since(0)[0][5]) == 120
