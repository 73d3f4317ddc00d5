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
