"""CurveZMQ on this host: on by default off loopback, off on loopback, keys kept private.

The same checks across real hosts (network namespaces, a sniffed link) are in
tests/cluster/test_launcher_ssh.py; these run anywhere, over TCP on this machine's own address.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
import zmq

import multiengine
from multiengine.cluster.cluster import Cluster
from multiengine.errors import ControllerConnectionError

pytestmark = pytest.mark.timeout(60)


def tcp_only(c: Cluster, tmp_path: Path, **changes: object) -> Path:
    """client.json without the IPC endpoints (so the client really uses TCP), with ``changes``."""
    info = json.loads(c.cluster_dir.client_file.read_text())
    info.pop("ipc_addresses", None)
    info["addresses"]["client"] = info["addresses"]["client"].replace(info["location"], "127.0.0.1")
    info.update(changes)
    path = tmp_path / "client.json"
    path.write_text(json.dumps(info))
    return path


def test_loopback_is_plain(cluster: Cluster) -> None:
    info = json.loads(cluster.cluster_dir.client_file.read_text())
    assert info["curve_serverkey"] is None
    assert not cluster.cluster_dir.curve_file.exists()


def test_all_interfaces_turns_curve_on(
    fresh_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    c = fresh_cluster(2, ip="0.0.0.0")
    client = json.loads(c.cluster_dir.client_file.read_text())
    engine = json.loads(c.cluster_dir.engine_file.read_text())
    assert client["curve_serverkey"] and client["curve_serverkey"] == engine["curve_serverkey"]
    keys = json.loads(c.cluster_dir.curve_file.read_text())
    assert (
        keys["public"] == client["curve_serverkey"]
        and "secret" not in client
        and "secret" not in engine
    )
    assert stat.S_IMODE(c.cluster_dir.curve_file.stat().st_mode) == 0o600
    # a client over TCP with the right key works; with a wrong one, or none, it is refused
    with multiengine.MultiEngineClient(connection_file=tcp_only(c, tmp_path), timeout=5) as mec:
        mec.execute("v = id * 2")
        assert mec.pull("v") == [0, 2]
    for bad in (zmq.curve_keypair()[0].decode(), None):
        with pytest.raises(ControllerConnectionError, match="no answer from the controller"):
            multiengine.MultiEngineClient(
                connection_file=tcp_only(c, tmp_path, curve_serverkey=bad), timeout=1
            )
    assert c.multiengine_client().get_ids() == [0, 1]  # unharmed


def test_curve_off_and_on_by_choice(fresh_cluster: Callable[..., Cluster]) -> None:
    off = fresh_cluster(1, ip="0.0.0.0", curve="off")
    assert json.loads(off.cluster_dir.client_file.read_text())["curve_serverkey"] is None
    assert "without encryption" in (off.cluster_dir.log / "controller.log").read_text()
    on = fresh_cluster(1, curve="on")  # loopback, encrypted anyway
    assert json.loads(on.cluster_dir.client_file.read_text())["curve_serverkey"]
    assert on.multiengine_client().execute("x = 1") is not None


def test_bad_curve_value_is_refused() -> None:
    with pytest.raises(ValueError, match="curve must be 'auto', 'on' or 'off'"):
        Cluster(1, curve="maybe")
