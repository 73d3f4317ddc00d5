"""Where finished jobs go: straight back to a caller that blocked, or kept until the
client fetches them (deleted on first retrieval) or flushes them.

A kept result lives in the :class:`~.store.ResultStore`: in memory while the memory
budget allows, on disk always; a fetch of one that has left memory reads it back.
Every job, blocking or not, leaves a record in the history.
"""

from __future__ import annotations

import time
from typing import Any

from ..wire import protocol as P
from ..wire.protocol import ErrorReport, PartHeader
from .dispatch import Dispatch
from .jobs import Job, JobStore
from .store import HistoryRow, ResultStore, Stored

__all__ = ["ResultDesk"]

JOB = "j:"  # store key prefix of a job's result


class ResultDesk:
    def __init__(self, dispatch: Dispatch, store: ResultStore) -> None:
        self.jobs = JobStore()  # non-blocking jobs in memory: running, or done and kept
        self._dispatch = dispatch
        self._store = store
        self.restored = False  # taken up from an earlier controller (--restore)
        self.own_tag = ""  # the tag of the job ids this controller makes (JobIds.tag)
        store.on_evict(JOB, self._evicted)

    def _evicted(self, key: str) -> None:
        self.jobs.pop(key[len(JOB) :])  # on disk only from now on

    def add(self, job: Job) -> None:
        """Keep a non-blocking job's result for a later fetch."""
        self.jobs.add(job)

    def complete(self, job: Job) -> None:
        if self._dispatch.start_waiters:
            self._dispatch.ended(("job", job.job_id))
        self._store.record(_history(job))
        if job.discarded or job.streamed or job.answered_directly:
            return
        if job.block:
            self.send_result(job.client, job.msg_id, job)
            return
        self.jobs.completed(job)
        if job.waiter is not None:
            client, msg_id = job.waiter
            self.jobs.pop(job.job_id)
            self.send_result(client, msg_id, job)
            return
        parts = [p for p in job.parts if p is not None]
        meta = {"parts": [p.wire_header() for p in parts]}
        frames = [f for p in parts for f in p.frames]
        self._store.put(JOB + job.job_id, Stored(meta, frames, job.owner), job.nbytes)

    def send_result(self, client: bytes, msg_id: Any, job: Job) -> None:
        parts = [p for p in job.parts if p is not None]
        heads = [p.wire_header() for p in parts]
        if all(len(p.frames) == 1 for p in parts):  # each part its content alone (execute at 128
            # engines: 128 small pickles): the frames are the contents, none raw
            frames = [p.frames[0] for p in parts]
            raw: list[int] = []
        else:
            hashed = [p.enc == P.SLICES for p in parts]
            _, frames, raw = P.pack_parts([(p.frames[0], p.frames[1:]) for p in parts], hashed)
        ahead = [i for i, p in enumerate(parts) if p.ahead]  # their buffers went before
        self._send(client, msg_id, job.job_id, heads, frames, raw, ahead)

    def _send(
        self,
        client: bytes,
        msg_id: Any,
        job_id: str,
        parts: list[Any],
        frames: list[Any],
        raw: list[int],
        ahead: list[int] | None = None,
    ) -> None:
        header: dict[str, Any] = {"t": P.RESULT, "id": msg_id, "job": job_id, "parts": parts}
        if raw:
            header["raw"] = raw
        if ahead:
            header["ahead"] = ahead
        self._dispatch.to_client(client, header, b"", frames)

    def _send_stored(self, client: bytes, msg_id: Any, job_id: str, stored: Stored) -> None:
        parts = stored.meta["parts"]
        heads = [PartHeader.from_wire(p) for p in parts]
        hashed = [h.enc == P.SLICES for h in heads]
        stored_parts = P.split_parts([h.nframes for h in heads], stored.frames)
        _, frames, raw = P.pack_parts(stored_parts, hashed)
        self._send(client, msg_id, job_id, parts, frames, raw)

    def fetch(self, client: bytes, msg_id: Any, job_id: Any, block: bool) -> None:
        job = self.jobs.get(job_id) if isinstance(job_id, str) else None
        if job is None:
            stored = self._store.load(JOB + job_id) if isinstance(job_id, str) else None
            if stored is None:
                self._unknown(client, msg_id, job_id)
                return
            self._store.delete([JOB + job_id])  # a result is fetched once
            self._send_stored(client, msg_id, job_id, stored)
        elif job.waiter is not None:
            self._dispatch.reply_error(
                client, msg_id, "InvalidDeferredID", f"invalid deferred_id: {job_id!r}"
            )
        elif job.done:
            self.jobs.pop(job.job_id)
            self._store.delete([JOB + job.job_id])
            self.send_result(client, msg_id, job)
        elif block:
            job.waiter = (client, msg_id)
        else:
            self._dispatch.reply_error(
                client, msg_id, "ResultNotCompleted", f"result {job_id} is not ready"
            )

    def wait_started(self, client: bytes, msg_id: Any, job_id: Any) -> None:
        """Answer once the stored job ``job_id`` has started running (or has ended)."""
        job = self.jobs.get(job_id) if isinstance(job_id, str) else None
        if job is None:
            if isinstance(job_id, str) and self._store.load(JOB + job_id) is not None:
                self._dispatch.reply_value(client, msg_id, P.DONE)
                return
            self._unknown(client, msg_id, job_id)
        elif job.done:
            self._dispatch.reply_value(client, msg_id, P.DONE)
        elif job.started is not None:
            self._dispatch.reply_value(client, msg_id, P.RUNNING)
        else:
            self._dispatch.wait_started(("job", job.job_id), client, msg_id)

    def _unknown(self, client: bytes, msg_id: Any, job_id: Any) -> None:
        earlier = isinstance(job_id, str) and len(job_id) == 40 and job_id[-16:] != self.own_tag
        if self.restored and earlier:
            self._dispatch.reply_error(
                client,
                msg_id,
                "ControllerRestarted",
                f"result {job_id} is lost: the controller restarted before that call "
                "finished (the engines kept their namespaces; it may or may not have run)",
            )
            return
        self._dispatch.reply_error(
            client, msg_id, "InvalidDeferredID", f"invalid deferred_id: {job_id!r}"
        )

    def flush(self, owner: bytes) -> None:
        """Forget every result ``owner`` has not fetched; abort waits on them."""
        keys = []
        for job in self.jobs.of_owner(owner):
            self.jobs.pop(job.job_id)
            job.discarded = True
            keys.append(JOB + job.job_id)
            if job.waiter is not None:
                wc, wid = job.waiter
                self._dispatch.reply_error(
                    wc, wid, "AbortedPendingDeferredError", f"result {job.job_id} was flushed"
                )
        self._store.delete(keys)
        self._store.delete_owner(owner)  # and those that have left memory

    def counts(self) -> tuple[int, int]:
        """(results of non-blocking calls not yet fetched, their bytes), memory and disk,
        plus the calls still running."""
        running = sum(1 for j in self.jobs.values() if not j.done)
        _, _, on_disk, disk_bytes = self._store.counts(JOB)
        return running + on_disk, disk_bytes


def _history(job: Job) -> HistoryRow:
    completed = time.time()
    failed = [p for p in job.parts if p is not None and p.status == P.STATUS_ERROR]
    error = None
    if failed:
        try:
            error = ErrorReport.from_bytes(failed[0].frames[0]).ename
        except Exception:  # noqa: BLE001 - a history record never fails a job
            error = "?"
    started = job.started or job.submitted or completed
    return HistoryRow(
        "job",
        job.job_id,
        job.desc or job.method,
        ",".join(map(str, job.targets)),
        P.FAILED if failed else P.SUCCEEDED,
        job.submitted or None,
        job.started,
        completed,
        completed - started,
        0,
        error,
    )
