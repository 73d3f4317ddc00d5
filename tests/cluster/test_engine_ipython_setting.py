"""The ``ipython`` engine setting: from every source to every engine a cluster starts
(``cluster start --ipython``, ``Cluster(engine_ipython=True)``, ``[engine] ipython``),
and a misplaced spelling refused with one line."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import (
    engine_group_from_stdin,
    kill_pids,
    processes_using,
    run_cli,
    running,
    wait_until,
)

import multiengine
from multiengine.cluster.cluster import Cluster
from multiengine.config import EngineConfig
from multiengine.errors import ConfigError

pytest.importorskip("IPython", reason="--ipython engines need IPython")

PROBE = "import sys\nloaded = 'IPython' in sys.modules"


def test_every_source_sets_it() -> None:
    assert EngineConfig().ipython is False
    assert EngineConfig.from_sources(toml={"ipython": True}).ipython is True
    assert EngineConfig.from_sources(env={"MULTIENGINE_IPYTHON": "yes"}).ipython is True
    assert (
        EngineConfig.from_sources(toml={"ipython": True}, env={"MULTIENGINE_IPYTHON": "0"}).ipython
        is False
    )
    assert EngineConfig(ipython=True).to_argv() == ["--ipython"]
    with pytest.raises(ConfigError, match="ipython must be true or false.*MULTIENGINE_IPYTHON"):
        EngineConfig.from_sources(env={"MULTIENGINE_IPYTHON": "maybe"})


def test_the_issues_spelling_in_cluster_toml_names_the_right_place(tmp_path: Path) -> None:
    (tmp_path / "cluster.toml").write_text("[cluster]\nengine_ipython = true\n")
    r = run_cli("cluster", "start", "--cluster-dir", str(tmp_path), "-n", "1")
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.strip().splitlines() == [
        "multiengine: error: cluster.toml [cluster]: unknown setting 'engine_ipython' (known: "
        "engines, launcher, restart_engines, engine_restarts, engine_memory_limit, "
        "restart_controller, fork_server); did you mean ipython in the [engine] table?"
    ]


def test_cluster_toml_reaches_every_engine_including_added_and_restarted_ones(
    tmp_path: Path, multiengine_dir: Path
) -> None:
    (tmp_path / "cluster.toml").write_text("[engine]\nipython = true\n")
    with Cluster(n=1, cluster_dir=tmp_path, heartbeat_period=0.25) as c:
        assert c.engine_config.ipython
        assert "--ipython" in c._argv("engine", c.engine_config)  # (for engines elsewhere)
        c.start_engines(1)
        mec = c.multiengine_client()
        mec.execute(PROBE)
        assert mec.pull("loaded") == [True, True]
        assert all("Wall time" in m["stdout"] for m in mec.execute("%time 1"))
        # an engine restarted (by request, or after it died) speaks IPython again
        c.restart_engines(1)
        wait_until(lambda: mec.get_ids() == [0, 1], message="engine 1 back")
        mec.execute(PROBE, targets=1)
        assert mec.pull("loaded", targets=1) == [True]
        mec.close()


def test_cluster_start_ipython_daemon(multiengine_dir: Path) -> None:
    profile = f"ipy-{uuid.uuid4().hex[:8]}"
    cdir = multiengine_dir / f"cluster_{profile}"
    learned: set[int] = set()
    try:
        r = run_cli("cluster", "start", "-p", profile, "-n", "1", "--ipython", "--daemon")
        learned.update(processes_using(cdir))
        assert r.returncode == 0, r.stdout + r.stderr
        with multiengine.MultiEngineClient(profile=profile, timeout=10) as mec:
            learned.update(e["pid"] for e in mec.status()["engines"])
            (m,) = mec.execute("!echo from-the-shell")
            assert m["stdout"] == "from-the-shell\n"
        r = run_cli("cluster", "stop", "-p", profile, timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr
    finally:
        if running(learned) or processes_using(cdir):
            run_cli("cluster", "stop", "-p", profile, timeout=30)
        kill_pids(set(running(learned)) | set(processes_using(cdir)))


def test_a_group_from_stdin_passes_it_on(fresh_cluster: Callable[..., Cluster]) -> None:
    # what the ssh launcher runs on each host: every engine of the group speaks IPython
    c = fresh_cluster(0)
    mec = c.multiengine_client()
    try:
        with engine_group_from_stdin(c, 2, ("--ipython",)) as group:
            wait_until(lambda: len(mec.get_ids()) == 2, message="the two engines to register")
            mec.execute(PROBE)
            assert mec.pull("loaded") == [True, True]
            pids = list(c.engine_pids().values())
            assert group.stdin is not None
            group.stdin.close()
            assert group.wait(15) == 0
            wait_until(lambda: not running(pids), message="the engines to stop")
    finally:
        mec.close()


def test_an_engine_without_ipython_says_so_in_one_line(tmp_path: Path) -> None:
    # an interpreter where IPython cannot be imported: a module named IPython that fails
    (tmp_path / "IPython.py").write_text("raise ImportError('no IPython here')\n")
    (tmp_path / "engine.json").write_text("{}")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "multiengine",
            "engine",
            "--ipython",
            "--connection-file",
            str(tmp_path / "engine.json"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.strip().splitlines() == [
        "multiengine engine: --ipython needs IPython (pip install multiengine[ipython]): "
        "no IPython here"
    ]


@pytest.mark.parametrize("command", [["cluster", "start"], ["engine"]])
def test_help_shows_the_option(command: list[str]) -> None:
    r = run_cli(*command, "--help")
    assert r.returncode == 0, r.stderr
    assert "--ipython, --no-ipython" in r.stdout


def test_a_bad_value_stops_cluster_start_before_anything_starts(tmp_path: Path) -> None:
    r = run_cli(
        "cluster", "start", "--cluster-dir", str(tmp_path), env={"MULTIENGINE_IPYTHON": "maybe"}
    )
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.strip().splitlines() == [
        "multiengine: error: ipython must be true or false, not 'maybe' (from MULTIENGINE_IPYTHON)"
    ]
    assert not (tmp_path / "security" / "engine.json").exists()
