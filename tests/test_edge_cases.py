"""Edge cases found while documenting: each pins down a behaviour users rely on."""

from __future__ import annotations

import json
import socket

import pytest
from helpers import run_cli

import multiengine
from multiengine.cluster.cluster import Cluster


def test_reset_with_duplicate_targets_runs_twice(mec: multiengine.MultiEngineClient) -> None:
    mec.push({"a": 1})
    assert mec.reset(targets=[0, 0]) == [None, None]
    assert "a" not in mec.keys(targets=0)[0]


def test_map_with_no_targets_gives_an_empty_list(mec: multiengine.MultiEngineClient) -> None:
    assert mec.map(abs, [-1, -2]) == [1, 2]
    assert mec.raw_map(abs, [[-1, -2]], targets=[]) == []
    assert mec.mapper(targets=[]).map(abs, [-1]) == []


def test_zip_pull_of_one_key_in_a_list_is_zipped(mec: multiengine.MultiEngineClient) -> None:
    mec.execute("a = id * 10")
    assert mec.zip_pull(["a"]) == [(0, 10, 20, 30)]
    assert mec.zip_pull("a") == [0, 10, 20, 30]


def test_block_and_targets_are_checked_when_set(mec: multiengine.MultiEngineClient) -> None:
    with pytest.raises(ValueError, match="block must be True or False"):
        mec.block = "x"  # type: ignore[assignment]
    with pytest.raises(ValueError, match="targets must be"):
        mec.targets = 1.5
    assert mec.block is True and mec.targets == "all"


def test_a_failing_callback_is_raised_again_not_rerun(mec: multiengine.MultiEngineClient) -> None:
    calls = []

    def boom(value: object) -> object:
        calls.append(value)
        raise RuntimeError("callback failed")

    pr = mec.pull("id", targets=0, block=False)
    pr.add_callback(boom)
    for _ in range(2):
        with pytest.raises(RuntimeError, match="callback failed"):
            pr.get_result()
    assert calls == [[0]]


def test_push_forgets_an_earlier_flatten(mec: multiengine.MultiEngineClient) -> None:
    mec.scatter("k", [[9], [8]], flatten=True, targets=[0, 1])
    assert mec.gather("k", targets=[0, 1]) == [[9], [8]]
    mec.push({"k": [9]}, targets=[0, 1])
    assert mec.gather("k", targets=[0, 1]) == [9, 9]


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


def test_an_engine_given_a_client_file_says_so(cluster: Cluster) -> None:
    proc = run_cli(
        "engine",
        "--connection-file",
        str(cluster.cluster_dir.client_file),
        "--timeout",
        "2",
        timeout=30,
    )
    assert proc.returncode == 2
    assert "engine.json" in proc.stderr and "Traceback" not in proc.stderr
