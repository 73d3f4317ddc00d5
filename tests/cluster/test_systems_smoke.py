"""The real systems of ``tests/systems`` work: Slurm runs and cancels jobs, Grid Engine runs
an array job and deletes a job, and the ssh "remote hosts" run this interpreter and reach
back to the bridge address. Each fixture skips loudly where its system cannot run (not
root, binaries missing: ``.ci/install-systems.sh``) and checks, when the module is over,
that none of its daemons is left.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from helpers import wait_until
from systems.fixtures import (  # noqa: F401  (the *_fixture ones register slurm_cluster, sge_cluster, ssh_hosts)
    SGECluster,
    SlurmCluster,
    SSHHosts,
    sge_cluster_fixture,
    slurm_cluster_fixture,
    ssh_hosts_fixture,
)

pytestmark = pytest.mark.timeout(120)


def run(
    argv: Sequence[str], env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 0, (
        f"{list(argv)} exited {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    )
    return r


# ---------------------------------------------------------------- Slurm
def _squeue(cluster: SlurmCluster, jid: str, fmt: str = "%T") -> str:
    return run(["squeue", "-h", "-j", jid, "-o", fmt], env=cluster.environ()).stdout.strip()


def _job_state(cluster: SlurmCluster, jid: str) -> str:
    out = run(["scontrol", "show", "job", jid], env=cluster.environ()).stdout
    m = re.search(r"JobState=(\w+)", out)
    assert m, out
    return m.group(1)


def test_slurm_batch_job_runs_srun(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    env = slurm_cluster.environ()
    r = run(
        [
            "sbatch",
            "--parsable",
            f"--chdir={tmp_path}",
            f"--output={tmp_path}/job-%j.out",
            "--wrap",
            "srun hostname",
        ],
        env=env,
    )
    jid = r.stdout.strip().split(";")[0]
    wait_until(lambda: _squeue(slurm_cluster, jid) == "", 60, 0.25, f"slurm job {jid} to finish")
    assert _job_state(slurm_cluster, jid) == "COMPLETED"
    assert (tmp_path / f"job-{jid}.out").read_text().split() == [socket.gethostname()]


def test_slurm_scancel(slurm_cluster: SlurmCluster) -> None:
    env = slurm_cluster.environ()
    jid = (
        run(["sbatch", "--parsable", "--output=/dev/null", "--wrap", "srun sleep 300"], env=env)
        .stdout.strip()
        .split(";")[0]
    )
    wait_until(
        lambda: _squeue(slurm_cluster, jid) == "RUNNING", 30, 0.25, f"slurm job {jid} to run"
    )
    run(["scancel", jid], env=env)
    wait_until(
        lambda: _squeue(slurm_cluster, jid) == "",
        30,
        0.25,
        f"slurm job {jid} to leave squeue",
    )
    assert _job_state(slurm_cluster, jid) == "CANCELLED"


# ---------------------------------------------------------------- Grid Engine
def _sge_job_known(cluster: SGECluster, jid: str) -> bool:
    r = subprocess.run(
        ["qstat", "-j", jid], capture_output=True, text=True, timeout=30, env=cluster.environ()
    )
    return r.returncode == 0


def test_sge_array_job_runs(sge_cluster: SGECluster, tmp_path: Path) -> None:
    script = tmp_path / "arr.sh"
    script.write_text(
        "#!/bin/bash\n"
        "#$ -S /bin/bash\n"
        "#$ -N arr\n"
        "#$ -t 1-2\n"
        f"#$ -o {tmp_path}/arr.$TASK_ID.out\n"
        "#$ -j y\n"
        'echo "job=$JOB_ID task=$SGE_TASK_ID"\n'
    )
    out = run(
        ["qsub", "-terse", str(script)], env=sge_cluster.environ()
    ).stdout.strip()  # "7.1-2:1"
    jid = out.split(".")[0]
    assert jid.isdigit(), out
    wait_until(lambda: not _sge_job_known(sge_cluster, jid), 60, 0.25, f"sge job {jid} to finish")
    for task in (1, 2):
        assert (tmp_path / f"arr.{task}.out").read_text().strip() == f"job={jid} task={task}"


def test_sge_qdel(sge_cluster: SGECluster, tmp_path: Path) -> None:
    script = tmp_path / "sleep.sh"
    script.write_text("#!/bin/bash\n#$ -S /bin/bash\n#$ -o /dev/null\n#$ -j y\n/bin/sleep 300\n")
    env = sge_cluster.environ()
    jid = run(["qsub", "-terse", str(script)], env=env).stdout.strip()

    def running() -> bool:
        lines = run(["qstat"], env=env).stdout.splitlines()
        return any(line.split()[:1] == [jid] and line.split()[4] == "r" for line in lines[2:])

    wait_until(running, 30, 0.25, f"sge job {jid} to run")
    run(["qdel", jid], env=env)
    wait_until(lambda: not _sge_job_known(sge_cluster, jid), 30, 0.25, f"sge job {jid} to go")


# ---------------------------------------------------------------- ssh hosts
PY_WHERE = (
    "import os, socket, sys; print(socket.gethostname(), "
    "os.environ['SSH_CONNECTION'].split()[2], sys.executable)"
)


def test_ssh_runs_this_python_on_every_host(ssh_hosts: SSHHosts) -> None:
    assert len(ssh_hosts.hosts) == 2
    for host in ssh_hosts.hosts:
        r = run(ssh_hosts.ssh_argv(host, [sys.executable, "-c", PY_WHERE]))
        assert r.stdout.split() == [socket.gethostname(), host, sys.executable]


CLIENT = (
    "import socket, sys; "
    "s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10); "
    "s.sendall(b'ping'); print(s.recv(100).decode()); s.close()"
)


def _serve_one(
    ssh_hosts: SSHHosts, client_argv: Callable[[int], list[str]], expect_peer: str
) -> None:
    """A TCP server on the bridge address (root namespace) answers one client started
    inside a host."""
    with socket.socket() as srv:
        srv.bind((ssh_hosts.bridge_ip, 0))
        srv.listen(1)
        srv.settimeout(30)
        port = srv.getsockname()[1]
        with subprocess.Popen(
            client_argv(port), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        ) as client:
            try:
                conn, (peer, _) = srv.accept()
                with conn:
                    conn.settimeout(10)
                    assert conn.recv(100) == b"ping"
                    conn.sendall(b"pong from " + ssh_hosts.bridge_ip.encode())
                out, err = client.communicate(timeout=30)
            finally:
                if client.poll() is None:
                    client.kill()
                    client.communicate()
    assert client.returncode == 0, err
    assert out.strip() == f"pong from {ssh_hosts.bridge_ip}"
    assert peer == expect_peer


def test_netns_host_reaches_the_bridge_ip(ssh_hosts: SSHHosts) -> None:
    h1 = ssh_hosts.hosts[0]
    _serve_one(
        ssh_hosts,
        lambda port: ssh_hosts.netns_argv(
            h1, [sys.executable, "-c", CLIENT, ssh_hosts.bridge_ip, str(port)]
        ),
        h1,
    )
    h2 = ssh_hosts.hosts[-1]
    _serve_one(
        ssh_hosts,
        lambda port: ssh_hosts.ssh_argv(
            h2, [sys.executable, "-c", CLIENT, ssh_hosts.bridge_ip, str(port)]
        ),
        h2,
    )


@pytest.mark.parametrize("ssh_hosts", [3], indirect=True)
def test_ssh_hosts_count_is_a_parameter(ssh_hosts: SSHHosts) -> None:
    assert ssh_hosts.hosts == ["10.200.0.2", "10.200.0.3", "10.200.0.4"]
    assert ssh_hosts.namespaces == ["meh1", "meh2", "meh3"]
    r = run(ssh_hosts.ssh_argv(ssh_hosts.hosts[2], "echo $SSH_CONNECTION"))
    assert r.stdout.split()[2] == "10.200.0.4"
    assert os.path.exists(ssh_hosts.key)
