"""How the dashboard folds ``monitor`` answers into what its pages draw, with made-up
answers (no process): bars per command, a task tried twice on one engine, CPU percent,
a restarted engine, and a controller that restarted (its events numbered anew)."""

from __future__ import annotations

from typing import Any

from multiengine.dashboard import Snapshot, _engine_rows, _stream_rows


def answer(run: str, seq: int, events: list[list[Any]], **more: Any) -> dict[str, Any]:
    status = {
        "engines": [{"id": 0, "pid": 10, "host": "h", "queue": 0, "running": None}],
        "tasks": {"scheduled": 0, "pending": 0, "succeeded": more.get("done", 0), "failed": 0},
    }
    return {"status": status, "run": run, "seq": seq, "events": events, "usage": more.get("u", [])}


def test_starts_and_ends_make_bars_and_a_retry_on_one_engine_makes_two():
    s = Snapshot()
    s.take(
        answer(
            "r1", 2, [[1, 10.0, 0, "task 5", "start", "t"], [2, 11.0, 0, "task 5", "failed", "t"]]
        ),
        100,
    )
    s.take(answer("r1", 3, [[3, 12.0, 0, "task 5", "start", "t"]]), 101)
    rows = _stream_rows(s, 20.0)
    assert rows["start"] == [10_000.0, 12_000.0]
    assert rows["end"] == [11_000.0, 20_000.0]  # the second still runs: up to now
    assert [d.endswith(k) for d, k in zip(rows["desc"], ("(failed)", "(running)"))] == [True, True]
    assert s.seq == 3


def test_cpu_percent_from_two_reports_and_none_after_a_restart():
    s = Snapshot()
    s.take(answer("r1", 0, [], u=[{"engine": 0, "rss": 2_000_000, "cpu": 1.0, "at": 50.0}]), 1)
    s.take(answer("r1", 0, [], u=[{"engine": 0, "rss": 2_000_000, "cpu": 1.5, "at": 51.0}]), 2)
    assert s.cpu_percent[0] == 50.0
    assert _engine_rows(s)["memory"] == ["2.0 MB"] and _engine_rows(s)["cpu"] == ["50 %"]
    s.take(answer("r1", 0, [], u=[{"engine": 0, "rss": 1_000_000, "cpu": 0.1, "at": 52.0}]), 3)
    assert s.cpu_percent[0] == 50.0  # not a negative figure from the new process


def test_a_restarted_controller_closes_what_ran_and_is_asked_for_all_its_events():
    s = Snapshot()
    s.take(answer("r1", 7, [[7, 10.0, 0, "task 1", "start", "t"]]), 100)
    s.take(answer("r2", 9, [[9, 20.0, 0, "task 1", "start", "t"]]), 101)
    assert s.seq == 0  # the next poll asks the new controller from its first event
    s.take(answer("r2", 9, [[n, 20.0 + n, 0, f"task {n}", "start", "t"] for n in (8, 9)]), 102)
    rows = _stream_rows(s, 200.0)
    assert rows["desc"][0].endswith("(lost)") and rows["end"][0] == 101_000.0
    assert len(rows["start"]) == 3  # the old bar kept, beside the new controller's two
    assert s.seq == 9
