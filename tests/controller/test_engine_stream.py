"""The engine stream (docs/protocol.md §1, "The engine stream"): engines of the
controller's host send and take their commands over a Unix stream socket, not ZeroMQ.
Real controller, real engines, real sockets; which transport an engine uses is read
from ``status()`` (``link``), never from a timing."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from helpers import HANG, assert_cluster_works, error_types, wait_until

import multiengine
from multiengine import Cluster
from multiengine.engine.link import ENV_ENGINE_STREAM
from multiengine.errors import CompositeError, EngineError
from multiengine.wire import protocol as P
from multiengine.wire import stream
from multiengine.wire.connection import read_connection_file
from multiengine.wire.message import Signer


def links(mec: multiengine.MultiEngineClient) -> list[str]:
    return [e["link"] for e in mec.status()["engines"]]


def stream_path(cluster: Cluster) -> str:
    url = read_connection_file(str(cluster.cluster_dir.engine_file)).url("engine")
    path = stream.path_of(stream.beside(url) or "")
    assert path is not None, url
    return path


def test_engines_of_this_host_use_the_stream_and_one_told_not_to_uses_zeromq(
    fresh_cluster: Callable[..., Cluster],
) -> None:
    """Two engines on the stream and a third on ZeroMQ (``$MULTIENGINE_ENGINE_STREAM=off``)
    in one cluster: every kind of call reaches all three alike."""
    cluster = fresh_cluster(2)
    path = stream_path(cluster)
    assert os.stat(path).st_mode & 0o777 == 0o600
    env = {**os.environ, ENV_ENGINE_STREAM: "off", "PYTHONPATH": os.pathsep.join(sys.path)}
    other = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "multiengine",
            "engine",
            "--connection-file",
            str(cluster.cluster_dir.engine_file),
        ],
        env=env,
    )
    try:
        mec = cluster.multiengine_client()
        wait_until(lambda: mec.get_ids() == [0, 1, 2], HANG, 0.05, "the third engine")
        assert links(mec) == ["unix", "unix", "zmq"]
        assert_cluster_works(mec)
        mec.scatter("part", list(range(30)))
        assert mec.gather("part") == list(range(30))
        big = np.arange(3_000_000, dtype=np.float64)  # 24 MB: in pieces, or shared memory
        mec.push({"big": big})
        assert all(np.array_equal(b, big) for b in mec.pull("big"))
        assert mec.map(lambda x: x * 2, range(9)) == [x * 2 for x in range(9)]
        tc = cluster.task_client()
        assert tc.map(abs, [-1, -2, -3, -4]) == [1, 2, 3, 4]
    finally:
        other.kill()
        other.wait(HANG)


def test_an_engine_whose_stream_ends_is_lost_and_comes_back_on_a_new_one(
    fresh_cluster: Callable[..., Cluster],
) -> None:
    """The stream's end is a closed engine connection: the controller fails what ran on
    it, and the engine registers again on a new stream, keeping its namespace."""
    cluster = fresh_cluster(1)
    mec = cluster.multiengine_client()
    mec.execute("kept = 5")
    assert links(mec) == ["unix"]
    # the engine shuts its own stream down, as if the controller had closed it
    mec.execute(
        "import gc, socket, multiengine.engine.main as M\n"
        "e = next(o for o in gc.get_objects() if isinstance(o, M.Engine))\n"
        "e.link.conn.sock.shutdown(socket.SHUT_RDWR)",
        block=False,
    )

    def back() -> bool:
        try:
            return bool(mec.pull("kept", targets=0) == [5])
        except CompositeError as e:  # a pull sent before it registered again: it failed
            assert error_types(e) == [EngineError]
            return False

    wait_until(back, HANG, 0.05, "the engine back, with its namespace")
    assert links(mec) == ["unix"]
    assert_cluster_works(mec)


@pytest.mark.fault(
    section="hostile-input",
    fault=(
        "on the engine stream (a local process in the 0700 directory): bytes that are no "
        "message stream, a forged `register`, a signed message before any `register`"
    ),
    outcome=(
        "each dropped and counted in `dropped_messages`; the junk's connection is closed; "
        "no engine is registered from it; the engines go on"
    ),
)
def test_junk_forged_and_unnamed_messages_on_the_engine_stream_are_dropped_and_counted(
    fresh_cluster: Callable[..., Cluster],
) -> None:
    cluster = fresh_cluster(1)
    mec = cluster.multiengine_client()
    path = stream_path(cluster)
    before = mec.status()["dropped_messages"]
    # bytes that are no message stream: the controller closes the connection
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        s.sendall(struct.pack("<I", 0) + b"junk" * 16)
        s.settimeout(HANG)
        assert s.recv(1) == b""
    finally:
        s.close()
    info_key = mec._core.info.key
    register: dict[str, Any] = {
        "t": P.REGISTER,
        "desired_id": None,
        "pid": os.getpid(),
        "host": "x",
        "epoch": 0,
        "node": "",
        "direct": "",
        "ident": b"e-forged",
    }
    conn = stream.connect(stream.SCHEME + path)
    try:
        assert conn.send(Signer(b"another key").frames(dict(register)))  # forged
        assert conn.send(Signer(info_key).frames({"t": P.BYE}))  # signed, but unnamed
        wait_until(
            lambda: mec.status()["dropped_messages"] >= before + 3, HANG, 0.05, "three drops"
        )
    finally:
        conn.close()
    assert mec.get_ids() == [0]  # nobody registered from it
    assert_cluster_works(mec)
