"""Bad input and broken peers: each gets its precise error, and the cluster keeps working.

The seed's rules (seed-system.md §2.1, §1.5) and the contract's additions (§7): bad
targets and ``block`` values, no engines, values that cannot be pickled, forged or
garbled messages, a wrong key, an engine or the controller dying, missing connection
files, and errors clearing the queue behind them.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import zmq
from helpers import HANG, Latch, assert_cluster_works, call_within, error_types, wait_until

import multiengine
from multiengine.errors import (
    CompositeError,
    ConnectionFileError,
    ControllerConnectionError,
    EngineError,
    InvalidEngineID,
    KernelError,
    NoEnginesRegistered,
    QueueCleared,
    SerializationError,
)
from multiengine.wire.message import DELIM, Signer

NO_ENGINES = "There are no engines registered. Check the logs if you think there should have been."


# ---------------------------------------------------------------- helpers
# ---------------------------------------------------------------- targets and block
def test_unknown_engine_id_raises_invalid_engine_id_directly(
    mec: multiengine.MultiEngineClient,
) -> None:
    with pytest.raises(InvalidEngineID) as info:
        mec.execute("a = 1", targets=10)
    assert not isinstance(info.value, CompositeError)
    assert str(info.value) == "Engine with id 10 is not registered"
    assert_cluster_works(mec)


def test_unknown_id_in_a_list_runs_nothing_anywhere(mec: multiengine.MultiEngineClient) -> None:
    with pytest.raises(InvalidEngineID, match="Engine with id 10 is not registered"):
        mec.execute("partial = 1", targets=[0, 10])
    with pytest.raises(InvalidEngineID, match="Engine with id 10 is not registered"):
        mec.push({"partial": 1}, targets=[0, 10])
    with pytest.raises(InvalidEngineID, match="Engine with id 99 is not registered"):
        mec.pull("id", targets=(1, 99))
    # engine 0 did not run its share: the name is still undefined there
    with pytest.raises(CompositeError) as info:
        mec.pull("partial", targets=0)
    assert error_types(info.value) == [NameError]
    assert_cluster_works(mec)


def test_string_target_other_than_all_raises_invalid_engine_id(
    mec: multiengine.MultiEngineClient,
) -> None:
    with pytest.raises(InvalidEngineID) as info:
        mec.execute("a = 1", targets="foo")
    assert not isinstance(info.value, CompositeError)
    assert str(info.value) == "targets argument is not an int, list of ints or 'all': 'foo'"
    with pytest.raises(InvalidEngineID):
        mec.pull("id", targets=["foo"])
    assert_cluster_works(mec)


@pytest.mark.parametrize(
    "bad", [1.5, {"a": 1}, {0, 1}, b"all"], ids=["float", "dict", "set", "bytes"]
)
def test_targets_of_a_wrong_type_raise_value_error(
    mec: multiengine.MultiEngineClient, bad: Any
) -> None:
    with pytest.raises(ValueError, match=r"^targets must be a str, list, tuple or int$"):
        mec.execute("wrong_type = 1", targets=bad)
    with pytest.raises(ValueError, match=r"^targets must be a str, list, tuple or int$"):
        mec.pull("id", targets=bad)
    # nothing ran
    with pytest.raises(CompositeError) as info:
        mec.pull("wrong_type")
    assert error_types(info.value) == [NameError] * 4
    assert_cluster_works(mec)


@pytest.mark.parametrize("bad", ["yes", 2, "True", [True]], ids=["yes", "int2", "str-true", "list"])
def test_block_not_a_bool_raises_value_error(mec: multiengine.MultiEngineClient, bad: Any) -> None:
    with pytest.raises(ValueError, match=r"^block must be True or False$"):
        mec.execute("bad_block = 1", block=bad)
    with pytest.raises(ValueError, match=r"^block must be True or False$"):
        mec.push({"bad_block": 1}, block=bad)
    with pytest.raises(CompositeError) as info:
        mec.pull("bad_block")
    assert error_types(info.value) == [NameError] * 4
    assert_cluster_works(mec)


def test_no_engines_registered(fresh_cluster: Callable[..., multiengine.Cluster]) -> None:
    c = fresh_cluster(0)
    mec = c.multiengine_client()
    assert mec.get_ids() == []
    for call in (lambda: mec.execute("a = 1"), lambda: mec.pull("a"), lambda: mec.push({"a": 1})):
        with pytest.raises(NoEnginesRegistered) as info:
            call()
        assert not isinstance(info.value, CompositeError)
        assert str(info.value) == NO_ENGINES
    # the controller is fine: an engine that arrives later is used
    c.start_engines(1)
    assert mec.get_ids() == [0]
    assert_cluster_works(mec)


# ---------------------------------------------------------------- values
@pytest.mark.parametrize(
    "make", [lambda: (i for i in range(3)), threading.Lock], ids=["generator", "lock"]
)
def test_pushing_an_unpicklable_value_fails_locally_and_sends_nothing(
    mec: multiengine.MultiEngineClient, make: Callable[[], Any]
) -> None:
    before = mec.status()
    with pytest.raises(SerializationError) as info:
        mec.push({"ok_value": 1, "bad": make()})
    assert isinstance(info.value, KernelError)
    with pytest.raises(SerializationError):
        mec.push({"bad": make()}, block=False)
    with pytest.raises(SerializationError):
        mec["bad"] = make()
    # nothing reached the engines: not even the picklable name
    with pytest.raises(CompositeError) as composite:
        mec.pull("ok_value")
    assert error_types(composite.value) == [NameError] * 4
    after = mec.status()
    assert after["pending_results"] == before["pending_results"]
    assert all(e["queue"] == 0 for e in after["engines"])
    assert_cluster_works(mec)


def test_pulling_an_unpicklable_engine_value_raises_composite_error(
    mec: multiengine.MultiEngineClient,
) -> None:
    mec.execute("import threading; lock = threading.Lock(); fine = 7")
    with pytest.raises(CompositeError) as info:
        mec.pull("lock")
    assert len(info.value.elist) == 4
    assert all(issubclass(t, SerializationError) for t in error_types(info.value)), info.value.elist
    # the engine and its namespace survive
    assert mec.pull("fine") == [7] * 4
    assert_cluster_works(mec)


def test_pull_of_a_missing_name_raises_composite_error_with_name_error(
    mec: multiengine.MultiEngineClient,
) -> None:
    with pytest.raises(CompositeError) as info:
        mec.pull("no_such_name")
    assert error_types(info.value) == [NameError] * 4
    assert all("no_such_name" in str(ev) for _, ev, _ in info.value.elist)
    assert "[0:pull]: NameError" in str(info.value)
    with pytest.raises(CompositeError) as info:
        mec.pull(["id", "no_such_name"], targets=1)
    assert error_types(info.value) == [NameError]
    assert_cluster_works(mec)


@pytest.mark.parametrize(
    "bad", [5, "def f(): pass", len, int], ids=["int", "str", "builtin", "class"]
)
def test_push_function_of_a_non_function_raises_type_error(
    mec: multiengine.MultiEngineClient, bad: Any
) -> None:
    with pytest.raises(TypeError):
        mec.push_function({"f": bad})
    with pytest.raises(CompositeError) as info:
        mec.pull("f")
    assert error_types(info.value) == [NameError] * 4
    mec.push_function({"g": lambda x: x + 1})
    mec.execute("g_result = g(1)")
    assert mec.pull("g_result") == [2] * 4


# ---------------------------------------------------------------- the queue
def test_an_error_clears_the_queue_behind_it_and_keeps_the_namespace(
    mec: multiengine.MultiEngineClient, latch: Callable[[], Latch]
) -> None:
    mec.execute("kept = 5")
    gate = latch()  # the command fails only once the others wait behind it
    failing = mec.execute(f"import time\n{gate.wait_code}\n1/0", block=False)
    queued_exec = mec.execute("after = 2", block=False)
    queued_push = mec.push({"pushed": 3}, block=False)
    gate.set()
    assert failing.wait(HANG) and queued_exec.wait(HANG) and queued_push.wait(HANG)
    with pytest.raises(CompositeError) as info:
        _ = failing.r
    assert error_types(info.value) == [ZeroDivisionError] * 4
    for pr in (queued_exec, queued_push):
        with pytest.raises(CompositeError) as info:
            _ = pr.r
        assert error_types(info.value) == [QueueCleared] * 4
    # the failing engines keep their namespace; the cleared commands never ran
    assert mec.pull("kept") == [5] * 4
    keys = mec.keys()
    for k in keys:
        assert "kept" in k and "time" in k
        assert "after" not in k and "pushed" not in k
    # the queue is usable again
    mec.push({"pushed": 3})
    assert mec.pull("pushed") == [3] * 4


def test_an_error_on_one_engine_clears_only_that_engines_queue(
    mec: multiengine.MultiEngineClient, latch: Callable[[], Latch]
) -> None:
    gate = latch()  # the command fails only once the next one waits behind it
    failing = mec.execute(f"{gate.wait_code}\nif id == 0: 1/0", block=False)
    queued = mec.execute("after = id", block=False)
    gate.set()
    assert failing.wait(HANG) and queued.wait(HANG)
    with pytest.raises(CompositeError) as info:
        _ = failing.r
    assert error_types(info.value) == [ZeroDivisionError]
    with pytest.raises(CompositeError) as info:
        _ = queued.r
    assert error_types(info.value) == [QueueCleared]
    assert mec.pull("after", targets=[1, 2, 3]) == [1, 2, 3]
    assert_cluster_works(mec)


# ---------------------------------------------------------------- the wire
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


# ---------------------------------------------------------------- files
def test_a_missing_connection_file_raises_connection_file_error() -> None:
    with pytest.raises(ConnectionFileError) as info:
        multiengine.MultiEngineClient(connection_file="/nonexistent.json")
    assert isinstance(info.value, FileNotFoundError)
    assert isinstance(info.value, KernelError)
    assert "/nonexistent.json" in str(info.value)
    with pytest.raises(FileNotFoundError):
        multiengine.MultiEngineClient(connection_file="/nonexistent.json")


def test_an_unknown_profile_raises_connection_file_error() -> None:
    with pytest.raises(ConnectionFileError) as info:
        multiengine.MultiEngineClient(profile="no-such-profile-here", timeout=1)
    assert isinstance(info.value, FileNotFoundError)
    assert "no-such-profile-here" in str(info.value)


# ---------------------------------------------------------------- deaths
def test_an_engine_killed_mid_execute_gives_engine_error(
    fresh_cluster: Callable[..., multiengine.Cluster],
) -> None:
    c = fresh_cluster(2)
    mec = c.multiengine_client()
    assert mec.get_ids() == [0, 1]
    running = mec.execute("import time; time.sleep(600)", targets=0, block=False)
    queued = mec.execute("never = 1", targets=0, block=False)
    wait_until(
        lambda: mec.status()["engines"][0]["running"] is not None,
        message="engine 0 to start the command",
    )
    pid = c.engine_pids()[0]
    os.kill(pid, signal.SIGKILL)
    assert running.wait(HANG), "the command on the killed engine never failed"
    for pr in (running, queued):
        with pytest.raises(CompositeError) as info:
            _ = pr.r
        assert error_types(info.value) == [EngineError]
        assert "engine 0" in str(info.value.elist[0][1])
    assert mec.get_ids() == [1]
    with pytest.raises(InvalidEngineID, match="Engine with id 0 is not registered"):
        mec.execute("a = 1", targets=0)
    assert_cluster_works(mec, targets=1)
    assert_cluster_works(mec)


def test_the_controller_gone_raises_controller_connection_error(
    fresh_cluster: Callable[..., multiengine.Cluster],
) -> None:
    c = fresh_cluster(1)
    mec = c.multiengine_client()
    assert_cluster_works(mec)
    assert c.controller is not None
    os.kill(c.controller.pid, signal.SIGKILL)
    c.controller.wait(10)
    with pytest.raises(ControllerConnectionError):
        call_within(lambda: mec.execute("a = 1"), message="execute with the controller gone")
    # a later call fails the same way, rather than hanging
    with pytest.raises(ControllerConnectionError):
        call_within(mec.get_ids, message="get_ids with the controller gone")
