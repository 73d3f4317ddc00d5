"""Pure logic of multiengine.wire.shm, in one process: envelopes, the threshold, blocks
that are reused only once their readers let go, and copies whose memory is reused only
once nothing holds a value on it."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from multiengine.config import SHM_THRESHOLD
from multiengine.errors import ConfigError
from multiengine.wire import shm
from multiengine.wire.serialize import dumps, loads


def test_an_envelope_round_trips_and_is_told_from_a_pickle() -> None:
    env = shm.Envelope(b"\x80\x05data", [[1, 2, 3, 4096, 10]], "node", True, "node", 4321)
    raw = env.to_bytes()
    assert shm.is_envelope(raw) and shm.is_envelope(memoryview(raw))
    assert not shm.is_envelope(pickle.dumps(1, protocol=5))
    assert shm.Envelope.from_bytes(raw) == env


@pytest.mark.parametrize(
    ("text", "value"), [("", SHM_THRESHOLD), ("0", 0), ("off", 0), ("4MiB", 4 << 20)]
)
def test_threshold(monkeypatch: pytest.MonkeyPatch, text: str, value: int) -> None:
    monkeypatch.setenv(shm.ENV_THRESHOLD, text)
    assert shm.threshold() == value


@pytest.mark.parametrize("text", ["lots", "-1", "1 parsec"])
def test_a_threshold_that_is_no_size_is_one_clear_error(
    monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    monkeypatch.setenv(shm.ENV_THRESHOLD, text)
    with pytest.raises(ConfigError, match=rf"MULTIENGINE_SHM_THRESHOLD: '{text}' is not a size"):
        shm.threshold()
    assert shm.threshold({shm.ENV_THRESHOLD: "2MB"}) == 2_000_000  # another environment


def test_values_through_a_block_of_this_process() -> None:
    a = np.arange(300_000, dtype="float64")
    content, buffers = dumps({"a": a, "b": os.urandom(200_000)})
    pool = shm.Pool()
    got = pool.share([buffers], [shm.client_slot()])
    assert got is not None
    refs, _ = got
    env = shm.Envelope(content, refs[0], shm.node_identity())
    value = loads(env.to_bytes())
    assert np.array_equal(value["a"], a) and value["a"].flags.writeable
    shared = loads(shm.Envelope(content, refs[0], shm.node_identity(), shared=True))
    assert np.array_equal(shared["a"], a) and not shared["a"].flags.writeable
    pool.close()


def test_a_block_is_reused_only_once_every_reader_let_go() -> None:
    pool = shm.Pool()
    data = [np.ones(100_000)]
    got = pool.share([data], [1, 2])
    assert got is not None
    (ino, generation) = got[1]
    assert pool.share([data], [1]) is not None and pool.created == 2  # the first is busy
    pool.release(ino, generation, [1, 2])
    assert pool.share([data], [1]) is not None and pool.created == 2  # reused
    pool.release(ino, generation, [1])  # an older transfer's release changes nothing
    assert pool.share([data], [1]) is not None and pool.created == 3
    pool.close()


def test_a_pool_past_its_limit_says_so() -> None:
    pool = shm.Pool(limit=2 << 20)
    assert pool.share([[np.ones(200_000)]], [1]) is not None  # 1.6 MB: one 2 MiB block
    assert pool.share([[np.ones(200_000)]], [1]) is None  # busy, and no room for another
    pool.close()


def test_copies_are_reused_once_nothing_holds_their_values() -> None:
    recycler = shm.Recycler()
    for readonly in (False, True):
        a = np.arange(100_000, dtype="float64")
        a.flags.writeable = not readonly
        content, buffers = dumps(a)
        copy = recycler.get(a.nbytes)
        copy[:] = buffers[0]
        value = loads(content, [copy])
        del copy
        part = value[10:20]
        del value
        other = recycler.get(a.nbytes)  # the first copy's memory is still used by part
        assert len(recycler.maps) == 2
        assert part.tolist() == list(range(10, 20))
        del part, other
        recycler.get(a.nbytes)  # now free again: no new mapping
        assert len(recycler.maps) == 2
        recycler = shm.Recycler()


def test_a_reader_keeps_its_newest_mappings() -> None:
    pools = [shm.Pool() for _ in range(3)]
    mappings = shm.Mappings(keep=2)
    data = [np.arange(200_000, dtype="float64")]
    for _ in range(2):
        for pool in pools:  # three blocks through a reader that keeps two
            got = pool.share([data], [1])
            assert got is not None
            env = shm.Envelope(b"", got[0][0], shm.node_identity())
            (copy,) = mappings.receive(env, 1)
            assert np.array_equal(np.frombuffer(copy, dtype="float64"), data[0])
    for pool in pools:
        pool.close()
    mappings.close()


def test_a_block_held_by_a_reader_that_exited_is_reused() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a PID that no longer runs
    pool = shm.Pool()
    data = [np.arange(200_000, dtype="float64")]
    for holder in (os.getpid(), gone.pid):
        assert pool.share([data], [0], holder) is not None
    # the block this process holds stays taken; the one of the exited process is free
    assert [b.free() for b in pool.blocks] == [False, True]
    assert pool.share([data], [0]) is not None and pool.created == 2
    pool.close()
