"""The result store: results in memory up to a budget and in SQLite always, read back
after they leave memory; the history of jobs and tasks. Against a real results.db file
(the writer thread included), and through the hub with fake engines."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import msgpack
import pytest

from multiengine.controller.store import ENTRY_OVERHEAD, HistoryRow, ResultStore, Stored
from multiengine.wire import protocol as P

from .fakes import FakeCluster, task


@pytest.fixture
def store(tmp_path: Path):
    s = ResultStore(str(tmp_path / "results.db"), budget=10 * (1000 + ENTRY_OVERHEAD))
    yield s
    s.close()


def keep(s: ResultStore, key: str, size: int = 1000, owner: bytes | None = None) -> None:
    s.put(key, Stored({"k": key}, [b"c", b"x" * (size - 1)], owner), size)


def test_results_past_the_budget_leave_memory_and_are_read_back(store: ResultStore) -> None:
    dropped: list[str] = []
    store.on_evict("j:", dropped.append)
    for i in range(30):
        keep(store, f"j:{i:03d}")
        store.turn()
    store.sync()
    store.turn()  # what the writer committed may now leave memory
    assert store.memory_bytes <= store.budget
    assert dropped == [f"j:{i:03d}" for i in range(20)]  # the oldest left first
    for i in range(30):
        got = store.load(f"j:{i:03d}")
        assert got is not None and got.meta == {"k": f"j:{i:03d}"}
        assert got.frames == [b"c", b"x" * 999]
    assert store.counts("j:")[2] == 30  # every kept result is on disk


def test_nothing_leaves_memory_before_it_is_on_disk(tmp_path: Path) -> None:
    s = ResultStore(None, budget=1)  # in memory only: writes happen at turn()
    dropped: list[str] = []
    s.on_evict("t:", dropped.append)
    keep(s, "t:1")
    assert dropped == [] and s.in_memory("t:1")  # not written yet: it stays
    s.turn()
    s.turn()
    assert dropped == ["t:1"] and s.load("t:1") is not None


def test_deleted_results_are_gone_at_once_even_before_the_writer_catches_up(
    store: ResultStore,
) -> None:
    keep(store, "j:a", owner=b"c1")
    keep(store, "j:b", owner=b"c2")
    keep(store, "t:1")
    store.sync()
    store.delete(["j:a"])
    store.delete_owner(b"c2")
    store.delete_prefix("t:")
    assert store.load("j:a") is None and store.load("j:b") is None and store.load("t:1") is None
    store.sync()
    assert store.counts("")[2] == 0


def test_the_file_is_sqlite_in_wal_mode_and_keeps_what_was_committed(tmp_path: Path) -> None:
    path = tmp_path / "results.db"
    s = ResultStore(str(path), budget=1 << 20)
    keep(s, "j:x")
    s.sync()
    other = sqlite3.connect(path)  # another process would see it: it is committed
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert other.execute("SELECT key FROM results").fetchall() == [("j:x",)]
    other.close()
    s.close()


def test_history_newest_first_filtered_and_trimmed(tmp_path: Path) -> None:
    s = ResultStore(str(tmp_path / "r.db"), budget=1 << 20, history_limit=5)
    for i in range(8):
        status = P.FAILED if i % 3 == 0 else P.SUCCEEDED
        s.record(
            HistoryRow(
                "task",
                str(i),
                f"t{i}",
                str(i % 2),
                status,
                i,
                i,
                float(i),
                0.0,
                0,
                "ValueError" if status == P.FAILED else None,
            )
        )
    s.sync()
    every = s.history()
    assert [r["id"] for r in every] == ["7", "6", "5", "4", "3"]  # 5 kept, newest first
    assert [r["id"] for r in s.history(status=P.FAILED)] == ["6", "3"]
    assert [r["id"] for r in s.history(engine=1)] == ["7", "5", "3"]
    assert [r["id"] for r in s.history(since=6.0)] == ["7", "6"]
    assert [r["id"] for r in s.history(limit=2)] == ["7", "6"]
    assert every[-1]["error"] == "ValueError"
    s.close()


def test_a_commit_of_thousands_of_rows_keeps_every_one_in_order(tmp_path: Path) -> None:
    # a commit's rows go in several statements (a power of two rows each): none is lost,
    # repeated or reordered, whatever the count
    s = ResultStore(str(tmp_path / "r.db"), budget=1 << 30, history_limit=10**6)
    for n in (3001, 5000, 1):
        keys = [f"t:{n}-{i}" for i in range(n)]
        for i, key in enumerate(keys):
            keep(s, key, size=10)
            s.record(HistoryRow("task", key, "", "0", P.SUCCEEDED, i, i, i, 0.0, 0, None))
        s.sync()
        assert [r["id"] for r in s.history(limit=n)] == keys[::-1]  # newest first
        assert s.counts(f"t:{n}-")[2] == n
        s.delete(keys)
        s.sync()
        assert s.counts(f"t:{n}-")[2] == 0
    s.close()


# ---------------------------------------------------------------- through the hub
def small_budget(c: FakeCluster, results: int) -> None:
    c.hub.store.budget = results * (ENTRY_OVERHEAD + 20)


def test_task_results_past_the_budget_are_still_returned_and_counted() -> None:
    c = FakeCluster(n=1)
    small_budget(c, 3)
    tids = []
    for i in range(10):
        (tid,) = c.submit(task(f"t{i}"))
        c.reply(0, ok=(i != 4))
        tids.append(tid)
    assert len(c.hub.scheduler.tasks) <= 4  # the rest left memory, Task records included
    items = c.results(*tids)
    assert [items[t].state for t in tids] == [
        P.FAILED if i == 4 else P.SUCCEEDED for i in range(10)
    ]
    assert c.error_of(tids[4]) == "ValueError"
    status = c.hub.scheduler.table.status(True)
    assert status[P.SUCCEEDED] == [t for t in tids if t != tids[4]] and status[P.FAILED] == [
        tids[4]
    ]
    assert c.abort(tids[0]) == "Task Already Completed"
    c.request({"t": P.TASK_CLEAR})
    assert c.results(tids[0])[tids[0]].state == P.UNKNOWN_TASK
    assert c.hub.scheduler.table.status(False)[P.SUCCEEDED] == 0


def test_results_of_calls_that_did_not_block_past_the_budget_are_fetched_once() -> None:
    c = FakeCluster(n=1)
    small_budget(c, 2)
    jobs = []
    for i in range(6):
        (ack,) = c.send(
            {
                "t": P.SUBMIT,
                "cmd": "execute",
                "targets": [0],
                "block": False,
                "desc": f"x{i}",
                "cid": c.CLIENT,
            }
        )
        jobs.append(ack.header["job"])
        c.reply(0)
    assert len(c.hub.desk.jobs.values()) <= 3
    for job in jobs:
        answer = c.request({"t": P.FETCH, "job": job, "block": True})
        assert answer.header["t"] == P.RESULT and answer.header["job"] == job
        assert answer.buffers == [b"value"]
        again = c.request({"t": P.FETCH, "job": job, "block": True})
        assert again.header["ename"] == "InvalidDeferredID"  # fetched once


def test_flush_forgets_results_in_memory_and_on_disk() -> None:
    c = FakeCluster(n=1)
    small_budget(c, 1)
    jobs = []
    for _ in range(4):
        (ack,) = c.send(
            {
                "t": P.SUBMIT,
                "cmd": "keys",
                "targets": [0],
                "block": False,
                "desc": "k",
                "cid": c.CLIENT,
            }
        )
        jobs.append(ack.header["job"])
        c.reply(0)
    c.request({"t": P.FLUSH, "cid": c.CLIENT})
    for job in jobs:
        assert c.request({"t": P.FETCH, "job": job, "block": False}).header["t"] == P.ERROR
    assert c.hub.status()["pending_results"] == 0


def test_every_job_and_task_leaves_a_history_record() -> None:
    c = FakeCluster(n=1)
    c.send({"t": P.SUBMIT, "cmd": "execute", "targets": [0], "block": True, "desc": "x = 1"})
    c.reply(0, ok=False, ename="NameError")
    (tid,) = c.submit(task("work", retries=1))
    c.reply(0, ok=False, flags=P.TaskFlags(None, True))
    c.advance(2)
    c.reply(0)
    rows = c.hub.store.history()
    assert [(r["kind"], r["description"], r["status"]) for r in rows] == [
        ("task", "work", P.SUCCEEDED),
        ("job", "x = 1", P.FAILED),
    ]
    assert rows[0]["retries"] == 1 and rows[0]["engines"] == "0" and rows[0]["id"] == str(tid)
    assert rows[1]["error"] == "NameError"
    assert rows[0]["duration"] is not None
    assert msgpack.unpackb(msgpack.packb(rows)) == rows  # plain values: they travel as they are
