"""Long lists in slices (multiengine.wire.slices): pickled slice by slice with one memo,
rebuilt exact by one unpickler, and never unpickled from a frame signed by its length
only. Pure logic: the live paths are in tests/client/test_list_slices.py."""

from __future__ import annotations

import fractions
import pickle

import pytest

from multiengine.client.answers import decode_result
from multiengine.errors import SerializationError
from multiengine.wire import protocol as P
from multiengine.wire import slices
from multiengine.wire.message import Message
from multiengine.wire.protocol import PartHeader

N = slices.SLICE_ITEMS


def test_a_long_list_of_ints_comes_back_equal_in_order() -> None:
    xs = list(range(10**6, 10**6 + 3 * N + 17))
    parts = slices.dump(xs)
    assert len(parts) == 4  # three whole slices and a short last one
    assert slices.load(parts) == xs


def test_items_that_are_one_object_stay_one_object_across_slices() -> None:
    shared = ["the same list"]
    xs: list[object] = [shared, *range(2 * N), shared, "end"]
    back = slices.load(slices.dump(xs))
    assert back == xs
    assert back[0] is back[-2]


def test_shared_items_after_slices_of_numbers_stay_shared() -> None:
    # the memo is cleared after slices that memoize nothing but themselves (numbers):
    # both sides must then number the later memo entries alike
    shared = {"one": "object"}
    xs: list[object] = [*range(slices.FIRST_ITEMS + N), shared, "s", *range(N), shared, "s"]
    xs.append(xs)
    back = slices.load(slices.dump(xs))
    assert back[:-1] == xs[:-1] and back[-1] is back
    first = slices.FIRST_ITEMS + N
    assert back[first] is back[-3] and back[first + 1] is back[-2]


def test_a_list_that_contains_itself_contains_the_rebuilt_list() -> None:
    xs: list[object] = list(range(N + 5))
    xs.append(xs)
    back = slices.load(slices.dump(xs))
    assert back[-1] is back
    assert back[:-1] == list(range(N + 5))


def test_builtin_slices_are_unpickled_early_and_others_wait_for_finish() -> None:
    plain = slices.Loader()
    for data in slices.dump([*range(N), "a", 1.5, (2, 3), {"k": None}] * 2):
        plain.add(data, early=True)
    assert not plain.deferred and len(plain.result) == 2 * (N + 4)  # done on arrival
    objects = slices.Loader()
    xs = [fractions.Fraction(1, 3)] * (2 * N)
    for data in slices.dump(xs):
        objects.add(data, early=True)  # a class to look up: no user code on a reader
    assert objects.deferred and objects.result == []
    back = objects.finish()
    assert back == xs and back[0] is back[-1]


def test_a_slice_that_does_not_unpickle_raises_from_finish() -> None:
    parts = slices.dump(list(range(2 * N)))
    loader = slices.Loader()
    loader.add(parts[0], early=True)
    loader.add(b"\x80\x05 not a pickle", early=True)
    with pytest.raises(pickle.UnpicklingError):
        loader.finish()


def test_pieces_take_whole_slices_and_a_failed_slice_becomes_the_error() -> None:
    xs = [str(i) * 3 for i in range(2 * N)]
    parts = slices.dump(xs)
    assert len(parts) == slices.count(xs) == 3  # a short first slice, then N each
    got = slices.Pieces(len(parts), early=True)
    for data in parts:
        assert not got.done
        got.add(data)
    assert got.done and slices.load(got.buffers) == xs
    with pytest.raises(ValueError, match="more slices"):
        got.add(parts[0])
    broken = slices.Pieces(3, early=True)  # what an engine sends when slice 2 fails
    for data in (parts[0], slices.failed(TypeError("cannot pickle 'generator'")), b""):
        broken.add(data)
    with pytest.raises(SerializationError, match="cannot pickle 'generator'"):
        slices.load(broken.buffers)


def _result(raw: object) -> Message:
    parts = slices.dump(list(range(N + 1)))
    head = PartHeader(0, P.STATUS_OK, P.SLICES, len(parts))
    header: dict[str, object] = {"t": P.RESULT, "id": 1, "parts": [head.to_wire()]}
    if raw is not None:
        header["raw"] = raw
    return Message([], header, b"", [b"", *parts])


def test_a_result_whose_slices_were_hashed_decodes() -> None:
    values, _, _ = decode_result(_result(None), "pull")
    assert values == [list(range(N + 1))]


@pytest.mark.parametrize("raw", [True, [2]])
def test_slices_in_frames_signed_by_length_only_are_refused(raw: object) -> None:
    (value,), _, _ = decode_result(_result(raw), "pull")
    assert isinstance(value, SerializationError)
    assert "unsigned" in str(value)


# ---------------------------------------------------------------- a gather's parts, one list
def _chained(parts: list[list[object]], order: list[tuple[int, int]]) -> list[object]:
    """Feed the slices of ``parts`` to one chain in ``order`` ((part, slice) pairs),
    then decode and join them as a gather does."""
    from multiengine.client.partition import join

    dumped = [slices.dump(p) for p in parts]
    chain = slices.Chain()
    pieces: dict[int, slices.Pieces] = {}
    for i, k in order:
        if i not in pieces:
            pieces[i] = slices.Pieces(len(dumped[i]), True, chain, i)
        pieces[i].add(dumped[i][k])
    values = [slices.load(pieces[i].buffers) for i in range(len(parts))]
    return join(values, owned=True)


def _all(parts: list[list[object]]) -> list[tuple[int, int]]:
    return [(i, k) for i, p in enumerate(parts) for k in range(slices.count(p))]


def test_a_chain_unpickles_the_parts_into_one_list_in_part_order() -> None:
    parts: list[list[object]] = [list(range(2 * N)), list(range(-1, -N, -1)), ["x"] * N]
    order = _all(parts)
    late_first = order[len(order) // 2 :] + order[: len(order) // 2]  # part 0's come last
    for o in (order, late_first):
        assert _chained(parts, o) == parts[0] + parts[1] + parts[2]


def test_a_part_that_contains_itself_or_needs_classes_is_unpickled_on_its_own() -> None:
    second: list[object] = list(range(N + 3))
    second.append(second)
    third = [fractions.Fraction(1, 3)] * N
    parts: list[list[object]] = [list(range(N)), second, third]
    back = _chained(parts, _all(parts))
    assert back[:N] == parts[0] and back[N : 2 * N + 3] == second[:-1]
    own = back[2 * N + 3]
    assert own is not back and own[-1] is own and own[:-1] == second[:-1]
    assert back[2 * N + 4 :] == third


def test_a_cut_part_takes_its_items_and_the_later_parts_out_of_the_list() -> None:
    parts: list[list[object]] = [list(range(N)), list(range(N, 2 * N)), list(range(5))]
    dumped = [slices.dump(p) for p in parts]
    chain = slices.Chain()
    pieces = [slices.Pieces(len(d), True, chain, i) for i, d in enumerate(dumped)]
    for i, d in enumerate(dumped):
        for data in d[: -1 if i == 1 else None]:  # the last slice of part 1 never comes
            pieces[i].add(data)
    chain.cut(1)  # as the client does when the result says part 1 failed
    assert slices.load(pieces[0].buffers) == parts[0]
    assert slices.load(pieces[2].buffers) == parts[2]
