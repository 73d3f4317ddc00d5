"""Large values travel in pieces through the controller and land intact and writable."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from helpers import Latch, wait_until

import multiengine
from multiengine.wire import chunks

BIG = chunks.STREAM_THRESHOLD // 8 + 123_457  # float64 count just over the streaming threshold


@pytest.fixture
def big() -> np.ndarray:
    return np.random.default_rng(7).random(BIG * 2)


def test_streamed_push_and_pull_round_trip(
    mec: multiengine.MultiEngineClient, big: np.ndarray
) -> None:
    assert big.nbytes > chunks.STREAM_THRESHOLD  # this test is about the streamed path
    mec.push({"a": big}, targets=0)
    assert mec.execute("s = float(a.sum()); w = a.flags.writeable", targets=0)
    assert mec.pull(("s", "w"), targets=0) == [[float(big.sum()), True]]
    (back,) = mec.pull("a", targets=0)
    assert back.flags.writeable
    np.testing.assert_array_equal(back, big)
    back[0] = -1.0  # writable where it lands: the user may modify it in place
    assert back[0] == -1.0


def test_streamed_push_to_all_engines(mec: multiengine.MultiEngineClient, big: np.ndarray) -> None:
    mec.push({"a": big})
    sums = mec.execute("s = float(a.sum())") and mec.pull("s")
    assert sums == [float(big.sum())] * 4
    parts = mec.pull("a", targets=[1, 3])
    for p in parts:
        np.testing.assert_array_equal(p, big)


def test_streamed_pull_non_blocking_and_several_engines(
    mec: multiengine.MultiEngineClient, big: np.ndarray
) -> None:
    mec.push({"a": big}, targets=[0, 2])
    pr = mec.pull("a", targets=[0, 2], block=False)
    first, second = pr.r
    np.testing.assert_array_equal(first, big)
    np.testing.assert_array_equal(second, big)


def test_scatter_and_gather_of_a_large_array(mec: multiengine.MultiEngineClient) -> None:
    data = np.arange(6_000_003, dtype=np.float64)  # 48 MB, uneven over 4 engines
    mec.scatter("x", data)
    assert mec.execute("n = len(x)") and mec.pull("n") == [
        1_500_001,
        1_500_001,
        1_500_001,
        1_500_000,
    ]
    np.testing.assert_array_equal(mec.gather("x"), data)


def test_large_bytes_travel_out_of_band(mec: multiengine.MultiEngineClient) -> None:
    blob = bytes(range(256)) * (40 * 1024 * 4)  # 40 MiB of a known pattern
    mec.push({"blob": blob}, targets=1)
    mec.execute("ok = blob[:256] == bytes(range(256)) and len(blob) == %d" % len(blob), targets=1)
    assert mec.pull("ok", targets=1) == [True]
    assert mec.pull("blob", targets=1) == [blob]


def test_a_large_push_behind_a_running_command_waits_its_turn(
    mec: multiengine.MultiEngineClient, big: np.ndarray, latch: Callable[[], Latch]
) -> None:
    # The pieces reach the controller while engine 0 is busy; they must be held and
    # sent after the running command, in order, and the engine must get all of them.
    gate = latch()
    running = mec.execute(f"{gate.wait_code}\nbefore = 1", targets=0, block=False)
    pushed = mec.push({"a": big}, targets=0, block=False)
    wait_until(
        lambda: len(mec.queue_status(targets=0)[0][1]["queue"]) == 1,
        message="the push to wait in engine 0's queue",
    )
    gate.set()
    assert running.r and pushed.r == [None]
    mec.execute("s = float(a.sum())", targets=0)
    assert mec.pull(["before", "s"], targets=0) == [[1, float(big.sum())]]


def test_a_large_push_cleared_from_the_queue_loses_nothing_else(
    mec: multiengine.MultiEngineClient, big: np.ndarray, latch: Callable[[], Latch]
) -> None:
    gate = latch()  # the command fails only once the push waits behind it
    running = mec.execute(f"{gate.wait_code}\n1/0", targets=0, block=False)
    pushed = mec.push({"a": big}, targets=0, block=False)
    wait_until(
        lambda: len(mec.queue_status(targets=0)[0][1]["queue"]) == 1,
        message="the push to wait in engine 0's queue",
    )
    gate.set()
    with pytest.raises(multiengine.CompositeError):
        running.get_result()
    with pytest.raises(multiengine.CompositeError) as info:
        pushed.get_result()
    assert type(info.value.elist[0][1]).__name__ == "QueueCleared"
    mec.push({"small": 5}, targets=0)  # the engine and the controller go on normally
    assert mec.pull("small", targets=0) == [5]
