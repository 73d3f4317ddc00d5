"""Long lists travel in slices (docs/protocol.md §6): a ``gather`` or ``pull`` of a list
of at least ``slices.MIN_ITEMS`` items comes back exact and in order, blocking from one
engine or several, non-blocking, with items that need classes, and with a part that is
short; an engine lost mid-gather fails only its part; a slice changed on its way is
dropped and counted by the controller (slices are pickles: hashed in full, never raw).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    HANG,
    assert_cluster_works,
    error_types,
    kill_pids,
    outcome_with_engine_killed,
    wait_until,
)
from wiretap import UP, Tap, header_of, tapped_connection

import multiengine
from multiengine.client.partition import partition
from multiengine.cluster.cluster import Cluster
from multiengine.errors import CompositeError, EngineError, SerializationError
from multiengine.wire import slices
from multiengine.wire.message import DELIM

pytestmark = pytest.mark.timeout(120)

N = 4 * slices.MIN_ITEMS + 321  # each engine's part is long enough to go in slices


def test_a_blocking_gather_of_long_lists_is_exact_and_in_order(
    mec: multiengine.MultiEngineClient,
) -> None:
    xs = [*range(10**6, 10**6 + N), "text", 2.5, None, (1, 2), [3], {"k": 4}] * 2
    mec.scatter("x", xs)
    assert mec.gather("x") == xs
    parts = partition(xs, 4)
    assert mec.gather("x", targets=[2, 0]) == parts[2] + parts[0]


def test_a_pull_from_one_engine_and_a_nonblocking_gather_are_exact(
    mec: multiengine.MultiEngineClient,
) -> None:
    xs = list(range(N))
    mec.push({"x": xs}, targets=1)
    assert mec.pull("x", targets=1) == [xs]  # streamed to the client as it comes
    mec.scatter("y", xs)
    pending = mec.gather("y", block=False)
    assert pending.result(HANG) == xs  # kept by the controller, fetched whole


def test_items_that_need_classes_and_shared_items_come_back_alike(
    mec: multiengine.MultiEngineClient,
) -> None:
    mec.execute(
        "from fractions import Fraction\n"
        "third = Fraction(1, 3)\n"
        f"x = [third] * {N} + [Fraction(i, 7) for i in range(1000)]\n"
        "x.append(x)",
        targets=[0, 1],
    )
    first, second = mec.pull("x", targets=[0, 1])
    for back in (first, second):
        assert back[-1] is back  # the list that contains itself
        assert back[0] is back[N - 1] == Fraction(1, 3)  # one object, as on the engine
        assert back[N : N + 1000] == [Fraction(i, 7) for i in range(1000)]


def test_a_gathered_part_that_contains_itself_keeps_its_own_list(
    mec: multiengine.MultiEngineClient,
) -> None:
    mec.push({"x": list(range(N))}, targets=0)
    mec.execute(f"x = list(range({N})); x.append(x)", targets=1)
    back = mec.gather("x", targets=[0, 1])
    assert back[: 2 * N] == [*range(N), *range(N)]
    own = back[-1]
    assert own is not back and own[-1] is own and own[:-1] == list(range(N))


def test_nothing_but_the_caller_holds_a_gathered_or_pulled_list(
    mec: multiengine.MultiEngineClient,
) -> None:
    import sys

    mec.execute(f"x = list(range({N}))", targets=[0, 1])
    back = mec.gather("x", targets=[0, 1])
    assert len(back) == 2 * N
    assert sys.getrefcount(back) == 2  # this name and the call's argument: freed with it
    (one,) = mec.pull("x", targets=0)
    assert sys.getrefcount(one) == 2


def test_a_short_part_and_a_long_part_gather_together(mec: multiengine.MultiEngineClient) -> None:
    mec.push({"x": list(range(N))}, targets=0)
    mec.push({"x": ["short"]}, targets=1)
    assert mec.gather("x", targets=[0, 1]) == [*range(N), "short"]


WARM_SCRIPT = """
import json, resource, sys
import multiengine
from multiengine.wire import slices

def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

count = "import resource; f = resource.getrusage(resource.RUSAGE_SELF).ru_minflt"
xs = list(range(10**6, 10**6 + int(sys.argv[2])))
mec = multiengine.MultiEngineClient(cluster_dir=sys.argv[1])
mec.scatter("x", xs)
out = {"gather": [], "scatter": []}
for _ in range(3):
    before = faults()
    got = mec.gather("x")
    out["gather"].append(faults() - before)
    assert got == xs
    del got
for _ in range(3):
    mec.execute(count, targets=0)
    (before,) = mec.pull("f", targets=0)
    mec.scatter("x", xs)  # replaces each engine's part of the last scatter
    mec.execute(count, targets=0)
    (after,) = mec.pull("f", targets=0)
    out["scatter"].append(after - before)
mec.close()
print(json.dumps(out))
"""


@pytest.mark.parametrize(
    ("engines", "items"),
    [(2, 8 * slices.MIN_ITEMS), (4, 4 * (slices.MIN_ITEMS // 2))],
    ids=["in-slices", "parts-whole"],
)
def test_a_list_gathered_or_scattered_again_goes_in_the_memory_the_last_one_left(
    fresh_cluster: Callable[..., Cluster], engines: int, items: int
) -> None:
    """wire/warm.py. Page faults are counted, not time: in fresh processes (a client of
    its own, new engines), where a list of 524k ints needs new memory, the first gather
    and scatter fault its pages in; the next ones mostly reuse the arenas the last list
    left when it was dropped (what still faults is outside the object allocator: the
    list's array, the frames). The same for a gather whose parts are each too short to
    travel in slices (many engines), unpickled whole."""
    import json

    cluster = fresh_cluster(engines, restart_engines=False)
    run = subprocess.run(
        [sys.executable, "-c", WARM_SCRIPT, str(cluster.cluster_dir.path), str(items)],
        capture_output=True,
        text=True,
        timeout=HANG,
    )
    assert run.returncode == 0, run.stderr
    faults = json.loads(run.stdout)
    pages = items * 32 // 4096  # the pages the list's int objects fill
    assert faults["gather"][0] > pages, faults
    assert faults["scatter"][0] > pages // engines, faults  # (an engine's part)
    for name, counts in faults.items():
        assert max(counts[1:]) < counts[0] // 2, (name, counts)


def _engine_pid(mec: multiengine.MultiEngineClient, eid: int) -> int:
    mec.execute("import os; pid = os.getpid()", targets=eid)
    (pid,) = mec.pull("pid", targets=eid)
    return int(pid)


def test_an_engine_killed_mid_gather_fails_only_its_part(
    fresh_cluster: Callable[..., Cluster],
) -> None:
    cluster = fresh_cluster(2, restart_engines=False)
    mec = cluster.multiengine_client()
    watcher = cluster.multiengine_client()
    mec.execute("x = [str(i) for i in range(3_000_000)]")  # slow to pickle: time to kill
    victim = _engine_pid(mec, 1)
    result = outcome_with_engine_killed(lambda: mec.gather("x"), watcher, 1, victim, "gather")
    if not isinstance(result, BaseException):
        pytest.skip("the gather finished before the engine died (nothing was cut)")
    assert isinstance(result, CompositeError)
    assert error_types(result) == [EngineError]
    wait_until(lambda: mec.get_ids() == [0], message="engine 1 to be unregistered")
    assert mec.gather("x") == [str(i) for i in range(3_000_000)]  # engine 0's, whole
    assert_cluster_works(mec)


# ---------------------------------------------------------------- a slice changed on its way
@pytest.fixture
def tapped_engine(
    fresh_cluster: Callable[..., Cluster], tmp_path: Path
) -> Iterator[dict[str, Any]]:
    """A 1-engine cluster plus a second engine whose engine channel passes a tap."""
    cluster = fresh_cluster(n=1)
    cdir = cluster.cluster_dir
    taps = tapped_connection(cdir.engine_file, tmp_path / "engine.json", ["engine"])
    engine = subprocess.Popen(
        [sys.executable, "-m", "multiengine", "engine", "--connection-file"]
        + [str(tmp_path / "engine.json")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    mec = cluster.multiengine_client()
    try:
        wait_until(lambda: mec.get_ids() == [0, 1], message="the tapped engine to register")
        yield {"cluster": cluster, "tap": taps["engine"], "mec": mec}
    finally:
        mec.close()
        kill_pids([engine.pid])
        engine.wait(HANG)
        taps["engine"].close()


@pytest.mark.fault(
    section="hostile-input",
    fault=(
        "a captured slice of a long list (`chunk` from an engine) sent again, as it was or "
        "with its bytes changed"
    ),
    outcome=(
        "both dropped and counted in `dropped_messages` (the stamp was used; a slice is "
        "covered by its digest in the signed header: never `raw`); the next gather is exact"
    ),
)
def test_a_changed_or_replayed_slice_is_dropped_and_counted(tapped_engine: dict[str, Any]) -> None:
    import json

    import zmq

    mec: multiengine.MultiEngineClient = tapped_engine["mec"]
    tap: Tap = tapped_engine["tap"]
    xs = list(range(N))
    mec.push({"x": xs}, targets=1)
    assert mec.pull("x", targets=1) == [xs]
    pieces = tap.find(UP, "chunk")
    assert len(pieces) == len(slices.dump(xs))
    assert all("raw" not in p.header and len(p.header["dg"]) == 1 for p in pieces)  # digested
    replayed = pieces[1].frames
    i = next(k for k, f in enumerate(replayed) if f.startswith(DELIM))
    changed = list(replayed)
    payload = bytearray(changed[-1])
    payload[len(payload) // 2] ^= 1  # one bit of one int
    changed[-1] = bytes(payload)
    dropped = mec.status()["dropped_messages"]
    info = json.loads(tapped_engine["cluster"].cluster_dir.engine_file.read_text())
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 10_000)
    sock.setsockopt(zmq.IDENTITY, b"e-forger")
    try:
        sock.connect(info["addresses"]["engine"])
        sock.send_multipart(changed[i:])
        sock.send_multipart(replayed[i:])
    finally:
        sock.close()
    wait_until(
        lambda: mec.status()["dropped_messages"] == dropped + 2, message="both slices dropped"
    )
    mec.push({"x": xs}, targets=0)
    assert mec.gather("x", targets=[1, 0]) == xs + xs  # and long lists travel on


@pytest.mark.fault(
    section="hostile-input",
    fault=(
        "a slice of a long list changed in flight between an engine and the controller "
        "(a man in the middle without the key)"
    ),
    outcome=(
        "relayed (blocking `gather`): the client finds it does not match its digest, drops "
        "it and logs it, and that engine's part fails with `SerializationError: pieces of "
        "the answer were lost`; kept (non-blocking): the controller finds it, counts it in "
        "`dropped_messages`, and the part fails with `SerializationError: a piece of the "
        "answer was changed on its way`; nothing changed is unpickled, the next gather is exact"
    ),
)
def test_a_slice_changed_in_flight_fails_its_part_and_is_never_unpickled(
    tapped_engine: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    mec: multiengine.MultiEngineClient = tapped_engine["mec"]
    tap: Tap = tapped_engine["tap"]
    xs = list(range(N))
    mec.push({"x": xs}, targets=[0, 1])

    def flip_a_bit_of_the_second_slice(frames: list[bytes]) -> list[bytes]:
        head = header_of(frames)
        if head.get("t") != "chunk" or "dg" not in head or flipped:
            return frames
        seen.append(1)
        if len(seen) != 2:
            return frames
        flipped.append(1)
        payload = bytearray(frames[-1])
        payload[len(payload) // 2] ^= 1  # one bit of one int
        return [*frames[:-1], bytes(payload)]

    for block in (True, False):
        seen: list[int] = []
        flipped: list[int] = []
        dropped = mec.status()["dropped_messages"]
        tap.alter = flip_a_bit_of_the_second_slice
        with caplog.at_level("WARNING", logger="multiengine.client"):
            pending = mec.gather("x", targets=[0, 1], block=False) if not block else None
            with pytest.raises(CompositeError) as err:
                mec.gather("x", targets=[0, 1]) if block else pending.result(HANG)
        tap.alter = None
        assert flipped
        report = str(err.value)
        assert error_types(err.value) == [SerializationError]  # the tapped engine's part
        if block:
            assert "pieces of the answer were lost" in report
            assert "does not match its digest" in caplog.text
            assert mec.status()["dropped_messages"] == dropped  # (the client caught it)
        else:
            assert "changed on its way" in report
            assert mec.status()["dropped_messages"] == dropped + 1
        caplog.clear()
        assert mec.gather("x", targets=[1, 0]) == xs + xs  # and long lists travel on
