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

Unfinished tasks are written too, so that a controller started again with ``--restore``
takes them up (:meth:`ResultStore.leftovers`): every task until it ends (one ``s:`` row
per submission, kept after its tasks have ended, until they are cleared: a finished
task's ``t:`` row names it for the task's chain rather than holding the chain again; a
``q:`` row of a task's progress when it was running, or waiting again after a failure,
at a commit), the key of every
``task_submit`` (a client that sends one again after a restart gets the same task ids)
and the next task id. (A non-blocking
MultiEngine call is not written until it ends: its job id tells a restored controller
that it came from the run before.) A task submission is answered only once it is on disk
(:meth:`ResultStore.when_written`), so a task id a client holds is never lost.

Tables: ``results`` (key, owner, state, meta, frames, nbytes), ``submits`` (key, task
ids), ``counters`` (name, value) and ``history`` (one row per job and task: kind, id,
description, engines, status, times, retries, error).

It is long because it is one object seen from two threads that must agree on every row
and its order: the loop's side (the memory budget, reads, what is confirmed written) and
the writer's (its queue, and the writes of one commit merged into a few statements, so
that tiny tasks cost a few SQL statements per batch rather than three per task). Split,
each half would reach into the other's queue and counters.
"""

from __future__ import annotations

import logging
import os
import queue
import sqlite3
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import msgpack

__all__ = ["ENTRY_OVERHEAD", "HistoryRow", "Leftovers", "ResultStore", "Stored"]

log = logging.getLogger("multiengine.controller")

# Seconds between two commits of the writer: what arrives in between shares a transaction
# (a result is on disk at most this long after it is kept; a sync() does not wait).
COMMIT_EVERY = 0.02
HANDOVER_AT_MOST = 5000  # writes gathered before they go to the writer at once
# Parameters in one SQL statement (SQLite's default limit since 3.32). Many rows go in
# one statement, not one ``executemany`` step per row: the writer thread then takes the
# GIL back once per statement rather than once per row, each time behind the loop's
# thread (with the loop busy, an executemany of 500 rows took 11 ms against 1.6 ms).
# The rows of a commit go in statements of a power of two rows each (3,000 rows: 2,048,
# 512, 256, ...): a statement of as many rows as there happen to be is compiled anew
# each time (its text is new), which cost as much again as the insert itself (SQLite
# compiles each row of a VALUES list); these few shapes stay in the connection's cache.
MAX_PARAMS = 32766
# What one kept result costs in memory besides its frames (its Job or Task, dict slots):
# counted against the budget so that many tiny results leave memory too. Measured: a
# finished task kept costs its frames plus about 2 KB of RSS (20,000 tiny tasks), a
# stored non-blocking call about 1.2 KB.
ENTRY_OVERHEAD = 2048

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    key TEXT PRIMARY KEY,   -- 'j:<job id>', 't:<task id>': results; 's:<task id>': the
                            -- tasks of a submission (its first task's id), until they
                            -- are cleared; 'q:<task id>': an unfinished task's progress
    owner BLOB,             -- the client that may flush it (jobs)
    state TEXT,             -- a task's: succeeded or failed; for a 'q:' row 'waiting|running
                            -- <level> <retries left> <attempts> [<engine>]'
    meta BLOB,              -- msgpack: what decodes the frames (parts; a task's item and
                            -- its submission's row, where its chain is; for an 's:' row
                            -- the tasks' ids, chains, frame counts, submit time)
    frames BLOB,            -- msgpack list of the frames' bytes
    nbytes INTEGER
);
CREATE INDEX IF NOT EXISTS results_owner ON results(owner);
CREATE TABLE IF NOT EXISTS submits (
    key TEXT PRIMARY KEY,   -- a task_submit's key (the client's): a resent one is not run twice
    tids BLOB               -- msgpack list of the task ids it got
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,  -- 'next_tid': no task id is ever given twice, even after a restore
    value INTEGER
);
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


class Leftovers(NamedTuple):
    """What a controller that stopped left unfinished in ``results.db``."""

    tasks: list[tuple[int, str | None, Any, list[bytes]]]  # (tid, state, meta, frames)
    next_tid: int  # the first task id not given yet
    ended_rows: list[str]  # ``s:`` rows all of whose tasks have ended (kept for their chains)


_HURRY = object()  # on the writer's queue: someone waits for what it holds


@dataclass(slots=True)
class _Done:
    """What one commit of the writer made true on disk."""

    upto: int = 0  # the last handover it includes
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
        # called just before writes are handed to the writer: last writes of this turn
        # (the tasks' progress, written only for tasks that have not finished by then)
        self.before_handover: Callable[[], None] | None = None
        self._hook_due = False  # it has something to write (:meth:`call_before_handover`)
        self._written: deque[_Done] = deque()  # what the writer has committed, by batch
        # deleted here but maybe not yet on disk: reads must not see them
        self._gone_keys: set[str] = set()
        self._gone_owners: list[bytes] = []
        self._gone_prefixes: list[str] = []
        self._pending: list[tuple[Any, ...]] = []  # writes not yet handed to the writer
        self._packer = msgpack.Packer()  # the loop's (a Packer serves one thread at a time)
        self._handover_at = 0.0  # when the next handover may happen (monotonic)
        self._handed = 0  # handovers so far
        self._confirmed = 0  # the last handover known to be on disk
        self._waiting: deque[tuple[int, Callable[[], None]]] = deque()  # when_written's
        self._urgent = False  # someone waits for the next handover: commit it at once
        # the writer wakes the loop through this pipe when a callback waits for its commit
        self.wake_fd: int | None = None
        self._wake_w: int | None = None
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
            self.wake_fd, self._wake_w = os.pipe()
            os.set_blocking(self.wake_fd, False)
            os.set_blocking(self._wake_w, False)
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
        packed = _packed(stored, self._packer)
        self._pending.append(("put", key, stored.owner, stored.state, *packed, nbytes))

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
        """Forget every result whose key starts with ``prefix``, in memory and on disk
        (one statement on disk, however many there are)."""
        for key in [k for k in self._memory if k.startswith(prefix)]:
            self.memory_bytes -= self._memory.pop(key)
            self._on_disk.discard(key)
        self._gone_prefixes.append(prefix)
        self._pending.append(("delete_prefix", prefix))

    def counts(self, *prefixes: str) -> tuple[int, int, int, int]:
        """(results in memory, their bytes, results on disk, their bytes) whose keys
        start with one of ``prefixes``.

        Every kept result is on disk (or about to be); memory holds the newest of them.
        """
        self.sync()
        ranges = [bound for prefix in prefixes for bound in _prefix_range(prefix)]
        where = " OR ".join(["(key >= ? AND key < ?)"] * len(prefixes))
        row = self._reader.execute(
            f"SELECT count(*), coalesce(sum(nbytes), 0) FROM results WHERE {where}", ranges
        ).fetchone()
        mine = [cost for key, cost in self._memory.items() if key.startswith(prefixes)]
        return len(mine), sum(mine) - ENTRY_OVERHEAD * len(mine), row[0], row[1]

    # ------------------------------------------------------------ unfinished work
    def persist(self, key: str, stored: Stored) -> None:
        """Write a row of unfinished work (``q:``, ``p:``) to disk only; it takes no
        memory here and counts nothing against the budget."""
        packed = _packed(stored, self._packer)
        self._pending.append(("put", key, stored.owner, stored.state, *packed, 0))

    def mark(self, key: str, state: str | None) -> None:
        """Change the state of a row on disk (a task that starts running)."""
        self._pending.append(("state", key, state))

    def unpersist(self, key: str) -> None:
        """Remove a row of unfinished work from disk (it finished)."""
        self._pending.append(("delete", [(key,)]))

    def remember_submit(self, key: str | None, tids: list[int], next_tid: int) -> None:
        """A ``task_submit`` with ``key`` (if the client gave one) got ``tids``; no task
        id below ``next_tid`` is to be given again."""
        self._pending.append(("submit", key, tids, next_tid))

    def submitted_as(self, key: str) -> list[int] | None:
        """The task ids a ``task_submit`` with ``key`` got, if one was taken."""
        self.sync()
        row = self._reader.execute("SELECT tids FROM submits WHERE key = ?", (key,)).fetchone()
        return None if row is None else list(msgpack.unpackb(row[0]))

    def when_written(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` at a turn of the loop once everything kept, persisted or
        deleted so far is on disk (at once when it already is)."""
        if self._pending:
            self._waiting.append((self._handed + 1, callback))
            self._handover_at = 0.0  # someone waits: hand over at this turn
            self._urgent = True
        elif self._confirmed < self._handed:
            self._waiting.append((self._handed, callback))
            if self._thread is not None:
                self._jobs.put(_HURRY)  # the writer commits what it holds at once
        else:
            callback()

    def leftovers(self) -> Leftovers:
        """Unfinished tasks on disk, and the next task id: what a restored controller
        takes up.

        A submission's tasks are one ``s:`` row (meta: their ids, chains, frame counts,
        submission time; frames: theirs, in order); a task of it whose ``t:`` row exists
        has finished. A ``q:`` row holds the progress of a task that changed (it ran, or
        waits again after a failure); a ``q:`` row that has a chain of its own is a whole
        task (as an older controller wrote them)."""
        self.sync()
        db = self._reader
        progress: dict[int, str | None] = {}
        tasks: list[tuple[int, str | None, Any, list[bytes]]] = []
        for key, state, meta, frames in db.execute(
            "SELECT key, state, meta, frames FROM results WHERE key >= 'q:' AND key < 'q;'"
        ):
            meta = msgpack.unpackb(meta)
            if isinstance(meta, dict) and "chain" in meta:
                tasks.append((int(key[2:]), state, meta, msgpack.unpackb(frames)))
            else:
                progress[int(key[2:])] = state
        submitted: list[tuple[int, Any, list[bytes]]] = []
        rows: list[tuple[str, list[int]]] = []  # s: rows, and their tasks
        for key, meta, frames in db.execute(
            "SELECT key, meta, frames FROM results WHERE key >= 's:' AND key < 's;'"
        ):
            meta, frames = msgpack.unpackb(meta), msgpack.unpackb(frames)
            pos = 0
            rows.append((key, meta["tids"]))
            for tid, chain, n in zip(meta["tids"], meta["chains"], meta["nframes"], strict=True):
                task = {"chain": chain, "sub": meta["sub"], "row": key}
                submitted.append((tid, task, frames[pos : pos + n]))
                pos += n
        finished = self._existing([f"t:{tid}" for tid, _, _ in submitted])
        tasks += [
            (tid, progress.get(tid), meta, frames)
            for tid, meta, frames in submitted
            if f"t:{tid}" not in finished
        ]
        highest = [-1, *(tid for tid, _, _ in submitted)]
        for prefix in ("t:", "q:"):
            lo, hi = _prefix_range(prefix)
            cur = db.execute(
                "SELECT max(CAST(substr(key, 3) AS INTEGER)) FROM results WHERE key >= ? "
                "AND key < ?",
                (lo, hi),
            )
            highest.append(cur.fetchone()[0] or -1)
        cur = db.execute("SELECT max(CAST(id AS INTEGER)) FROM history WHERE kind = 'task'")
        highest.append(cur.fetchone()[0] or -1)
        row = db.execute("SELECT value FROM counters WHERE name = 'next_tid'").fetchone()
        next_tid = max(max(highest) + 1, row[0] if row else 0)
        tasks.sort(key=lambda t: t[0])
        ended = [key for key, tids in rows if all(f"t:{tid}" in finished for tid in tids)]
        return Leftovers(tasks, next_tid, ended)

    def _existing(self, keys: list[str]) -> set[str]:
        """Which of ``keys`` have a row on disk."""
        found: set[str] = set()
        for chunk, marks in _key_groups(keys):
            sql = f"SELECT key FROM results WHERE key IN ({marks})"
            found.update(k for (k,) in self._reader.execute(sql, chunk))
        return found

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
        if self._hook_due and self.before_handover is not None:
            now = time.monotonic() if now is None else now
            if now >= self._handover_at or len(self._pending) >= HANDOVER_AT_MOST:
                self._hook_due = False
                self.before_handover()
        if self._pending:
            now = time.monotonic() if now is None else now
            if self._thread is None and (self.path is None or now >= self._handover_at):
                batch, self._pending = self._pending, []
                self._handed += 1
                self._write(batch, self._handed)
                self._handover_at = now + COMMIT_EVERY
            elif self._thread is not None and (
                now >= self._handover_at or len(self._pending) >= HANDOVER_AT_MOST
            ):
                batch, self._pending = self._pending, []
                self._handed += 1
                self._jobs.put((self._handed, batch, self._urgent))
                self._urgent = False
                self._handover_at = now + COMMIT_EVERY
        self._confirm()
        if self.memory_bytes > self.budget:
            self._shrink()

    def _confirm(self) -> None:
        """Take in what the writer has committed since the last turn."""
        while self._written:
            done = self._written.popleft()
            self._confirmed = max(self._confirmed, done.upto)
            self._on_disk.update(k for k in done.written if k in self._memory)
            self._gone_keys.difference_update(done.keys)
            for owner in done.owners:
                self._gone_owners.remove(owner)
            for prefix in done.prefixes:
                self._gone_prefixes.remove(prefix)
        while self._waiting and self._waiting[0][0] <= self._confirmed:
            self._waiting.popleft()[1]()

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

    def woken(self) -> None:
        """:attr:`wake_fd` is readable: take the writer's wake-ups in, then a turn."""
        if self.wake_fd is not None:
            try:
                while os.read(self.wake_fd, 4096):
                    pass
            except BlockingIOError:
                pass
        self.turn()

    def next_turn(self) -> float | None:
        """When (monotonic) the loop must call :meth:`turn` to hand writes over, if any
        wait; the loop sleeps no longer than that (and wakes on :attr:`wake_fd`)."""
        return self._handover_at if self._pending or self._hook_due else None

    def call_before_handover(self) -> None:
        """Have :attr:`before_handover` called before the next handover (at the latest
        ``COMMIT_EVERY`` from the last one, as any write)."""
        self._hook_due = self.before_handover is not None

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
        for fd in (self.wake_fd, self._wake_w):
            if fd is not None:
                os.close(fd)
        self.wake_fd = self._wake_w = None

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
            if job is _HURRY:
                continue  # it came after the commit it hurried
            upto, ops, urgent = job
            batch = [ops]
            # Group commit: what arrives until COMMIT_EVERY after the last commit goes in
            # the same transaction (a commit per job would cost more than the job), unless
            # an answer waits for this one (a task submission): then what is there now.
            deadline = time.monotonic() if urgent else last_commit + COMMIT_EVERY
            while True:
                left = deadline - time.monotonic()
                try:
                    more = self._jobs.get(timeout=left) if left > 0 else self._jobs.get_nowait()
                except queue.Empty:
                    break
                if more is _HURRY:
                    deadline = time.monotonic()
                    continue
                if more is None or isinstance(more, threading.Event):
                    self._jobs.put(more)  # handled next round, right after this commit
                    break
                upto = more[0]
                batch.append(more[1])
                if more[2]:
                    deadline = time.monotonic()
            try:
                self._write([op for b in batch for op in b], upto)
            except Exception:
                log.exception("writing results.db failed; results stay in memory")
                self._written.append(_Done(upto))  # nobody waits for it forever
            last_commit = time.monotonic()
            if self._waiting and self._wake_w is not None:
                try:
                    os.write(self._wake_w, b"w")
                except (BlockingIOError, OSError):
                    pass  # the pipe is full (the loop will look) or closed (shutting down)

    def _write(self, ops: list[tuple[Any, ...]], upto: int) -> None:
        """One transaction: the writes of ``ops``, coalesced (:func:`_coalesce`)."""
        db = self._writer
        done = _Done(upto)
        next_tid: int | None = None
        history: list[HistoryRow] = []
        for segment, boundary in _segments(ops):
            deletes, puts, states = _coalesce(segment)
            if deletes:
                _delete_keys(db, deletes)
            if puts:
                _insert_rows(db, "INSERT OR REPLACE INTO results VALUES ", 6, list(puts.values()))
            if states:
                db.executemany(
                    "UPDATE results SET state = ? WHERE key = ?",
                    [(state, key) for key, state in states.items()],
                )
            done.written.extend(puts)
            done.keys.extend(deletes)
            for op in segment:
                kind = op[0]
                if kind == "history":
                    history.append(op[1])
                elif kind == "submit":
                    _, key, tids, next_tid = op
                    if key is not None:
                        db.execute(
                            "INSERT OR REPLACE INTO submits VALUES (?, ?)",
                            (key, msgpack.packb(tids)),
                        )
            if boundary is None:
                continue
            if boundary[0] == "delete_owner":
                db.execute("DELETE FROM results WHERE owner = ?", (boundary[1],))
                done.owners.append(boundary[1])
            else:
                done.prefixes.append(boundary[1])
                db.execute(
                    "DELETE FROM results WHERE key >= ? AND key < ?", _prefix_range(boundary[1])
                )
        if next_tid is not None:
            db.execute("INSERT OR REPLACE INTO counters VALUES ('next_tid', ?)", (next_tid,))
        if history:
            _insert_rows(db, "INSERT INTO history VALUES ", len(HistoryRow._fields), history)
            self._history_count += len(history)
            if self._history_count > self.history_limit * 1.1:  # trim now and then, not per row
                self._trim_history(db)
        db.commit()
        self._written.append(done)

    def _trim_history(self, db: sqlite3.Connection) -> None:
        """Keep the newest ``history_limit`` records, and as many submission keys (a
        resend comes seconds after its submission, not a million jobs later)."""
        count = _keep_newest(db, "history", self.history_limit)
        self._history_count = min(count, self.history_limit)
        _keep_newest(db, "submits", self.history_limit)


def _keep_newest(db: sqlite3.Connection, table: str, limit: int) -> int:
    """Delete all but the newest ``limit`` rows of ``table``; how many there were."""
    (count,) = db.execute(f"SELECT count(*) FROM {table}").fetchone()
    if count > limit:
        db.execute(
            f"DELETE FROM {table} WHERE rowid IN "  # (a table name of ours)
            f"(SELECT rowid FROM {table} ORDER BY rowid ASC LIMIT ?)",
            (count - limit,),
        )
    return int(count)


def _insert_rows(db: sqlite3.Connection, head: str, width: int, rows: list[Any]) -> None:
    """``head`` (``INSERT ... VALUES``) for many rows of ``width`` columns, in statements
    of a power of two rows each (see :data:`MAX_PARAMS`)."""
    one = "(" + ",".join("?" * width) + ")"
    for chunk in _pieces(rows, MAX_PARAMS // width):
        db.execute(head + ",".join([one] * len(chunk)), [v for row in chunk for v in row])


def _delete_keys(db: sqlite3.Connection, keys: list[str]) -> None:
    for chunk, marks in _key_groups(keys):
        db.execute(f"DELETE FROM results WHERE key IN ({marks})", chunk)


def _key_groups(keys: list[str]) -> Iterator[tuple[list[str], str]]:
    """``keys`` in groups one statement can take, each with its ``?,?,...``."""
    for chunk in _pieces(keys, MAX_PARAMS):
        yield chunk, ",".join("?" * len(chunk))


def _pieces(items: list[Any], most: int) -> Iterator[list[Any]]:
    """``items`` in pieces of a power of two items each, at most ``most``, largest first
    (one statement each: few shapes, which the connection's statement cache keeps)."""
    cap = 1 << (most.bit_length() - 1)
    i, n = 0, len(items)
    while i < n:
        k = min(cap, 1 << ((n - i).bit_length() - 1))
        yield items[i : i + k]
        i += k


def _connect(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False, isolation_level="DEFERRED")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")  # WAL: a process crash loses nothing committed
    return db


def _segments(
    ops: list[tuple[Any, ...]],
) -> Iterable[tuple[list[tuple[Any, ...]], tuple[Any, ...] | None]]:
    """``ops`` cut at each ``delete_owner`` / ``delete_prefix`` (which delete rows whatever
    their key, so writes may not move across them): (ops before it, it), ..., (rest, None)."""
    start = 0
    for i, op in enumerate(ops):
        if op[0] in ("delete_owner", "delete_prefix"):
            yield ops[start:i], op
            start = i + 1
    yield ops[start:], None


def _coalesce(
    ops: list[tuple[Any, ...]],
) -> tuple[list[str], dict[str, list[Any]], dict[str, str | None]]:
    """The row writes of ``ops`` (one transaction) as few statements, same end state:
    (keys to delete first, rows to put then, states to set last).

    A put or state change of a key that is deleted later in ``ops`` is left out (a tiny
    task's ``q:`` row written, marked running and deleted within one commit costs
    nothing); of several puts of a key the last one counts; a state change after a put
    of its key goes into that put's row.
    """
    last_delete: dict[str, int] = {}
    for i, op in enumerate(ops):
        if op[0] == "delete":
            for (key,) in op[1]:
                last_delete[key] = i
    puts: dict[str, list[Any]] = {}
    states: dict[str, str | None] = {}
    for i, op in enumerate(ops):
        kind = op[0]
        if kind == "put":
            key = op[1]
            if last_delete.get(key, -1) > i:
                continue
            puts.pop(key, None)  # (re-inserted: the last put counts)
            puts[key] = list(op[1:])
            states.pop(key, None)  # the put replaces the whole row
        elif kind == "state":
            key = op[1]
            if last_delete.get(key, -1) > i:
                continue
            row = puts.get(key)
            if row is not None:
                row[2] = op[2]
            else:
                states[key] = op[2]
    return list(last_delete), puts, states


def _packed(stored: Stored, packer: msgpack.Packer) -> tuple[bytes, bytes]:
    """A row's meta and frames as written. Packed on the loop's thread: on the writer's
    it would take the GIL as long, but in turns with the loop (which then waited up to a
    switch interval, 5 ms, each time it wanted the GIL back); the writer's own work is
    SQLite's, which runs without the GIL. ``packer``: the loop's own (``msgpack.packb``
    makes one per call, which cost as much as packing a tiny task's row)."""
    frames = [f if type(f) is bytes else _bytes(f) for f in stored.frames]
    return packer.pack(stored.meta), packer.pack(frames)


def _bytes(frame: Any) -> bytes:
    return frame.bytes if hasattr(frame, "bytes") else bytes(frame)


def _prefix_range(prefix: str) -> tuple[str, str]:
    """Keys starting with ``prefix`` are those in [lo, hi) (so the index is used)."""
    if not prefix:
        return "", "\U0010ffff"
    return prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)
