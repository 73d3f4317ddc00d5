"""Jobs: one client call fanned out to its engines, and the results kept for clients.

A job is complete when every target has answered (or failed, been cleared, or died).
A blocking call's job is answered at once and forgotten; a non-blocking call's job
stays in :class:`JobStore` until the client fetches it (deleted on first retrieval)
or flushes it, as in the seed. The store counts the bytes it holds so that a memory
budget and a spill to disk can be added without changing its users.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from ..wire import protocol as P
from ..wire.protocol import ErrorReport, PartHeader, TaskFlags

__all__ = ["Part", "Job", "JobStore", "JobIds", "error_part"]


@dataclass(eq=False, slots=True)
class Part:
    """One engine's answer to a command: its status and frames (content, then buffers)."""

    engine_id: int
    status: str  # STATUS_OK or STATUS_ERROR
    enc: str  # PICKLE (from an engine) or MSGPACK (controller, or an engine's error report)
    frames: list[Any]  # content, then buffers (or their pieces, when sizes is set)
    sizes: list[int] | None = None  # buffer sizes, when frames after content are pieces
    piece: int | None = None  # the sender's piece size, with sizes
    flags: TaskFlags | None = None  # how a task attempt failed, from the engine
    elapsed: float | None = None  # seconds the engine spent running it
    started: float | None = None  # when its command became the engine's current one
    completed: float | None = None  # when the answer came (time.time())
    ahead: bool = False  # its buffers went to the client ahead of the result (chunks)

    def header(self) -> PartHeader:
        """How the part is described in a ``result`` or ``task_results`` header."""
        return PartHeader(*self.wire_header())

    def wire_header(self) -> list[Any]:
        """:meth:`header` as it goes on the wire (``PartHeader.to_wire``), made directly:
        a result of 128 engines makes 128 of them."""
        return [
            self.engine_id,
            self.status,
            self.enc,
            len(self.frames) - 1,
            self.sizes,
            self.piece,
            self.started,
            self.completed,
            self.elapsed,
        ]


def error_part(ename: str, evalue: str, engine_id: int = -1) -> Part:
    """An engine's share of a job that failed in the controller (msgpack, no pickle)."""
    return Part(engine_id, P.STATUS_ERROR, P.MSGPACK, [ErrorReport(ename, evalue).to_bytes()])


def _size(frames: list[Any]) -> int:
    n = 0
    for f in frames:
        n += len(f)
    return n


@dataclass(eq=False, slots=True)
class Job:
    job_id: str
    client: bytes  # where its answers go (the request's reply-to identity)
    msg_id: Any  # the request's id, echoed in the reply
    method: str
    targets: list[int]
    block: bool
    parts: list[Part | None] = field(default_factory=list)
    remaining: int = 0
    waiter: tuple[bytes, Any] | None = None  # (client, fetch msg id) of a blocking fetch
    discarded: bool = False
    kill_controller: bool = False
    owner: bytes = b""  # the client that may flush it (the request's cid, else client)
    desc: str = ""  # what it runs, as queue_status and the history show it
    submitted: float = 0.0  # when it arrived (time.time())
    started: float | None = None  # when its first command became an engine's current one
    streamed: bool = False  # the result already went to the client piece by piece
    progress_at: float | None = None  # when to tell a waiting client how many answered
    # a direct command: its engine answered the client itself (the controller keeps the
    # record, and answers only if the engine is lost first)
    answered_directly: bool = False
    nbytes: int = 0
    what: str = ""  # how the timeline names it ("job <id>"), made once

    def __post_init__(self) -> None:
        self.parts = [None] * len(self.targets)
        self.remaining = len(self.targets)
        self.what = f"job {self.job_id}"

    @property
    def done(self) -> bool:
        return self.remaining == 0

    def set_part(self, index: int, part: Part) -> bool:
        """Record one engine's answer; return True when the job just completed."""
        if self.parts[index] is not None:
            return False
        if part.completed is None:
            part.completed = time.time()
        self.parts[index] = part
        frames = part.frames  # (most parts: one frame, measured without a call)
        self.nbytes += len(frames[0]) if len(frames) == 1 else _size(frames)
        self.remaining -= 1
        return self.remaining == 0


class JobIds:
    """40 hex digits: milliseconds, a counter and a per-controller tag (sortable)."""

    def __init__(self) -> None:
        self._count = 0
        self.tag = os.urandom(8).hex()  # the last 16 digits of every id this one makes

    def next(self) -> str:
        self._count = (self._count + 1) & 0xFFFFFFFF
        return P.job_id(self._count, self.tag)


class JobStore:
    """Results of non-blocking calls, kept until fetched or flushed."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self.nbytes = 0

    def add(self, job: Job) -> None:
        self._jobs[job.job_id] = job

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def pop(self, job_id: str) -> Job | None:
        job = self._jobs.pop(job_id, None)
        if job is not None and job.done:
            self.nbytes -= job.nbytes
        return job

    def completed(self, job: Job) -> None:
        if job.job_id in self._jobs:
            self.nbytes += job.nbytes

    def of_owner(self, owner: bytes) -> list[Job]:
        return [j for j in self._jobs.values() if j.owner == owner]

    def values(self) -> list[Job]:
        return list(self._jobs.values())

    def __len__(self) -> int:
        return len(self._jobs)
