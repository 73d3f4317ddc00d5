"""A call on many engines: the idle engines it names once start together on one
message (one command number, signed once, sent to each); busy engines, engines named
twice and per-engine payloads (scatter) get commands of their own, queued as before.
Driven through the hub with a recording outbox (no processes): what a user notices of
it, results and order, is covered by the real-cluster tests."""

from __future__ import annotations

from typing import Any

from multiengine.wire import protocol as P

from .fakes import FakeCluster


def cmds(fc: FakeCluster, since: int = 0) -> list[tuple[int, int]]:
    """(engine id, command number) of each ``cmd`` sent since ``since``."""
    return [
        (fc.idents.index(s.to), s.header["cmd"])
        for s in fc.outbox.sent[since:]
        if s.channel == "engine" and s.header["t"] == P.CMD
    ]


def execute(fc: FakeCluster, targets: Any) -> int:
    fc.send({"t": P.SUBMIT, "cmd": "execute", "targets": targets, "block": False})
    return fc.last_id


def test_idle_engines_start_together_on_one_message() -> None:
    fc = FakeCluster(4)
    execute(fc, [3])  # engine 3 is busy with this
    before = len(fc.outbox.sent)
    fc.outbox.together.clear()
    execute(fc, "all")
    sent = cmds(fc, before)
    assert fc.outbox.together == [[fc.idents[0], fc.idents[1], fc.idents[2]]]
    assert sorted(e for e, _ in sent) == [0, 1, 2]
    assert len({n for _, n in sent}) == 1  # one command number between them
    shared = sent[0][1]
    queued = fc.engine(3).queue[0]
    assert queued.cmd_id > shared  # the busy engine's own, later number
    fc.reply(3)  # engine 3 finishes its first command: the queued one goes out
    assert cmds(fc, before)[-1] == (3, queued.cmd_id)
    for eid in range(4):
        fc.reply(eid)
    assert all(fc.engine(e).current is None for e in range(4))


def test_engines_named_twice_or_given_parts_get_their_own_numbers() -> None:
    fc = FakeCluster(3)
    before = len(fc.outbox.sent)
    execute(fc, [0, 0, 1])
    assert fc.outbox.together == []
    numbers = [n for _, n in cmds(fc, before)]
    assert len(numbers) == len(set(numbers)) == 2  # (the second on engine 0 waits)
    fc.reply(0)
    assert len({n for _, n in cmds(fc, before)}) == 3
    before = len(fc.outbox.sent)
    header = {"t": P.SUBMIT, "cmd": "push", "targets": [2, 1], "block": False, "parts": [0, 0]}
    fc.reply(1)
    fc.send(header, [b"a", b"b"])
    sent = cmds(fc, before)
    assert fc.outbox.together == [] and len({n for _, n in sent}) == len(sent) >= 1
