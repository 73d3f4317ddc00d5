"""Shared fixtures: real controller and engine processes on loopback.

* ``cluster`` (session): one 4-engine cluster for tests that do not break engines.
* ``mec`` (function): a client of that cluster, with every engine reset first, so each
  test starts from fresh namespaces (``In [1]``) and the default targets/block.
* ``fresh_cluster`` (function): a factory for a cluster of one's own, for tests that
  kill engines or the controller; it is stopped at the end of the test.

Every process started here is ended by PID when the fixture finishes; the session
also checks that no engine or controller it started is left running.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# Every message the tests make any process send is checked against the protocol table
# (multiengine/wire/protocol.py); subprocesses inherit the setting.
os.environ["MULTIENGINE_CHECK_PROTOCOL"] = "1"

import multiengine
from multiengine.cluster.cluster import Cluster


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


def run_cli(
    *args: str, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m multiengine ARGS`` and return the finished process."""
    return subprocess.run(
        [sys.executable, "-m", "multiengine", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def process_running(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for PID 1 to reap it counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False
