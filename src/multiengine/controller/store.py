"""Results that survive: kept in memory up to a budget, and in SQLite always.

Every result the controller keeps for a client (a non-blocking call's, a task's) is
written to ``results.db`` in the cluster directory, and the history of every job and
task goes there too. Memory holds results only up to ``result_memory_budget`` bytes:
past it the oldest results that are already on disk leave memory entirely (their
``Job`` or ``Task`` record included, so a million unfetched results cost disk, not
RAM), and a fetch reads them back.

Writing happens on one writer thread with its own connection (SQLite releases the GIL
while it works, so the controller's loop goes on); the loop reads with a second
connection (WAL mode lets it read while the writer writes). The loop learns what has
been written at each turn (:meth:`ResultStore.turn`), and only then may a result leave
memory. ``path=None`` keeps everything in memory (no file, no thread): the hub's unit
tests use it.

Tables: ``results`` (key, owner, meta, frames, nbytes) and ``history`` (one row per job
and task: kind, id, description, engines, status, times, retries, error).
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import msgpack

__all__ = ["ENTRY_OVERHEAD", "HistoryRow", "ResultStore", "Stored"]

log = logging.getLogger("multiengine.controller")

# Seconds between two commits of the writer: what arrives in between shares a transaction
# (a result is on disk at most this long after it is kept; a sync() does not wait).
COMMIT_EVERY = 0.02
HANDOVER_AT_MOST = 5000  # writes gathered before they go to the writer at once
# What one kept result costs in memory besides its frames (its Job or Task, dict slots):
# counted against the budget so that many tiny results leave memory too.
ENTRY_OVERHEAD = 1024

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    key TEXT PRIMARY KEY,   -- 'j:<job id>' or 't:<task id>'
    owner BLOB,             -- the client that may flush it (jobs)
    state TEXT,             -- a task's: succeeded or failed
    meta BLOB,              -- msgpack: what decodes the frames (parts, task item)
    frames BLOB,            -- msgpack list of the frames' bytes
    nbytes INTEGER
);
CREATE INDEX IF NOT EXISTS results_owner ON results(owner);
CREATE TABLE IF NOT EXISTS history (
    kind TEXT,              -- 'job' or 'task'
    id TEXT,
    description TEXT,
    engines TEXT,           -- engine ids, comma separated
    status TEXT,            -- succeeded, failed
    submitted REAL,
    started REAL,
    completed REAL,
    duration REAL,
    retries INTEGER,
    error TEXT              -- the exception's type name, if it failed
);
"""
# history is an append-only log: rows come in the order jobs and tasks finish, so rowid
# order is completion order, and "newest first" needs no index (each index would cost
# every finished job a B-tree insert on the writer thread).


class HistoryRow(NamedTuple):
    """One finished job or task, as the history table holds it (columns in order)."""

    kind: str
    id: str
    description: str
    engines: str
    status: str
    submitted: float | None
    started: float | None
    completed: float | None
    duration: float | None
    retries: int
    error: str | None


@dataclass(slots=True)
class _Done:
    """What one commit of the writer made true on disk."""

    written: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    owners: list[bytes] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Stored:
    """A result as it is kept: what decodes it, its frames, who may flush it."""

    meta: Any
    frames: list[Any]
    owner: bytes | None = None
    state: str | None = None


class ResultStore:
    """The results kept for clients, and the history, in memory and in ``results.db``."""

    def __init__(
        self,
        path: str | None,
        budget: int,
        history_limit: int = 1_000_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.budget = budget
        self.history_limit = history_limit
        self.clock = clock
        # in memory: key -> bytes it counts, oldest first; and which of them are on disk
        self._memory: OrderedDict[str, int] = OrderedDict()
        self._on_disk: set[str] = set()  # of those in memory
        self.memory_bytes = 0
        self._history_count = 0  # rows in history (the writer's count)
        self._evict: dict[str, Callable[[str], None]] = {}  # key prefix -> drop it from memory
        self._written: deque[_Done] = deque()  # what the writer has committed, by batch
        # deleted here but maybe not yet on disk: reads must not see them
        self._gone_keys: set[str] = set()
        self._gone_owners: list[bytes] = []
        self._gone_prefixes: list[str] = []
        self._pending: list[tuple[Any, ...]] = []  # writes not yet handed to the writer
        self._handover_at = 0.0  # when the next handover may happen (monotonic)
        self._thread: threading.Thread | None = None
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        if path is None:
            self._reader = sqlite3.connect(":memory:", check_same_thread=False)
            self._reader.executescript(SCHEMA)
            self._writer = self._reader
        else:
            self._writer = _connect(path)
            self._writer.executescript(SCHEMA)
            self._writer.commit()
            (self._history_count,) = self._writer.execute("SELECT count(*) FROM history").fetchone()
            self._reader = _connect(path)
            self._thread = threading.Thread(
                target=self._write_loop, name="multiengine-store", daemon=True
            )
            self._thread.start()

    # ------------------------------------------------------------ keeping results
    def on_evict(self, prefix: str, drop: Callable[[str], None]) -> None:
        """``drop(key)`` removes a result whose key starts with ``prefix`` from memory."""
        self._evict[prefix] = drop

    def put(self, key: str, stored: Stored, nbytes: int) -> None:
        """Keep a result: in memory now, on disk soon (this turn's end)."""
        cost = nbytes + ENTRY_OVERHEAD
        old = self._memory.pop(key, None)
        if old is not None:
            self.memory_bytes -= old
        self._memory[key] = cost
        self.memory_bytes += cost
        # the frames are packed by the writer thread, not here
        self._pending.append(
            ("put", key, stored.owner, stored.state, stored.meta, list(stored.frames), nbytes)
        )

    def load(self, key: str) -> Stored | None:
        """A result that has left memory, read back from disk (None if there is none)."""
        if key in self._gone_keys or any(key.startswith(p) for p in self._gone_prefixes):
            return None
        sql = "SELECT owner, state, meta, frames FROM results WHERE key = ?"
        row = self._reader.execute(sql, (key,)).fetchone()
        if row is None:
            return None
        owner, state, meta, frames = row
        if owner is not None and owner in self._gone_owners:
            return None
        return Stored(msgpack.unpackb(meta), msgpack.unpackb(frames), owner, state)

    def states(self, prefix: str) -> list[tuple[str, str | None]]:
        """(key, state) of every result with ``prefix`` that has left memory."""
        self.sync()
        lo, hi = _prefix_range(prefix)
        cur = self._reader.execute(
            "SELECT key, state FROM results WHERE key >= ? AND key < ?", (lo, hi)
        )
        return [(k, st) for k, st in cur.fetchall() if k not in self._memory]

    def in_memory(self, key: str) -> bool:
        return key in self._memory

    def delete(self, keys: Iterable[str]) -> None:
        """Forget results, in memory and on disk."""
        gone = []
        for key in keys:
            cost = self._memory.pop(key, None)
            if cost is not None:
                self.memory_bytes -= cost
            self._on_disk.discard(key)
            self._gone_keys.add(key)
            gone.append((key,))
        if gone:
            self._pending.append(("delete", gone))

    def delete_owner(self, owner: bytes) -> None:
        """Forget the results of one client that have left memory (``flush``)."""
        self._gone_owners.append(owner)
        self._pending.append(("delete_owner", owner))

    def delete_prefix(self, prefix: str) -> None:
        """Forget every result whose key starts with ``prefix`` that has left memory."""
        self._gone_prefixes.append(prefix)
        self._pending.append(("delete_prefix", prefix))

    def counts(self, prefix: str) -> tuple[int, int, int, int]:
        """(results in memory, their bytes, results on disk, their bytes) with ``prefix``.

        Every kept result is on disk (or about to be); memory holds the newest of them.
        """
        self.sync()
        lo, hi = _prefix_range(prefix)
        row = self._reader.execute(
            "SELECT count(*), coalesce(sum(nbytes), 0) FROM results WHERE key >= ? AND key < ?",
            (lo, hi),
        ).fetchone()
        mine = [cost for key, cost in self._memory.items() if key.startswith(prefix)]
        return len(mine), sum(mine) - ENTRY_OVERHEAD * len(mine), row[0], row[1]

    # ------------------------------------------------------------ history
    def record(self, row: HistoryRow) -> None:
        """A finished job or task's record (a plain tuple: this runs for every job)."""
        self._pending.append(("history", row))

    def history(
        self,
        *,
        kind: str | None = None,
        status: str | None = None,
        engine: int | None = None,
        since: float | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Records, newest first (by completion), filtered."""
        self.sync()
        sql = "SELECT * FROM history WHERE 1"
        args: list[Any] = []
        if kind is not None:
            sql += " AND kind = ?"
            args.append(kind)
        if status is not None:
            sql += " AND status = ?"
            args.append(status)
        if engine is not None:
            sql += " AND (',' || engines || ',') LIKE ?"
            args.append(f"%,{engine},%")
        if since is not None:
            sql += " AND completed >= ?"
            args.append(since)
        sql += " ORDER BY rowid DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        cur = self._reader.execute(sql, args)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    # ------------------------------------------------------------ the loop's turn
    def turn(self, now: float | None = None) -> None:
        """Once per turn of the controller's loop: hand the writes gathered so far to the
        writer (at most every ``COMMIT_EVERY`` seconds: waking the writer thread costs
        the loop more than a job does), and let results that are on disk leave memory
        while it is over budget."""
        if self._pending:
            now = time.monotonic() if now is None else now
            if self._thread is None and (self.path is None or now >= self._handover_at):
                batch, self._pending = self._pending, []
                self._write(batch)
                self._handover_at = now + COMMIT_EVERY
            elif self._thread is not None and (
                now >= self._handover_at or len(self._pending) >= HANDOVER_AT_MOST
            ):
                batch, self._pending = self._pending, []
                self._jobs.put(batch)
                self._handover_at = now + COMMIT_EVERY
        self._confirm()
        if self.memory_bytes > self.budget:
            self._shrink()

    def _confirm(self) -> None:
        """Take in what the writer has committed since the last turn."""
        while self._written:
            done = self._written.popleft()
            self._on_disk.update(k for k in done.written if k in self._memory)
            self._gone_keys.difference_update(done.keys)
            for owner in done.owners:
                self._gone_owners.remove(owner)
            for prefix in done.prefixes:
                self._gone_prefixes.remove(prefix)

    def _shrink(self) -> None:
        for key in list(self._memory):
            if self.memory_bytes <= self.budget:
                return
            if key not in self._on_disk:
                continue  # not written yet: it stays until it is
            self.memory_bytes -= self._memory.pop(key)
            self._on_disk.discard(key)
            drop = next((d for p, d in self._evict.items() if key.startswith(p)), None)
            if drop is not None:
                drop(key)

    def next_turn(self) -> float | None:
        """When (monotonic) the loop must call :meth:`turn` to hand writes over, if any
        wait; the loop sleeps no longer than that."""
        return self._handover_at if self._pending else None

    def sync(self) -> None:
        """Wait until everything kept so far is on disk."""
        self._handover_at = 0.0
        self.turn()
        if self._thread is None:
            return
        done = threading.Event()
        self._jobs.put(done)
        done.wait()
        self._confirm()

    def close(self) -> None:
        self._handover_at = 0.0
        self.turn()
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()
        self._reader.close()
        if self._writer is not self._reader:
            self._writer.close()

    # ------------------------------------------------------------ the writer
    def _write_loop(self) -> None:
        last_commit = 0.0
        while True:
            job = self._jobs.get()
            if job is None:
                return
            if isinstance(job, threading.Event):
                job.set()
                continue
            batch = [job]
            # Group commit: what arrives until COMMIT_EVERY after the last commit goes in
            # the same transaction (a commit per job would cost more than the job).
            deadline = last_commit + COMMIT_EVERY
            while True:
                left = deadline - time.monotonic()
                try:
                    more = self._jobs.get(timeout=left) if left > 0 else self._jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None or isinstance(more, threading.Event):
                    self._jobs.put(more)  # handled next round, right after this commit
                    break
                batch.append(more)
            try:
                self._write([op for b in batch for op in b])
            except Exception:
                log.exception("writing results.db failed; results stay in memory")
            last_commit = time.monotonic()

    def _write(self, ops: list[tuple[Any, ...]]) -> None:
        db = self._writer
        done = _Done()
        written = done.written
        history: list[HistoryRow] = []
        for op in ops:
            kind = op[0]
            if kind == "put":
                _, key, owner, state, meta, frames, nbytes = op
                blob = msgpack.packb([_bytes(f) for f in frames])
                row = (key, owner, state, msgpack.packb(meta), blob, nbytes)
                db.execute("INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?)", row)
                written.append(key)
            elif kind == "delete":
                db.executemany("DELETE FROM results WHERE key = ?", op[1])
                done.keys.extend(k for (k,) in op[1])
            elif kind == "delete_owner":
                db.execute("DELETE FROM results WHERE owner = ?", (op[1],))
                done.owners.append(op[1])
            elif kind == "delete_prefix":
                done.prefixes.append(op[1])
                db.execute("DELETE FROM results WHERE key >= ? AND key < ?", _prefix_range(op[1]))
            elif kind == "history":
                history.append(op[1])
        if history:
            db.executemany("INSERT INTO history VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", history)
            self._history_count += len(history)
            if self._history_count > self.history_limit * 1.1:  # trim now and then, not per row
                self._trim_history(db)
        db.commit()
        self._written.append(done)

    def _trim_history(self, db: sqlite3.Connection) -> None:
        """Keep the newest ``history_limit`` records."""
        (count,) = db.execute("SELECT count(*) FROM history").fetchone()
        if count > self.history_limit:
            db.execute(
                "DELETE FROM history WHERE rowid IN "
                "(SELECT rowid FROM history ORDER BY rowid ASC LIMIT ?)",
                (count - self.history_limit,),
            )
        self._history_count = min(count, self.history_limit)


def _connect(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False, isolation_level="DEFERRED")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")  # WAL: a process crash loses nothing committed
    return db


def _bytes(frame: Any) -> bytes:
    return frame.bytes if hasattr(frame, "bytes") else bytes(frame)


def _prefix_range(prefix: str) -> tuple[str, str]:
    """Keys starting with ``prefix`` are those in [lo, hi) (so the index is used)."""
    if not prefix:
        return "", "\U0010ffff"
    return prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)
