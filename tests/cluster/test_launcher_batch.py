"""The ``slurm`` and ``sge`` launchers against real schedulers on this machine.

``tests/systems/slurm.sh`` and ``sge.sh`` start a single-node Slurm (slurmctld, slurmd,
munged) and a single-node Son of Grid Engine (qmaster, execd); the fixtures skip
loudly only where they are not installed (``.ci/install-systems.sh`` installs them).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
from helpers import process_running
from systems.fixtures import SGECluster, SlurmCluster, sge_cluster_fixture, slurm_cluster_fixture  # noqa: F401

from multiengine.cluster.cluster import Cluster, ClusterStartError
from multiengine.cluster.launchers.batch import BatchLauncher

pytestmark = pytest.mark.timeout(240)
MARK = {"MULTIENGINE_TEST_MARK": "from-the-submitter"}


def _job(c: Cluster) -> BatchLauncher:
    (launcher,) = c.engine_launchers
    assert isinstance(launcher, BatchLauncher) and launcher.job_id
    return launcher


def _work(c: Cluster, n: int) -> None:
    """Real work on the batch engines: code, data, load-balanced tasks."""
    mec = c.multiengine_client()
    assert mec.get_ids() == list(range(n))
    mec.scatter("x", list(range(20)))
    mec.execute("y = [v * v for v in x]")
    assert mec.gather("y") == [v * v for v in range(20)]
    tc = c.task_client()
    assert tc.map(lambda v: v + 1, range(50)) == list(range(1, 51))
    # the engines run with the submitter's environment (Cluster(env=...) included)
    mec.execute("import os; mark = os.environ.get('MULTIENGINE_TEST_MARK')")
    assert mec.pull("mark") == ["from-the-submitter"] * n


@pytest.fixture
def env_for(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    def apply(env: dict[str, str]) -> None:
        for k, v in env.items():
            monkeypatch.setenv(k, v)

    yield apply


def test_slurm_sbatch_srun_then_scancel(slurm_cluster: SlurmCluster, env_for: object) -> None:
    env_for(slurm_cluster.env)  # type: ignore[operator]
    c = Cluster(
        2,
        launcher="slurm",
        launcher_options={"queue": "debug", "time": "10:00"},
        timeout=90,
        env=MARK,
    )
    c.start()
    try:
        job = _job(c)
        state = subprocess.run(
            ["squeue", "-h", "-j", job.job_id, "-o", "%T %D %C"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.split()
        assert state and state[0] == "RUNNING", state
        script = job.script_path.read_text() if job.script_path else ""
        assert "#SBATCH --ntasks=2" in script and "#SBATCH --partition=debug" in script
        _work(c, 2)
        pids = list(c.engine_pids().values())
        assert all(process_running(p) for p in pids)
    finally:
        c.stop()
    assert (
        subprocess.run(
            ["squeue", "-h", "-j", job.job_id], capture_output=True, text=True, timeout=30
        ).stdout.strip()
        == ""
    )
    assert not any(process_running(p) for p in pids), "engines left behind after scancel"


def test_slurm_refusal_is_one_clear_error(slurm_cluster: SlurmCluster, env_for: object) -> None:
    env_for(slurm_cluster.env)  # type: ignore[operator]
    c = Cluster(2, launcher="slurm", launcher_options={"queue": "no-such-partition"}, timeout=30)
    with pytest.raises(ClusterStartError) as err:
        c.start()
    text = str(err.value)
    assert "sbatch" in text and "exit code" in text and "partition" in text.lower(), text
    assert c.controller is None  # the controller was stopped too


def test_sge_array_job_then_qdel(sge_cluster: SGECluster, env_for: object) -> None:
    env_for(sge_cluster.env)  # type: ignore[operator]
    c = Cluster(2, launcher="sge", timeout=90, env=MARK)
    c.start()
    try:
        job = _job(c)
        assert (
            subprocess.run(["qstat", "-j", job.job_id], capture_output=True, timeout=30).returncode
            == 0
        )
        _work(c, 2)
        pids = list(c.engine_pids().values())
        assert all(process_running(p) for p in pids)
    finally:
        c.stop(timeout=30)
    assert (
        subprocess.run(["qstat", "-j", job.job_id], capture_output=True, timeout=30).returncode != 0
    )
    assert not any(process_running(p) for p in pids), "engines left behind after qdel"


def test_sge_engines_that_never_register_time_out_with_output(
    sge_cluster: SGECluster, env_for: object
) -> None:
    """The job runs but its engines cannot start: a clear error, the job's output,
    and the job gone."""
    env_for(sge_cluster.env)  # type: ignore[operator]
    c = Cluster(2, launcher="sge", launcher_options={"python": "/nonexistent/python3"}, timeout=20)
    with pytest.raises(ClusterStartError) as err:
        c.start()
    assert "/nonexistent/python3" in str(err.value), str(err.value)
