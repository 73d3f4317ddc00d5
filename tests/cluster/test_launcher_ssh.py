"""The ``ssh`` launcher across real hosts: network namespaces, each with its own sshd.

``tests/systems/netns.sh`` makes two hosts (``meh1``/``meh2`` at 10.200.0.2 and .3) on a
bridge whose root-namespace side is 10.200.0.1. The controller binds that address, so
CurveZMQ is on by default; traffic between the hosts crosses the veth links, where
tcpdump can watch it. The namespaces share this machine's files, so the "remote"
Python is this one, named explicitly as a remote Python must be (through a wrapper that
puts the multiengine under test first on its path, since sshd gives a clean environment).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from helpers import call_within, run_cli, wait_until
from systems.fixtures import SSHHosts, ssh_hosts_fixture  # noqa: F401

import multiengine
from multiengine.cluster.cluster import Cluster, ClusterStartError
from multiengine.errors import ControllerConnectionError

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def remote_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """This interpreter, running the multiengine this test imported, for the hosts."""
    source = Path(multiengine.__file__).resolve().parents[1]
    wrapper = tmp_path_factory.mktemp("remote-python") / "python"
    wrapper.write_text(
        f"#!/bin/sh\nPYTHONPATH={shlex.quote(str(source))} "
        f'exec {shlex.quote(sys.executable)} "$@"\n'
    )
    wrapper.chmod(0o755)
    return str(wrapper)


def options(net: SSHHosts, python: str, **extra: object) -> dict[str, object]:
    return {"python": python, "ssh_args": net.ssh_options, **extra}


def netns_of(pid: int) -> str:
    return os.readlink(f"/proc/{pid}/ns/net")


def namespace_inode(hosts: SSHHosts, host: str) -> str:
    r = subprocess.run(
        hosts.netns_argv(host, ["readlink", "/proc/self/ns/net"]),
        capture_output=True,
        text=True,
        timeout=10,
    )
    return r.stdout.strip()


def namespace_pids(hosts: SSHHosts) -> list[str]:
    out = []
    for ns in hosts.namespaces:
        r = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, timeout=10)
        out += r.stdout.split()
    return out


def sshd_pids(hosts: SSHHosts) -> set[str]:
    return {str(p) for p in hosts.pids.values()}


def assert_hosts_empty(hosts: SSHHosts) -> None:
    """Nothing but the sshds runs in the hosts' namespaces (once what was stopped is gone)."""
    wait_until(
        lambda: set(namespace_pids(hosts)) <= sshd_pids(hosts),
        interval=0.1,
        message="nothing but the sshds to run in the hosts (processes left behind)",
    )


@pytest.fixture
def across(ssh_hosts: SSHHosts, remote_python: str) -> object:
    """Start a cluster with the ssh launcher; afterwards nothing but the sshds may remain
    in the hosts."""
    started: list[Cluster] = []

    def make(
        n: int, ip: str | None = None, curve: str | None = None, timeout: float = 30, **opts: object
    ) -> Cluster:
        c = Cluster(
            n,
            launcher="ssh",
            ip=ip or ssh_hosts.bridge_ip,
            curve=curve,
            timeout=timeout,
            launcher_options=options(ssh_hosts, remote_python, **opts),
        )
        started.append(c)
        return c.start()

    yield make
    for c in started:
        c.stop()
    assert_hosts_empty(ssh_hosts)


def test_engines_on_two_hosts_do_real_work_encrypted(ssh_hosts: SSHHosts, across: object) -> None:
    h1, h2 = ssh_hosts.hosts
    c = across(4, hosts={h1: 2, h2: 2})  # type: ignore[operator]
    info = json.loads(c.cluster_dir.client_file.read_text())
    assert info["curve_serverkey"], "CurveZMQ must be on when the controller binds off loopback"
    assert info["addresses"]["client"].startswith(f"tcp://{ssh_hosts.bridge_ip}:")
    mec = c.multiengine_client()
    assert mec.get_ids() == [0, 1, 2, 3]
    # each engine really runs inside one of the two hosts: two per namespace
    where = [netns_of(pid) for pid in c.engine_pids().values()]
    assert sorted(where) == sorted(
        [namespace_inode(ssh_hosts, h1)] * 2 + [namespace_inode(ssh_hosts, h2)] * 2
    )
    mec.scatter("x", list(range(100)))
    mec.execute("y = sum(v * v for v in x)")
    assert sum(mec.pull("y")) == sum(v * v for v in range(100))
    tc = c.task_client()
    assert tc.map(lambda v: v * 3, range(40)) == [v * 3 for v in range(40)]


def test_large_arrays_cross_the_hosts_exact_and_writable(
    ssh_hosts: SSHHosts, across: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over the network in signed pieces, encrypted (the hosts share this machine's boot
    id, so shared memory is turned off for them to travel at all)."""
    import numpy as np

    from multiengine.wire import chunks

    monkeypatch.setenv("MULTIENGINE_SHM_THRESHOLD", "0")
    h1, h2 = ssh_hosts.hosts
    c = across(2, hosts={h1: 1, h2: 1})  # type: ignore[operator]
    mec = c.multiengine_client()
    a = np.random.default_rng(5).random(3 * chunks.PIECE // 8 + 12_345)
    assert a.nbytes >= chunks.STREAM_THRESHOLD
    mec.push({"a": a})
    mec.execute("w = a.flags.writeable; s = float(a.sum())")
    assert mec.pull(("w", "s")) == [[True, float(a.sum())]] * 2
    for back in [*mec.pull("a"), *mec.pull("a", targets=1)]:
        assert back.flags.writeable
        np.testing.assert_array_equal(back, a)
    mec.scatter("part", a)
    np.testing.assert_array_equal(mec.gather("part"), a)


def test_a_client_in_another_namespace(ssh_hosts: SSHHosts, across: object) -> None:
    """The controller in the root namespace, the client on host 2, given only the file's content."""
    h1, h2 = ssh_hosts.hosts
    c = across(2, hosts={h1: 2})  # type: ignore[operator]
    code = (
        "import multiengine; m = multiengine.MultiEngineClient(); "
        "print(m.execute('z = id * 7') and m.pull('z'))"
    )
    env = {**os.environ, "MULTIENGINE_CONNECTION": c.cluster_dir.client_file.read_text()}
    r = subprocess.run(
        ssh_hosts.netns_argv(h2, [sys.executable, "-c", code]),
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[0, 7]"


def _sniff(ssh_hosts: SSHHosts, host: str, pcap: Path) -> subprocess.Popen[bytes]:
    veth = f"ve-{ssh_hosts.namespaces[ssh_hosts.hosts.index(host)]}"
    proc = subprocess.Popen(
        [
            "tcpdump",
            "--immediate-mode",
            "-Z",
            "root",
            "-i",
            veth,
            "-U",
            "-s",
            "0",
            "-w",
            str(pcap),
            "tcp",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline().decode()  # "tcpdump: listening on ve-meh1 ..."
    assert "listening on" in line, line
    return proc


def _captured(pcap: Path) -> list[tuple[float, int]]:
    """(capture time, length) of each whole packet written to a pcap file so far."""
    data = pcap.read_bytes() if pcap.exists() else b""
    if len(data) < 24:
        return []
    magic = data[:4]
    order = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    per_second = 1e9 if magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d") else 1e6
    pos, packets = 24, []
    while pos + 16 <= len(data):
        seconds, fraction, length, _ = struct.unpack(order + "IIII", data[pos : pos + 16])
        if pos + 16 + length > len(data):
            break
        packets.append((seconds + fraction / per_second, length))
        pos += 16 + length
    return packets


def _marker_seen(ssh_hosts: SSHHosts, c: Cluster, tmp_path: Path, name: str) -> bool:
    marker = f"MARKER-{uuid.uuid4().hex}"
    pcap = tmp_path / f"{name}.pcap"
    sniffer = _sniff(ssh_hosts, ssh_hosts.hosts[0], pcap)
    try:
        mec = c.multiengine_client()
        pushed = time.time()
        mec.push({"secret": marker})
        assert mec.pull("secret") == [marker] * len(mec.get_ids())
        pulled = time.time()
        # heartbeats go on over the link: once the file holds a packet captured after the
        # pull, it holds every packet the push and the pull sent
        wait_until(
            lambda: any(t > pulled for t, _ in _captured(pcap)),
            message="the capture to catch up with the pull",
        )
    finally:
        sniffer.send_signal(signal.SIGINT)
        sniffer.communicate(timeout=10)
    carried = sum(n for t, n in _captured(pcap) if pushed <= t <= pulled)
    assert carried > 2 * len(marker), "the capture missed the push and pull: it would prove nothing"
    return marker.encode() in pcap.read_bytes()


def test_sniffing_the_link_shows_no_plaintext(
    ssh_hosts: SSHHosts, across: object, tmp_path: Path
) -> None:
    h1 = ssh_hosts.hosts[0]
    plain = across(1, curve="off", hosts={h1: 1})  # type: ignore[operator]
    assert _marker_seen(ssh_hosts, plain, tmp_path, "plain"), (
        "without Curve the marker must be visible (control)"
    )
    plain.stop()
    encrypted = across(1, hosts={h1: 1})  # type: ignore[operator]
    assert not _marker_seen(ssh_hosts, encrypted, tmp_path, "curve"), (
        "the pushed marker crossed the link in plaintext"
    )


def test_wrong_keys_are_refused(ssh_hosts: SSHHosts, across: object, tmp_path: Path) -> None:
    import zmq

    h1 = ssh_hosts.hosts[0]
    c = across(1, hosts={h1: 1})  # type: ignore[operator]
    good = json.loads(c.cluster_dir.client_file.read_text())
    wrong_server = {**good, "curve_serverkey": zmq.curve_keypair()[0].decode()}
    plaintext = {**good, "curve_serverkey": None}
    wrong_hmac = {**good, "key": os.urandom(32).hex()}
    for name, info in (
        ("wrong-curve", wrong_server),
        ("plaintext", plaintext),
        ("wrong-hmac", wrong_hmac),
    ):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(info))
        with pytest.raises(ControllerConnectionError):
            multiengine.MultiEngineClient(connection_file=path, timeout=1.5)
    # and the cluster is unharmed
    mec = c.multiengine_client()
    assert mec.execute("ok = 1") and mec.pull("ok") == [1]


def test_controller_on_a_remote_host(ssh_hosts: SSHHosts, across: object) -> None:
    """Controller in host 1 (binding its address), engines on host 2, client here."""
    h1, h2 = ssh_hosts.hosts
    c = across(2, ip=h1, controller_host=h1, hosts={h2: 2})  # type: ignore[operator]
    mec = c.multiengine_client()
    status = mec.status()
    assert netns_of(status["pid"]) == namespace_inode(ssh_hosts, h1)
    assert {netns_of(p) for p in c.engine_pids().values()} == {namespace_inode(ssh_hosts, h2)}
    assert mec.execute("a = 6 * 7") and mec.pull("a") == [42, 42]
    info = json.loads(c.cluster_dir.client_file.read_text())
    assert info["addresses"]["client"].startswith(f"tcp://{h1}:") and info["curve_serverkey"]


def test_ssh_auth_failure_is_one_clear_error(
    ssh_hosts: SSHHosts, remote_python: str, tmp_path: Path
) -> None:
    stranger = tmp_path / "stranger_key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True, timeout=30
    )
    args = [a if a != str(ssh_hosts.key) else str(stranger) for a in ssh_hosts.ssh_options]
    c = Cluster(
        2,
        launcher="ssh",
        ip=ssh_hosts.bridge_ip,
        timeout=600,  # far longer than the guard below: the refusal must be reported at once
        launcher_options={
            "python": remote_python,
            "ssh_args": args,
            "hosts": {ssh_hosts.hosts[0]: 2},
        },
    )
    try:
        with pytest.raises(ClusterStartError) as err:
            call_within(c.start, message="the start of engines that ssh refuses")
    finally:
        c.stop()
    text = str(err.value)
    assert "exited with code 255" in text and "Permission denied" in text, text


def test_engines_that_cannot_reach_the_controller_time_out(
    ssh_hosts: SSHHosts, remote_python: str
) -> None:
    """A location the hosts cannot reach: the engines never register; one error, nothing left."""
    c = Cluster(
        1,
        launcher="ssh",
        ip="0.0.0.0",
        location="10.200.0.250",
        timeout=4,
        launcher_options={
            "python": remote_python,
            "ssh_args": ssh_hosts.ssh_options,
            "hosts": {ssh_hosts.hosts[0]: 1},
        },
    )
    try:
        with pytest.raises(ClusterStartError, match="0 of 1 engines registered"):
            c.start()
    finally:
        c.stop()
    assert_hosts_empty(ssh_hosts)


def test_ssh_needs_an_explicit_remote_python(ssh_hosts: SSHHosts) -> None:
    with pytest.raises(ValueError, match="set `python`"):
        Cluster(1, launcher="ssh", launcher_options={"hosts": ssh_hosts.hosts}).start()


def test_cli_ssh_launcher_from_cluster_toml(
    ssh_hosts: SSHHosts, remote_python: str, multiengine_dir: Path
) -> None:
    """Everything from cluster.toml: `cluster start --daemon`, work from a client,
    `cluster stop`."""
    profile = f"ssh-cli-{os.getpid()}"
    cdir = multiengine_dir / f"cluster_{profile}"
    assert run_cli("cluster", "create", "-p", profile).returncode == 0
    h1, h2 = ssh_hosts.hosts
    (cdir / "cluster.toml").write_text(f"""
[cluster]
engines = 2
launcher = "ssh"

[controller]
ip = "{ssh_hosts.bridge_ip}"

[launcher.ssh]
hosts = {{ "{h1}" = 1, "{h2}" = 1 }}
python = "{remote_python}"
ssh_args = {json.dumps(ssh_hosts.ssh_options)}
""")
    r = run_cli("cluster", "start", "-p", profile, "--daemon", timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr
    try:
        with multiengine.MultiEngineClient(profile=profile, timeout=10) as mec:
            mec.execute("import os; ns = os.readlink('/proc/self/ns/net')")
            assert sorted(mec.pull("ns")) == sorted(namespace_inode(ssh_hosts, h) for h in (h1, h2))
        assert json.loads((cdir / "security" / "client.json").read_text())["curve_serverkey"]
    finally:
        r = run_cli("cluster", "stop", "-p", profile, timeout=60)
    assert r.returncode == 0, r.stderr
    assert_hosts_empty(ssh_hosts)


def test_loopback_controller_with_remote_engines_says_why(
    ssh_hosts: SSHHosts, remote_python: str
) -> None:
    """The default (loopback) controller cannot be reached from other hosts: the error says so."""
    c = Cluster(
        1,
        launcher="ssh",
        timeout=4,
        launcher_options=options(ssh_hosts, remote_python, hosts={ssh_hosts.hosts[0]: 1}),
    )
    try:
        with pytest.raises(ClusterStartError, match=r"listens on 127\.0\.0\.1 only.*--ip"):
            c.start()
    finally:
        c.stop()
