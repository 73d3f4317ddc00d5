"""Real batch systems and "remote hosts" for the launcher tests (root, Linux).

Each fixture runs ``tests/systems/<script>.sh up DIR`` in a fresh temporary folder,
yields what a client needs, and runs ``down DIR`` when the test is over, passed or not:
every test starts from nothing and leaves no daemon, job, namespace or link behind.

* ``slurm_cluster`` -> :class:`SlurmCluster` (``slurm.sh``: slurmctld + slurmd + munged)
* ``sge_cluster``   -> :class:`SGECluster` (``sge.sh``: sge_qmaster + sge_execd, cell default)
* ``ssh_hosts``     -> :class:`SSHHosts` (``netns.sh``: N network namespaces with an sshd each;
  N = 2, or ``@pytest.mark.parametrize("ssh_hosts", [3], indirect=True)``, or a module-level
  ``SSH_HOSTS = 3``)

Use them from a test module (tests/ is on sys.path, as for ``from helpers import ...``)::

    from systems.fixtures import SlurmCluster, slurm_cluster_fixture  # noqa: F401

then take ``slurm_cluster: SlurmCluster`` as an argument. The functions are called
``*_fixture`` and registered under the short names, so ruff sees no F811 redefinition.
(``pytest_plugins = ["systems.fixtures"]`` would clash with ``filterwarnings = error``:
once any module imported systems.fixtures, pytest warns it cannot rewrite it.)

A fixture skips, with a loud reason, only when the system cannot run here: not root, not
Linux, or a binary missing (``.ci/install-systems.sh`` installs them all). When the
binaries are there and ``up`` fails, the test fails with the script's stderr. After
``down`` the fixture checks that no daemon it started (nor a ``meh*`` namespace or the
``mebr0`` bridge) is left.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import process_running, wait_until

HERE = Path(__file__).resolve().parent
SLURM_SH = HERE / "slurm.sh"
SGE_SH = HERE / "sge.sh"
NETNS_SH = HERE / "netns.sh"

#: daemons live in sbin, which a non-login PATH may lack
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])

UP_TIMEOUT = 90.0  # each script gives up by itself after about 20 s per step
DOWN_TIMEOUT = 90.0  # sge_qmaster alone takes about 8 s to shut down


@dataclass(frozen=True)
class SlurmCluster:
    """A running single-node Slurm; partition ``debug`` holds the one node (``hostname -s``)."""

    conf: Path  #: the slurm.conf; clients find it through SLURM_CONF
    env: dict[str, str]  #: to add to os.environ for sbatch/squeue/... : {"SLURM_CONF": ...}
    dir: Path  #: state, spool and logs (``log/slurmctld.log``, ``log/slurmd.log``)
    pids: dict[str, int] = field(
        default_factory=dict
    )  #: slurmctld, slurmd (+ munged if started here)
    up_seconds: float = 0.0

    def environ(self) -> dict[str, str]:
        """``os.environ`` with :attr:`env` on top, for ``subprocess.run(..., env=)``."""
        return {**os.environ, **self.env}


@dataclass(frozen=True)
class SGECluster:
    """A running single-node Grid Engine: queue ``all.q`` on ``localhost`` with ``nproc`` slots,
    PEs ``make``/``smp``/``mpi``, root may run jobs. Jobs get a reset PATH: use absolute paths."""

    env: dict[str, str]  #: SGE_ROOT, SGE_CELL (and PATH if the clients are not on it already)
    dir: Path
    pids: dict[str, int] = field(default_factory=dict)  #: sge_qmaster, sge_execd
    up_seconds: float = 0.0

    def environ(self) -> dict[str, str]:
        return {**os.environ, **self.env}


@dataclass(frozen=True)
class SSHHosts:
    """N "remote hosts": network namespaces sharing this machine's files, users and PIDs
    (so ``sys.executable`` works there), reachable as ``root@IP`` with :attr:`key`."""

    hosts: list[str]  #: ["10.200.0.2", "10.200.0.3", ...]
    key: Path  #: the client's private key
    ssh_options: list[str]  #: argv options for ``ssh`` (key, batch mode, no host-key checks)
    bridge_ip: str  #: this (root) namespace's address as seen from the hosts: bind here
    namespaces: list[str]  #: "meh1", "meh2", ... in the order of :attr:`hosts`
    dir: Path
    pids: dict[str, int] = field(default_factory=dict)  #: "sshd@10.200.0.2": pid, ...
    up_seconds: float = 0.0

    def ssh_argv(self, host: str, command: str | Sequence[str]) -> list[str]:
        """argv running ``command`` on ``host`` as root; a sequence is quoted with shlex.join."""
        cmd = command if isinstance(command, str) else shlex.join(command)
        return ["ssh", *self.ssh_options, f"root@{host}", cmd]

    def netns_argv(self, host: str, argv: Sequence[str]) -> list[str]:
        """argv running ``argv`` directly inside ``host``'s namespace (no ssh)."""
        return ["ip", "netns", "exec", self.namespaces[self.hosts.index(host)], *argv]


# ---------------------------------------------------------------- helpers
def _skip_unless_runnable(what: str, binaries: Sequence[str]) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip(f"SKIPPED LOUDLY: real {what} not tested: needs Linux (this is {sys.platform})")
    if os.geteuid() != 0:
        pytest.skip(
            f"SKIPPED LOUDLY: real {what} not tested: "
            "needs root to start its daemons (CI runs as root)"
        )
    missing = [b for b in binaries if shutil.which(b, path=SEARCH_PATH) is None]
    if missing:
        pytest.skip(
            f"SKIPPED LOUDLY: real {what} not tested: {', '.join(missing)} not installed "
            f"(as root, `bash .ci/install-systems.sh` installs it)"
        )


def _run(args: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PATH": SEARCH_PATH},
    )


def _values(stdout: str) -> dict[str, str]:
    """The KEY=VALUE lines a script's ``up`` prints."""
    out = {}
    for line in stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.isidentifier():
            out[key] = value
    return out


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _report(what: str, step: str, seconds: float) -> None:
    print(f"[systems] {what} {step} in {seconds:.2f} s", file=sys.stderr)


@dataclass
class _System:
    """One script's up/down around a ``yield``; checks that its processes are gone after down."""

    what: str
    script: Path
    args: list[str]  # after "up"/"down": DIR [N]
    up_seconds: float = 0.0

    def up(self) -> dict[str, str]:
        t0 = time.monotonic()
        try:
            r = _run([str(self.script), "up", *self.args], UP_TIMEOUT)
        except subprocess.TimeoutExpired as e:
            self.down(check=False)
            pytest.fail(
                f"{self.what}: `{self.script.name} up` timed out after {UP_TIMEOUT} s; "
                f"stderr:\n{_text(e.stderr)}"
            )
        self.up_seconds = time.monotonic() - t0
        if r.returncode != 0:
            pytest.fail(
                f"{self.what}: `{self.script.name} up {' '.join(self.args)}` "
                f"failed (exit {r.returncode}) "
                f"although its binaries are installed; stderr:\n{r.stderr}"
            )
        _report(self.what, "up", self.up_seconds)
        return _values(r.stdout)

    def down(self, check: bool = True) -> None:
        t0 = time.monotonic()
        try:
            r = _run([str(self.script), "down", *self.args], DOWN_TIMEOUT)
        except subprocess.TimeoutExpired as e:
            pytest.fail(
                f"{self.what}: `{self.script.name} down` timed out after {DOWN_TIMEOUT} s; "
                f"stderr:\n{_text(e.stderr)}"
            )
        _report(self.what, "down", time.monotonic() - t0)
        if check and r.returncode != 0:
            pytest.fail(
                f"{self.what}: `{self.script.name} down` failed (exit {r.returncode}); "
                f"stderr:\n{r.stderr}"
            )

    def assert_gone(self, pids: dict[str, int]) -> None:
        def left() -> dict[str, int]:
            return {k: p for k, p in pids.items() if process_running(p)}

        wait_until(
            lambda: not left(),
            10,
            0.1,
            lambda: f"{self.what}'s daemons to exit after down; still running: {left()}",
        )


def _text(b: bytes | str | None) -> str:
    return b.decode(errors="replace") if isinstance(b, bytes) else (b or "")


# ---------------------------------------------------------------- fixtures
@pytest.fixture(name="slurm_cluster")
def slurm_cluster_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    _skip_unless_runnable(
        "Slurm",
        ["slurmctld", "slurmd", "sinfo", "sbatch", "srun", "squeue", "scancel", "munged", "munge"],
    )
    d = tmp_path_factory.mktemp("slurm")
    system = _System("Slurm", SLURM_SH, [str(d)])
    values = system.up()
    pids: dict[str, int] = {}
    try:
        pids = {
            name: pid
            for name in ("slurmctld", "slurmd", "munged")
            if (pid := _read_pid(d / f"{name}.pid"))
        }
        conf = Path(values["SLURM_CONF"])
        yield SlurmCluster(
            conf=conf, env={"SLURM_CONF": str(conf)}, dir=d, pids=pids, up_seconds=system.up_seconds
        )
    finally:
        system.down()
    system.assert_gone(pids)


@pytest.fixture(name="sge_cluster")
def sge_cluster_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SGECluster]:
    _skip_unless_runnable(
        "Grid Engine", ["sge_qmaster", "sge_execd", "qconf", "qsub", "qstat", "qdel", "qmod"]
    )
    d = tmp_path_factory.mktemp("sge")
    system = _System("Grid Engine", SGE_SH, [str(d)])
    values = system.up()
    pids: dict[str, int] = {}
    try:
        pids = {name: pid for name in ("qmaster", "execd") if (pid := _read_pid(d / f"{name}.pid"))}
        env = {"SGE_ROOT": values["SGE_ROOT"], "SGE_CELL": values["SGE_CELL"]}
        qsub = shutil.which("qsub", path=SEARCH_PATH)
        assert qsub is not None
        if shutil.which("qsub") != qsub:  # on PATH only through the sbin fallback
            env["PATH"] = os.pathsep.join([os.path.dirname(qsub), os.environ.get("PATH", "")])
        yield SGECluster(
            env=env,
            dir=d,
            pids={f"sge_{k}": p for k, p in pids.items()},
            up_seconds=system.up_seconds,
        )
    finally:
        system.down()
    system.assert_gone(pids)


@pytest.fixture(name="ssh_hosts")
def ssh_hosts_fixture(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SSHHosts]:
    n = int(getattr(request, "param", None) or getattr(request.module, "SSH_HOSTS", 2))
    _skip_unless_runnable("ssh hosts (network namespaces)", ["ip", "sshd", "ssh", "ssh-keygen"])
    d = tmp_path_factory.mktemp("netns")
    system = _System(f"ssh hosts x{n}", NETNS_SH, [str(d), str(n)])
    values = system.up()
    pids: dict[str, int] = {}
    try:
        hosts = values["HOSTS"].split()
        assert len(hosts) == n, values
        key = Path(values["SSH_KEY"])
        pids = {
            f"sshd@{h}": pid
            for k, h in enumerate(hosts, 1)
            if (pid := _read_pid(d / f"h{k}" / "sshd.pid"))
        }
        yield SSHHosts(
            hosts=hosts,
            key=key,
            ssh_options=[
                "-i",
                str(key),
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "LogLevel=ERROR",
                "-o",
                "ConnectTimeout=5",
            ],  # fmt: skip
            bridge_ip="10.200.0.1",
            namespaces=[f"meh{k}" for k in range(1, n + 1)],
            dir=d,
            pids=pids,
            up_seconds=system.up_seconds,
        )
    finally:
        system.down()
    system.assert_gone(pids)
    r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10)
    left = [line.split()[0] for line in r.stdout.splitlines() if line.startswith("meh")]
    assert not left, f"network namespaces left after down: {left}"
    r = subprocess.run(["ip", "link", "show", "mebr0"], capture_output=True, text=True, timeout=10)
    assert r.returncode != 0, "bridge mebr0 left after down"
