"""Launcher start times and the cost of encryption across a network link.

    sudo .venv/bin/python benchmarks/launchers.py            # everything this machine can run
    sudo .venv/bin/python benchmarks/launchers.py --only curve

Needs root: it starts the same real systems as the tests (tests/systems/*.sh: Slurm,
Grid Engine, two sshd "hosts" in network namespaces), measures, and stops them.

1. **Start time per launcher**: ``Cluster(2, launcher=...).start()``, from nothing to
   both engines registered (the controller included), median of ``--repeat`` starts.
2. **Encrypted vs plain across a link**: the controller on the bridge (10.200.0.1), one
   engine in a network namespace behind a veth link, CurveZMQ on and off: the
   execute('pass') round trip and an 80 MB float64 push, as a ratio.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SYSTEMS = HERE.parent / "tests" / "systems"
MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}


def up(script: str, *args: str) -> dict[str, str]:
    r = subprocess.run(
        [str(SYSTEMS / script), "up", *args], capture_output=True, text=True, timeout=120
    )
    if r.returncode:
        raise RuntimeError(f"{script} up failed:\n{r.stderr}")
    return dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)


def down(script: str, *args: str) -> None:
    subprocess.run(
        [str(SYSTEMS / script), "down", *args], capture_output=True, text=True, timeout=120
    )


def time_starts(launcher: str, repeat: int, **kwargs: Any) -> list[float]:
    from multiengine.cluster.cluster import Cluster

    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        c = Cluster(2, launcher=launcher, timeout=120, **kwargs).start()
        times.append(time.perf_counter() - began)
        c.stop(timeout=20)
    return times


def time_starts_ipp(engines: str, repeat: int) -> list[float]:
    """The same measurement for ipyparallel's launcher of the same system (its controller local)."""
    import ipyparallel as ipp

    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        cluster = ipp.Cluster(n=2, engines=engines, log_level=40)
        try:
            rc = cluster.start_and_connect_sync()
            rc.wait_for_engines(2, timeout=120)
            times.append(time.perf_counter() - began)
            rc.close()
        finally:
            cluster.stop_cluster_sync()
    return times


def launcher_times(repeat: int, scratch: Path) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []

    def one(fn: Any) -> str:
        try:
            t = fn()
            return f"{statistics.median(t):.2f} s (min {min(t):.2f}, max {max(t):.2f})"
        except Exception as e:  # noqa: BLE001 - report and go on
            return f"n/a ({(str(e).splitlines() or [type(e).__name__])[0][:80]})"

    def record(name: str, fn: Any, ipp_engines: str | None = None) -> None:
        mine = one(fn)
        theirs = (
            one(lambda: time_starts_ipp(ipp_engines, repeat)) if ipp_engines and has_ipp else "-"
        )
        rows.append((name, f"multiengine {mine}; ipyparallel {theirs}"))
        print(f"  {name:<28} multiengine {mine}\n  {'':<28} ipyparallel {theirs}", flush=True)

    try:
        import ipyparallel  # noqa: F401

        has_ipp = True
    except ImportError:
        has_ipp = False

    record("local", lambda: time_starts("local", repeat), "local")
    if shutil.which("mpiexec"):
        os.environ.update({**MPI_ENV, "OMPI_MCA_rmaps_base_oversubscribe": "1"})
        record(
            "mpi (mpiexec -n 2)",
            lambda: time_starts("mpi", repeat, launcher_options={"args": ["--oversubscribe"]}),
            "mpi",
        )
    for script, daemon, name, launcher in (
        ("slurm.sh", "slurmctld", "slurm (sbatch + srun)", "slurm"),
        ("sge.sh", "sge_qmaster", "sge (qsub array job)", "sge"),
    ):
        if not (shutil.which(daemon) or Path("/usr/sbin", daemon).exists()):
            continue
        d = scratch / launcher
        d.mkdir()
        try:
            os.environ.update(up(script, str(d)))
            record(name, lambda launcher=launcher: time_starts(launcher, repeat), launcher)
        finally:
            down(script, str(d))
    if shutil.which("sshd") or Path("/usr/sbin/sshd").exists():
        d = scratch / "netns"
        d.mkdir()
        try:
            hosts = up("netns.sh", str(d), "2")["HOSTS"].split()
            opts = {
                "python": sys.executable,
                "ssh_args": ssh_args(d),
                "hosts": {hosts[0]: 1, hosts[1]: 1},
            }
            record(
                "ssh (2 hosts, Curve on)",
                lambda: time_starts("ssh", repeat, ip="10.200.0.1", launcher_options=opts),
            )
        finally:
            down("netns.sh", str(d), "2")
    return rows


def ssh_args(d: Path) -> list[str]:
    return [
        "-i",
        str(d / "id_ed25519"),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
    ]


def across_link(scratch: Path, rounds: int) -> list[tuple[str, str]]:
    import numpy as np

    from multiengine.cluster.cluster import Cluster

    d = scratch / "link"
    d.mkdir()
    a = np.random.rand(10_000_000)  # 80 MB
    results: dict[str, tuple[float, float]] = {}
    try:
        host = up("netns.sh", str(d), "1")["HOSTS"].split()[0]
        opts = {"python": sys.executable, "ssh_args": ssh_args(d), "hosts": {host: 1}}
        for mode in ("off", "on"):
            with Cluster(
                1, launcher="ssh", ip="10.200.0.1", curve=mode, launcher_options=opts, timeout=60
            ) as c:
                mec = c.multiengine_client()
                for _ in range(50):
                    mec.execute("pass", targets=0)
                rtts = []
                for _ in range(rounds):
                    t = time.perf_counter()
                    mec.execute("pass", targets=0)
                    rtts.append(time.perf_counter() - t)
                pushes = []
                for _ in range(5):
                    t = time.perf_counter()
                    mec.push({"a": a}, targets=0)
                    pushes.append(time.perf_counter() - t)
                    mec.execute("del a", targets=0)
                results[mode] = (
                    statistics.median(rtts) * 1e3,
                    a.nbytes / statistics.median(pushes) / 1e9,
                )
                print(
                    f"  curve {mode:<3}: round trip {results[mode][0]:.3f} ms, "
                    f"push 80 MB {results[mode][1]:.2f} GB/s",
                    flush=True,
                )
    finally:
        down("netns.sh", str(d), "1")
    (p_rtt, p_gbs), (c_rtt, c_gbs) = results["off"], results["on"]
    return [
        (
            "execute('pass') round trip, median",
            f"plain {p_rtt:.3f} ms, Curve {c_rtt:.3f} ms: x{c_rtt / p_rtt:.2f} time",
        ),
        (
            "push 80 MB float64",
            f"plain {p_gbs:.2f} GB/s, Curve {c_gbs:.2f} GB/s: x{p_gbs / c_gbs:.2f} time",
        ),
    ]


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--only", choices=("launchers", "curve"), help="run one part")
    p.add_argument("--repeat", type=int, default=3, help="starts per launcher (default 3)")
    p.add_argument("--rounds", type=int, default=1000, help="round trips per mode (default 1000)")
    args = p.parse_args()
    if os.geteuid() != 0:
        print(
            "benchmarks/launchers.py needs root "
            "(it starts Slurm, Grid Engine and network namespaces)",
            file=sys.stderr,
        )
        return 2
    os.environ.setdefault("MULTIENGINE_DIR", tempfile.mkdtemp(prefix="me-bench-"))
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="me-launchers-") as tmp:
        if args.only in (None, "launchers"):
            print("start: nothing -> 2 engines registered, per launcher", flush=True)
            rows += launcher_times(args.repeat, Path(tmp))
        if args.only in (None, "curve"):
            print(
                "across a veth link: controller on the bridge, one engine in a network namespace",
                flush=True,
            )
            rows += across_link(Path(tmp), args.rounds)
    print()
    print("| measurement | result |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
