"""Shared fixtures: real controller and engine processes on loopback.

* ``multiengine_dir`` (session, autouse): ``MULTIENGINE_DIR`` for the whole session, so
  every cluster directory lives under one temporary folder.
* ``cluster`` (session): one 4-engine cluster for tests that do not break engines.
* ``mec`` (function): a client of that cluster, with every engine reset first, so each
  test starts from fresh namespaces (``In [1]``) and the default targets/block.
* ``tc`` (function): a task client of that cluster, its finished tasks cleared.
* ``fresh_cluster`` (function): a factory for a cluster of one's own, for tests that
  kill engines or the controller; it is stopped at the end of the test.
* ``latch`` (function): a factory of :class:`helpers.Latch` es; all are set when the test
  ends, so no engine stays blocked on one.

The fault tests (``@pytest.mark.fault``) have their results recorded in
``build/fault-results.json`` for the tables of docs/reliability.md (``fault_plugin.py``).

Every process started here is ended by PID when the fixture finishes. When the session
ends, it checks that no engine, controller or other process it started is left running
(any process whose command line names a path under ``MULTIENGINE_DIR``, or a multiengine
process started with it): such processes are killed and the session fails, listing them.

Helpers shared by tests (waiting, the command line, processes) are in ``helpers.py``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fault_plugin import FaultRecorder
from helpers import Latch, kill_pids, processes_using, wait_until

# Every message the tests make any process send is checked against the protocol table
# (multiengine/wire/protocol.py); subprocesses inherit the setting.
os.environ["MULTIENGINE_CHECK_PROTOCOL"] = "1"

import multiengine
from multiengine.cluster.cluster import Cluster


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(FaultRecorder(config), "multiengine-fault-recorder")


@pytest.fixture(scope="session", autouse=True)
def multiengine_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    d = tmp_path_factory.mktemp("multiengine-home")
    old = os.environ.get("MULTIENGINE_DIR")
    os.environ["MULTIENGINE_DIR"] = str(d)
    yield d
    if old is None:
        os.environ.pop("MULTIENGINE_DIR", None)
    else:
        os.environ["MULTIENGINE_DIR"] = old
    # Torn down last of the session's fixtures (it is set up first): every cluster is
    # stopped by now. Give exiting processes a moment, then kill and report the rest.
    left: dict[int, str] = {}
    try:
        wait_until(lambda: not processes_using(d), 10, 0.1, "the session's processes to exit")
    except AssertionError:
        left = processes_using(d)
    if left:
        kill_pids(left)
        listing = "\n".join(f"  pid {pid}: {cmd}" for pid, cmd in sorted(left.items()))
        pytest.fail(
            f"processes started by this test session were left running (now killed):\n{listing}",
            pytrace=False,
        )


@pytest.fixture
def any_header(monkeypatch: pytest.MonkeyPatch) -> None:
    """For tests that frame made-up or malformed messages on purpose: this process does
    not check what it sends against the protocol table."""
    monkeypatch.setattr("multiengine.wire.message._CHECK", False)


@pytest.fixture(scope="session")
def cluster(multiengine_dir: Path) -> Iterator[Cluster]:
    c = Cluster(n=4, heartbeat_period=0.25, heartbeat_timeout=2.0, task_failure_penalty=0.05)
    with c:
        yield c
    for p in c.engines:
        assert p.poll() is not None


@pytest.fixture
def mec(cluster: Cluster) -> Iterator[multiengine.MultiEngineClient]:
    client = cluster.multiengine_client()
    ids = client.get_ids()
    assert ids == [0, 1, 2, 3], f"the shared cluster lost engines: {ids}"
    client.clear_queue()
    client.reset()
    yield client
    client.close()


@pytest.fixture
def tc(cluster: Cluster, mec: multiengine.MultiEngineClient) -> Iterator[multiengine.TaskClient]:
    """A task client of the shared cluster; engines reset (by ``mec``) and old tasks cleared."""
    client = cluster.task_client()
    client.clear()
    yield client
    client.close()


@pytest.fixture
def fresh_cluster(multiengine_dir: Path) -> Iterator[Callable[..., Cluster]]:
    started: list[Cluster] = []

    def make(n: int = 2, **kwargs: object) -> Cluster:
        kwargs.setdefault("heartbeat_period", 0.25)
        kwargs.setdefault("heartbeat_timeout", 1.5)
        kwargs.setdefault("task_failure_penalty", 0.05)
        c = Cluster(n=n, **kwargs)  # type: ignore[arg-type]
        started.append(c)
        return c.start()

    yield make
    for c in started:
        c.stop()


@pytest.fixture(scope="session")
def _latch_dir() -> Iterator[Path]:
    # Short paths (not under tmp_path) keep the engine code of a latch short enough to be
    # shown whole in queue_status.
    d = Path(tempfile.mkdtemp(prefix="me-latch-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def latch(_latch_dir: Path) -> Iterator[Callable[[], Latch]]:
    """``latch()`` gives a new, unset :class:`helpers.Latch`; every one is set at the end."""
    made: list[Latch] = []

    def make() -> Latch:
        made.append(Latch(_latch_dir / uuid.uuid4().hex[:12]))
        return made[-1]

    yield make
    for one in made:
        one.set()
