"""``multiengine.Cluster``: every process started and stopped (also when the body raises),
two clusters side by side, the cluster directory and its private files (contract §4,
§7), ``kill(controller=True)`` (decision 13)."""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import assert_engines_work, running, wait_until

import multiengine


def cluster_pids(c: multiengine.Cluster) -> list[int]:
    assert c.controller is not None
    return [c.controller.pid, *(p.pid for p in c.engines)]


def test_cluster_context_manager_starts_and_stops_every_process(multiengine_dir: Path) -> None:
    with multiengine.Cluster(n=2) as c:
        mec = c.multiengine_client()
        assert mec.get_ids() == [0, 1]
        assert_engines_work(mec, 2)
        pids = cluster_pids(c)
        assert len(pids) == 3
        assert set(c.engine_pids().values()) == {p.pid for p in c.engines}
        assert running(pids) == pids
        assert c.cluster_dir.path.parent == multiengine_dir
    assert running(pids) == [], "processes left running after the with block"


def test_cluster_context_manager_stops_everything_when_the_body_raises(
    multiengine_dir: Path,
) -> None:
    pids: list[int] = []
    with pytest.raises(RuntimeError, match="boom"):
        with multiengine.Cluster(n=2) as c:
            pids = cluster_pids(c)
            assert c.multiengine_client().get_ids() == [0, 1]
            raise RuntimeError("boom")
    assert len(pids) == 3
    assert running(pids) == [], "processes left running after the body raised"


def test_two_clusters_run_side_by_side(multiengine_dir: Path) -> None:
    with multiengine.Cluster(n=1) as a, multiengine.Cluster(n=2) as b:
        assert a.profile != b.profile
        assert a.cluster_dir.path != b.cluster_dir.path
        ma, mb = a.multiengine_client(), b.multiengine_client()
        assert ma.get_ids() == [0]
        assert mb.get_ids() == [0, 1]
        ma.push({"where": "a"})
        mb.push({"where": "b"})
        assert ma.pull("where") == ["a"]
        assert mb.pull("where") == ["b", "b"]
        a_pids, b_pids = cluster_pids(a), cluster_pids(b)
        assert not set(a_pids) & set(b_pids)
        b.stop()
        assert running(b_pids) == []
        # the other cluster is untouched
        assert running(a_pids) == a_pids
        assert ma.pull("where") == ["a"]
    assert running(a_pids) == []


def test_security_dir_and_connection_files(cluster: multiengine.Cluster) -> None:
    sec = cluster.cluster_dir.security
    assert sec == cluster.cluster_dir.path / "security"
    assert stat.S_IMODE(sec.stat().st_mode) == 0o700
    assert cluster.cluster_dir.path.name == f"cluster_{cluster.profile}"
    assert cluster.cluster_dir.path.parent == Path(os.environ["MULTIENGINE_DIR"])
    urls = {}
    for name in ("client.json", "engine.json"):
        f = sec / name
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, name
        data = json.loads(f.read_text())
        assert isinstance(data, dict)
        assert isinstance(data["key"], str) and len(bytes.fromhex(data["key"])) >= 16, name
        assert data["signature_scheme"] == "hmac-sha256"
        assert "curve_serverkey" in data and data["curve_serverkey"] is None
        assert isinstance(data["addresses"], dict) and data["addresses"], name
        for channel, url in data["addresses"].items():
            assert re.fullmatch(r"tcp://127\.0\.0\.1:\d+", url), (name, channel, url)
        urls[name] = data["addresses"]
    # clients and engines get separate files and channels
    assert set(urls["client.json"].values()).isdisjoint(urls["engine.json"].values())
    assert not [p.name for p in sec.iterdir() if p.name.startswith(".tmp")], (
        "half-written files left"
    )
    # the client file is what a client needs
    with multiengine.MultiEngineClient(connection_file=sec / "client.json", timeout=5) as mec:
        assert mec.get_ids() == [0, 1, 2, 3]


def _wait_all_exited(c: multiengine.Cluster, timeout: float = 15) -> None:
    procs = [*c.engines, *([c.controller] if c.controller else [])]
    wait_until(
        lambda: all(p.poll() is not None for p in procs),
        timeout,
        message="the cluster's processes to exit",
    )


@pytest.mark.fault(
    section="engines-that-die",
    fault="`kill(controller=True)`",
    outcome="the cluster ends: every process exits",
)
def test_kill_controller_stops_engines_and_controller(
    fresh_cluster: Callable[..., multiengine.Cluster],
) -> None:
    c = fresh_cluster(2)
    mec = c.multiengine_client()
    assert_engines_work(mec, 2)
    pids = cluster_pids(c)
    mec.kill(controller=True)
    _wait_all_exited(c)
    assert running(pids) == []


def test_kill_controller_non_blocking_completes(
    fresh_cluster: Callable[..., multiengine.Cluster],
) -> None:
    c = fresh_cluster(2)
    mec = c.multiengine_client()
    pids = cluster_pids(c)
    pr = mec.kill(controller=True, block=False)
    assert isinstance(pr, multiengine.PendingResult)
    repr(pr)
    assert pr.wait(15), "the non-blocking kill(controller=True) never completed"
    result = pr.r
    assert len(result) == 2
    _wait_all_exited(c)
    assert running(pids) == []
