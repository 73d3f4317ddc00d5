"""Choosing engines and waiting: ``targets`` and ``block`` are checked before anything runs
(seed-system §2.1, contract §7), per call and when set on the client; empty targets."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import ENGINES, assert_cluster_works, error_types, plain_repr
from seed_data import INVALID_ID_CALLS

import multiengine
from multiengine import PendingResult
from multiengine.errors import CompositeError, InvalidEngineID


@pytest.mark.parametrize("method,args", INVALID_ID_CALLS, ids=[m for m, _ in INVALID_ID_CALLS])
@pytest.mark.parametrize("block", [True, False], ids=["block", "noblock"])
def test_invalid_engine_id(
    mec: multiengine.MultiEngineClient, method: str, args: tuple[Any, ...], block: bool
) -> None:
    # seed §B: testInvalidEngineID: target 100 raises InvalidEngineID directly, not in a
    # CompositeError.
    with pytest.raises(InvalidEngineID):
        r = getattr(mec, method)(*args, targets=100, block=block)
        if not block:
            r.get_result()
    # nothing ran on the real engines
    assert mec.queue_status() == [(i, {"queue": [], "pending": None}) for i in ENGINES]


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


def test_block_and_targets_are_validated(mec):
    with pytest.raises(ValueError):
        mec.execute("a=1", block="yes")
    with pytest.raises(ValueError):
        mec.execute("a=1", targets=1.5)


def test_block_and_targets_are_checked_when_set(mec: multiengine.MultiEngineClient) -> None:
    with pytest.raises(ValueError, match="block must be True or False"):
        mec.block = "x"  # type: ignore[assignment]
    with pytest.raises(ValueError, match="targets must be"):
        mec.targets = 1.5
    assert mec.block is True and mec.targets == "all"


def test_reset_with_duplicate_targets_runs_twice(mec: multiengine.MultiEngineClient) -> None:
    mec.push({"a": 1})
    assert mec.reset(targets=[0, 0]) == [None, None]
    assert "a" not in mec.keys(targets=0)[0]


def test_empty_targets_nonblocking(mec):
    """Contract decision 13: targets=[] with block=False gives an empty result
    with a working repr."""
    pr = mec.execute("a = 1", targets=[], block=False)
    assert isinstance(pr, PendingResult)
    assert pr.r == []
    assert plain_repr(pr.r) == "<Results List>\n"
    assert "PendingResult" in plain_repr(pr)
    assert mec.push({"a": 1}, targets=[], block=False).r == []
    assert mec.pull("a", targets=[], block=False).r == []
    # nothing ran anywhere
    assert mec.keys() == [["id", "mpi"]] * 4


def test_empty_targets_non_blocking_completes(mec: multiengine.MultiEngineClient) -> None:
    pr = mec.execute("a = 1", targets=[], block=False)
    assert isinstance(pr, multiengine.PendingResult)
    assert isinstance(repr(pr), str)
    assert pr.wait(10)
    assert list(pr.r) == []
    assert mec.execute("a = 1", targets=[]) == []
