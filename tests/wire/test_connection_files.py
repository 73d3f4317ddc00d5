"""Connection files (contract §4, §7): written 0600 without a half-written moment, read
back, clear errors; a client on the controller's host uses its IPC endpoint."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

import multiengine
from multiengine.errors import ConnectionFileError, KernelError
from multiengine.wire.connection import ConnectionInfo, read_connection_file, write_connection_file


def test_write_connection_file(tmp_path):
    key = bytes(range(32))
    info = ConnectionInfo(key=key, addresses={"client": "tcp://127.0.0.1:50123"})
    path = tmp_path / "client.json"
    write_connection_file(path, info)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(path.read_text())
    assert data["key"] == "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
    assert data["signature_scheme"] == "hmac-sha256"
    assert data["addresses"] == {"client": "tcp://127.0.0.1:50123"}
    assert "curve_serverkey" in data and data["curve_serverkey"] is None
    assert [p.name for p in tmp_path.iterdir()] == ["client.json"]  # no temporary file left

    back = read_connection_file(path)
    assert back.key == key
    assert back.addresses == {"client": "tcp://127.0.0.1:50123"}
    assert back.signature_scheme == "hmac-sha256"
    assert back.curve_serverkey is None


def test_rewrite_replaces_the_file(tmp_path):
    path = tmp_path / "engine.json"
    write_connection_file(
        path, ConnectionInfo(key=b"\x01" * 16, addresses={"engine": "tcp://127.0.0.1:1"})
    )
    write_connection_file(
        path, ConnectionInfo(key=b"\x02" * 16, addresses={"engine": "tcp://127.0.0.1:2"})
    )
    assert read_connection_file(path).addresses == {"engine": "tcp://127.0.0.1:2"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_missing_connection_file(tmp_path):
    missing = tmp_path / "nope" / "client.json"
    with pytest.raises(ConnectionFileError) as exc:
        read_connection_file(missing)
    assert isinstance(exc.value, FileNotFoundError)
    assert isinstance(exc.value, KernelError)
    assert str(missing) in str(exc.value)
    with pytest.raises(FileNotFoundError):
        read_connection_file(missing)


def test_invalid_connection_file(tmp_path):
    path = tmp_path / "client.json"
    path.write_text("{not json")
    with pytest.raises(ConnectionFileError):
        read_connection_file(path)
    path.write_text(json.dumps({"addresses": {"client": "tcp://127.0.0.1:1"}}))  # no key
    with pytest.raises(ConnectionFileError):
        read_connection_file(path)


def test_same_host_clients_use_ipc_and_others_tcp(
    cluster: multiengine.Cluster, tmp_path: Path
) -> None:
    from multiengine.wire.connection import (
        ConnectionInfo,
        read_connection_file,
        write_connection_file,
    )

    info = read_connection_file(cluster.cluster_dir.client_file)
    assert info.addresses["client"].startswith("tcp://127.0.0.1:")
    assert info.url("client").startswith("ipc://")  # this host: the IPC endpoint
    elsewhere = ConnectionInfo(
        info.key, info.addresses, extra={**info.extra, "host": "another-host"}
    )
    assert elsewhere.url("client") == info.addresses["client"]
    # a client that only knows the TCP address (as on another host) works the same
    tcp_only = tmp_path / "client-tcp.json"
    write_connection_file(tcp_only, ConnectionInfo(info.key, info.addresses))
    with multiengine.MultiEngineClient(connection_file=tcp_only) as mec:
        assert mec._core.url.startswith("tcp://")
        assert mec.pull("id") == [0, 1, 2, 3]
