"""The controller's books of direct commands: sent by a client straight to an engine of
its host, answered by the engine straight to the client (docs/protocol.md §6, "A direct
path on one host").

The controller is told beside them, off the critical path. A quick command is reported
by its engine after it was answered, with others (``direct_dones``): the report alone
makes its record. A command not answered within ``ANNOUNCE_AFTER`` is announced by its
client (``direct_job``: what it sent, to which engine, its request id and ``rt``) and
reported by its engine when it ends (``direct_done``), in either order. Between the two
the command is the engine's as if it ran there from the controller: the commands queued
on the engine after the controller heard of it wait behind it (a later command of the
same client never overtakes it; ``EngineState.held``), ``queue_status`` and ``status``
show it, ``interrupt`` reaches it, and if the engine is lost first its client gets
``EngineError`` (``Hub._unregister`` fails :meth:`DirectBooks.lost`'s jobs). Its record
goes to the history like any job's; its result is not kept (the client has it).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from ..wire import protocol as P
from ..wire.message import Message, owned
from . import monitor
from .dispatch import Dispatch
from .engines import DirectJob, EngineState
from .jobs import Job, JobIds, Part, error_part

__all__ = ["DirectBooks", "REPORTED_KEEP"]

log = logging.getLogger("multiengine.controller")

# ids of direct commands recorded from their engine's report, remembered (at most this
# many) so that a ``direct_job`` that comes after the report records nothing more
REPORTED_KEEP = 4096


class DirectBooks:
    """Direct commands the controller has heard of, by engine (``EngineState.direct``)."""

    def __init__(
        self,
        dispatch: Dispatch,
        job_ids: JobIds,
        complete: Callable[[Job], None],
        clear_queue: Callable[[EngineState, bytes | None], None],
    ) -> None:
        self.dispatch = dispatch
        self.job_ids = job_ids
        self._complete = complete
        self._clear_queue = clear_queue
        self._reported: OrderedDict[str, None] = OrderedDict()
        self.taken = 0  # direct commands heard of (status: ``direct_jobs``)
        # a client has asked where the engines take direct commands: an engine that
        # registers from now on is told ``direct_on`` at once (turn_on)
        self.asked = False

    def addresses(self) -> list[list[Any]]:
        """``[id, url]`` of every engine that takes direct commands (ascending ids), each
        sent ``direct_on`` first if it was not yet: a client may use them from now on."""
        self.asked = True
        engines = self.dispatch.engines
        listed = []
        for i in self.dispatch.sorted_ids():
            engine = engines[i]
            if engine.direct_url:
                self.turn_on(engine)
                listed.append([i, engine.direct_url])
        return listed

    def turn_on(self, engine: EngineState) -> None:
        """Tell an engine with a direct socket to read it (once): until then it waits on
        the controller's socket alone, which costs it less per command. Sent before any
        client can learn its endpoint (:meth:`addresses`), and on the connection its
        commands come on, so no direct command waits unread."""
        if engine.direct_url and not engine.direct_on:
            engine.direct_on = True
            self.dispatch.outbox.to_engine(engine.ident, {"t": P.DIRECT_ON})

    def on_job(self, client: bytes, msg: Message, owner: bytes) -> None:
        """A client's ``direct_job``: the books take it (unless its engine reported it
        already, or fail it if the engine is gone)."""
        h = msg.header
        eid, cmd_id, name = h.get("engine"), h.get("cmd"), h.get("name")
        if type(eid) is not int or type(cmd_id) is not str or name not in P.DIRECT_COMMANDS:
            log.warning("dropped a malformed direct_job (engine %.40r, cmd %.40r)", eid, cmd_id)
            return
        if cmd_id in self._reported:  # (its engine answered it before this came)
            return
        job_id = h.get("job")
        if type(job_id) is not str:
            job_id = self.job_ids.next()
        job = self._new_job(eid, job_id, client, h, str(name), owner, time.time())
        engine = self.dispatch.engines.get(eid)
        url = h.get("url")
        if engine is None or (type(url) is str and url != engine.direct_url):
            # gone before this came (and it never said it answered), or gone and back
            # under its id already, with another endpoint: this one never had it
            job.answered_directly = False
            why = f"engine {eid} was lost with {job.desc} on it"
            if job.set_part(0, error_part("EngineError", why, eid)):
                self._complete(job)
            return
        engine.direct[cmd_id] = DirectJob(job, self.dispatch.last_cmd_id)
        self.dispatch.timeline.record(eid, job.what, monitor.START, job.desc, job.submitted)

    def on_done(self, engine: EngineState | None, msg: Message) -> None:
        """An engine's ``direct_done``: the command's record is complete."""
        if engine is not None and self._report(engine, msg.header, msg):
            self._send_queue_on(engine)

    def on_dones(self, engine: EngineState | None, msg: Message) -> None:
        """An engine's ``direct_dones``: the reports of several quick commands."""
        dones = msg.header.get("dones")
        if engine is None or type(dones) is not list:
            return
        held = False
        for done in dones:
            if type(done) is dict:
                held = self._report(engine, done, None) or held
        if held:
            self._send_queue_on(engine)

    def _send_queue_on(self, engine: EngineState) -> None:
        if engine.queue and self.dispatch.engines.get(engine.id) is engine:
            self.dispatch.dispatch(engine)  # what waited behind it may go now

    def _report(self, engine: EngineState, h: dict[str, Any], msg: Message | None) -> bool:
        """One command's report: its record completed. True when the controller knew
        of the command (its client announced it: the engine's queue may wait behind
        it); a command it did not know of gets its record from the report alone."""
        cmd_id = h.get("cmd")
        if type(cmd_id) is not str:
            return False
        direct = engine.direct.pop(cmd_id, None)
        if direct is not None:
            self._finish(engine, direct.job, h, msg)
            return True
        job = self._job_of(engine.id, cmd_id, h)
        if job is not None:
            self._finish(engine, job, h, msg)
        return False

    def _job_of(self, eid: int, cmd_id: str, h: dict[str, Any]) -> Job | None:
        """The record of a command its client has not announced (and will not, or
        its ``direct_job`` is on its way: it is then ignored), from its report."""
        job_id, rt, name = h.get("job"), h.get("rt"), h.get("name")
        if type(job_id) is not str or type(rt) is not bytes or name not in P.DIRECT_COMMANDS:
            log.warning("dropped a malformed report of direct command %.40r", cmd_id)
            return None
        self._reported[cmd_id] = None
        while len(self._reported) > REPORTED_KEEP:
            self._reported.popitem(last=False)
        cid, started = h.get("cid"), h.get("started")
        owner = cid if type(cid) is bytes else rt
        at = started if type(started) is float else time.time()
        job = self._new_job(eid, job_id, rt, h, str(name), owner, at)
        self.dispatch.timeline.record(eid, job.what, monitor.START, job.desc, job.submitted)
        return job

    def _new_job(
        self,
        eid: int,
        job_id: str,
        rt: bytes,
        h: dict[str, Any],
        name: str,
        owner: bytes,
        at: float,
    ) -> Job:
        """A direct command's record, from its ``direct_job`` or its report ``h``."""
        job = Job(job_id, rt, h.get("id"), name, [eid], True)
        job.submitted = job.started = at
        job.desc = str(h.get("desc") or name)
        job.owner = owner
        job.answered_directly = True
        self.taken += 1
        return job

    def _finish(
        self, engine: EngineState, job: Job, h: dict[str, Any], msg: Message | None
    ) -> None:
        eid = engine.id
        status = str(h.get("status", P.STATUS_OK))
        failed = status != P.STATUS_OK
        elapsed = h.get("elapsed")
        if "enc" in h and msg is not None:  # the client's connection to the engine had
            # closed: pass the answer on
            job.answered_directly = False
            frames = [owned(f) for f in (msg.content, *msg.buffers)]
            part = Part(eid, status, str(h["enc"]), frames)
        elif failed:
            part = error_part(str(h.get("ename") or "Error"), "", eid)
        else:
            part = Part(eid, status, P.PICKLE, [b""])
        part.elapsed = elapsed if isinstance(elapsed, (int, float)) else None
        part.started = job.started
        started = h.get("started")
        if part.elapsed is not None and type(started) is float:  # the engine's own times
            part.completed = started + part.elapsed
        kind = monitor.FAILED if failed else monitor.OK
        self.dispatch.timeline.record(eid, job.what, kind, job.desc)
        if job.set_part(0, part):
            self._complete(job)
        if failed:
            # As after a failed command: later ones usually depend on it. But not the
            # later commands of its own client: that client had the failure straight
            # from the engine, and may have sent them after it saw it, while this
            # direct_done was still on its way here (another connection).
            self._clear_queue(engine, job.owner)

    def lost(self, engine: EngineState) -> list[Job]:
        """The engine is lost: its direct jobs, to fail (their answers may never come)."""
        jobs = [d.job for d in engine.direct.values()]
        engine.direct.clear()
        for job in jobs:
            job.answered_directly = False
        return jobs

    def interrupt(self, engine: EngineState) -> None:
        """Interrupt the engine's direct commands (run, or answered unrun)."""
        for cmd_id in engine.direct:
            header = {"t": P.INTERRUPT, "cmd": cmd_id, "why": P.WHY_INTERRUPT}
            self.dispatch.outbox.to_heartbeat(engine.ident, header)

    @staticmethod
    def running(engine: EngineState) -> str | None:
        """What a direct command of the engine's runs (its desc), if one is on it."""
        for direct in engine.direct.values():
            return direct.job.desc
        return None
