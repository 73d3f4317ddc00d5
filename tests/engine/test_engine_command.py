"""``multiengine engine``: a group of engines reading the connection info on stdin and
stopping when stdin closes (what the ssh launcher runs on each remote host), and the
one-line errors of the command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import engine_group_from_stdin, process_running, run_cli, running, wait_until

from multiengine.cluster.cluster import Cluster

pytestmark = pytest.mark.timeout(60)


def test_engines_from_stdin_stop_when_stdin_closes(fresh_cluster: Callable[..., Cluster]) -> None:
    c = fresh_cluster(0)
    mec = c.multiengine_client()
    with engine_group_from_stdin(c, 2) as group:
        wait_until(lambda: len(mec.get_ids()) == 2, message="the two engines to register")
        assert mec.get_ids() == [0, 1]
        pids = list(c.engine_pids().values())
        mec.execute("x = id + 10")
        assert mec.pull("x") == [10, 11]
        assert group.stdin is not None
        group.stdin.close()  # the lifeline: the engines stop
        assert group.wait(15) == 0
        wait_until(lambda: not running(pids), message="the engines to stop")
        assert not any(process_running(p) for p in pids)


@pytest.mark.parametrize(
    ("stdin", "message"),
    [
        (b"", "stdin closed before the connection info arrived"),
        (b"{not json\n", "the first line of stdin is not JSON"),
        (b'{"key": "00"}\n', "not a valid multiengine connection file"),
    ],
)
def test_bad_stdin_is_one_clear_line(stdin: bytes, message: str) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "multiengine", "engine", "--connection-file", "-"],
        input=stdin,
        capture_output=True,
        timeout=30,
    )
    assert r.returncode == 2
    err = r.stderr.decode().strip()
    assert (
        err.startswith("multiengine engine: ") and message in err and len(err.splitlines()) == 1
    ), err


def test_mpi_without_mpi4py_is_one_clear_line(tmp_path: Path) -> None:
    """`--mpi` where mpi4py cannot be imported. mpi4py is installed here, so a package of that
    name that fails to import shadows it (the only way to make it absent for one process)."""
    shadow = tmp_path / "mpi4py"
    shadow.mkdir()
    (shadow / "__init__.py").write_text(
        "raise ImportError('libmpi.so.40: cannot open shared object file')\n"
    )
    conn = tmp_path / "engine.json"
    conn.write_text(
        json.dumps(
            {
                "key": "00" * 32,
                "addresses": {"engine": "tcp://127.0.0.1:1", "heartbeat": "tcp://127.0.0.1:2"},
            }
        )
    )
    r = subprocess.run(
        [sys.executable, "-m", "multiengine", "engine", "--mpi", "--connection-file", str(conn)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "multiengine engine: --mpi needs mpi4py and an MPI library (pip install multiengine[mpi]): "
        "libmpi.so.40: cannot open shared object file"
    ]


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
