"""PendingResult as a concurrent.futures.Future, and the metadata every result carries."""

from __future__ import annotations

import concurrent.futures as cf
import threading
from collections.abc import Callable

import pytest
from helpers import HANG, Latch, call_within

import multiengine
from multiengine import PendingResult, ResultList
from multiengine.errors import CompositeError


def test_a_pending_result_is_a_future(mec: multiengine.MultiEngineClient) -> None:
    pr = mec.pull("id", block=False)
    assert isinstance(pr, cf.Future)
    assert pr.result(HANG) == [0, 1, 2, 3]
    assert pr.exception() is None
    assert pr.done() and not pr.cancelled() and pr.r == [0, 1, 2, 3]


def test_as_completed_yields_results_as_they_finish(
    mec: multiengine.MultiEngineClient, latch: Callable[[], Latch]
) -> None:
    gate = latch()
    slow = mec.execute(gate.wait_code, targets=0, block=False)
    quick = [mec.pull("id", targets=t, block=False) for t in (1, 2, 3)]
    seen: list[PendingResult] = []
    for fut in cf.as_completed([slow, *quick], timeout=HANG):
        seen.append(fut)  # type: ignore[arg-type]
        if len(seen) == 3:  # the three quick ones; the slow one waits for the gate
            assert set(seen) == set(quick)
            gate.set()
    assert seen[-1] is slow
    assert [pr.result() for pr in quick] == [[1], [2], [3]]
    assert isinstance(slow.result(), ResultList)


def test_wait_returns_the_done_and_the_not_done(
    mec: multiengine.MultiEngineClient, latch: Callable[[], Latch]
) -> None:
    gate = latch()
    slow = mec.execute(gate.wait_code, targets=0, block=False)
    quick = mec.pull("id", targets=1, block=False)
    done, not_done = cf.wait([slow, quick], timeout=HANG, return_when=cf.FIRST_COMPLETED)
    assert done == {quick} and not_done == {slow}
    gate.set()
    done, not_done = cf.wait([slow, quick], timeout=HANG)
    assert done == {slow, quick} and not not_done


def test_result_with_a_timeout_raises_timeout_error_then_gives_the_value(
    mec: multiengine.MultiEngineClient, latch: Callable[[], Latch]
) -> None:
    gate = latch()
    pr = mec.execute(gate.wait_code + "\nv = 5", targets=2, block=False)
    with pytest.raises(TimeoutError):
        pr.result(timeout=0.05)
    with pytest.raises(cf.TimeoutError):
        pr.exception(timeout=0.05)
    assert not pr.done()
    gate.set()
    assert len(pr.result(timeout=HANG)) == 1
    assert mec.pull("v", targets=2) == [5]


def test_exception_gives_the_composite_error(mec: multiengine.MultiEngineClient) -> None:
    pr = mec.execute("1/0", targets=[0, 1], block=False)
    e = pr.exception(HANG)
    assert isinstance(e, CompositeError)
    with pytest.raises(CompositeError) as raised:
        pr.result()
    assert raised.value is e


def test_done_callbacks_run_on_the_delivery_thread(
    mec: multiengine.MultiEngineClient, latch: Callable[[], Latch]
) -> None:
    gate = latch()
    pr = mec.execute(gate.wait_code, targets=3, block=False)
    called = threading.Event()
    where: list[str] = []

    def callback(fut: cf.Future[object]) -> None:
        where.append(threading.current_thread().name)
        assert fut is pr and fut.done()
        called.set()

    pr.add_done_callback(callback)
    assert not called.is_set()
    gate.set()
    assert called.wait(HANG)
    assert where == ["multiengine-callbacks"]
    # added once done: it runs too, on the same thread
    again = threading.Event()
    pr.add_done_callback(lambda fut: again.set())
    assert again.wait(HANG)


def test_cancel_takes_back_a_call_that_has_not_started(
    mec: multiengine.MultiEngineClient, latch: Callable[[], Latch]
) -> None:
    gate = latch()
    busy = mec.execute(gate.wait_code, targets=1, block=False)
    queued = mec.execute("never = 1", targets=1, block=False)
    assert queued.cancel() is True
    assert queued.cancelled() and queued.done()
    with pytest.raises(cf.CancelledError):
        queued.result()
    assert busy.cancel() is False  # it runs
    gate.set()
    busy.result(HANG)
    assert mec.execute("'never' in dir()", targets=1)[0]["display"]["repr"] == "False"


def test_the_seed_api_still_works_beside_the_future_one(mec: multiengine.MultiEngineClient) -> None:
    pr = mec.pull("id", block=False)
    pr.add_callback(sum)
    assert pr.get_result() == 6
    assert pr.result() == 6 and pr.r == 6


def test_metadata_of_a_pending_result(
    mec: multiengine.MultiEngineClient, latch: Callable[[], Latch]
) -> None:
    pr = mec.execute("import time\ntime.sleep(0.01 * (id + 1))", block=False)
    assert pr.metadata == [] and pr.wall_time is None
    assert pr.elapsed is not None and pr.elapsed >= 0  # counts while it runs
    pr.result(HANG)
    assert pr.engine_ids == [0, 1, 2, 3]
    assert pr.submitted is not None
    for m in pr.metadata:
        assert m["status"] == "ok"
        assert m["submitted"] == pr.submitted
        assert pr.submitted - 0.001 <= m["started"] <= m["completed"]
        assert m["duration"] is not None and 0 < m["duration"]
    durations = [m["duration"] for m in pr.metadata]
    assert pr.serial_time >= max(durations)
    assert pr.serial_time == pytest.approx(sum(durations))
    assert pr.wall_time is not None and pr.wall_time >= max(durations)
    assert pr.elapsed == pr.wall_time
    assert pr.completed == [m["completed"] for m in pr.metadata]


def test_a_blocking_execute_result_carries_metadata(mec: multiengine.MultiEngineClient) -> None:
    result = mec.execute("print(id)", targets=[1, 3])
    assert result.engine_ids == [1, 3]
    assert result.stdout == ["1\n", "3\n"]
    assert all(
        s is not None and c is not None and s <= c
        for s, c in zip(result.started, result.completed, strict=True)
    )
    assert result.wall_time is not None and result.serial_time >= 0


def test_html_tables(mec: multiengine.MultiEngineClient) -> None:
    result = mec.execute("x = '<b>'\nx", targets=[0, 2])
    table = result._repr_html_()
    assert table.startswith("<table>") and "&lt;b&gt;" in table and "<b>" not in table
    assert "<td>0</td>" in table and "<td>2</td>" in table
    pr = mec.execute("1/0", targets=1, block=False)
    pr.exception(HANG)
    table = pr._repr_html_()
    assert "ZeroDivisionError" in table and "error" in table


def test_wait_interactive_waits_for_every_result(
    mec: multiengine.MultiEngineClient, capsys: pytest.CaptureFixture[str]
) -> None:
    prs = [mec.pull("id", targets=t, block=False) for t in range(4)]
    call_within(lambda: multiengine.wait_interactive(prs), message="wait_interactive")
    assert all(pr.done() for pr in prs)
    assert "4/4" in capsys.readouterr().err
