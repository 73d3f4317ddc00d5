"""Where finished jobs go: straight back to a caller that blocked, or into the store
until the client fetches them (deleted on first retrieval) or flushes them."""

from __future__ import annotations

from typing import Any

from ..wire import protocol as P
from .dispatch import Dispatch
from .jobs import Job, JobStore

__all__ = ["ResultDesk"]


class ResultDesk:
    def __init__(self, dispatch: Dispatch) -> None:
        self.store = JobStore()
        self._dispatch = dispatch

    def add(self, job: Job) -> None:
        """Keep a non-blocking job's result for a later fetch."""
        self.store.add(job)

    def complete(self, job: Job) -> None:
        if self._dispatch.start_waiters:
            self._dispatch.ended(("job", job.job_id))
        if job.discarded or job.streamed:
            return
        if job.block:
            self.send_result(job.client, job.msg_id, job)
            return
        self.store.completed(job)
        if job.waiter is not None:
            client, msg_id = job.waiter
            self.store.pop(job.job_id)
            self.send_result(client, msg_id, job)

    def send_result(self, client: bytes, msg_id: Any, job: Job) -> None:
        parts = [p for p in job.parts if p is not None]
        _, frames, raw = P.pack_parts([(p.frames[0], p.frames[1:]) for p in parts])
        header: dict[str, Any] = {
            "t": P.RESULT,
            "id": msg_id,
            "job": job.job_id,
            "parts": [p.header().to_wire() for p in parts],
        }
        if raw:
            header["raw"] = raw
        self._dispatch.to_client(client, header, b"", frames)

    def fetch(self, client: bytes, msg_id: Any, job_id: Any, block: bool) -> None:
        job = self.store.get(job_id) if isinstance(job_id, str) else None
        if job is None or job.waiter is not None:
            self._dispatch.reply_error(
                client, msg_id, "InvalidDeferredID", f"invalid deferred_id: {job_id!r}"
            )
        elif job.done:
            self.store.pop(job.job_id)
            self.send_result(client, msg_id, job)
        elif block:
            job.waiter = (client, msg_id)
        else:
            self._dispatch.reply_error(
                client, msg_id, "ResultNotCompleted", f"result {job_id} is not ready"
            )

    def wait_started(self, client: bytes, msg_id: Any, job_id: Any) -> None:
        """Answer once the stored job ``job_id`` has started running (or has ended)."""
        job = self.store.get(job_id) if isinstance(job_id, str) else None
        if job is None:
            self._dispatch.reply_error(
                client, msg_id, "InvalidDeferredID", f"invalid deferred_id: {job_id!r}"
            )
        elif job.done:
            self._dispatch.reply_value(client, msg_id, P.DONE)
        elif job.started:
            self._dispatch.reply_value(client, msg_id, P.RUNNING)
        else:
            self._dispatch.wait_started(("job", job.job_id), client, msg_id)

    def flush(self, owner: bytes) -> None:
        """Forget every result ``owner`` has not fetched; abort waits on them."""
        for job in self.store.of_owner(owner):
            self.store.pop(job.job_id)
            job.discarded = True
            if job.waiter is not None:
                wc, wid = job.waiter
                self._dispatch.reply_error(
                    wc, wid, "AbortedPendingDeferredError", f"result {job.job_id} was flushed"
                )
