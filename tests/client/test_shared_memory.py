"""Large data between a client and engines of its host goes through shared memory
(multiengine.wire.shm): the values arrive intact, writable by default and read-only
with ``shared=True``, a broadcast is one copy for every engine, engines that do not
share the client's node get the bytes over the network, and no block outlives the
processes that hold it, even when they are killed."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from helpers import HANG, assert_remote, client_process, idle, process_running, wait_until

import multiengine
from multiengine.cluster.cluster import Cluster
from multiengine.errors import ConfigError
from multiengine.wire import shm

MB = 1 << 20


def _blocks_of(pid: int) -> dict[int, list[str]]:
    """Processes that hold a block made by ``pid`` (a descriptor or a mapping): pid ->
    where. Blocks are memfds named ``multiengine-<maker's pid>``."""
    name = f"/memfd:multiengine-{pid} (deleted)"
    held: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        where: list[str] = []
        try:
            for fd in (entry / "fd").iterdir():
                try:
                    if os.readlink(fd) == name:
                        where.append(f"fd {fd.name}")
                except OSError:
                    pass
            with open(entry / "maps") as f:
                where.extend(line.strip() for line in f if line.rstrip().endswith(name))
        except OSError:  # not ours, or gone meanwhile
            continue
        if where:
            held[int(entry.name)] = where
    return held


def _dev_shm() -> set[str]:
    return set(os.listdir("/dev/shm"))


def _pool() -> shm.Pool:
    return shm.local().pool


def _generations() -> int:
    return sum(b.generation for b in _pool().blocks)


def test_push_pull_arrays_through_shared_memory(mec: multiengine.MultiEngineClient) -> None:
    a = np.arange(2 * MB, dtype="float64")  # 16 MB
    before = _generations()
    assert mec.push({"a": a}) == [None] * 4
    assert _generations() == before + 1  # one copy into one block, for all 4 engines
    mec.execute("import numpy as np; ok = bool((a == np.arange(len(a))).all())")
    mec.execute("writable = a.flags.writeable; a[0] = -1.0")
    assert mec.pull("ok") == [True] * 4
    assert mec.pull("writable") == [True] * 4  # the contract: writable where they land
    used = (
        "from multiengine.wire import shm\n"
        "used = sum(b.generation for b in shm.local().pool.blocks)"
    )
    mec.execute(used, targets=2)
    before = mec.pull("used", targets=2)[0]
    back = mec.pull("a", targets=2)[0]  # through the engine's block, copied by the client
    assert back[0] == -1.0 and np.array_equal(back[1:], a[1:])
    assert back.flags.writeable
    mec.execute(used, targets=2)
    assert mec.pull("used", targets=2) == [before + 1]  # the engine answered through a block
    back[1] = 5.0  # ours: changing it changes nothing elsewhere
    assert mec.pull("a", targets=2)[0][1] == 1.0


def test_bytes_and_several_buffers(mec: multiengine.MultiEngineClient) -> None:
    big = os.urandom(3 * MB)
    arrays = {"x": np.ones((512, 1024), dtype="int32"), "y": np.arange(300_000, dtype="u2")}
    mec.push({"b": big, **arrays}, targets=[0, 1])
    assert mec.pull("b", targets=[0, 1]) == [big, big]
    for x, y in mec.pull(["x", "y"], targets=[0, 1]):
        assert np.array_equal(x, arrays["x"]) and np.array_equal(y, arrays["y"])


def test_scatter_gather_through_shared_memory(mec: multiengine.MultiEngineClient) -> None:
    a = np.random.default_rng(1).random(3 * MB)  # 24 MB, four parts
    before = _generations()
    mec.scatter("part", a)
    assert _generations() == before + 1  # every part in one block
    mec.execute("n = len(part); w = part.flags.writeable")
    assert mec.pull("n") == [len(a) // 4] * 4
    assert mec.pull("w") == [True] * 4
    gathered = mec.gather("part")
    assert np.array_equal(gathered, a) and gathered.flags.writeable
    mec.scatter("ro", a, shared=True)
    mec.execute("ro_w = ro.flags.writeable; s = float(ro.sum())")
    assert mec.pull("ro_w") == [False] * 4
    parts = np.array_split(a, 4)
    assert mec.pull("s") == pytest.approx([float(p.sum()) for p in parts])


def test_shared_arrays_are_read_only_and_their_block_is_reused_after_them(
    mec: multiengine.MultiEngineClient,
) -> None:
    _pool().close()  # (the blocks of earlier tests would do for these pushes)
    created = _pool().created
    a = np.arange(MB, dtype="float64")
    mec.push({"a": a}, shared=True)
    mec.execute("w = a.flags.writeable; s = float(a.sum())")
    assert mec.pull("w") == [False] * 4
    assert mec.pull("s") == [float(a.sum())] * 4
    assert_remote(ValueError, mec.execute, "a[0] = 1.0", targets=0)  # read-only
    # the arrays hold the block: a second push needs another one...
    mec.push({"c": a}, shared=True)
    assert _pool().created == created + 2
    # ...and once the engines drop them, the next push reuses a block
    mec.execute("del a, c; import gc; gc.collect()")
    mec.push({"d": a}, shared=True)
    assert _pool().created == created + 2
    mec.execute("del d")


def test_engines_of_another_node_get_the_bytes(
    fresh_cluster: Callable[..., Cluster], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(shm.ENV_THRESHOLD, "0")  # these engines take no shared memory...
    cluster = fresh_cluster(2)
    monkeypatch.delenv(shm.ENV_THRESHOLD)  # ...while this client would
    mec = cluster.multiengine_client()
    assert [e["node"] for e in mec.status()["engines"]] == ["", ""]
    a = np.arange(MB, dtype="float64")
    before = _generations()
    mec.push({"a": a})
    mec.push({"r": a}, shared=True)  # no shared memory to map: plain writable arrays
    mec.execute("w = r.flags.writeable")
    assert mec.pull("w") == [True, True]
    assert all(np.array_equal(x, a) for x in mec.pull("a"))
    assert _generations() == before  # nothing went through a block
    mec.execute("from multiengine.wire import shm; made = shm.local().pool.created")
    assert mec.pull("made") == [0, 0]


def test_an_engine_that_joins_is_among_all_at_once(
    fresh_cluster: Callable[..., Cluster],
) -> None:
    # 'all' is the engines of that moment, not of an earlier look at which are local
    cluster = fresh_cluster(1)
    mec = cluster.multiengine_client()
    a = np.arange(MB, dtype="float64")
    mec.push({"a": a})
    assert mec.pull("id") == [0]
    cluster.start_engines(1, wait=False)
    wait_until(lambda: mec.get_ids() == [0, 1], message="engine 1 to register")
    assert mec.pull("id") == [0, 1]
    mec.push({"b": a})
    assert all(np.array_equal(x, a) for x in mec.pull("b"))
    assert len(mec.pull("b")) == 2


def test_engines_of_this_host_and_of_another_in_one_call(
    fresh_cluster: Callable[..., Cluster],
) -> None:
    cluster = fresh_cluster(1)  # engine 0: this node
    env = {**os.environ, shm.ENV_THRESHOLD: "0", "PYTHONPATH": os.pathsep.join(sys.path)}
    engine_file = str(cluster.cluster_dir.engine_file)
    other = subprocess.Popen(  # engine 1: as if on another host
        [sys.executable, "-m", "multiengine", "engine", "--connection-file", engine_file],
        env=env,
    )
    try:
        mec = cluster.multiengine_client()
        wait_until(lambda: mec.get_ids() == [0, 1], HANG, 0.05, "the second engine")
        _mixed(mec)
    finally:
        other.kill()
        other.wait(HANG)


def _mixed(mec: multiengine.MultiEngineClient) -> None:
    assert [bool(e["node"]) for e in mec.status()["engines"]] == [True, False]
    a = np.arange(2 * MB, dtype="float64")  # 16 MB: the remote part goes in pieces
    before = _generations()
    mec.push({"a": a}, shared=True)
    assert _generations() == before + 1  # engine 0's copy
    mec.execute(
        "import numpy as np; w = a.flags.writeable; ok = bool((a == np.arange(len(a))).all())"
    )
    assert mec.pull(["w", "ok"]) == [[False, True], [True, True]]
    mec.scatter("p", a)
    assert _generations() == before + 2
    assert np.array_equal(mec.gather("p"), a)
    assert all(np.array_equal(x, a) for x in mec.pull("a"))


def test_an_engine_named_twice_gets_the_bytes(mec: multiengine.MultiEngineClient) -> None:
    before = _generations()
    a = np.arange(MB, dtype="float64")
    mec.push({"a": a}, targets=[1, 1])
    assert np.array_equal(mec.pull("a", targets=1)[0], a)
    assert _generations() == before


def test_the_client_can_turn_it_off(
    mec: multiengine.MultiEngineClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(shm.ENV_THRESHOLD, "off")
    before = _generations()
    a = np.arange(MB, dtype="float64")
    mec.push({"a": a}, targets=0)
    assert np.array_equal(mec.pull("a", targets=0)[0], a)
    assert _generations() == before


def test_a_bad_threshold_is_a_clear_error_that_sends_nothing(
    mec: multiengine.MultiEngineClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    mec.push({"a": 1})
    monkeypatch.setenv(shm.ENV_THRESHOLD, "lots")
    with pytest.raises(ConfigError, match="MULTIENGINE_SHM_THRESHOLD: 'lots' is not a size"):
        mec.push({"a": np.arange(MB, dtype="float64")})
    monkeypatch.delenv(shm.ENV_THRESHOLD)
    assert mec.pull("a") == [1] * len(mec.get_ids())  # nothing was sent; the cluster works


def test_a_threshold_keeps_small_buffers_on_the_network(
    mec: multiengine.MultiEngineClient,
) -> None:
    before = _generations()
    small = np.arange(shm.threshold() // 16, dtype="float64")  # half the threshold
    mec.push({"s": small})
    assert _generations() == before
    assert np.array_equal(mec.pull("s", targets=0)[0], small)


CLIENT = """
import sys, numpy as np, multiengine
mec = multiengine.MultiEngineClient(cluster_dir=sys.argv[1])
a = np.ones(8 << 20)  # 64 MB
mec.push({"first": a})
print("pushed", flush=True)
while True:
    mec.push({"a": a})
"""


def test_no_block_outlives_a_client_killed_mid_push(
    fresh_cluster: Callable[..., Cluster],
) -> None:
    cluster = fresh_cluster(2)
    shm_before = _dev_shm()
    with client_process(CLIENT, cluster.cluster_dir.path) as client:
        wait_until(lambda: _blocks_of(client.pid), HANG, 0.02, "the engines to map a block")
        client.send_signal(signal.SIGKILL)
        client.wait(HANG)
    # the engines let go of its blocks (when idle), so nothing holds them any more
    wait_until(
        lambda: not _blocks_of(client.pid),
        HANG,
        0.1,
        lambda: f"the killed client's blocks to be freed: {_blocks_of(client.pid)}",
    )
    assert _dev_shm() <= shm_before  # nothing named was ever made
    mec = cluster.multiengine_client()
    # the killed client's last push ends first (it fails, its block gone): a command
    # queued behind a failed one is cleared, whoever sent it (docs/client.md)
    wait_until(lambda: idle(mec), HANG, 0.05, "the killed client's last push to end")
    a = np.arange(MB, dtype="float64")
    mec.push({"a": a})  # and the engines work on
    assert all(np.array_equal(x, a) for x in mec.pull("a"))


def test_no_block_outlives_an_engine_killed_with_shared_arrays(
    fresh_cluster: Callable[..., Cluster],
) -> None:
    cluster = fresh_cluster(2)
    mec = cluster.multiengine_client()
    mec.push({"a": np.ones(MB)}, shared=True)
    pids = cluster.engine_pids()
    me = os.getpid()
    wait_until(lambda: set(pids.values()) <= set(_blocks_of(me)), HANG, 0.02, "mappings")
    mec.pull("a", targets=1)  # engine 1 answers through a block of its own
    os.kill(pids[1], signal.SIGKILL)
    wait_until(lambda: pids[1] not in _blocks_of(me), HANG, 0.05, "the killed engine to go")
    # this client lets go of a dead engine's block at its next shared-memory read
    wait_until(lambda: shm.prune() or not _blocks_of(pids[1]), HANG, 0.05, "its block freed")
    # the other engine lets go once it drops its arrays and this client its blocks
    mec.execute("del a; import gc; gc.collect()", targets=0)
    _pool().close()
    gc.collect()
    wait_until(
        lambda: not _blocks_of(me),
        HANG,
        0.1,
        lambda: f"this client's blocks to be freed: {_blocks_of(me)}",
    )


ENGINE_BLOCKS = (
    "from multiengine.wire import shm\n"
    "made = shm.local().pool.created\n"
    "used = sum(b.generation for b in shm.local().pool.blocks)"
)


def _engine_blocks(mec: multiengine.MultiEngineClient, engine: int) -> tuple[int, int]:
    """Blocks engine ``engine`` has made, and the transfers they have carried."""
    mec.execute(ENGINE_BLOCKS, targets=engine)
    made, used = mec.pull(["made", "used"], targets=engine)[0]
    return made, used


def test_a_shared_pull_maps_the_engines_copy_read_only_and_the_engine_reuses_it(
    mec: multiengine.MultiEngineClient,
) -> None:
    a = np.arange(2 * MB, dtype="float64")
    mec.push({"a": a}, targets=[1, 2])
    used = _engine_blocks(mec, 1)[1]
    first = mec.pull("a", targets=1, shared=True)[0]
    assert np.array_equal(first, a)
    assert not first.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        first[0] = 1.0
    assert _engine_blocks(mec, 1)[1] == used + 1  # it came through the engine's block
    mec.execute("a[0] = -1.0", targets=1)  # the engine's own array is not the view
    assert first[0] == 0.0
    # while `first` lives its block is ours: the next pull fills another block (a new
    # one, or a free one earlier transfers left), never the one `first` is on...
    second = mec.pull("a", targets=1, shared=True)[0]
    assert second[0] == -1.0 and not second.flags.writeable
    assert first[0] == 0.0 and np.array_equal(first, a)
    made_now = _engine_blocks(mec, 1)[0]
    # ...and once both are gone, the engine fills the blocks they held again
    del first, second
    gc.collect()
    for _ in range(3):
        again = mec.pull("a", targets=1, shared=True)[0]
        assert again[0] == -1.0 and np.array_equal(again[1:], a[1:])
        del again
    assert _engine_blocks(mec, 1)[0] == made_now
    # from several engines at once, each from its own block
    both = mec.pull(["a"], targets=[1, 2], shared=True)
    assert [x[0][0] for x in both] == [-1.0, 0.0]
    assert not any(x[0].flags.writeable for x in both)
    # a non-blocking pull copies, as ever (the answer waits in the controller)
    later = mec.pull("a", targets=2, block=False, shared=True).result(HANG)[0]
    assert later.flags.writeable and np.array_equal(later, a)
    # and a small value is a value like any other
    mec.execute("small = list(range(5))", targets=1)
    assert mec.pull("small", targets=1, shared=True) == [[0, 1, 2, 3, 4]]


HOLDER = """
import signal, sys, multiengine
mec = multiengine.MultiEngineClient(cluster_dir=sys.argv[1])
held = mec.pull("a", targets=0, shared=True)[0]
print(float(held[-1]), flush=True)
while True:
    signal.pause()
"""


def test_a_shared_pull_outlives_its_engine_and_a_killed_holder_frees_the_block(
    fresh_cluster: Callable[..., Cluster],
) -> None:
    cluster = fresh_cluster(2)
    mec = cluster.multiengine_client()
    a = np.arange(4 * MB, dtype="float64")
    mec.push({"a": a})
    # a client killed while it holds the engine's block: the engine fills it again
    made = _engine_blocks(mec, 0)[0]
    with client_process(HOLDER, cluster.cluster_dir.path) as holder:
        engine = cluster.engine_pids()[0]
        assert holder.pid in _blocks_of(engine)
        holder.send_signal(signal.SIGKILL)
        holder.wait(HANG)
    for _ in range(2):
        assert np.array_equal(mec.pull("a", targets=0, shared=True)[0], a)
    assert _engine_blocks(mec, 0)[0] == made + 1  # only the one the holder had
    # an engine killed while this client holds its copy: the values stay readable
    kept = mec.pull("a", targets=1, shared=True)[0]
    victim = cluster.engine_pids()[1]
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: not process_running(victim), HANG, 0.02, "engine 1 to be gone")
    assert np.array_equal(kept, a)
    assert os.getpid() in _blocks_of(victim)
    del kept  # then nothing of its memory is left
    gc.collect()
    wait_until(
        lambda: shm.prune() or not _blocks_of(victim),
        HANG,
        0.05,
        lambda: f"the dead engine's block to be freed: {_blocks_of(victim)}",
    )


@pytest.mark.asyncio
async def test_the_asyncio_client_shares_too(
    cluster: Cluster, mec: multiengine.MultiEngineClient
) -> None:
    a = np.arange(MB, dtype="float64")
    before = _generations()
    async with multiengine.AsyncMultiEngineClient(cluster_dir=cluster.cluster_dir.path) as amec:
        await amec.push({"a": a}, targets=[0, 1], shared=True)
        await amec.execute("w = a.flags.writeable", targets=[0, 1])
        assert await amec.pull("w", targets=[0, 1]) == [False, False]
        got = await amec.pull("a", targets=0, shared=True)
        assert np.array_equal(got[0], a) and not got[0].flags.writeable
        await amec.scatter("p", a, targets=[0, 1])
        assert np.array_equal(await amec.gather("p", targets=[0, 1]), a)
        await amec.execute("del a", targets=[0, 1])
    assert _generations() == before + 2
