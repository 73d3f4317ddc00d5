"""joblib's Parallel running on real engines through the multiengine backend."""

from __future__ import annotations

import os

import pytest

import multiengine
from multiengine.cluster.cluster import Cluster

joblib = pytest.importorskip("joblib")


def test_parallel_runs_on_the_engines(cluster: Cluster, tc: multiengine.TaskClient) -> None:
    multiengine.register_joblib_backend()
    engine_pids = set(cluster.engine_pids().values())
    with joblib.parallel_backend("multiengine", cluster_dir=str(cluster.cluster_dir.path)):
        squares = joblib.Parallel(n_jobs=-1)(joblib.delayed(pow)(i, 2) for i in range(40))
        pids = joblib.Parallel(n_jobs=-1)(joblib.delayed(os.getpid)() for _ in range(16))
    assert squares == [i * i for i in range(40)]
    assert set(pids) <= engine_pids and os.getpid() not in pids


def test_errors_come_back_as_in_joblib(cluster: Cluster, tc: multiengine.TaskClient) -> None:
    multiengine.register_joblib_backend()
    with joblib.parallel_backend("multiengine", client=tc):
        with pytest.raises(ZeroDivisionError):
            joblib.Parallel(n_jobs=2)(joblib.delayed(lambda x: 1 / x)(x) for x in [1, 0, 2])
        assert joblib.Parallel(n_jobs=2)(joblib.delayed(abs)(-x) for x in range(5)) == list(
            range(5)
        )
