"""The store writes a commit's rows as few statements (one per kind) with the same end
state: what was written and deleted within one commit never reaches the file, and what
is kept is on disk exactly as if each write had gone on its own."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from multiengine.controller.store import ResultStore, Stored


def rows(path: Path) -> dict[str, str | None]:
    with sqlite3.connect(path) as db:
        return dict(db.execute("SELECT key, state FROM results").fetchall())


def test_a_task_row_written_marked_and_deleted_in_one_commit_leaves_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "results.db"
    s = ResultStore(str(path), budget=1 << 20)
    try:
        s.persist("q:1", Stored({}, [b"spec"], None, "waiting 0 0 0"))
        s.mark("q:1", "running 0 0 0 3")
        s.put("t:1", Stored({"item": 1}, [b"value"], None, "succeeded"), 5)
        s.unpersist("q:1")
        s.persist("q:2", Stored({}, [b"spec"], None, "waiting 0 0 0"))
        s.mark("q:2", "running 0 0 0 4")  # folded into the row written in the same commit
        s.persist("q:3", Stored({}, [b"spec"], None, "waiting 0 0 0"))
        s.sync()
        assert rows(path) == {"t:1": "succeeded", "q:2": "running 0 0 0 4", "q:3": "waiting 0 0 0"}
        s.mark("q:3", "running 0 0 0 5")  # a later commit: an update of the row on disk
        s.unpersist("q:2")
        s.put("t:2", Stored({"item": 2}, [b"value"], None, "failed"), 5)
        s.sync()
        assert rows(path) == {"t:1": "succeeded", "t:2": "failed", "q:3": "running 0 0 0 5"}
        assert s.load("t:2") is not None
    finally:
        s.close()


def test_deletes_by_prefix_and_owner_keep_their_place_among_the_writes(tmp_path: Path) -> None:
    path = tmp_path / "results.db"
    s = ResultStore(str(path), budget=1 << 20)
    try:
        s.put("t:1", Stored({}, [b"a"], None, "succeeded"), 1)
        s.put("j:1", Stored({}, [b"a"], b"client-a"), 1)
        s.delete_prefix("t:")  # deletes t:1 (written before it in the same commit)
        s.delete_owner(b"client-a")
        s.put("t:2", Stored({}, [b"b"], None, "succeeded"), 1)  # after it: kept
        s.delete(["t:9"])  # a key never written
        s.sync()
        assert rows(path) == {"t:2": "succeeded"}
    finally:
        s.close()
