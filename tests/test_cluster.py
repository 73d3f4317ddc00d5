"""Starting and stopping clusters: ``multiengine.Cluster``, the cluster directory and its
files (contract §4, §7), the ``multiengine cluster`` command line and its exit codes
(contract §3, seed-system.md §1.7-1.8), ``kill(controller=True)`` (decision 13) and the
reuse of engine ids (seed-system.md §1.3).
"""

from __future__ import annotations

import json
import os
import re
import stat
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import kill_pids, processes_using, run_cli, running, wait_until

import multiengine
from multiengine.errors import ControllerConnectionError


# ---------------------------------------------------------------- helpers
def unique_profile(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def cluster_pids(c: multiengine.Cluster) -> list[int]:
    assert c.controller is not None
    return [c.controller.pid, *(p.pid for p in c.engines)]


def assert_works(mec: multiengine.MultiEngineClient, n: int) -> None:
    mec.execute("probe = id * 10")
    assert mec.pull("probe") == [10 * i for i in range(n)]


# ---------------------------------------------------------------- Cluster()
def test_cluster_context_manager_starts_and_stops_every_process(multiengine_dir: Path) -> None:
    with multiengine.Cluster(n=2) as c:
        mec = c.multiengine_client()
        assert mec.get_ids() == [0, 1]
        assert_works(mec, 2)
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


# ---------------------------------------------------------------- files
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


# ---------------------------------------------------------------- the command line
def test_cli_cluster_create(multiengine_dir: Path) -> None:
    profile = unique_profile("create")
    r = run_cli("cluster", "create", "-p", profile)
    assert r.returncode == 0, r.stderr
    cdir = multiengine_dir / f"cluster_{profile}"
    assert (cdir / "cluster.toml").is_file()
    assert "[cluster]" in (cdir / "cluster.toml").read_text()
    for sub in ("security", "log", "pid"):
        assert (cdir / sub).is_dir(), sub
    assert stat.S_IMODE((cdir / "security").stat().st_mode) == 0o700
    r = run_cli("cluster", "list")
    assert r.returncode == 0, r.stderr
    assert f"-p {profile} " in r.stdout and str(cdir) in r.stdout


def test_cli_cluster_lifecycle(multiengine_dir: Path) -> None:
    profile = unique_profile("cli")
    cdir = multiengine_dir / f"cluster_{profile}"
    learned: set[int] = set()
    try:
        r = run_cli("cluster", "start", "-p", profile, "-n", "2", "--daemon", timeout=90)
        learned.update(processes_using(cdir))
        assert r.returncode == 0, r.stdout + r.stderr

        with multiengine.MultiEngineClient(profile=profile, timeout=10) as mec:
            assert mec.get_ids() == [0, 1]
            assert_works(mec, 2)
            st = mec.status()
        engine_pids = {e["id"]: e["pid"] for e in st["engines"]}
        learned.update(engine_pids.values())
        learned.add(st["pid"])

        r = run_cli("cluster", "start", "-p", profile, "-n", "2", "--daemon")
        assert r.returncode == 10, (r.returncode, r.stdout, r.stderr)
        r = run_cli("cluster", "start", "-p", profile)
        assert r.returncode == 10, (r.returncode, r.stdout, r.stderr)

        r = run_cli("cluster", "status", "-p", profile)
        assert r.returncode == 0, r.stderr
        shown = {int(i): int(p) for i, p in re.findall(r"engine (\d+)\D+?(\d+)", r.stdout)}
        assert shown == engine_pids, r.stdout
        assert str(st["pid"]) in r.stdout

        r = run_cli("cluster", "list")
        assert r.returncode == 0, r.stderr
        assert f"-p {profile} " in r.stdout

        cluster_pid_file = cdir / "pid" / "cluster.pid"
        if cluster_pid_file.exists():
            learned.add(int(cluster_pid_file.read_text()))
        learned.update(processes_using(cdir))
        assert running(learned), "no process of the started cluster is running"

        r = run_cli("cluster", "stop", "-p", profile, timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr
        assert running(learned) == [], "processes left running after `cluster stop`"
        assert processes_using(cdir) == {}

        with pytest.raises((ControllerConnectionError, FileNotFoundError)):
            multiengine.MultiEngineClient(profile=profile, timeout=1)

        r = run_cli("cluster", "stop", "-p", profile)
        assert r.returncode == 11, (r.returncode, r.stdout, r.stderr)
    finally:
        if running(learned) or processes_using(cdir):
            run_cli("cluster", "stop", "-p", profile, timeout=30)
        leftover = set(running(learned)) | set(processes_using(cdir))
        kill_pids(leftover)


def test_cli_unknown_profile_gives_one_clear_line(multiengine_dir: Path) -> None:
    profile = unique_profile("nosuch")
    r = run_cli("cluster", "status", "-p", profile)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert profile in lines[0]
    r = run_cli("cluster", "stop", "-p", profile)
    assert r.returncode == 11
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (multiengine_dir / f"cluster_{profile}").exists()


# ---------------------------------------------------------------- kill(controller=True)
def _wait_all_exited(c: multiengine.Cluster, timeout: float = 15) -> None:
    procs = [*c.engines, *([c.controller] if c.controller else [])]
    wait_until(
        lambda: all(p.poll() is not None for p in procs),
        timeout,
        message="the cluster's processes to exit",
    )


def test_kill_controller_stops_engines_and_controller(
    fresh_cluster: Callable[..., multiengine.Cluster],
) -> None:
    c = fresh_cluster(2)
    mec = c.multiengine_client()
    assert_works(mec, 2)
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


def test_empty_targets_non_blocking(mec: multiengine.MultiEngineClient) -> None:
    pr = mec.execute("a = 1", targets=[], block=False)
    assert isinstance(pr, multiengine.PendingResult)
    assert isinstance(repr(pr), str)
    assert pr.wait(10)
    assert list(pr.r) == []
    assert mec.execute("a = 1", targets=[]) == []


# ---------------------------------------------------------------- engine ids
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
    assert len(new) == 1
    wait_until(lambda: mec.get_ids() == [0, 1, 2], message="the new engine to register")
    now = c.engine_pids()
    assert now[1] == new[0].pid != old[1]
    assert now[0] == old[0] and now[2] == old[2]
    mec.execute("probe = id")
    assert mec.pull("probe") == [0, 1, 2]


def test_engine_id_is_reused_after_kill(fresh_cluster: Callable[..., multiengine.Cluster]) -> None:
    _engine_id_reuse(fresh_cluster(3, timeout=15), wait_for_exit=True)


def test_start_engines_right_after_kill(fresh_cluster: Callable[..., multiengine.Cluster]) -> None:
    """``start_engines(1)`` at once after ``kill`` must not wait for an engine that is leaving."""
    _engine_id_reuse(fresh_cluster(3, timeout=15), wait_for_exit=False)


def test_same_host_clients_use_ipc_and_others_tcp(
    cluster: multiengine.Cluster, tmp_path: Path
) -> None:
    from multiengine.wire.connection import (
        ConnectionInfo,
        read_connection_file,
        write_connection_file,
    )

    info = read_connection_file(cluster.cluster_dir.client_file)
    assert info.addresses["client"].startswith("tcp://127.0.0.1:")
    assert info.url("client").startswith("ipc://")  # this host: the IPC endpoint
    elsewhere = ConnectionInfo(
        info.key, info.addresses, extra={**info.extra, "host": "another-host"}
    )
    assert elsewhere.url("client") == info.addresses["client"]
    # a client that only knows the TCP address (as on another host) works the same
    tcp_only = tmp_path / "client-tcp.json"
    write_connection_file(tcp_only, ConnectionInfo(info.key, info.addresses))
    with multiengine.MultiEngineClient(connection_file=tcp_only) as mec:
        assert mec._core.url.startswith("tcp://")
        assert mec.pull("id") == [0, 1, 2, 3]
