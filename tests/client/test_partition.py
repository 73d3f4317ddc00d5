"""How scatter splits a sequence over engines and gather joins it (seed-system §2.7)."""

from __future__ import annotations

import numpy as np
import pytest

from multiengine.client.partition import check_dist, join, partition


def test_block_partitions():
    assert partition(range(16), 4) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]]
    assert partition(range(10), 4) == [[0, 1, 2], [3, 4, 5], [6, 7], [8, 9]]
    assert partition(range(2), 4) == [[0], [1], [], []]
    assert partition([], 3) == [[], [], []]


def test_partitions_keep_the_sequence_type():
    assert partition((1, 2, 3, 4, 5), 2) == [(1, 2, 3), (4, 5)]
    assert partition("abcdefgh", 4) == ["ab", "cd", "ef", "gh"]
    assert partition(b"abcde", 2) == [b"abc", b"de"]
    parts = partition(np.arange(10), 4)
    assert all(isinstance(p, np.ndarray) for p in parts)
    assert [p.tolist() for p in parts] == [[0, 1, 2], [3, 4, 5], [6, 7], [8, 9]]


def test_round_robin_partitions():
    assert partition(list(range(10)), 4, "r") == [[0, 4, 8], [1, 5, 9], [2, 6], [3, 7]]
    assert partition("abcdefghij", 3, "r") == ["adgj", "beh", "cfi"]


def test_join_inverts_partition():
    assert join([[0, 1, 2], [3, 4, 5], [6, 7], [8, 9]]) == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert join([[0], [1], [], []]) == [0, 1]
    assert join([(1, 2, 3), (4, 5)]) == (1, 2, 3, 4, 5)
    assert join(["ab", "cd", "ef", "gh"]) == "abcdefgh"
    assert join([b"abc", b"de"]) == b"abcde"
    arr = join([np.array([0, 1, 2]), np.array([3, 4]), np.array([], dtype=np.int64)])
    assert isinstance(arr, np.ndarray)
    assert arr.tolist() == [0, 1, 2, 3, 4]
    assert join([[0, 4, 8], [1, 5, 9], [2, 6], [3, 7]], "r") == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert join(["adgj", "beh", "cfi"], "r") == "abcdefghij"
    assert join([0, 1, 2, 3]) == [0, 1, 2, 3]  # scalars: one per engine, as gather('id')


def test_unknown_distribution():
    with pytest.raises(KeyError):
        check_dist("x")
    with pytest.raises(KeyError):
        partition([1, 2], 2, "x")


def test_join_of_owned_parts_extends_the_first_list_and_gives_the_same_value() -> None:
    parts = [[1, 2], [3], (4, 5), "x"]
    first = parts[0]
    assert join([list(p) if isinstance(p, list) else p for p in parts], "b") == [1, 2, 3, 4, 5, "x"]
    joined = join(parts, "b", owned=True)
    assert joined == [1, 2, 3, 4, 5, "x"] and joined is first  # no copy of the first part
    kept = [[1, 2], [3]]
    assert join(kept, "b") == [1, 2, 3] and kept == [[1, 2], [3]]  # not owned: untouched
    for dist, flattened in (("r", None), ("b", [True, False])):
        owned = [[1, 2], [3]]
        join(owned, dist, flattened, owned=True)
        assert owned == [[1, 2], [3]]  # rebuilt, not extended in place


def test_long_blocks_of_a_list_pickle_as_the_slices_they_stand_for() -> None:
    import pickle

    import cloudpickle

    from multiengine.client.partition import VIEW_AT_LEAST, ListPart
    from multiengine.wire.serialize import dumps, loads

    xs = [*range(3 * VIEW_AT_LEAST), "text", None, (1, 2), [3]]
    parts = partition(xs, 3, views=True)
    assert all(type(p) is ListPart for p in parts)
    assert [len(p) for p in parts] == [len(s) for s in partition(xs, 3)]
    assert parts[2][len(parts[2]) - 1] == [3] and parts[0][0] == 0
    with pytest.raises(IndexError):
        parts[0][len(parts[0])]
    for p, expected in zip(parts, partition(xs, 3), strict=True):
        for value in (pickle.loads(pickle.dumps(p, 5)), pickle.loads(cloudpickle.dumps(p))):
            assert type(value) is list and value == expected
        content, buffers = dumps(({"x": p},))  # as scatter sends it
        assert loads(content, buffers) == ({"x": expected},)
    # short blocks, other sequences, round-robin: slices as before
    assert partition(xs[:VIEW_AT_LEAST], 2, views=True) == partition(xs[:VIEW_AT_LEAST], 2)
    assert all(type(p) is tuple for p in partition(tuple(xs), 3, views=True))
    assert all(type(p) is list for p in partition(xs, 3, "r", views=True))
