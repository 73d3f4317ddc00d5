"""A scatter of long lists travels digested (docs/protocol.md §2): each part is a
pickle alone, and the client's ``submit`` carries the SHA-256 digest of each in its
signed header (``dg``); the controller passes each part on to its engine with its
digest (``cdg``) without hashing it, and the engine checks it before it unpickles. A
part changed between the client and the controller fails only its engine's part, is
counted by that engine and never unpickled, and scatters go on exact.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import HANG, error_types
from wiretap import UP, Tap, header_of, tapped_client

import multiengine
from multiengine.client.partition import partition
from multiengine.client.payload import (
    DIGESTED_PARTS_FROM,
    dump_payload,
    plan_dumped,
    plan_payload,
)
from multiengine.cluster.cluster import Cluster
from multiengine.errors import CompositeError, SerializationError
from multiengine.wire.message import DIGEST_SIZE

pytestmark = pytest.mark.timeout(120)

N = 100_000  # two parts of 50,000 ints: well above DIGESTED_PARTS_FROM in pickles
DROPPED = "from multiengine.engine import get_engine; _dropped = get_engine().dropped_messages"


@pytest.fixture
def tapped(fresh_cluster: Callable[..., Cluster], tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A 2-engine cluster and a client whose traffic to the controller passes a tap."""
    cluster = fresh_cluster(2)
    with tapped_client(cluster.cluster_dir.client_file, tmp_path) as (tap, mec):
        yield {"tap": tap, "mec": mec}


def test_the_digests_made_aside_are_those_of_the_parts_sent() -> None:
    """Pure logic: a long part's digest is made on a thread while the next is pickled;
    the header's ``dg`` is the SHA-256 of each part's frame, whichever way it was made."""
    import hashlib

    xs = list(range(1_200_000))  # parts of 1.9 MB: the first two digested aside
    parts = [({"x": p},) for p in partition(xs, 3, views=True)]
    dumped = dump_payload((), parts)
    assert [d is not None for d in dumped.made_digests] == [True, True, False]
    payload = plan_dumped(dumped)
    assert payload.fields["dg"] == [hashlib.sha256(f).digest() for f in payload.buffers]
    short = plan_payload((), [({"x": [1, 2]},), ({"x": [3]},)])
    assert "dg" not in short.fields


def dropped_on(mec: multiengine.MultiEngineClient, engine: int) -> int:
    mec.execute(DROPPED, targets=engine)
    (n,) = mec.pull("_dropped", targets=engine)
    return int(n)


def test_long_parts_go_digested_and_arrive_exact(tapped: dict[str, Any]) -> None:
    mec: multiengine.MultiEngineClient = tapped["mec"]
    tap: Tap = tapped["tap"]
    xs = list(range(N))
    assert mec.scatter("x", xs) == [None, None]
    assert mec.pull("x") == [xs[: N // 2], xs[N // 2 :]]
    (submit,) = [c for c in tap.find(UP, "submit") if c.header.get("desc") == "scatter(x)"]
    head = submit.header
    assert head["parts"] == [0, 0] and "raw" not in head
    assert [len(d) for d in head["dg"]] == [DIGEST_SIZE, DIGEST_SIZE]
    assert sum(map(len, submit.frames[-2:])) >= DIGESTED_PARTS_FROM
    # short parts are signed as before, hashed in full
    assert mec.scatter("y", list(range(10))) == [None, None]
    (short,) = [c for c in tap.find(UP, "submit") if c.header.get("desc") == "scatter(y)"]
    assert "dg" not in short.header
    assert mec.gather("y") == list(range(10))
    # a non-blocking scatter, and one to a single engine, arrive the same
    mec.scatter("z", xs, block=False).result(HANG)
    assert mec.gather("z") == xs
    mec.scatter("w", xs, targets=[1])
    assert mec.pull("w", targets=1) == [xs]


@pytest.mark.fault(
    section="hostile-input",
    fault=(
        "a part of a scatter of long lists changed in flight between the client and the "
        "controller (a man in the middle without the key)"
    ),
    outcome=(
        "the controller passes it on unhashed with the digest the client signed; its engine "
        "finds it does not match, counts it in its `dropped_messages`, never unpickles it and "
        "fails that part with `SerializationError` (the arguments `were changed on their "
        "way`), leaving its namespace as it was; the other engine's part lands and the next "
        "scatter is exact"
    ),
)
def test_a_part_changed_in_flight_fails_its_engine_only_and_is_never_unpickled(
    tapped: dict[str, Any],
) -> None:
    mec: multiengine.MultiEngineClient = tapped["mec"]
    tap: Tap = tapped["tap"]
    xs = list(range(N))
    mec.scatter("x", xs)
    before = dropped_on(mec, 1)
    flipped: list[int] = []

    def flip_a_bit_of_the_second_part(frames: list[bytes]) -> list[bytes]:
        head = header_of(frames)
        if head.get("t") != "submit" or "dg" not in head or flipped:
            return frames
        flipped.append(1)
        payload = bytearray(frames[-1])
        payload[len(payload) // 2] ^= 1  # one bit of one int
        return [*frames[:-1], bytes(payload)]

    ys = [-i for i in xs]
    tap.alter = flip_a_bit_of_the_second_part
    try:
        with pytest.raises(CompositeError) as err:
            mec.scatter("x", ys)
    finally:
        tap.alter = None
    assert flipped
    assert error_types(err.value) == [SerializationError]  # engine 1's part alone
    assert "were changed on their way to engine 1" in str(err.value)
    assert mec.pull("x") == [ys[: N // 2], xs[N // 2 :]]  # engine 1 kept its old part
    assert dropped_on(mec, 1) == before + 1
    assert mec.scatter("x", ys) == [None, None]  # and scatters go on
    assert mec.gather("x") == ys
