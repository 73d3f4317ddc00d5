"""Results past the controller's memory budget, on a real cluster: kept in results.db,
fetched back by this client and by a client in another process; the history of every
job and task; finished tasks run again."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable

from helpers import call_within, wait_until

import multiengine
from multiengine import MapTask


def square(x: int) -> int:
    return x * x


def fail_on(x: int) -> int:
    if x == 3:
        raise ValueError("three")
    return x


def test_results_past_the_budget_come_back_from_results_db(
    fresh_cluster: Callable[..., multiengine.Cluster],
) -> None:
    cluster = fresh_cluster(2, result_memory_budget="64KB")
    tc = cluster.task_client()
    mec = cluster.multiengine_client()
    db = cluster.cluster_dir.path / "results.db"
    assert db.exists()
    tids = [tc.run(MapTask(square, (i,))) for i in range(300)]
    tc.barrier(tids)
    prs = [mec.execute(f"v = {i}", targets=i % 2, block=False) for i in range(200)]
    mec.barrier(prs[-1:])  # fetched: 199 calls' results stay kept
    wait_until(lambda: mec.status()["results_on_disk"] == 300 + 199)  # all written through
    status = mec.status()
    assert status["results_in_memory_bytes"] <= 64_000
    assert status["results_on_disk"] >= 300 + 199  # every kept result is on disk
    assert status["results_in_memory"] < 300  # most have left memory
    assert [tc.get_task_result(t) for t in tids] == [i * i for i in range(300)]
    assert tc.queue_status() == {"scheduled": 0, "pending": 0, "succeeded": 300, "failed": 0}
    # a client in another process fetches results this one left behind
    job_ids = [pr.result_id for pr in prs[:150]]
    script = (
        "import json, sys, multiengine\n"
        f"mec = multiengine.MultiEngineClient(cluster_dir={str(cluster.cluster_dir.path)!r})\n"
        "ids = json.loads(sys.argv[1])\n"
        "print(json.dumps([mec.get_pending_deferred(i)[0]['input']['raw'] for i in ids]))\n"
    )
    out = call_within(
        lambda: subprocess.run(
            [sys.executable, "-c", script, json.dumps(job_ids)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [f"v = {i}" for i in range(150)]
    for pr in prs[150:]:
        assert pr.r[0]["input"]["raw"].startswith("v = ")
    with sqlite3.connect(db) as other:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tc.clear()
    assert tc.queue_status()["succeeded"] == 0
    assert tc.map(square, [7]) == [49]


def test_history_records_every_task_and_call_newest_first(
    fresh_cluster: Callable[..., multiengine.Cluster],
) -> None:
    cluster = fresh_cluster(2, result_memory_budget="16KB")
    tc = cluster.task_client()
    mec = cluster.multiengine_client()
    before = time.time()
    tids = [tc.run(MapTask(fail_on, (i,))) for i in range(6)]
    tc.barrier(tids)
    mec.execute("x = 1", targets=0)
    # the newest: the execute (a direct call's record comes within 50 ms of its answer,
    # docs/protocol.md §6, "A direct path on one host")
    records = wait_until(
        lambda: (got := tc.history()) and got[0]["kind"] == "job" and got,
        message="the execute's record",
    )
    tasks = tc.history(kind="task")
    assert sorted(r["id"] for r in tasks) == tids
    failed = tc.history(status="failed")
    assert [(r["id"], r["error"]) for r in failed] == [(tids[3], "ValueError")]
    assert all(r["completed"] >= before for r in records)
    assert len(tc.history(limit=2)) == 2
    on_0 = tc.history(engine=0)
    assert on_0 and all(0 in r["engines"] for r in on_0)
    assert tc.history(since=time.time() + 3600) == []
    row = next(r for r in tasks if r["id"] == tids[0])
    assert row["description"] == "MapTask(fail_on)" and row["status"] == "succeeded"
    assert row["submitted"] <= row["started"] <= row["completed"]


def test_resubmit_runs_finished_tasks_again_under_new_ids(
    fresh_cluster: Callable[..., multiengine.Cluster],
) -> None:
    cluster = fresh_cluster(2, result_memory_budget="8KB")
    tc = cluster.task_client()
    tids = [tc.run(MapTask(square, (i,))) for i in range(40)]
    tc.barrier(tids)
    again = tc.resubmit(tids[:5])  # the first ones have left memory by now
    assert len(set(again) | set(tids)) == 45
    assert [tc.get_task_result(t, block=True) for t in again] == [0, 1, 4, 9, 16]
    try:
        tc.resubmit([10**6])
    except IndexError as e:
        assert "not a finished task" in str(e)
    else:
        raise AssertionError("resubmit of an unknown task must fail")


def test_a_client_that_leaves_10000_results_behind_and_a_new_one_that_fetches_them(
    fresh_cluster: Callable[..., multiengine.Cluster],
) -> None:
    cluster = fresh_cluster(2, result_memory_budget="1MB")
    script = (
        "import json, multiengine\n"
        f"mec = multiengine.MultiEngineClient(cluster_dir={str(cluster.cluster_dir.path)!r})\n"
        "prs = [mec.execute(f'w = {i}', targets=i % 2, block=False) for i in range(10000)]\n"
        "mec.barrier(prs[-2:])\n"  # (engines run in order: all are done)
        "print(json.dumps([pr.result_id for pr in prs]))\n"
        "mec.close()\n"
    )
    out = call_within(
        lambda: subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
        ),
        timeout=150,
    )
    assert out.returncode == 0, out.stderr
    ids = json.loads(out.stdout)
    assert len(set(ids)) == 10000
    with multiengine.MultiEngineClient(cluster_dir=cluster.cluster_dir.path) as mec:
        assert mec.status()["pending_results"] >= 10000 - 2
        got = [mec.get_pending_deferred(i)[0]["input"]["raw"] for i in ids[:-2]]
        assert got == [f"w = {i}" for i in range(10000 - 2)]
        assert mec.status()["pending_results"] == 0  # each fetched once, then gone
