"""The systems ``multiengine bench`` compares: multiengine, ipyparallel and dask.distributed.

Each system is a small adapter (:class:`System`): ``start(n)`` brings up a fresh local
cluster of ``n`` engines (dask: workers) and returns its :class:`Ops`, the timed
operations side by side under the same names, so that one measuring code
(:mod:`multiengine.bench.measure`) serves all three; ``stop()`` takes it down again.
The multiengine adapter uses only the public API (``multiengine.Cluster`` and the
clients it hands out), as a user's script would.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["Ops", "System", "MultiEngine", "IPyParallel", "Dask"]


@dataclass(frozen=True)
class Ops:
    """The timed operations of one started system, side by side for easy comparison."""

    execute_one: Callable[[], Any]  # tiny round trip to engine 0
    pull_tiny: Callable[[], Any]  # fetch a tiny value held by engine 0
    execute_all: Callable[[], Any]  # tiny round trip to every engine
    push: Callable[[Any], Any]  # put the array on engine 0 as ``a``
    pull: Callable[[], Any]  # get ``a`` back from engine 0
    map: Callable[[Callable[[Any], Any], range], Any]  # a parallel map over every engine
    tasks: Callable[[Callable[[Any], Any], range], Any]  # one load-balanced task per item
    drop: Callable[[], Any]  # free ``a`` on engine 0


class System(Protocol):
    """``start`` returns once a connected client sees ``n`` engines; ``stop`` also cleans up
    after a partial start. ``module`` is the package to import (and take the version from)."""

    name: str
    module: str

    def start(self, n: int) -> Ops: ...
    def stop(self) -> None: ...


def _zero() -> int:  # importable, so dask ships it by reference
    return 0


class MultiEngine:
    name = module = "multiengine"
    cluster: Any = None

    def start(self, n: int) -> Ops:
        import multiengine

        self.cluster = multiengine.Cluster(n=n)
        mec = self.cluster.start().multiengine_client()
        tc = self.cluster.task_client()

        def tasks(f: Callable[[Any], Any], seq: range) -> list[Any]:
            results: list[Any] = tc.map(f, seq, chunksize=1)
            tc.clear()  # the controller forgets these results: they do not pile up across runs
            return results

        return Ops(
            execute_one=lambda: mec.execute("pass", targets=0),
            pull_tiny=lambda: mec.pull("id", targets=0),
            execute_all=lambda: mec.execute("pass", targets="all"),
            push=lambda a: mec.push({"a": a}, targets=0),
            pull=lambda: mec.pull("a", targets=0)[0],
            map=lambda f, seq: mec.map(f, seq),
            tasks=tasks,
            drop=lambda: mec.execute("del a", targets=0),
        )

    def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()
        self.cluster = None


class IPyParallel:
    name = module = "ipyparallel"
    cluster: Any = None
    rc: Any = None
    tmp: str | None = None

    def start(self, n: int) -> Ops:
        import ipyparallel as ipp

        self.tmp = tempfile.mkdtemp(prefix="multiengine-bench-ipp-")  # a throw-away profile
        self.cluster = ipp.Cluster(
            n=n, profile_dir=self.tmp, log_level=logging.WARNING, engine_timeout=60
        )
        self.rc = self.cluster.start_and_connect_sync()
        one, dv, lbv = self.rc[0], self.rc[:], self.rc.load_balanced_view()
        return Ops(
            execute_one=lambda: one.execute("pass", block=True),
            pull_tiny=lambda: one.pull("id", block=True),
            execute_all=lambda: dv.execute("pass", block=True),
            push=lambda a: one.push({"a": a}, block=True),
            pull=lambda: one.pull("a", block=True),
            map=lambda f, seq: dv.map_sync(f, seq),
            tasks=lambda f, seq: lbv.map_sync(f, seq, chunksize=1),
            drop=lambda: one.execute("del a", block=True),
        )

    def stop(self) -> None:
        rc, cluster, self.rc, self.cluster = self.rc, self.cluster, None, None
        try:
            _close_all(rc and rc.close, cluster and cluster.stop_cluster_sync)
        finally:
            if self.tmp:
                shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None


class Dask:
    """No engine namespaces here: a task pinned to a worker stands in for execute, the result of
    a finished task for a tiny pull, ``scatter`` and ``Future.result`` for push and pull."""

    name, module = "dask", "distributed"
    cluster: Any = None
    client: Any = None

    def start(self, n: int) -> Ops:
        from distributed import Client, LocalCluster

        self.cluster = LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.CRITICAL,
        )
        client = self.client = Client(self.cluster)
        client.wait_for_workers(n, timeout=60)
        workers = sorted(client.scheduler_info()["workers"])
        held: dict[str, Any] = {}

        def pull_tiny() -> None:  # the first call (a warm-up) makes the value on worker 0
            if "tiny" not in held:
                held["tiny"] = client.submit(_zero, workers=workers[:1], pure=False)
            held["tiny"].result()

        def push(a: Any) -> None:
            held.pop("a", None)
            held["a"] = client.scatter(a, workers=workers[:1], hash=False)

        return Ops(
            execute_one=lambda: client.submit(_zero, workers=workers[:1], pure=False).result(),
            pull_tiny=pull_tiny,
            execute_all=lambda: client.gather(
                [client.submit(_zero, workers=[w], pure=False) for w in workers]
            ),
            push=push,
            pull=lambda: held["a"].result(),
            map=lambda f, seq: client.gather(client.map(f, seq, pure=False)),
            tasks=lambda f, seq: client.gather(client.map(f, seq, pure=False)),
            drop=lambda: held.pop("a", None),
        )

    def stop(self) -> None:
        client, cluster, self.client, self.cluster = self.client, self.cluster, None, None
        _close_all(client and client.close, cluster and cluster.close)


def _close_all(*closers: Callable[[], Any] | None) -> None:
    """Call every closer given, even when one fails; then raise the first failure."""
    failures = []
    for close in closers:
        try:
            if close:
                close()
        except Exception as e:
            failures.append(e)
    if failures:
        raise failures[0]
