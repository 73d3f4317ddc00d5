"""The task scheduler, driven through the controller's hub with fake engines (no process,
no socket, a clock moved by hand): priorities, prefetch, retries and their penalty,
recovery tasks, abort, engine loss, depend timeouts, and taking tasks back from busy
engines when another goes idle."""

from __future__ import annotations

import msgpack

from multiengine.controller.dispatch import PREFETCH, PREFETCH_DEEP
from multiengine.wire import protocol as P
from multiengine.wire.protocol import TaskFlags

from .fakes import FakeCluster, task


def test_an_idle_engine_takes_a_task_at_once():
    c = FakeCluster(n=1)
    (tid,) = c.submit(task("a"))
    assert c.running(0) == "a"
    assert c.state(tid) == P.PENDING
    c.reply(0)
    assert c.state(tid) == P.SUCCEEDED
    assert c.results(tid)[tid].part.engine_id == 0


def test_higher_priority_goes_first_and_equals_keep_submission_order():
    c = FakeCluster(n=1)
    c.submit(task("busy"))
    c.submit(task("low1"), task("low2"), task("high", priority=5), task("mid", priority=1))
    for _ in range(5):
        c.reply(0)
    assert c.commands_to(0) == ["busy", "high", "mid", "low1", "low2"]


def test_a_busy_engine_gets_at_most_prefetch_tasks_ahead():
    c = FakeCluster(n=1)
    c.submit(*[task(f"t{i}") for i in range(6)])
    assert c.running(0) == "t0"
    assert c.sent_ahead(0) == [f"t{i}" for i in range(1, 1 + PREFETCH)]
    assert c.hub.scheduler.table.status(False)[P.SCHEDULED] == 6 - 1 - PREFETCH
    c.reply(0)
    assert c.running(0) == "t1"
    assert len(c.sent_ahead(0)) == PREFETCH


def test_an_engine_answering_tiny_tasks_gets_more_sent_ahead_until_a_slow_one():
    c = FakeCluster(n=1)
    c.submit(*[task(f"t{i}") for i in range(3 * PREFETCH_DEEP)])
    assert len(c.sent_ahead(0)) == PREFETCH
    for n in range(1, PREFETCH_DEEP + 4):
        c.reply(0, elapsed=0.0001)  # tiny: one more may wait on the engine
        assert len(c.sent_ahead(0)) == min(PREFETCH + n, PREFETCH_DEEP)
    c.reply(0, elapsed=0.5)  # a slow one: back to PREFETCH (what is there stays there)
    assert len(c.sent_ahead(0)) == PREFETCH_DEEP - 1
    while len(c.sent_ahead(0)) > PREFETCH:
        c.reply(0, elapsed=0.5)
    c.reply(0, elapsed=0.5)
    assert len(c.sent_ahead(0)) == PREFETCH


def test_tasks_go_to_idle_engines_before_any_is_sent_ahead():
    c = FakeCluster(n=3)
    c.submit(task("a"), task("b"), task("c"))
    assert [c.running(i) for i in range(3)] == ["a", "b", "c"]
    assert all(c.sent_ahead(i) == [] for i in range(3))


def test_nothing_is_sent_ahead_behind_a_multiengine_command():
    c = FakeCluster(n=1)
    c.send({"t": P.SUBMIT, "cmd": "execute", "targets": [0], "block": True, "desc": "execute"})
    c.submit(task("a"), task("b"))
    assert c.running(0) == "execute"
    assert c.sent_ahead(0) == []
    c.reply(0)
    assert c.running(0) == "a"


def test_a_failed_task_is_retried_on_another_engine():
    c = FakeCluster(n=2)
    (tid,) = c.submit(task("flaky", retries=1))
    c.submit(task("other"))
    c.reply(0, ok=False, flags=TaskFlags(None, True))  # flaky fails on engine 0
    c.reply(1)  # engine 1 finishes "other" and is free
    assert c.commands_to(1) == ["other", "flaky"]
    c.reply(1)
    assert c.state(tid) == P.SUCCEEDED


def test_a_retry_on_the_same_engine_waits_for_the_failure_penalty():
    c = FakeCluster(n=1, penalty=1.0)
    (tid,) = c.submit(task("flaky", retries=1))
    c.reply(0, ok=False, flags=TaskFlags(None, True))
    assert c.running(0) is None and c.state(tid) == P.SCHEDULED
    c.advance(0.5)
    assert c.running(0) is None
    c.advance(0.6)
    assert c.running(0) == "flaky"
    c.reply(0, ok=False, flags=TaskFlags(None, True))
    assert c.state(tid) == P.FAILED  # one retry, then failed: its own error
    assert c.error_of(tid) == "ValueError"


def test_a_failure_retry_on_excludes_is_not_retried():
    c = FakeCluster(n=2)
    (tid,) = c.submit(task("t", retries=3))
    c.reply(0, ok=False, flags=TaskFlags(None, False))
    assert c.state(tid) == P.FAILED


def test_a_failing_task_takes_back_the_tasks_sent_ahead_to_its_engine():
    c = FakeCluster(n=1)
    c.submit(task("bad"), task("x"), task("y"))
    assert c.sent_ahead(0) == ["x", "y"]
    c.reply(0, ok=False)
    # x is the engine's next command already (it starts it right after answering bad);
    # what waits behind it goes back to the scheduler
    assert c.interrupts_to(0) == [("y", P.WHY_REVOKE)]
    c.revoked(0, "y")
    assert c.commands_to(0) == ["bad", "x", "y", "y"]  # back to wait, then sent ahead again
    c.reply(0)  # x
    c.answer_unrun(0)  # the first y: dropped
    c.reply(0)  # the second y
    assert c.state(2) == P.SUCCEEDED


def test_recovery_task_runs_under_the_same_id_after_the_retries():
    c = FakeCluster(n=1, penalty=0.0)
    (tid,) = c.submit(task("main", recovery=["plan-b"]))
    c.reply(0, ok=False, flags=TaskFlags(None, True))
    assert c.running(0) == "plan-b"
    c.reply(0)
    assert c.state(tid) == P.SUCCEEDED


def test_abort_of_a_waiting_task_ends_it_at_once():
    c = FakeCluster(n=1)
    c.submit(task("busy"), task("a"), task("b"), task("waiting"))
    tid = 3
    assert c.state(tid) == P.SCHEDULED
    assert c.abort(tid) is None
    assert c.state(tid) == P.FAILED and c.error_of(tid) == "TaskAborted"
    assert c.abort(tid) == "Task Already Aborted"
    assert c.abort(99) == "No task #99"


def test_abort_of_a_running_task_interrupts_it():
    c = FakeCluster(n=1)
    (tid,) = c.submit(task("long"))
    c.abort(tid)
    assert c.interrupts_to(0) == [("long", P.WHY_ABORT)]
    c.reply(0, ok=False, ename="TaskAborted", flags=TaskFlags("aborted", False))
    assert c.error_of(tid) == "TaskAborted"


def test_abort_of_a_task_sent_ahead_ends_it_when_the_engine_says_it_will_not_run_it():
    c = FakeCluster(n=1)
    _, tid, _ = c.submit(task("long"), task("ahead"), task("next"))
    c.abort(tid)
    assert ("ahead", P.WHY_ABORT) in c.interrupts_to(0)
    c.revoked(0, "ahead", unrun=True)
    assert c.error_of(tid) == "TaskAborted"  # at once, not after "long"
    c.reply(0)  # long
    c.answer_unrun(0)  # the engine reaches "ahead" and skips it: dropped
    assert c.error_of(tid) == "TaskAborted"
    assert c.running(0) == "next"


def test_engine_loss_retries_the_running_task_and_requeues_those_sent_ahead():
    c = FakeCluster(n=2)
    running, ahead, _ = c.submit(task("r", retries=1), task("x"), task("y"))
    c.engine(1).queue.clear()
    c.lose(0)
    assert 0 not in c.hub.engines
    assert c.state(running) in (P.SCHEDULED, P.PENDING)
    assert c.state(ahead) in (P.SCHEDULED, P.PENDING)
    for _ in range(3):
        c.reply(1)
    assert c.state(running) == P.SUCCEEDED and c.state(ahead) == P.SUCCEEDED


def test_engine_loss_without_retries_fails_the_task_with_engine_error():
    c = FakeCluster(n=1)
    (tid,) = c.submit(task("r"))
    c.lose(0)
    assert c.error_of(tid) == "EngineError"


def test_engine_loss_is_not_retried_when_retry_lost_is_off():
    c = FakeCluster(n=2)
    (tid,) = c.submit(task("r", retries=5, retry_lost=False))
    c.lose(0)
    assert c.error_of(tid) == "EngineError"


def test_depend_unmet_everywhere_times_out():
    c = FakeCluster(n=2, task_timeout=30.0, penalty=0.1)
    (tid,) = c.submit(task("picky"))
    c.reply(0, ok=False, flags=TaskFlags("unmet", False))
    c.advance(0.2)
    c.reply(1, ok=False, flags=TaskFlags("unmet", False))
    c.advance(1)  # the first sweep that finds it unmet everywhere starts the clock
    c.advance(28)
    assert c.state(tid) == P.SCHEDULED
    c.advance(2)
    assert c.error_of(tid) == "TaskTimeout"


def test_depend_met_on_a_new_engine_runs_there():
    c = FakeCluster(n=1, task_timeout=30.0)
    (tid,) = c.submit(task("picky"))
    c.reply(0, ok=False, flags=TaskFlags("unmet", False))
    c.register()
    assert c.running(1) == "picky"
    c.reply(1)
    assert c.state(tid) == P.SUCCEEDED


# ---------------------------------------------------------------- load balance holds
def test_an_idle_engine_takes_over_tasks_sent_ahead_to_a_busy_one():
    c = FakeCluster(n=1)
    c.submit(task("long"), task("x"), task("y"))
    assert c.running(0) == "long" and c.sent_ahead(0) == ["x", "y"]
    c.register()  # an idle engine; nothing waits in the controller
    assert c.interrupts_to(0) == [("y", P.WHY_REVOKE)]
    c.revoked(0, "y", unrun=True)
    assert c.running(1) == "y"
    c.reply(1)  # y done on engine 1; idle again: it takes x as well
    assert c.interrupts_to(0)[-1] == ("x", P.WHY_REVOKE)
    c.revoked(0, "x", unrun=True)
    assert c.running(1) == "x"
    c.reply(1)
    c.reply(0)  # long ends; the engine then answers x and y unrun: dropped
    c.answer_unrun(0)
    c.answer_unrun(0)
    assert c.hub.scheduler.table.status(False) == {
        P.SCHEDULED: 0,
        P.PENDING: 0,
        P.SUCCEEDED: 3,
        P.FAILED: 0,
    }
    assert c.commands_to(1) == ["y", "x"]
    assert c.running(0) is None and c.running(1) is None


def test_a_task_the_busy_engine_already_started_stays_there():
    c = FakeCluster(n=1)
    c.submit(task("a"), task("b"))
    c.register()
    assert c.interrupts_to(0) == [("b", P.WHY_REVOKE)]
    c.reply(0)  # a ends; b starts on engine 0 before the revoke arrives
    c.revoked(0, "b", unrun=False)
    assert c.running(0) == "b" and c.running(1) is None
    c.reply(0)
    assert c.hub.scheduler.table.status(False)[P.SUCCEEDED] == 2


def test_the_unrun_answer_may_come_before_the_heartbeat_one():
    c = FakeCluster(n=1)
    _, tid = c.submit(task("bad"), task("b"))
    c.register()  # b is being taken back for engine 1
    c.reply(0, ok=False)  # bad fails
    c.answer_unrun(0)  # the engine reaches b and skips it, before its revoke answer
    c.revoked(0, "b", unrun=True)  # that answer finds b gone: nothing more happens
    assert c.running(0) is None and c.running(1) == "b"
    c.reply(1)
    assert c.state(tid) == P.SUCCEEDED
    c.register()  # b's old claim is gone: a new idle engine takes nothing from anyone
    assert c.interrupts_to(1) == []


def test_no_task_is_taken_back_while_tasks_still_wait():
    c = FakeCluster(n=2)
    c.submit(*[task(f"t{i}") for i in range(10)])
    c.reply(1)
    assert c.interrupts_to(0) == []


def test_wait_started_answers_when_a_task_sent_ahead_starts():
    c = FakeCluster(n=1)
    _, tid = c.submit(task("a"), task("b"))
    assert c.sent_ahead(0) == ["b"]
    assert c.send({"t": P.WAIT_STARTED, "tid": tid}) == []
    c.reply(0)
    (answer,) = c.answers_to(c.last_id)
    assert msgpack.unpackb(answer.content) == P.RUNNING
    (done,) = c.send({"t": P.WAIT_STARTED, "tid": 0})
    assert msgpack.unpackb(done.content) == P.DONE


# ---------------------------------------------------------------- malformed requests
def test_links_alike_in_value_but_not_in_type_keep_their_own_descriptions():
    # the tasks of one submission whose links came the same share one TaskLink; 1 and
    # True are equal in Python, but a description made of each is not the same
    c = FakeCluster(n=1)
    items = [[P.MAP_TASK, 0, d, 0, 0, None, True] for d in (1, True, 1, "x")]
    c.request({"t": P.TASK_SUBMIT, "tasks": [[i] for i in items]}, [b"a", b"b", b"c", b"d"])
    for _ in items:
        c.reply(0)
    events = msgpack.unpackb(c.request({"t": P.MONITOR, "since": 0}).content)["events"]
    assert [e[5] for e in events if e[4] == "start"] == ["1", "True", "1", "x"]
    assert all(s == P.SUCCEEDED for s in map(c.state, range(4)))


def test_a_task_submit_whose_frames_do_not_match_is_answered_with_protocol_error():
    c = FakeCluster(n=1)
    link = task("t")[0][0]
    answer = c.request({"t": P.TASK_SUBMIT, "tasks": [[link.to_wire()]]}, [])  # no frames
    assert answer.header["t"] == P.ERROR and answer.header["ename"] == "ProtocolError"
    assert c.submit(task("after")) == [0]  # the controller goes on


def test_a_submit_with_too_few_xfers_fails_its_job_and_queues_nothing():
    c = FakeCluster(n=2)
    header = {
        "t": P.SUBMIT,
        "cmd": "push",
        "targets": [0, 1],
        "block": True,
        "desc": "push()",
        "parts": [0, 0],
        "xfer": [[[4], 1, 4]],
    }
    (answer,) = c.send(header, [b"p0", b"p1"])
    assert answer.header["t"] == P.RESULT
    assert [p[1] for p in answer.header["parts"]] == [P.STATUS_ERROR, P.STATUS_ERROR]
    assert c.running(0) is None and c.running(1) is None
