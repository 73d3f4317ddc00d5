"""PendingResult, barrier and flush on a real cluster (seed-tests §D, seed-system §2.6).

The seed tested its ``PendingDeferredManager`` on hand-fired Deferreds; here the same
semantics are checked on the PendingResults that ``block=False`` calls return:

* one retrieval per id: the value (or the exception) is cached by the PendingResult,
  and the controller forgets the id once it has been fetched;
* a non-blocking fetch of an unfinished result gives the caller's default;
* callbacks run in order on the first successful retrieval;
* ``barrier`` waits in submission order and keeps errors for ``.r``;
* ``flush`` forgets every un-fetched result (contract decision 2: all of them).
"""

from __future__ import annotations

import string
from typing import Any

import pytest
from helpers import HANG, call_within, pending, plain_repr, wait_until

import multiengine
from multiengine import PendingResult, ResultList
from multiengine.errors import (
    AbortedPendingDeferredError,
    CompositeError,
    InvalidDeferredID,
    NotAPendingResult,
)


def poll_result(pr: PendingResult) -> Any:
    """The value of ``pr``, polled with non-blocking gets only (never a blocking one)."""
    box: list[Any] = []

    def ready() -> bool:
        value = pr.get_result("NOTREADY", block=False)
        if isinstance(value, str) and value == "NOTREADY":
            return False
        box.append(value)
        return True

    wait_until(ready, message=f"{pr!r} to be reported ready to a non-blocking get")
    return box[0]


def test_value_is_cached_and_server_copy_deleted_on_retrieval(mec):
    mec.push({"a": [1, 2, 3]})
    pr = mec.pull("a", block=False)
    assert isinstance(pr, PendingResult)
    first = pr.r
    assert first == [[1, 2, 3]] * 4
    # the controller deleted its copy on the first fetch ...
    with pytest.raises(InvalidDeferredID):
        mec.get_pending_deferred(pr.result_id)
    # ... but the PendingResult keeps answering from its cache, with the same object
    assert pr.r is first
    assert pr.get_result() is first
    assert pr.get_result(block=False) is first


def test_exception_is_cached_and_reraised_identically(mec):
    pr = mec.execute("1/0", block=False)
    with pytest.raises(CompositeError) as first:
        _ = pr.r
    with pytest.raises(CompositeError) as second:
        _ = pr.r
    assert second.value is first.value
    with pytest.raises(CompositeError) as third:
        pr.get_result(block=False)
    assert third.value is first.value
    assert [et for et, _, _ in first.value.elist] == [ZeroDivisionError] * 4
    # the error was fetched once: the controller no longer holds it
    with pytest.raises(InvalidDeferredID):
        mec.get_pending_deferred(pr.result_id)


def test_get_pending_deferred_twice_raises_invalid_deferred_id_naming_the_id(mec):
    pr = mec.execute("a = 1", block=False)
    rl = mec.get_pending_deferred(pr.result_id)
    assert [r["id"] for r in rl] == [0, 1, 2, 3]
    assert [r["number"] for r in rl] == [1, 1, 1, 1]
    with pytest.raises(InvalidDeferredID) as exc:
        mec.get_pending_deferred(pr.result_id)
    # contract decision 12: the real id in the message, not a literal '%r'
    assert pr.result_id in str(exc.value)
    assert "%r" not in str(exc.value)


def test_unknown_id_raises_invalid_deferred_id(mec):
    bogus = "f" * 40
    with pytest.raises(InvalidDeferredID) as exc:
        mec.get_pending_deferred(bogus)
    assert bogus in str(exc.value)


def test_nonblocking_get_returns_default_while_running_then_the_value(mec, latch):
    gate = latch()
    pr = mec.execute(gate.wait_code, block=False)
    assert pr.get_result(block=False) is None
    assert pr.get_result("NOTREADY", block=False) == "NOTREADY"
    assert pr.get_result(default=42, block=False) == 42
    gate.set()
    rl = pr.get_result()  # blocks until done
    assert isinstance(rl, ResultList)
    assert [r["id"] for r in rl] == [0, 1, 2, 3]
    assert all(r["input"]["raw"] == gate.wait_code for r in rl)
    # once retrieved, the non-blocking form returns the value, not the default
    assert pr.get_result("NOTREADY", block=False) is rl


def test_nonblocking_get_after_completion_returns_value(mec):
    pr = mec.execute("x = 3", block=False)
    value = poll_result(pr)
    assert isinstance(value, ResultList)
    assert [r["number"] for r in value] == [1, 1, 1, 1]
    assert pr.r is value


def test_blocking_get_waits_for_the_result(mec, latch):
    gate = latch()
    # block=False returns at once: the command cannot end before the gate opens
    pr = call_within(
        lambda: mec.execute(gate.wait_code + "\nz = 7", block=False), message="execute(block=False)"
    )
    assert not pr.done()
    gate.set()
    assert len(pr.r) == 4  # .r waits for the whole result
    assert mec.pull("z") == [7, 7, 7, 7]


def test_done_and_wait(mec, latch):
    gate = latch()
    pr = mec.execute(gate.wait_code, block=False)
    assert pr.done() is False
    assert pr.wait(0.05) is False
    assert pr.done() is False
    assert pr.get_result("NOTREADY", block=False) == "NOTREADY"
    gate.set()
    assert pr.wait(HANG) is True
    assert pr.done() is True
    assert [r["id"] for r in pr.r] == [0, 1, 2, 3]
    assert pr.wait(0) is True


def test_done_and_wait_do_not_raise_a_failed_result(mec):
    pr = mec.execute("import time; time.sleep(0.2); 1/0", block=False)
    assert pr.wait(10) is True
    assert pr.done() is True
    with pytest.raises(CompositeError) as exc:
        _ = pr.r
    assert [et for et, _, _ in exc.value.elist] == [ZeroDivisionError] * 4


def test_second_concurrent_waiter_gets_invalid_deferred_id(mec, latch):
    """seed test_double_get: while a blocking fetch waits, another fetch of the id fails."""
    gate = latch()
    pr = mec.execute(gate.wait_code, block=False)
    assert pr.wait(0.05) is False  # a blocking fetch is now waiting on the controller
    with pytest.raises(InvalidDeferredID):
        mec.get_pending_deferred(pr.result_id)
    gate.set()
    assert [r["id"] for r in pr.r] == [0, 1, 2, 3]


def test_callbacks_are_chained_in_order(mec):
    mec.push({"a": 2})
    pr = mec.pull("a", block=False)
    calls = []

    def first(r):
        calls.append(("first", r))
        return [x * 10 for x in r]

    def second(r, plus, times=1):
        calls.append(("second", r))
        return [(x + plus) * times for x in r]

    pr.add_callback(first)
    pr.add_callback(second, 1, times=2)
    assert pr.r == [42, 42, 42, 42]
    assert calls == [("first", [2, 2, 2, 2]), ("second", [20, 20, 20, 20])]
    # callbacks run once, on the first retrieval only
    assert pr.r == [42, 42, 42, 42]
    assert len(calls) == 2


def test_callbacks_added_while_running_apply(mec, latch):
    gate = latch()
    pr = mec.execute(gate.wait_code, block=False)
    pr.add_callback(lambda rl: [r["id"] for r in rl])
    pr.add_callback(sum)
    assert pr.get_result(block=False) is None
    gate.set()
    assert pr.r == 0 + 1 + 2 + 3


def test_callbacks_are_not_run_on_error(mec):
    pr = mec.execute("1/0", block=False)
    calls = []
    pr.add_callback(calls.append)
    with pytest.raises(CompositeError):
        _ = pr.r
    assert calls == []


def test_result_ids_are_40_hex_chars_unique_and_sort_by_submission(mec):
    prs = [mec.execute(f"v = {i}", block=False) for i in range(6)]
    prs.append(mec.push({"w": 1}, block=False))
    prs.append(mec.pull("v", block=False))
    ids = [pr.result_id for pr in prs]
    for rid in ids:
        assert isinstance(rid, str)
        assert len(rid) == 40
        assert set(rid) <= set(string.hexdigits)
    assert len(set(ids)) == len(ids)
    assert sorted(ids) == ids
    assert sorted(prs) == prs
    assert prs[-1].r == [5, 5, 5, 5]


def test_barrier_fetches_in_submission_order(mec):
    prs = [mec.execute(f"v = {i}", block=False) for i in range(5)]
    order = []
    for i, pr in enumerate(prs):
        pr.add_callback(lambda r, i=i: order.append(i) or r)
    assert mec.barrier(list(reversed(prs))) is None
    assert order == [0, 1, 2, 3, 4]
    assert all(pr.done() for pr in prs)
    assert [[r["number"] for r in pr.r] for pr in prs] == [[n] * 4 for n in range(1, 6)]


def test_barrier_swallows_errors_but_r_reraises(mec):
    ok = mec.execute("a = 1", block=False)
    bad = mec.execute("1/0", block=False)
    mec.barrier([bad, ok])  # must not raise
    assert bad.done() and ok.done()
    assert [r["id"] for r in ok.r] == [0, 1, 2, 3]
    with pytest.raises(CompositeError) as first:
        _ = bad.r
    with pytest.raises(CompositeError) as second:
        _ = bad.r
    assert first.value is second.value
    # the result was fetched by barrier: the controller no longer holds it
    with pytest.raises(InvalidDeferredID):
        mec.get_pending_deferred(bad.result_id)


def test_barrier_rejects_non_pending_results(mec):
    pr = mec.execute("a = 1", block=False)
    with pytest.raises(NotAPendingResult):
        mec.barrier([pr, pr.result_id])
    with pytest.raises(NotAPendingResult):
        mec.barrier([None])
    # nothing was consumed by the rejected barrier
    assert [r["id"] for r in pr.r] == [0, 1, 2, 3]


def test_barrier_of_nothing(mec):
    assert mec.barrier([]) is None


def test_flush_forgets_every_unfetched_result(mec):
    kept = mec.execute("a = 30", block=False)
    kept_value = kept.r
    mec.block = False
    prs = [
        mec.execute("a = 30"),
        mec.push({"b": 10}),
        mec.pull("a"),
        mec.pull(("a", "b")),
        mec.execute("c = 1"),
        mec.scatter("s", list(range(8))),
        mec.gather("s"),
        mec.map(lambda x: 2 * x, range(8)),
    ]
    mec.block = True
    mec.flush()
    for pr in prs:
        with pytest.raises(InvalidDeferredID):
            pr.get_result()
        with pytest.raises(InvalidDeferredID):
            mec.get_pending_deferred(pr.result_id)
    # a result retrieved before the flush is still in its PendingResult
    assert kept.r is kept_value
    # the client goes on working after a flush
    assert mec.pull("a") == [30, 30, 30, 30]


def test_flush_after_results_completed(mec):
    prs = [mec.execute(f"v = {i}", block=False) for i in range(4)]
    assert mec.pull("v") == [3, 3, 3, 3]  # FIFO per engine: every command above has run
    mec.flush()
    for pr in prs:
        with pytest.raises(InvalidDeferredID):
            _ = pr.r


def test_flush_aborts_a_waiting_fetch(mec, latch):
    """seed test_save_get_delete: deleting an id while a fetch waits aborts the waiter."""
    gate = latch()  # stays closed: the command cannot end, only the flush ends the wait
    pr = mec.execute(gate.wait_code, block=False)
    assert pr.wait(0.05) is False
    mec.flush()
    with pytest.raises(AbortedPendingDeferredError):
        call_within(lambda: pr.r, message="the flushed result's fetch")


def test_clear_pending_results_is_flush(mec):
    prs = [mec.execute("a = 1", block=False) for _ in range(3)]
    mec.clear_pending_results()
    for pr in prs:
        with pytest.raises(InvalidDeferredID):
            _ = pr.r


def test_none_result_counts_as_ready(mec):
    pr = mec.push({"a": 1}, block=False)
    wait_until(pr.done, message="the push to complete")
    assert pr.get_result("NOTREADY", block=False) == [None, None, None, None]
    assert pr.r == [None, None, None, None]


def test_none_result_fetched_nonblocking_without_waiting_first(mec):
    pr = mec.clear_queue(block=False)
    value = poll_result(pr)
    assert value == [None, None, None, None]


def test_pending_result_repr(mec, latch):
    gate = latch()
    pr = mec.execute(gate.wait_code, block=False)
    assert "PendingResult" in plain_repr(pr)
    gate.set()
    _ = pr.r
    assert "PendingResult" in plain_repr(pr)


def test_invalid_deferred_id_names_the_id(mec):
    # contract decision 12
    pr = mec.execute("a = 1", block=False)
    _ = pr.r
    with pytest.raises(InvalidDeferredID) as exc:
        mec.get_pending_deferred(pr.result_id)
    assert pr.result_id in str(exc.value)
    assert "%r" not in str(exc.value)


def test_a_failing_callback_is_raised_again_not_rerun(mec: multiengine.MultiEngineClient) -> None:
    calls = []

    def boom(value: object) -> object:
        calls.append(value)
        raise RuntimeError("callback failed")

    pr = mec.pull("id", targets=0, block=False)
    pr.add_callback(boom)
    for _ in range(2):
        with pytest.raises(RuntimeError, match="callback failed"):
            pr.get_result()
    assert calls == [[0]]


def test_flush_clears_every_pending_result(mec: multiengine.MultiEngineClient) -> None:
    # seed §B: test_clear_pending_deferreds. Contract decision 2: flush() clears *every* pending
    # result (the seed cleared every other one; its test could not tell).
    prs = [
        pending(mec.execute("a=10", block=False)),
        pending(mec.push(dict(b=10), block=False)),
        pending(mec.pull(("a", "b"), block=False)),
    ]
    mec.flush()
    for pr in prs:
        with pytest.raises(InvalidDeferredID):
            pr.get_result()
        with pytest.raises(InvalidDeferredID):
            mec.get_pending_deferred(pr.result_id, True)
    # the commands themselves ran
    assert mec.pull(("a", "b")) == 4 * [[10, 10]]


def test_flush_clears_pending_scatter_gather_and_map(mec: multiengine.MultiEngineClient) -> None:
    # seed §B: ISynchronousMultiEngineCoordinatorTestCase.test_clear_pending_deferreds, which never
    # ran in the seed (shadowed by the MRO, and it called map(..., block=False)); map's
    # non-blocking form is mapper(block=False).map.
    prs = [
        pending(mec.scatter("a", range(16), block=False)),
        pending(mec.gather("a", block=False)),
        pending(mec.mapper(block=False).map(lambda x: x, range(16))),
    ]
    mec.flush()
    for pr in prs:
        with pytest.raises(InvalidDeferredID):
            pr.get_result()
