"""Engines registering: the lowest free id, a desired id (an MPI rank), ids reused after a
kill (seed §E, seed-system §1.3), get_ids, and what a cluster without engines says."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from helpers import assert_cluster_works, wait_until
from seed_data import INVALID_ID_CALLS

import multiengine
from multiengine.cluster.cluster import Cluster
from multiengine.controller.engines import IdAllocator
from multiengine.errors import CompositeError, NoEnginesRegistered


def test_register_unregister_multiple_engines():
    # seed §E testRegisterUnregisterMultipleEngines
    ids = IdAllocator()
    assert ids.take(0) == 0
    assert ids.take(1) == 1
    ids.release(0)
    assert ids.take(0) == 0
    ids.release(1)
    assert ids.take(0) == 1  # 0 is taken: the lowest free id instead
    ids.release(0)
    ids.release(1)
    assert [ids.take() for _ in range(3)] == [0, 1, 2]


def test_lowest_free_id_and_reuse():
    ids = IdAllocator()
    assert [ids.take() for _ in range(5)] == [0, 1, 2, 3, 4]
    ids.release(3)
    ids.release(1)
    assert ids.take() == 1
    assert ids.take() == 3
    assert ids.take() == 5


def test_desired_id_is_honoured():
    ids = IdAllocator()
    assert ids.take(5) == 5  # an MPI rank
    assert [ids.take() for _ in range(6)] == [0, 1, 2, 3, 4, 6]
    assert ids.take(2) == 7  # taken: the lowest free one
    ids.release(5)
    assert ids.take(5) == 5


def test_no_511_engine_cap():
    ids = IdAllocator()
    assert [ids.take() for _ in range(600)] == list(range(600))
    assert ids.take(1000) == 1000
    ids.release(550)
    assert ids.take() == 550


def test_get_ids(fresh_cluster: Callable[..., Cluster]) -> None:
    # seed §B: testGetIDs (Basic and Synchronous alike: get_ids always blocks).
    c = fresh_cluster(1)
    mec = c.multiengine_client()
    assert mec.get_ids() == [0]
    c.start_engines(3)
    assert mec.get_ids() == [0, 1, 2, 3]
    assert len(mec) == 4


def test_no_engines_registered_for_every_method(fresh_cluster: Callable[..., Cluster]) -> None:
    # seed §B: testNoEnginesRegistered: 'all' with no engines raises NoEnginesRegistered directly.
    c = fresh_cluster(0)
    mec = c.multiengine_client()
    assert mec.get_ids() == []
    for method, args in INVALID_ID_CALLS:
        with pytest.raises(NoEnginesRegistered):
            getattr(mec, method)(*args, targets="all")


NO_ENGINES = "There are no engines registered. Check the logs if you think there should have been."


def test_no_engines_registered_then_an_engine_arrives(
    fresh_cluster: Callable[..., multiengine.Cluster],
) -> None:
    c = fresh_cluster(0)
    mec = c.multiengine_client()
    assert mec.get_ids() == []
    for call in (lambda: mec.execute("a = 1"), lambda: mec.pull("a"), lambda: mec.push({"a": 1})):
        with pytest.raises(NoEnginesRegistered) as info:
            call()
        assert not isinstance(info.value, CompositeError)
        assert str(info.value) == NO_ENGINES
    # the controller is fine: an engine that arrives later is used
    c.start_engines(1)
    assert mec.get_ids() == [0]
    assert_cluster_works(mec)


def _engine_id_reuse(c: multiengine.Cluster, wait_for_exit: bool) -> None:
    mec = c.multiengine_client()
    assert mec.get_ids() == [0, 1, 2]
    old = c.engine_pids()
    mec.kill(targets=1)
    assert mec.get_ids() == [0, 2]
    if wait_for_exit:
        proc: Any = next(p for p in c.engines if p.pid == old[1])
        wait_until(lambda: proc.poll() is not None, message="the killed engine to exit")
    new = c.start_engines(1)
    assert new == [1]
    wait_until(lambda: mec.get_ids() == [0, 1, 2], message="the new engine to register")
    now = c.engine_pids()
    assert now[1] != old[1]
    assert now[0] == old[0] and now[2] == old[2]
    mec.execute("probe = id")
    assert mec.pull("probe") == [0, 1, 2]


def test_engine_id_is_reused_after_kill(fresh_cluster: Callable[..., multiengine.Cluster]) -> None:
    _engine_id_reuse(fresh_cluster(3, timeout=15), wait_for_exit=True)


def test_start_engines_right_after_kill(fresh_cluster: Callable[..., multiengine.Cluster]) -> None:
    """``start_engines(1)`` at once after ``kill`` must not wait for an engine that is leaving."""
    _engine_id_reuse(fresh_cluster(3, timeout=15), wait_for_exit=False)
