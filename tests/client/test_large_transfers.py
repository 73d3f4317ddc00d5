"""Large data over the network (shared memory off): pushed and pulled arrays arrive
exact and writable; a client or an engine killed in the middle of a transfer leaves
nothing half-applied and the cluster working; captured or forged pieces are dropped.

Shared memory is turned off with ``MULTIENGINE_SHM_THRESHOLD=0`` in the client (it
decides for a push, and for the answers of its pulls), so the buffers travel in signed
pieces through the controller (docs/protocol.md §6), as they do between hosts.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import (
    HANG,
    assert_cluster_works,
    call_within,
    client_process,
    error_types,
    outcome_with_engine_killed,
    wait_until,
)
from wiretap import UP, Tap, tapped_client

import multiengine
from multiengine.cluster.cluster import Cluster
from multiengine.errors import CompositeError, EngineError
from multiengine.wire import chunks
from multiengine.wire.message import DELIM

pytestmark = pytest.mark.timeout(120)

MB = 1 << 20


@pytest.fixture(autouse=True)
def no_shared_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MULTIENGINE_SHM_THRESHOLD", "0")


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def test_large_arrays_arrive_exact_and_writable_both_ways(
    fresh_cluster: Callable[..., Cluster],
) -> None:
    cluster = fresh_cluster(2)
    mec = cluster.multiengine_client()
    a = np.random.default_rng(1).random(5 * chunks.PIECE // 8 + 12_345)  # 6 pieces, one short
    assert a.nbytes >= chunks.STREAM_THRESHOLD
    mec.push({"a": a})
    assert mec.execute("w = a.flags.writeable; a[0] = -1.0; s = float(a[1:].sum())")
    assert mec.pull(("w", "s")) == [[True, float(a[1:].sum())]] * 2
    for back in mec.pull("a"):  # a blocking pull from both: collected by the controller
        assert back.flags.writeable
        assert back[0] == -1.0
        np.testing.assert_array_equal(back[1:], a[1:])
    (one,) = mec.pull("a", targets=1)  # from one engine: streamed on to the client
    assert one.flags.writeable
    np.testing.assert_array_equal(one[1:], a[1:])
    mec.scatter("part", a)
    np.testing.assert_array_equal(mec.gather("part"), a)


# A client that pushes large arrays over and over; each array is one value throughout,
# so an engine holding a half-written one would show two values.
PUSHER = """
import sys
import numpy as np
import multiengine

mec = multiengine.MultiEngineClient(cluster_dir=sys.argv[1])
a = np.zeros(8 << 20)  # 64 MB: 16 pieces
mec.push({"a": a}, targets=0)
print("pushed", flush=True)
k = 1
while True:
    a.fill(k)
    mec.push({"a": a}, targets=0)
    k += 1
"""


def _engine_pid(mec: multiengine.MultiEngineClient, eid: int) -> int:
    return int(next(e["pid"] for e in mec.status()["engines"] if e["id"] == eid))


@pytest.mark.fault(
    section="a-client-that-dies",
    fault=(
        "SIGKILL to a client in the middle of sending an 80 MB push in pieces (shared memory off)"
    ),
    outcome=(
        "the controller sees the client's connection close and abandons the transfer within a "
        "heartbeat period: the engine fails the push unrun (`ConnectionAbortedError`), lets go "
        "of the partial buffer, keeps its earlier whole array, and takes other clients' "
        "commands at once (not after its 60 s stall)"
    ),
)
def test_a_client_killed_mid_push_leaves_the_engine_as_it_was_and_working(
    fresh_cluster: Callable[..., Cluster],
) -> None:
    cluster = fresh_cluster(1)
    mec = cluster.multiengine_client()
    with client_process(PUSHER, cluster.cluster_dir.path) as pusher:
        rss_before = rss_mb(_engine_pid(mec, 0))

        def receiving() -> bool:  # the engine is in the middle of a push
            return str(mec.status()["engines"][0]["running"]).startswith("push")

        wait_until(receiving, HANG, 0.001, "the engine to be receiving a push")
        pusher.send_signal(signal.SIGKILL)
        pusher.wait(HANG)
    # the engine is free again at once (not after its 60 s stall), with a whole array
    call_within(lambda: mec.execute("x = 1", targets=0), 10, "an execute after the kill")
    mec.execute("values = sorted(set(a[:: 1 << 16].tolist()))", targets=0)
    (values,) = mec.pull("values", targets=0)
    assert len(values) == 1, f"a half-applied push: the engine's array holds {values}"
    assert_cluster_works(mec)
    # the pieces of the broken transfer were let go
    assert rss_mb(_engine_pid(mec, 0)) < rss_before + 32


@pytest.mark.fault(
    section="engines-that-die",
    fault="SIGKILL to an engine while it receives a 128 MB push in pieces, or while its answer "
    "to a 2-engine pull streams ahead of the result (shared memory off)",
    outcome=(
        "its part fails with `EngineError`; the other engine's part arrives whole and writable; "
        "the client and the other engine go on"
    ),
    also=[
        "tests/client/test_large_transfers.py::"
        "test_an_engine_killed_while_its_answer_streams_ahead_fails_only_its_part"
    ],
)
def test_an_engine_killed_mid_transfer_fails_its_part_and_the_others_go_on(
    fresh_cluster: Callable[..., Cluster],
) -> None:
    cluster = fresh_cluster(2, restart_engines=False)
    mec = cluster.multiengine_client()
    a = np.ones(16 << 20)  # 128 MB
    victim = _engine_pid(mec, 1)
    pending = mec.push({"a": a}, targets=[0, 1], block=False)

    def on_victim() -> bool:
        engines = mec.status()["engines"]
        on = any(e["id"] == 1 and str(e["running"]).startswith("push") for e in engines)
        return on or pending.done()

    wait_until(on_victim, HANG, 0.001, "engine 1 to be receiving the push")
    os.kill(victim, signal.SIGKILL)
    try:
        pending.result(HANG)
        got_error = False
    except CompositeError as e:
        got_error = True
        assert error_types(e) == [EngineError], e
    wait_until(lambda: mec.get_ids() == [0], message="engine 1 to be unregistered")
    assert mec.pull("a", targets=0)[0].sum() == a.sum()
    assert_cluster_works(mec)
    if not got_error:
        pytest.skip("the push finished before the engine died (nothing was cut)")


# ---------------------------------------------------------------- hostile pieces
@pytest.fixture
def tapped(fresh_cluster: Callable[..., Cluster], tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A 1-engine cluster and a client whose traffic to the controller passes a tap."""
    cluster = fresh_cluster(1)
    with tapped_client(cluster.cluster_dir.client_file, tmp_path) as (tap, mec):
        yield {"cluster": cluster, "tap": tap, "mec": mec}


@pytest.mark.fault(
    section="hostile-input",
    fault="a captured piece (`chunk`) of a large push sent again, or with another signature",
    outcome=(
        "both dropped and counted in `dropped_messages`; the engine's array is unchanged and "
        "the next large push lands"
    ),
)
def test_replayed_and_forged_pieces_are_dropped_and_counted(tapped: dict[str, Any]) -> None:
    import zmq

    mec: multiengine.MultiEngineClient = tapped["mec"]
    tap: Tap = tapped["tap"]
    a = np.arange(chunks.STREAM_THRESHOLD // 8 + 1000, dtype="float64")
    mec.push({"a": a})
    pieces = tap.find(UP, "chunk")
    assert len(pieces) == chunks.count([a.nbytes])
    replayed = pieces[1].frames
    forged = list(replayed)
    i = next(k for k, f in enumerate(forged) if f.startswith(DELIM))
    forged[i] = DELIM + bytes(32) + forged[i][len(DELIM) + 32 :]  # another signature
    dropped = mec.status()["dropped_messages"]
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 10_000)
    try:
        sock.connect(tap.upstream)
        sock.send_multipart(replayed[i:])
        sock.send_multipart(forged[i:])
    finally:
        sock.close()
    wait_until(
        lambda: mec.status()["dropped_messages"] == dropped + 2, message="both pieces dropped"
    )
    np.testing.assert_array_equal(mec.pull("a")[0], a)  # nothing changed
    b = a * 2
    mec.push({"a": b})  # and large transfers go on
    np.testing.assert_array_equal(mec.pull("a")[0], b)


def test_an_engine_killed_while_its_answer_streams_ahead_fails_only_its_part(
    fresh_cluster: Callable[..., Cluster],
) -> None:
    cluster = fresh_cluster(2, restart_engines=False)
    mec = cluster.multiengine_client()
    watcher = cluster.multiengine_client()
    mec.execute("import numpy as np; a = np.ones(16 << 20)")  # 128 MB on each
    victim = _engine_pid(mec, 1)
    # a blocking pull from both: pieces come ahead
    result = outcome_with_engine_killed(lambda: mec.pull("a"), watcher, 1, victim, "pull")
    if not isinstance(result, BaseException):
        pytest.skip("the pull finished before the engine died (nothing was cut)")
    assert isinstance(result, CompositeError)
    assert error_types(result) == [EngineError]
    wait_until(lambda: mec.get_ids() == [0], message="engine 1 to be unregistered")
    (back,) = mec.pull("a")  # the client goes on, and so does the other engine
    assert back.flags.writeable and back.sum() == 16 << 20
