"""Forged, garbled and truncated messages are dropped and counted; the controller goes on."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import zmq
from helpers import HANG, assert_cluster_works, call_within

import multiengine
from multiengine.controller.hub import MAX_ENGINE_ID
from multiengine.errors import ControllerConnectionError
from multiengine.wire import protocol as P
from multiengine.wire.message import DELIM, Message, Signer

from .fakes import FakeCluster

pytestmark = pytest.mark.usefixtures("any_header")  # made-up and malformed messages


@pytest.mark.fault(
    section="hostile-input",
    fault=(
        "frames that are not a multiengine message (no `ME/3` delimiter), or of another protocol "
        "version"
    ),
    outcome=(
        "dropped and counted: `no protocol delimiter (not a multiengine message?)`, `protocol "
        "ME/2 is not this side's ME/3`"
    ),
    also=[
        "tests/wire/test_framing.py::test_missing_delimiter_is_rejected",
        "tests/wire/test_fuzz.py::test_fuzz_the_controller",
    ],
)
def test_forged_garbage_and_truncated_messages_are_dropped(
    cluster: multiengine.Cluster, mec: multiengine.MultiEngineClient
) -> None:
    info = json.loads(cluster.cluster_dir.client_file.read_text())
    url = info["addresses"]["client"]
    good = Signer(bytes.fromhex(info["key"]))
    forged = Signer(b"wrong key")
    dropped_before = mec.status()["dropped_messages"]

    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(url)
        sig = good.signature(b"\xc1", b"", ())
        bad_messages = [
            forged.frames({"t": "get_ids", "id": 1}),  # signed with another key
            [b"garbage"],  # no delimiter
            [b"garbage", b"\x00" * 100, b"more"],
            [DELIM, sig],  # truncated
            [DELIM, sig, b"\xc1", b""],  # right key, undecodable header
        ]
        for frames in bad_messages:
            sock.send_multipart(frames)
        # a good message on the same socket, after them, is answered...
        sock.send_multipart(good.frames({"t": "get_ids", "id": 7}))
        assert sock.poll(HANG * 1000), "the controller stopped answering after bad messages"
        # ...and its answer is the first one: none of the bad messages got an answer
        reply = good.parse(sock.recv_multipart())
        assert reply.header["id"] == 7, "the controller answered a message it could not verify"
    finally:
        sock.close(0)
    assert mec.status()["dropped_messages"] == dropped_before + len(bad_messages)
    assert mec.get_ids() == [0, 1, 2, 3]
    assert_cluster_works(mec)


def test_a_client_with_a_wrong_key_gets_controller_connection_error(
    cluster: multiengine.Cluster, mec: multiengine.MultiEngineClient, tmp_path: Path
) -> None:
    data = json.loads(cluster.cluster_dir.client_file.read_text())
    data["key"] = os.urandom(32).hex()
    wrong = tmp_path / "client.json"
    wrong.write_text(json.dumps(data))
    dropped_before = mec.status()["dropped_messages"]
    with pytest.raises(ControllerConnectionError) as info:
        call_within(
            lambda: multiengine.MultiEngineClient(connection_file=wrong, timeout=1),
            message="a client with a wrong key",
        )
    assert "key" in str(info.value)
    assert mec.status()["dropped_messages"] > dropped_before
    assert_cluster_works(mec)


@pytest.mark.parametrize("desired", [2**63 - 1, MAX_ENGINE_ID + 1, -1, True, "3", [1]])
def test_a_register_asking_for_an_absurd_id_gets_the_lowest_free_one(desired: object) -> None:
    # found by the fuzzer: ids below a desired one are all made, so 2**63 - 1 filled the
    # controller's memory (12 GB) and stopped it from answering
    fake = FakeCluster(n=1)
    header = {"t": P.REGISTER, "desired_id": desired, "pid": 7, "host": "h"}
    fake.hub.on_engine(Message([b"e-absurd"], header, b"", []))
    assert sorted(fake.hub.engines) == [0, 1]
    fake.hub.on_engine(Message([b"e-fine"], {**header, "desired_id": MAX_ENGINE_ID}, b"", []))
    assert sorted(fake.hub.engines) == [0, 1, MAX_ENGINE_ID]
