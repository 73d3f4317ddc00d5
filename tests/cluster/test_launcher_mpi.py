"""The ``mpi`` launcher against a real OpenMPI: engines are the ranks of one ``mpiexec``.

Skips (loudly) only where OpenMPI or mpi4py is not installed; ``.ci/install-systems.sh``
installs OpenMPI and the test extra installs mpi4py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import process_running, run_cli

import multiengine
from multiengine.cluster.cluster import Cluster, ClusterStartError

DATA = Path(__file__).parent / "data"


def _mpi_missing() -> str | None:
    if not shutil.which("mpiexec"):
        return "mpiexec is not installed (.ci/install-systems.sh installs OpenMPI: apt openmpi-bin)"
    r = subprocess.run(
        [sys.executable, "-c", "from mpi4py import MPI"], capture_output=True, text=True, timeout=60
    )
    if r.returncode:
        return f"mpi4py cannot load MPI (pip install mpi4py): {r.stderr.strip().splitlines()[-1:]}"
    return None


pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(bool(_mpi_missing()), reason=f"SKIPPED LOUDLY: {_mpi_missing()}"),
]

# OpenMPI refuses root without these; the CI machine runs tests as root.
MPI_ENV = {
    "OMPI_ALLOW_RUN_AS_ROOT": "1",
    "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    "OMPI_MCA_rmaps_base_oversubscribe": "1",
}


@pytest.fixture
def mpi_cluster(multiengine_dir: Path) -> Iterator[Callable[..., Cluster]]:
    started: list[Cluster] = []

    def make(n: int, **options: object) -> Cluster:
        c = Cluster(
            n,
            launcher="mpi",
            launcher_options={"args": ["--oversubscribe"], **options},
            env=MPI_ENV,
            timeout=60,
        )
        started.append(c)
        return c.start()

    yield make
    for c in started:
        pids = [p.pid for p in c.engines] + ([c.controller.pid] if c.controller else [])
        c.stop()
        for pid in pids:
            assert not process_running(pid), f"process {pid} left behind"


@pytest.mark.parametrize("n", [3, 4])
def test_engine_ids_are_mpi_ranks(mpi_cluster: Callable[..., Cluster], n: int) -> None:
    c = mpi_cluster(n)
    mec = c.multiengine_client()
    assert mec.get_ids() == list(range(n))
    mec.execute("rank, size = mpi.rank, mpi.size; me = id")
    assert mec.pull("rank") == list(range(n))
    assert mec.pull("size") == [n] * n
    assert mec.pull("me") == list(range(n))
    # the engines are ranks of one mpiexec: each one's parent chain leads to it
    assert len(c.engines) == 1 and os.path.basename(c.engines[0].args[0]) == "mpiexec"
    # reset keeps `mpi` (the seed: keys() == ['id', 'mpi'] afterwards)
    mec.reset()
    assert mec.keys() == [["id", "mpi"]] * n
    mec.execute("again = mpi.COMM_WORLD.allreduce(id)")
    assert mec.pull("again") == [sum(range(n))] * n


def test_psum_allreduce_over_four_engines(mpi_cluster: Callable[..., Cluster]) -> None:
    """seed-tests.md §F 20: every engine prints the same global sum, and it is the real sum."""
    c = mpi_cluster(4)
    mec = c.multiengine_client()
    mec.execute(f"import sys; sys.path.insert(0, {str(DATA)!r})")
    mec.execute("import numpy as np")
    mec.execute("a = np.random.rand(100)")
    mec.execute("from psum import psum")
    mec.execute("s = psum(a)")
    sums = [float(s) for s in mec.pull("s")]
    parts = [float(a.sum()) for a in mec.pull("a")]
    assert len(set(sums)) == 1, sums
    assert sums[0] == pytest.approx(sum(parts))
    printed = mec.execute("print(s)")
    assert [r["stdout"].strip() for r in printed] == [str(mec.pull("s", targets=0)[0])] * 4


def test_controller_under_mpiexec_too(mpi_cluster: Callable[..., Cluster]) -> None:
    c = mpi_cluster(3, controller=True)
    assert c.controller is not None and os.path.basename(c.controller.args[0]) == "mpiexec"
    mec = c.multiengine_client()
    assert mec.status()["pid"] != c.controller.pid  # the controller is mpiexec's child, not mpiexec
    assert mec.execute("x = mpi.rank * 2") and mec.pull("x") == [0, 2, 4]


def test_missing_mpiexec_is_one_clear_error(multiengine_dir: Path) -> None:
    c = Cluster(
        2, launcher="mpi", launcher_options={"mpiexec": "/nonexistent/mpiexec"}, env=MPI_ENV
    )
    with pytest.raises(ClusterStartError, match="'/nonexistent/mpiexec' was not found"):
        c.start()
    assert c.controller is None  # the controller it had started was stopped


def test_mpiexec_failing_reports_its_output(multiengine_dir: Path) -> None:
    """Too many ranks without --oversubscribe: mpiexec refuses, and says why in the error."""
    env = {k: v for k, v in MPI_ENV.items() if "oversubscribe" not in k}
    c = Cluster(64, launcher="mpi", launcher_options={"args": []}, env=env, timeout=30)
    with pytest.raises(ClusterStartError) as err:
        c.start()
    text = str(err.value)
    assert "exited with code" in text and "slots" in text, text


def test_cli_launcher_from_cluster_toml(multiengine_dir: Path) -> None:
    """`cluster start` takes the launcher and its options from cluster.toml;
    `cluster stop` ends it all."""

    profile = f"mpi-cli-{os.getpid()}"
    cdir = multiengine_dir / f"cluster_{profile}"
    assert run_cli("cluster", "create", "-p", profile).returncode == 0
    toml = (cdir / "cluster.toml").read_text()
    toml = toml.replace('launcher = "local"', 'launcher = "mpi"')
    (cdir / "cluster.toml").write_text(toml + '\n[launcher.mpi]\nargs = ["--oversubscribe"]\n')
    r = run_cli("cluster", "start", "-p", profile, "-n", "3", "--daemon", timeout=90, env=MPI_ENV)
    assert r.returncode == 0, r.stdout + r.stderr
    try:
        with multiengine.MultiEngineClient(profile=profile, timeout=10) as mec:
            mec.execute("r = mpi.rank")
            assert mec.pull("r") == [0, 1, 2]
            pids = [e["pid"] for e in mec.status()["engines"]]
        log = (cdir / "log" / "cluster.log").read_text()
        assert "3 engines (mpi launcher" in log, log
    finally:
        r = run_cli("cluster", "stop", "-p", profile, timeout=60)
    assert r.returncode == 0, r.stderr
    assert not any(process_running(p) for p in pids)
