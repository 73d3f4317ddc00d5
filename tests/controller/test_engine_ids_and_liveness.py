"""Engine ids reserved for lost engines (IdAllocator grace, the same identity back,
desired ids) and engine liveness by connection (register and hello name an engine's
connections; either closing unregisters it), at the hub level with no process
(docs/protocol.md §7)."""

from __future__ import annotations

import pytest

from multiengine.controller.engines import IdAllocator
from multiengine.wire import protocol as P

from .fakes import FakeCluster, task


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# ------------------------------------------------------------ IdAllocator
def test_a_lost_engines_id_is_reserved_for_it() -> None:
    clock = Clock()
    ids = IdAllocator(grace=300.0, clock=clock)
    assert [ids.take(owner=b"e-%d" % i) for i in range(3)] == [0, 1, 2]
    ids.release(1, b"e-1")  # lost, not gone
    assert ids.reserved() == {1: 300.0}
    assert ids.take(owner=b"e-new") == 3  # a newcomer does not get it
    assert ids.take(owner=b"e-1") == 1  # the same engine does
    assert ids.reserved() == {}


@pytest.mark.fault(
    section="an-engine-that-loses-the-controller",
    fault="a restarted engine asks for its old id (`desired_id`)",
    outcome="it gets it when no live engine holds it, reserved or not",
)
def test_a_desired_id_takes_a_reserved_one_unless_a_live_engine_holds_it() -> None:
    ids = IdAllocator(grace=300.0, clock=Clock())
    assert [ids.take(owner=b"e-%d" % i) for i in range(2)] == [0, 1]
    ids.release(0, b"e-0")
    assert ids.take(0, b"restarted") == 0  # a restarted engine asking for its id
    assert ids.reserved() == {}
    assert ids.take(1, b"other") == 2  # 1 is live: the lowest free id instead
    assert ids.take(owner=b"e-0") == 3  # its reservation was used up by the desired one


def test_reservations_expire_after_the_grace() -> None:
    clock = Clock()
    ids = IdAllocator(grace=10.0, clock=clock)
    assert [ids.take(owner=b"e-%d" % i) for i in range(2)] == [0, 1]
    ids.release(0, b"e-0")
    clock.now += 9.0
    assert ids.take(owner=b"x") == 2
    clock.now += 2.0
    assert ids.reserved() == {}
    assert ids.take(owner=b"y") == 0  # free again, the lowest


def test_goodbye_and_no_grace_reserve_nothing() -> None:
    ids = IdAllocator(grace=300.0, clock=Clock())
    assert [ids.take(owner=b"e-%d" % i) for i in range(2)] == [0, 1]
    ids.release(0)  # said bye, or was killed
    assert ids.reserved() == {}
    assert ids.take(owner=b"new") == 0
    none = IdAllocator(grace=0.0, clock=Clock())
    assert none.take(owner=b"a") == 0
    none.release(0, b"a")
    assert none.take(owner=b"b") == 0


def test_an_engine_back_under_another_id_frees_its_reservation() -> None:
    ids = IdAllocator(grace=300.0, clock=Clock())
    assert [ids.take(owner=b"e-%d" % i) for i in range(3)] == [0, 1, 2]
    ids.release(0, b"e-0")
    assert ids.take(1, b"e-0") == 0  # asks for a live engine's id: gets its own back
    ids.release(0, b"e-0")
    assert ids.take(5, b"e-0") == 5  # asks for a free id: gets it...
    assert ids.reserved() == {}  # ...and its old one is no longer held for it
    assert ids.take(owner=b"z") == 0


# ------------------------------------------------------------ the hub
def test_a_silent_engine_is_unregistered_its_work_fails_and_its_id_is_reserved() -> None:
    c = FakeCluster(n=2)
    (tid,) = c.submit(task("r", retry_lost=False))
    busy = next(e for e in (0, 1) if c.running(e) is not None)
    ident = c.idents[busy]
    c.silent(ident)  # libzmq closed its heartbeat connection
    assert busy not in c.hub.engines
    assert c.error_of(tid) == "EngineError"
    assert c.hub.status()["reserved_ids"] == [busy]
    newcomer = c.register()
    assert c.registered_id(newcomer) == 2
    c.register(ident, desired=busy, epoch=1, new_connection=False)
    assert c.registered_id(ident) == busy
    assert c.hub.status()["reserved_ids"] == []


def test_either_connection_closing_loses_the_engine_and_others_are_untouched() -> None:
    c = FakeCluster(n=3)
    c.disconnect(c.idents[0])  # its process died: the command connection closed
    assert c.hub.ids() == [1, 2]
    c.silent(c.idents[1])
    assert c.hub.ids() == [2]
    c.hub.on_disconnect(999)  # a connection no engine is known by
    assert c.hub.ids() == [2]


def test_an_engine_without_hello_is_not_lost_with_a_heartbeat_connection() -> None:
    c = FakeCluster(n=1)
    ident = c.register(hello=False)
    assert c.hub.ids() == [0, 1]
    c.silent(c.idents[0])
    assert c.hub.ids() == [1]
    c.hello(ident)
    c.silent(ident)
    assert c.hub.ids() == []


def test_a_hello_of_an_older_registration_is_ignored() -> None:
    c = FakeCluster(n=1)
    ident = c.idents[0]
    c.register(ident, desired=0, epoch=1, new_connection=True, hello=False)
    assert c.hub.ids() == [0]
    c.hello(ident, epoch=0)  # late, from before it lost the controller
    c.silent(ident)  # that connection is not this registration's
    assert c.hub.ids() == [0]
    c.hello(ident, epoch=1)
    c.silent(ident)
    assert c.hub.ids() == []


@pytest.mark.fault(
    section="an-engine-that-loses-the-controller",
    fault="an engine's registration answer comes late (after it lost the controller again)",
    outcome=(
        "`registered` carries the `epoch` of the `register` it answers; the engine ignores "
        "answers to older ones"
    ),
)
def test_a_repeated_register_is_answered_again_and_a_higher_epoch_starts_afresh() -> None:
    c = FakeCluster(n=1)
    ident = c.idents[0]
    (tid,) = c.submit(task("r", retry_lost=False))
    assert c.running(0) is not None
    c.register(ident, new_connection=False, hello=False)  # its first register, repeated
    assert c.running(0) is not None and c.registered_id(ident) == 0
    c.register(ident, desired=0, epoch=1, new_connection=False)  # it lost the controller
    assert c.registered_id(ident) == 0 and c.running(0) is None
    assert c.error_of(tid) == "EngineError"
    sent = [s for s in c.outbox.sent if s.to == ident and s.header["t"] == P.REGISTERED]
    assert [s.header["epoch"] for s in sent] == [0, 0, 1]


def test_a_reused_descriptor_is_not_blamed_on_the_new_engine() -> None:
    c = FakeCluster(n=1)
    old = c.idents[0]
    c.hub.on_disconnect(c.conn_of[old])  # the loop reads this before the new register
    c.conn_of[b"e-new"] = c.conn_of[old]  # the kernel gives the next connection that fd
    new = c.register(b"e-new", new_connection=False)
    assert c.registered_id(new) == 1  # 0 is reserved for the lost engine
    c.silent(old)  # a late event about the old engine's other connection: no one's now
    assert c.hub.ids() == [1]


def test_a_register_on_a_descriptor_still_listed_drops_its_old_engine() -> None:
    c = FakeCluster(n=1)
    old = c.idents[0]
    c.conn_of[b"e-new"] = c.conn_of[old]  # its closing was somehow never read
    new = c.register(b"e-new", new_connection=False)
    assert c.hub.ids() == [1] and c.registered_id(new) == 1
    assert c.hub.status()["reserved_ids"] == [0]
