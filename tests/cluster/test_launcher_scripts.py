"""Job scripts and job ids of the batch launchers, checked without a scheduler.

Debian ships no PBS server (neither Torque nor OpenPBS is packaged), so for ``pbs``
this is the whole test: the rendered script (checked by ``bash -n``), the job-id
parsing of real ``qsub`` output shapes, and the errors. Slurm and Grid Engine are also
run for real in tests/cluster/test_launcher_batch.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import run_cli

from multiengine.cluster.launchers import LAUNCHERS, launcher_class
from multiengine.cluster.launchers.base import LaunchError
from multiengine.cluster.launchers.batch import BatchLauncher
from multiengine.cluster.launchers.ssh import host_counts
from multiengine.runtime import ClusterDir

ARGV = ["engine", "--cluster-dir", "/shared/cluster_x", "--log-level", "INFO", "--timeout", "30"]


def make(name: str, tmp_path: Path, n: int = 4, **options: object) -> BatchLauncher:
    cdir = ClusterDir(tmp_path / "cluster_x").create()
    launcher = launcher_class(name)(cdir, n, ARGV, {"PATH": "/usr/bin:/bin"}, options)
    assert isinstance(launcher, BatchLauncher)
    return launcher


def bash_syntax_ok(script: str) -> None:
    r = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr


def test_pbs_script_is_a_job_array_with_the_options(tmp_path: Path) -> None:
    script = make(
        "pbs", tmp_path, queue="batch", time="1:00:00", extra=["-l mem=2gb", "-A proj"]
    ).render()
    bash_syntax_ok(script)
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash"
    for line in (
        "#PBS -J 1-4",
        "#PBS -q batch",
        "#PBS -l walltime=1:00:00",
        "#PBS -l mem=2gb",
        "#PBS -A proj",
        "#PBS -N multiengine-x",
        "#PBS -j oe",
    ):
        assert line in lines, (line, script)
    # the engine command: absolute interpreter, reads the shared cluster directory
    assert lines[-1].startswith(
        f"exec {sys.executable} -m multiengine engine --cluster-dir /shared/cluster_x"
    )
    assert 'cd "${PBS_O_WORKDIR:-' in script  # $$ in the template is a literal $


def test_pbs_torque_flavour_and_single_engine(tmp_path: Path) -> None:
    assert "#PBS -t 1-3" in make("pbs", tmp_path, n=3, array="torque").render().splitlines()
    single = make("pbs", tmp_path, n=1).render()
    assert "-J" not in single and "-t 1" not in single  # PBS arrays need two sub-jobs or more
    with pytest.raises(ValueError, match="array must be 'pbspro' or 'torque'"):
        make("pbs", tmp_path, array="lsf").render()


@pytest.mark.parametrize(
    ("output", "job_id"),
    [
        ("1234.pbs-server\n", "1234.pbs-server"),  # OpenPBS / PBS Pro, one job
        ("5678[].head.example.org\n", "5678[].head.example.org"),  # PBS Pro job array
        ("91011[].torque01\n", "91011[].torque01"),  # Torque array
        ("42\n", "42"),  # slurm-wlm-torque's qsub wrapper prints the bare id
    ],
)
def test_pbs_job_id_parsing(tmp_path: Path, output: str, job_id: str) -> None:
    assert make("pbs", tmp_path).parse_job_id(output) == job_id


def test_job_id_missing_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LaunchError, match="no job id in the output of qsub"):
        make("pbs", tmp_path).parse_job_id("qsub: Unauthorized Request\n")


def test_slurm_and_sge_scripts(tmp_path: Path) -> None:
    slurm = make("slurm", tmp_path, queue="debug", account="lab", time="10:00").render()
    bash_syntax_ok(slurm)
    for line in (
        "#SBATCH --ntasks=4",
        "#SBATCH --partition=debug",
        "#SBATCH --account=lab",
        "#SBATCH --time=10:00",
    ):
        assert line in slurm.splitlines(), slurm
    assert slurm.splitlines()[-1].startswith(f"srun {sys.executable} -m multiengine engine")
    assert make("slurm", tmp_path).parse_job_id("4242;cluster\n") == "4242"
    sge = make("sge", tmp_path, queue="all.q", pe="smp 1").render()
    bash_syntax_ok(sge)
    for line in ("#$ -t 1-4", "#$ -q all.q", "#$ -pe smp 1", "#$ -S /bin/bash"):
        assert line in sge.splitlines(), sge
    assert "sge-$JOB_ID.$TASK_ID.log" in sge
    assert make("sge", tmp_path).parse_job_id("77.1-4:1\n") == "77"


def test_custom_template_and_its_errors(tmp_path: Path) -> None:
    template = tmp_path / "job.tpl"
    template.write_text(
        "#!/bin/sh\n#PBS -l nodes=${n}:ppn=1\necho $$HOME ${queue}\n${engine_command}\n"
    )
    script = make("pbs", tmp_path, template=str(template), queue="short").render()
    assert "#PBS -l nodes=4:ppn=1" in script and "echo $HOME short" in script
    template.write_text("#!/bin/sh\n${no_such_thing}\n")
    with pytest.raises(LaunchError, match="unknown or malformed variable"):
        make("pbs", tmp_path, template=str(template)).render()


def test_submit_command_missing_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no qsub here
    with pytest.raises(LaunchError, match="'qsub' was not found on PATH"):
        make("pbs", tmp_path).start()


def test_submit_refused_carries_the_schedulers_words(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stand-in ``sbatch`` that refuses, as the real one does for a bad partition (the real
    one is run in tests/cluster/test_launcher_batch.py; this fixes its exact words)."""
    fake = tmp_path / "bin"
    fake.mkdir()
    refusal = "sbatch: error: Batch job submission failed: Invalid partition name specified"
    (fake / "sbatch").write_text(f"#!/bin/sh\necho '{refusal}' >&2\nexit 1\n")
    (fake / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}:/usr/bin:/bin")
    with pytest.raises(LaunchError, match="Invalid partition name specified"):
        make("slurm", tmp_path, queue="nope").start()


def test_unknown_options_and_launchers_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown option.*partition"):
        make("slurm", tmp_path, partition="debug")
    with pytest.raises(ValueError, match="unknown launcher 'lsf'"):
        launcher_class("lsf")
    assert set(LAUNCHERS) == {"local", "mpi", "slurm", "sge", "pbs", "ssh"}


def test_ssh_host_counts() -> None:
    assert host_counts({"a": 2, "b": 1, "c": 0}, 99) == {"a": 2, "b": 1}
    assert host_counts(["a", "b"], 5) == {"a": 3, "b": 2}
    assert host_counts("a b", 1) == {"a": 1}
    with pytest.raises(ValueError, match="no hosts"):
        host_counts([], 2)


def test_cli_unknown_launcher_is_one_line(multiengine_dir: Path) -> None:
    r = run_cli("cluster", "start", "-p", "bad-launcher", "--launcher", "lsf")
    assert r.returncode == 1
    assert (
        r.stderr.strip() == "multiengine: error: unknown launcher 'lsf': "
        "choose one of local, mpi, slurm, sge, pbs, ssh"
    )


def test_docs_list_every_launcher_option() -> None:
    """docs/launchers.md documents each launcher and every option it accepts."""
    text = (Path(__file__).parents[2] / "docs" / "launchers.md").read_text()
    for name, cls in LAUNCHERS.items():
        assert f"## `{name}`" in text, name
        for option in cls.options_doc:
            assert f"| `{option}` |" in text, (name, option)
