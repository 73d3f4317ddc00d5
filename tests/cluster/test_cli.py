"""The ``multiengine`` command line: ``cluster create|start|stop|list|status`` and their
exit codes (contract §3, seed-system §1.7-1.8), one clear line for each refusal."""

from __future__ import annotations

import json
import re
import socket
import stat
import uuid
from pathlib import Path

import pytest
from helpers import assert_engines_work, kill_pids, processes_using, run_cli, running

import multiengine
from multiengine.cluster.cluster import Cluster
from multiengine.errors import ControllerConnectionError


def unique_profile(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


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
            assert_engines_work(mec, 2)
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
        assert re.search(
            r"results kept: \d+ in memory \(.*\), \d+ on disk \(.*results\.db\)", r.stdout
        )

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


def test_a_second_controller_on_a_running_profile_is_refused(cluster: Cluster) -> None:
    before = json.loads(cluster.cluster_dir.client_file.read_text())
    proc = run_cli("controller", "--cluster-dir", str(cluster.cluster_dir.path), timeout=30)
    assert proc.returncode == 10
    assert "already running" in proc.stderr and "Traceback" not in proc.stderr
    assert json.loads(cluster.cluster_dir.client_file.read_text()) == before  # untouched


def test_a_port_in_use_gives_one_clear_line(multiengine_dir: object) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = run_cli("controller", "-p", "port-in-use", "--port", str(port), timeout=30)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot listen" in lines[0], proc.stderr


def _a_bad_setting_stops_a_start(
    multiengine_dir: Path,
    bad: dict[str, str],
    profile: str,
    line: str,
    says: str,
    daemon: bool = False,
) -> None:
    """``cluster start`` (also with ``--daemon``) under ``bad`` settings stops with exit 2
    and the one stderr ``line``, before anything runs; ``engine`` exits 2 saying ``says``."""
    for flags in ([], ["--daemon"]) if daemon else ([],):
        r = run_cli("cluster", "start", "-p", profile, "-n", "1", *flags, env=bad, timeout=60)
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and line in lines[0]
    assert not list(multiengine_dir.glob(f"cluster_{profile}/pid/*.pid"))  # nothing started
    r = run_cli("engine", "--connection-file", "/nonexistent.json", env=bad, timeout=60)
    assert r.returncode == 2 and says in r.stderr and "Traceback" not in r.stderr


def test_a_bad_shared_memory_threshold_stops_a_start_before_anything_runs(
    multiengine_dir: Path,
) -> None:
    _a_bad_setting_stops_a_start(
        multiengine_dir,
        {"MULTIENGINE_SHM_THRESHOLD": "lots"},
        "badshm",
        "MULTIENGINE_SHM_THRESHOLD: 'lots' is not a size",
        "is not a size",
        daemon=True,
    )


def test_a_bad_direct_setting_stops_a_start_before_anything_runs(multiengine_dir: Path) -> None:
    _a_bad_setting_stops_a_start(
        multiengine_dir,
        {"MULTIENGINE_DIRECT": "sometimes"},
        "baddirect",
        "MULTIENGINE_DIRECT: 'sometimes' is neither on nor off",
        "neither on nor off",
    )
