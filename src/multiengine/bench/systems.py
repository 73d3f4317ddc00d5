"""The systems ``multiengine bench`` compares: multiengine, ipyparallel, dask.distributed, Ray.

Each system is a small adapter (:class:`System`): ``start(n)`` brings up a fresh local
cluster of ``n`` engines (dask: workers; Ray: actors) and returns its :class:`Ops`, the
timed operations side by side under the same names, so that one measuring code
(:mod:`multiengine.bench.measure`) serves all four; ``stop()`` takes it down again.
``methods`` says, per row of the table, which call of the system is timed (the same
words are in benchmarks/README.md, and ``--json`` carries them). An operation a system
does not have is ``None`` in its :class:`Ops`, and its ``methods`` entry says why.
The multiengine adapter uses only the public API (``multiengine.Cluster`` and the
clients it hands out), as a user's script would.

The module holds four adapters of ~50 lines each, one per system, so that they can be
read side by side.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["Ops", "System", "MultiEngine", "IPyParallel", "Dask", "Ray", "NOT_BUILT"]

NOT_BUILT = "n/a (not built)"  # multiengine's push(..., shared=True) before it exists


@dataclass(frozen=True)
class Ops:
    """The timed operations of one started system, side by side for easy comparison.

    ``None``: the system has no such operation (the row shows the reason in ``methods``).
    """

    execute_one: Callable[[], Any] | None  # execute('pass') on engine 0
    call_one: Callable[[], Any]  # a no-op function called on engine 0
    pull_tiny: Callable[[], Any]  # fetch a tiny value held by engine 0
    execute_all: Callable[[], Any]  # tiny round trip to every engine
    push: Callable[[Any], Any]  # put the array on engine 0 as ``a`` (writable there)
    push_all: Callable[[Any], Any]  # put the array on every engine as ``a`` (writable there)
    push_shared: Callable[[Any], Any] | None  # the same, read-only, shared by the engines
    pull: Callable[[], Any]  # get ``a`` back from engine 0, writable
    pull_shared: Callable[[], Any] | None  # the same, a read-only view where the system has one
    scatter: Callable[[list[int]], Any] | None  # one contiguous part per engine, as ``x``
    gather: Callable[[], list[int]] | None  # the parts of ``x`` joined in engine order
    map: Callable[[Callable[[Any], Any], range], Any]  # a parallel map over every engine
    tasks: Callable[[Callable[[Any], Any], range], Any]  # one load-balanced task per item
    drop: Callable[[], Any]  # free ``a`` and ``x`` everywhere


class System(Protocol):
    """``start`` returns once a connected client sees ``n`` engines; ``stop`` also cleans up
    after a partial start. ``module`` is the package to import (and take the version from);
    ``methods`` maps a metric key to the call it times."""

    name: str
    module: str
    methods: dict[str, str]

    def start(self, n: int) -> Ops: ...
    def stop(self) -> None: ...


def _zero() -> int:  # importable, so dask and Ray ship it by reference
    return 0


def _parts(xs: Sequence[Any], n: int) -> list[Sequence[Any]]:
    """``n`` contiguous parts, the first ``len % n`` one longer (as ``dist='b'``)."""
    size, extra = divmod(len(xs), n)
    bounds = [0]
    for p in range(n):
        bounds.append(bounds[-1] + size + (p < extra))
    return [xs[lo:hi] for lo, hi in itertools.pairwise(bounds)]


def _joined(parts: Sequence[Sequence[Any]]) -> list[Any]:
    return list(itertools.chain.from_iterable(parts))


def _map_part(f: Callable[[Any], Any], part: Sequence[Any]) -> list[Any]:
    return [f(x) for x in part]


class MultiEngine:
    name = module = "multiengine"
    cluster: Any = None

    def __init__(self) -> None:
        self.methods = {
            "startup": "`Cluster(n).start()` + `multiengine_client()`",
            "rtt1": "`mec.execute('pass', targets=0)`",
            "call1": "`mec.executor(targets=0).submit(noop).result()`",
            "pull_tiny": "`mec.pull('id', targets=0)`",
            "rtt_all": "`mec.execute('pass', targets='all')`",
            "push": "`mec.push({'a': a}, targets=0)`",
            "push_all": "`mec.push({'a': a}, targets='all')`",
            "push_shared": "`mec.push({'a': a}, targets='all', shared=True)`",
            "pull": "`mec.pull('a', targets=0)`",
            "pull_shared": "`mec.pull('a', targets=0, shared=True)`: a read-only array",
            "scatter": "`mec.scatter('x', xs)`",
            "gather": "`mec.gather('x')`",
            "map": "`mec.map(f, seq)`",
            "tasks": "`tc.map(f, seq, chunksize=1)`, then `tc.clear()`",
            "shutdown": "`cluster.stop()`",
            "many_start": "`Cluster(N).start()` + `multiengine_client()`",
            "many_rtt_all": "`mec.execute('pass', targets='all')`",
        }

    def start(self, n: int) -> Ops:
        import multiengine

        self.cluster = multiengine.Cluster(n=n)
        mec = self.cluster.start().multiengine_client()
        tc = self.cluster.task_client()
        on_zero = mec.executor(targets=0)

        def tasks(f: Callable[[Any], Any], seq: range) -> list[Any]:
            results: list[Any] = tc.map(f, seq, chunksize=1)
            tc.clear()  # the controller forgets these results: they do not pile up across runs
            return results

        return Ops(
            execute_one=lambda: mec.execute("pass", targets=0),
            call_one=lambda: on_zero.submit(_zero).result(),
            pull_tiny=lambda: mec.pull("id", targets=0),
            execute_all=lambda: mec.execute("pass", targets="all"),
            push=lambda a: mec.push({"a": a}, targets=0),
            push_all=lambda a: mec.push({"a": a}, targets="all"),
            # a TypeError until push takes ``shared`` (being built): the row says "not built"
            push_shared=lambda a: mec.push({"a": a}, targets="all", shared=True),
            pull=lambda: mec.pull("a", targets=0)[0],
            pull_shared=lambda: mec.pull("a", targets=0, shared=True)[0],
            scatter=lambda xs: mec.scatter("x", xs),
            gather=lambda: mec.gather("x"),
            map=lambda f, seq: mec.map(f, seq),
            tasks=tasks,
            drop=lambda: mec.execute("a = x = None", targets="all"),
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

    def __init__(self) -> None:
        self.methods = {
            "startup": "`ipp.Cluster(n=n).start_and_connect_sync()`",
            "rtt1": "`rc[0].execute('pass', block=True)`",
            "call1": "`rc[0].apply_sync(noop)`",
            "pull_tiny": "`rc[0].pull('id', block=True)`",
            "rtt_all": "`rc[:].execute('pass', block=True)`",
            "push": "`rc[0].push({'a': a}, block=True)`",
            "push_all": "`rc[:].push({'a': a}, block=True)`",
            "push_shared": "— (no shared-memory push)",
            "pull": "`rc[0].pull('a', block=True)`",
            "pull_shared": "— (no read-only pull)",
            "scatter": "`rc[:].scatter('x', xs, block=True)`",
            "gather": "`rc[:].gather('x', block=True)`",
            "map": "`rc[:].map_sync(f, seq)`",
            "tasks": "`rc.load_balanced_view().map_sync(f, seq, chunksize=1)`",
            "shutdown": "`rc.close()` + `cluster.stop_cluster_sync()`",
        }

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
            call_one=lambda: one.apply_sync(_zero),
            pull_tiny=lambda: one.pull("id", block=True),
            execute_all=lambda: dv.execute("pass", block=True),
            push=lambda a: one.push({"a": a}, block=True),
            push_all=lambda a: dv.push({"a": a}, block=True),
            push_shared=None,
            pull=lambda: one.pull("a", block=True),
            pull_shared=None,
            scatter=lambda xs: dv.scatter("x", xs, block=True),
            gather=lambda: dv.gather("x", block=True),
            map=lambda f, seq: dv.map_sync(f, seq),
            tasks=lambda f, seq: lbv.map_sync(f, seq, chunksize=1),
            drop=lambda: dv.execute("a = x = None", block=True),
        )

    def stop(self) -> None:
        rc, cluster, self.rc, self.cluster = self.rc, self.cluster, None, None
        try:
            _close_all(rc and rc.close, cluster and cluster.stop_cluster_sync)
        finally:
            if self.tmp:
                shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None


_DASK_LISTS = "— (a list is serialized item by item: 50,000 ints took 7-25 s)"


class Dask:
    """No engine namespaces here: the result of a finished task stands in for a tiny pull,
    ``scatter`` and ``Future.result`` for push and pull. No list rows: dask serializes a
    list element by element (scattering 50,000 ints took 7-25 s here, gathering them
    back 19-22 s), so a list of a million does not fit a measurement's budget."""

    name, module = "dask", "distributed"
    cluster: Any = None
    client: Any = None

    def __init__(self) -> None:
        self.methods = {
            "startup": "`LocalCluster(n_workers=n, threads_per_worker=1, processes=True)`"
            " + `Client` + `wait_for_workers(n)`",
            "rtt1": "— (no engine namespace to execute code in)",
            "call1": "`client.submit(noop, workers=[w0], pure=False).result()`",
            "pull_tiny": "`future.result()` of a small result already on worker 0",
            "rtt_all": "one pinned `noop` task per worker, `client.gather`",
            "push": "`client.scatter(a, workers=[w0], hash=False)`",
            "push_all": "`client.scatter(a, broadcast=True, hash=False)`",
            "push_shared": "— (no shared-memory push)",
            "pull": "`future.result()` of the array scattered to worker 0",
            "pull_shared": "— (no read-only pull)",
            "scatter": _DASK_LISTS,
            "gather": _DASK_LISTS,
            "map": "`client.gather(client.map(f, seq, pure=False))`",
            "tasks": "`client.gather(client.map(f, seq, pure=False))`",
            "shutdown": "`client.close()` + `cluster.close()`",
        }

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

        def push(a: Any, **where: Any) -> None:
            held.pop("a", None)
            held["a"] = client.scatter(a, hash=False, **where)

        def drop() -> None:
            held.pop("a", None)

        return Ops(
            execute_one=None,
            call_one=lambda: client.submit(_zero, workers=workers[:1], pure=False).result(),
            pull_tiny=pull_tiny,
            execute_all=lambda: client.gather(
                [client.submit(_zero, workers=[w], pure=False) for w in workers]
            ),
            push=lambda a: push(a, workers=workers[:1]),
            push_all=lambda a: push(a, broadcast=True),
            push_shared=None,
            pull=lambda: held["a"].result(),
            pull_shared=None,
            scatter=None,
            gather=None,
            map=lambda f, seq: client.gather(client.map(f, seq, pure=False)),
            tasks=lambda f, seq: client.gather(client.map(f, seq, pure=False)),
            drop=drop,
        )

    def stop(self) -> None:
        client, cluster, self.client, self.cluster = self.client, self.cluster, None, None
        _close_all(client and client.close, cluster and cluster.close)


class RayEngine:
    """What a Ray actor holds to stand in for an engine: a namespace and a few methods.

    ``put(..., writable=True)`` copies an array that arrived read-only from Ray's object
    store, so that the engine holds a writable array, as multiengine's push gives by
    default; ``writable=False`` keeps the zero-copy view (the shared row).
    """

    def __init__(self) -> None:
        self.ns: dict[str, Any] = {"id": 0}

    def noop(self) -> None:
        return None

    def put(self, key: str, value: Any, writable: bool) -> None:
        if writable and getattr(value, "flags", None) is not None and not value.flags.writeable:
            value = value.copy()
        self.ns[key] = value

    def get(self, key: str) -> Any:
        return self.ns[key]

    def call(self, f: Callable[..., Any], *args: Any) -> Any:
        return f(*args)

    def drop(self) -> None:
        self.ns = {"id": 0}


class Ray:
    """A local Ray cluster of ``n`` CPUs: one actor per engine, tasks for the tasks row.

    The actors reserve no CPU (``num_cpus=0``), so that all ``n`` CPUs stay free for
    the tasks row's task workers; arrays go by value (Ray puts a large argument in its
    object store, and the actor copies it to a writable array) except on the shared row,
    where one ``ray.put`` is handed to every actor (a read-only zero-copy view each).
    """

    name = module = "ray"
    tmp: str | None = None

    def __init__(self) -> None:
        self.methods = {
            "startup": "`ray.init(num_cpus=n)` + n actors, each answering a call",
            "rtt1": "— (no engine namespace to execute code in)",
            "call1": "`ray.get(actor0.noop.remote())`",
            "pull_tiny": "`ray.get(actor0.get.remote('id'))`",
            "rtt_all": "`ray.get([actor.noop.remote() for each actor])`",
            "push": "`ray.get(actor0.put.remote('a', a))`: by value, copied to writable",
            "push_all": "`actor.put.remote('a', a)` per actor: by value, copied to writable",
            "push_shared": "`ref = ray.put(a)`, `actor.put.remote('a', ref)` per actor:"
            " read-only views",
            "pull": "`ray.get(actor0.get.remote('a')).copy()`: Ray's arrays are read-only"
            " views of its object store; a writable one is a copy",
            "pull_shared": "`ray.get(actor0.get.remote('a'))`: a read-only view of the object"
            " store",
            "scatter": "`actor.put.remote('x', part)` per actor, `ray.get`",
            "gather": "`ray.get([actor.get.remote('x') ...])`, joined",
            "map": "`actor.call.remote(map_part, f, part)` per actor, `ray.get`",
            "tasks": "`ray.get([ray.remote(f).remote(x) for x in seq])`",
            "shutdown": "`ray.shutdown()`",
        }

    def start(self, n: int) -> Ops:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # reports nothing anywhere
        import ray

        self.tmp = tempfile.mkdtemp(prefix="me-bench-ray-")  # short: it holds unix sockets
        ray.init(
            num_cpus=n,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,
            _temp_dir=self.tmp,
        )
        engine: Any = ray.remote(num_cpus=0)(RayEngine)  # Ray's stubs do not follow .remote
        actors: list[Any] = [engine.remote() for _ in range(n)]
        ray.get([a.noop.remote() for a in actors])
        zero = actors[0]
        remote_fns: dict[Any, Any] = {}

        def push_all(a: Any, writable: bool = True) -> None:
            ref = a if writable else ray.put(a)
            ray.get([actor.put.remote("a", ref, writable) for actor in actors])

        def tasks(f: Callable[[Any], Any], seq: range) -> list[Any]:
            key = getattr(f, "__code__", f)  # the same function each sample: one export
            if key not in remote_fns:
                remote_fns[key] = ray.remote(num_cpus=1)(f)
            return list(ray.get([remote_fns[key].remote(x) for x in seq]))

        return Ops(
            execute_one=None,
            call_one=lambda: ray.get(zero.noop.remote()),
            pull_tiny=lambda: ray.get(zero.get.remote("id")),
            execute_all=lambda: ray.get([a.noop.remote() for a in actors]),
            push=lambda a: ray.get(zero.put.remote("a", a, True)),
            push_all=push_all,
            push_shared=lambda a: push_all(a, writable=False),
            pull=lambda: ray.get(zero.get.remote("a")).copy(),
            pull_shared=lambda: ray.get(zero.get.remote("a")),
            scatter=lambda xs: ray.get(
                [a.put.remote("x", p, True) for a, p in zip(actors, _parts(xs, n), strict=True)]
            ),
            gather=lambda: _joined(ray.get([a.get.remote("x") for a in actors])),
            map=lambda f, seq: _joined(
                ray.get(
                    [
                        a.call.remote(_map_part, f, p)
                        for a, p in zip(actors, _parts(seq, n), strict=True)
                    ]
                )
            ),
            tasks=tasks,
            drop=lambda: ray.get([a.drop.remote() for a in actors]),
        )

    def stop(self) -> None:
        try:
            import ray

            ray.shutdown()
        finally:
            if self.tmp:
                shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None


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
