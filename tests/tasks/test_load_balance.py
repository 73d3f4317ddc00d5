"""Load balance holds: tasks sent ahead to a busy engine run elsewhere when another
engine goes idle, instead of waiting behind a long task."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from helpers import Latch, wait_until

from multiengine import MapTask


def _hold_until(path: str) -> int:
    """Runs on an engine: wait for ``path`` to exist (the test creates it); the engine id."""

    while not os.path.exists(path):
        time.sleep(0.01)
    return id  # type: ignore[name-defined]  # noqa: F821 - the engine's own id


def _engine_id(x: int) -> tuple[int, int]:
    return x, id  # type: ignore[name-defined]  # noqa: F821


def test_tasks_sent_ahead_behind_a_long_task_run_on_the_idle_engine(
    fresh_cluster: Callable[..., object], latch: Callable[[], Latch]
) -> None:
    cluster = fresh_cluster(2)
    tc = cluster.task_client()  # type: ignore[attr-defined]
    gate = latch()
    long_id = tc.run(MapTask(_hold_until, (str(gate.path),)))
    wait_until(lambda: tc.queue_status()["pending"] == 1)
    short_ids = [tc.run(MapTask(_engine_id, (i,))) for i in range(6)]
    # every short task finishes while the long one still holds its engine
    wait_until(lambda: all(tc.get_task_result(t) is not None for t in short_ids))
    assert tc.get_task_result(long_id) is None
    gate.set()
    long_engine = tc.get_task_result(long_id, block=True)
    results = [tc.get_task_result(t) for t in short_ids]
    assert [x for x, _ in results] == list(range(6))
    assert {engine for _, engine in results} == {1 - long_engine}
