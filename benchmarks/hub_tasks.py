"""The controller's own work per tiny task, without sockets or other processes.

The controller's hub (scheduler, task table, result store with its results.db and
writer thread) is driven in this process by the fake engines and client of the hub's
unit tests (``tests/controller/fakes.py``): ``-n`` tasks submitted in batches of 500
as a client's map submits them, the two engines answering 16 at a time as a real
engine's held replies do, then ``clear``. What it reports is the CPU this process
spent per task (the writer thread's SQLite work included): the controller's share of
``task_cost.py`` without the other processes competing for the two cores, so it moves
far less from run to run and tells a change to the controller's per-task code apart
from the machine's mood.

    python benchmarks/hub_tasks.py                        # this tree
    PYTHONPATH=/other/src python benchmarks/hub_tasks.py  # another one

The controller's collector threshold is set as ``multiengine controller`` sets it
(``controller/main.py``), when the tree has one.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests/controller

from tests.controller import fakes

from multiengine.controller import main as controller_main
from multiengine.controller.store import ResultStore
from multiengine.wire import protocol as P
from multiengine.wire.message import Message

SUBMIT_BATCH = 500  # tasks per task_submit (the client's)
REPLIES_AT_MOST = 16  # replies per engine message (an engine's held replies)
CONTENT = b"\x80\x05" + b"x" * 600  # a tiny task's pickle, about the size of a map's
RESULT = b"\x80\x05N."  # None, pickled


def run(cluster: Any, turn: Callable[[], None], n: int) -> None:
    """One round: ``n`` tasks submitted, run by the fake engines, cleared; ``turn``: what
    the controller's loop does at the end of a turn."""
    link = fakes.task("t")[0][0].to_wire()
    for start in range(0, n, SUBMIT_BATCH):
        k = min(SUBMIT_BATCH, n - start)
        cluster.send({"t": P.TASK_SUBMIT, "tasks": [[link]] * k}, [CONTENT] * k)
    done = 0
    while done < n:
        answered = 0
        for eid, ident in enumerate(cluster.idents):
            engine = cluster.engine(eid)
            cmds = [engine.current, *engine.ahead] if engine.current is not None else []
            cmds = cmds[:REPLIES_AT_MOST]
            if not cmds:
                continue
            items = [[c.cmd_id, P.STATUS_OK, P.PICKLE, 1e-5, None, 0] for c in cmds]
            header = {"t": P.REPLIES, "replies": items}
            cluster.hub.on_engine(Message([ident], header, b"", [RESULT] * len(items)))
            turn()
            answered += len(items)
        cluster.outbox.sent.clear()
        done += answered
        if not answered:  # (nothing went out: what waits for the disk)
            cluster.hub.store.sync()
            turn()
    cluster.hub.store.sync()
    turn()
    counts = cluster.hub.scheduler.table.status(False)
    if counts[P.SUCCEEDED] != n:  # (a harness that stopped speaking the hub's language)
        raise SystemExit(f"hub_tasks: {n} tasks submitted, their states: {counts}")
    cluster.send({"t": P.TASK_CLEAR})
    cluster.hub.store.sync()
    turn()
    cluster.outbox.sent.clear()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=10_000, help="tasks per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    fakes._as_sent = lambda header: header  # (the real outbox packs once: no round trip)
    with tempfile.TemporaryDirectory() as tmp:
        store = ResultStore(os.path.join(tmp, "results.db"), 64 << 20)
        cluster = fakes.FakeCluster(n=2, store=store)
        hub = cluster.hub
        hub.dispatch.batching = True  # as in a running controller (relay.py)

        def turn() -> None:  # what the controller's loop does at the end of a turn
            hub.scheduler.table.flush()
            hub.store.turn()
            hub.dispatch.send_batched()

        gc.collect()
        gc.freeze()
        young = getattr(controller_main, "YOUNG_GC_EVERY", None)
        if young is not None:
            gc.set_threshold(young, *gc.get_threshold()[1:])
        run(cluster, turn, args.n)  # warm up
        per_task = []
        for _ in range(args.rounds):
            start = time.process_time()
            run(cluster, turn, args.n)
            per_task.append((time.process_time() - start) / args.n * 1e6)
        store.close()
    cells = " ".join(f"{x:.1f}" for x in sorted(per_task))
    print(f"controller hub CPU per task (µs), rounds from least: {cells}")


if __name__ == "__main__":
    main()
