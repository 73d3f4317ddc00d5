"""Where finished jobs go: straight back to a caller that blocked, or into the store
until the client fetches them (deleted on first retrieval) or flushes them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .jobs import Job, JobStore

__all__ = ["ResultDesk"]

Send = Callable[[bytes, dict[str, Any], Any, list[Any]], None]
SendError = Callable[[bytes, Any, str, str], None]


class ResultDesk:
    def __init__(self, send: Send, send_error: SendError) -> None:
        self.store = JobStore()
        self._send = send
        self._error = send_error

    def add(self, job: Job) -> None:
        """Keep a non-blocking job's result for a later fetch."""
        self.store.add(job)

    def complete(self, job: Job) -> None:
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
        parts = []
        frames: list[Any] = []
        raw: list[int] = []  # buffers are raw data; each part's content (a pickle) is hashed
        for p in job.parts:
            assert p is not None
            parts.append([p.engine_id, p.status, p.enc, len(p.frames) - 1, p.sizes, p.piece])
            raw.extend(range(len(frames) + 1, len(frames) + len(p.frames)))
            frames.extend(p.frames)
        header = {"t": "result", "id": msg_id, "job": job.job_id, "parts": parts}
        if raw:
            header["raw"] = raw
        self._send(client, header, b"", frames)

    def fetch(self, client: bytes, msg_id: Any, job_id: Any, block: bool) -> None:
        job = self.store.get(job_id) if isinstance(job_id, str) else None
        if job is None or job.waiter is not None:
            self._error(client, msg_id, "InvalidDeferredID", f"invalid deferred_id: {job_id!r}")
        elif job.done:
            self.store.pop(job.job_id)
            self.send_result(client, msg_id, job)
        elif block:
            job.waiter = (client, msg_id)
        else:
            self._error(client, msg_id, "ResultNotCompleted", f"result {job_id} is not ready")

    def flush(self, client: bytes) -> None:
        """Forget every result ``client`` has not fetched; abort waits on them."""
        for job in self.store.of_client(client):
            self.store.pop(job.job_id)
            job.discarded = True
            if job.waiter is not None:
                wc, wid = job.waiter
                self._error(
                    wc, wid, "AbortedPendingDeferredError", f"result {job.job_id} was flushed"
                )
