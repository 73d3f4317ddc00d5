"""What executing code on an engine gives: the seed's command table (seed §A, §B) and
failures, numbering, stopping at the first exception (decision 7), get_result
(decisions 1 and 8), keys and reset."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import ENGINES, assert_remote, pending
from seed_data import INVALID_COMMANDS, VALID_COMMANDS

import multiengine
from multiengine import ResultList
from multiengine.errors import CompositeError


def fresh(i: int) -> dict[str, Any]:
    """What a fresh engine 0 answers to VALID_COMMANDS[i]: number 1, with 'id'."""
    return {**VALID_COMMANDS[i][1], "number": 1, "id": 0}


def expected(index: int, engine_id: int, number: int | None = None) -> dict[str, Any]:
    """VALID_COMMANDS[index]'s message from ``engine_id`` (``number`` overrides the sequence's)."""
    msg = {**VALID_COMMANDS[index][1], "id": engine_id}
    if number is not None:
        msg["number"] = number
    return msg


@pytest.mark.parametrize(
    "index", range(len(VALID_COMMANDS)), ids=[f"cmd{i}" for i in range(len(VALID_COMMANDS))]
)
def test_execute_on_a_fresh_engine(mec: multiengine.MultiEngineClient, index: int) -> None:
    # seed §A: testExecute_0..11: a fresh engine answers like a fresh shell (number 1), plus 'id'.
    cmd = VALID_COMMANDS[index][0]
    assert mec.execute(cmd, targets=0) == [fresh(index)]


def test_execute_all(mec: multiengine.MultiEngineClient) -> None:
    # seed §B: testExecuteAll: one sequence, numbers 1..12 on every engine.
    for index, (cmd, _) in enumerate(VALID_COMMANDS):
        assert mec.execute(cmd) == [expected(index, i) for i in ENGINES]


def test_execute_nonblocking(mec: multiengine.MultiEngineClient) -> None:
    # seed §B: testExecute
    assert len(mec.execute("a=5", targets=0, block=True)) == 1
    assert len(mec.execute("b=10")) == 4
    pr = pending(mec.execute("c=30", block=False))
    pr2 = pending(mec.execute("d=[0,1,2]", block=False))
    r = pr2.r
    assert isinstance(r, multiengine.ResultList)
    assert len(r) == 4
    assert [m["number"] for m in r] == [4, 3, 3, 3]
    assert [m["number"] for m in pr.r] == [3, 2, 2, 2]
    assert mec.pull("c") == 4 * [30]


@pytest.mark.parametrize(
    "cmd,exc_type", INVALID_COMMANDS, ids=[e.__name__ for _, e in INVALID_COMMANDS]
)
def test_execute_failures_on_one_engine(
    mec: multiengine.MultiEngineClient, cmd: str, exc_type: type[BaseException]
) -> None:
    # seed §A: testExecuteFailuresEngineService_0..6
    ev = assert_remote(exc_type, mec.execute, cmd, targets=0).elist[0][1]
    assert type(ev) is not CompositeError


@pytest.mark.parametrize(
    "cmd,exc_type", INVALID_COMMANDS, ids=[e.__name__ for _, e in INVALID_COMMANDS]
)
def test_execute_failures_on_every_engine(
    mec: multiengine.MultiEngineClient, cmd: str, exc_type: type[BaseException]
) -> None:
    # seed §B: testExecuteFailuresMultiEng_0..6: every engine fails, each failure is reported.
    e = assert_remote(exc_type, mec.execute, cmd)
    assert len(e.elist) == 4
    text = str(e)
    assert text.startswith("one or more exceptions from call to method: execute")
    for i in ENGINES:
        assert f"[{i}:execute]: {e.elist[i][0].__name__}: " in text


def test_execute_stops_at_first_exception_on_one_engine(mec: multiengine.MultiEngineClient) -> None:
    # seed §A; contract decision 7 (the seed ran later lines after an exception): execution stops at
    # the first exception, so ``y`` is never defined.
    assert_remote(ZeroDivisionError, mec.execute, "x=1/0\ny=2", targets=0)
    assert_remote(NameError, mec.pull, "y", targets=0)


def test_execute_stops_at_first_exception(mec: multiengine.MultiEngineClient) -> None:
    # seed §B; contract decision 7 (the seed ran the later lines): y is never set on any engine.
    assert_remote(ZeroDivisionError, mec.execute, "x=1/0\ny=2")
    e = assert_remote(NameError, mec.pull, "y")
    assert len(e.elist) == 4


def test_execution_stops_at_first_exception_keeping_what_ran(mec):
    # contract decision 7
    with pytest.raises(CompositeError):
        mec.execute("x = 1\n1/0\ny = 2")
    assert mec.pull("x") == [1] * 4
    with pytest.raises(CompositeError) as exc:
        mec.pull("y")
    assert [et for et, _, _ in exc.value.elist] == [NameError] * 4


@pytest.mark.parametrize(
    "index", range(len(VALID_COMMANDS)), ids=[f"cmd{i}" for i in range(len(VALID_COMMANDS))]
)
def test_get_result_by_number(mec: multiengine.MultiEngineClient, index: int) -> None:
    # seed §A: testGetResult_0..11
    cmd = VALID_COMMANDS[index][0]
    (r,) = mec.execute(cmd, targets=0)
    assert mec.get_result(r["number"], targets=0) == [fresh(index)]


def test_get_result_default(mec: multiengine.MultiEngineClient) -> None:
    # testGetResultDefault
    mec.execute("a=5", targets=0)
    r = dict(mec.get_result(targets=0)[0])
    assert r.pop("id") == 0
    assert r == {"input": {"raw": "a=5", "translated": "a=5"}, "number": 1}


def test_get_result_failure_before_any_command(mec: multiengine.MultiEngineClient) -> None:
    # seed §A: testGetResultFailure: nothing executed yet.
    assert_remote(IndexError, mec.get_result, None, targets=0)
    assert_remote(IndexError, mec.get_result, 10, targets=0)


def test_get_result_failure(mec: multiengine.MultiEngineClient) -> None:
    # seed §B: testGetResultFailure
    assert_remote(IndexError, mec.get_result, None, targets=0)
    assert_remote(IndexError, mec.get_result, 10, targets=0)
    mec.execute("a=5", targets=0)
    assert_remote(IndexError, mec.get_result, 10, targets=0)


def test_get_result_all(mec: multiengine.MultiEngineClient) -> None:
    # seed §B: testGetResultAll
    for index, (cmd, _) in enumerate(VALID_COMMANDS):
        mec.execute(cmd)
        assert mec.get_result() == [expected(index, i) for i in ENGINES]


def test_get_result_nonblocking(mec: multiengine.MultiEngineClient) -> None:
    # seed §B: testGetResult (the seed's 1-engine case: targets=0)
    result1 = {"input": {"raw": "a=10", "translated": "a=10"}, "number": 1, "id": 0}
    result2 = {"input": {"raw": "b=20", "translated": "b=20"}, "number": 2, "id": 0}
    mec.execute("a=10", targets=0)
    assert mec.get_result(targets=0)[0] == result1
    mec.execute("b=20", targets=0)
    assert mec.get_result(1, targets=0)[0] == result1
    pr = pending(mec.get_result(2, targets=0, block=False))
    assert pr.r[0] == result2
    assert pending(mec.get_result(targets=0, block=False)).r == [result2]


def test_get_result_honours_targets(mec: multiengine.MultiEngineClient) -> None:
    # seed §B; contract decision 1 (the seed's get_result always answered for every engine).
    mec.execute("a=1")
    mec.execute("b=2", targets=1)
    b2 = {"input": {"raw": "b=2", "translated": "b=2"}, "number": 2}
    a1 = {"input": {"raw": "a=1", "translated": "a=1"}, "number": 1}
    assert mec.get_result(targets=1) == [{**b2, "id": 1}]
    assert mec.get_result(targets=[2, 1]) == [{**a1, "id": 2}, {**b2, "id": 1}]
    assert pending(mec.get_result(targets=1, block=False)).r == [{**b2, "id": 1}]
    assert mec.get_result(1, targets=3) == [{**a1, "id": 3}]


def test_get_result_honours_targets_of_one_engine(mec):
    """Decision 1."""
    mec.execute("a = 1")
    rl = mec.get_result(targets=1)
    assert [r["id"] for r in rl] == [1]


def test_get_result_default_includes_failures(mec: multiengine.MultiEngineClient) -> None:
    # seed §A; contract decision 8 (the seed returned the last *successful* command): get_result()
    # returns the last command, a failed one included, with its traceback.
    mec.execute("a=5", targets=0)
    assert_remote(ZeroDivisionError, mec.execute, "b=1/0", targets=0)
    (r,) = mec.get_result(targets=0)
    assert r["number"] == 2
    assert r["input"] == {"raw": "b=1/0", "translated": "b=1/0"}
    assert "ZeroDivisionError" in r["traceback"]["plain"]
    # the explicit number gives the same message
    assert mec.get_result(2, targets=0) == [r]


def test_get_result_default_after_failure(mec: multiengine.MultiEngineClient) -> None:
    # seed §B; contract decision 8 (the seed returned the last successful command): get_result() is
    # the last command even if it failed, with its traceback.
    mec.execute("a=5")
    assert_remote(ZeroDivisionError, mec.execute, "b=1/0", targets=[0, 2])
    results = mec.get_result()
    assert [r["id"] for r in results] == ENGINES
    assert [r["number"] for r in results] == [2, 1, 2, 1]
    for r in (results[0], results[2]):
        assert r["input"]["raw"] == "b=1/0"
        assert "ZeroDivisionError" in r["traceback"]["plain"]
    for r in (results[1], results[3]):
        assert r["input"]["raw"] == "a=5"
        assert "traceback" not in r


def test_get_result_is_the_last_command_even_if_it_failed(mec):
    # contract decision 8
    mec.execute("a = 1")
    with pytest.raises(CompositeError):
        mec.execute("1/0")
    rl = mec.get_result()
    assert isinstance(rl, ResultList)
    assert [r["number"] for r in rl] == [2] * 4
    assert [r["input"]["raw"] for r in rl] == ["1/0"] * 4
    assert all("ZeroDivisionError" in str(r["traceback"]) for r in rl)
    assert [r["input"]["raw"] for r in mec.get_result(1)] == ["a = 1"] * 4


def test_keys(mec: multiengine.MultiEngineClient) -> None:
    # seed §A: testKeys: keys() is a list (per engine); after a reset it is ['id', 'mpi'] (contract
    # §7).
    (keys,) = mec.keys(targets=0)
    assert isinstance(keys, list)
    assert sorted(keys) == ["id", "mpi"]
    mec.push(dict(zzz=1), targets=0)
    assert sorted(mec.keys(targets=0)[0]) == ["id", "mpi", "zzz"]


def test_reset_and_keys(mec):
    mec.push(dict(a=10, b=20, c=list(range(10))), targets=0)
    keys = mec.keys(targets=0)[0]
    assert {"a", "b", "c"} <= set(keys)
    mec.reset(targets=0)
    assert mec.keys(targets=0) == [["id", "mpi"]]
    assert [r["number"] for r in mec.execute("pass", targets=0)] == [1]


def test_reset_and_keys_nonblocking(mec: multiengine.MultiEngineClient) -> None:
    # seed §B: testResetAndKeys, blocking then non-blocking.
    mec.push(dict(a=10, b=20, c=list(range(10))), targets=0)
    keys = mec.keys(targets=0)[0]
    assert "a" in keys and "b" in keys
    mec.reset(targets=0)
    keys = mec.keys(targets=0)[0]
    assert "a" not in keys and "b" not in keys

    assert pending(mec.push(dict(a=10, b=20, c=list(range(10))), targets=0, block=False)).r == [
        None
    ]
    keys = pending(mec.keys(targets=0, block=False)).r[0]
    assert "a" in keys and "b" in keys
    assert pending(mec.reset(targets=0, block=False)).r == [None]
    keys = pending(mec.keys(targets=0, block=False)).r[0]
    assert "a" not in keys and "b" not in keys


def test_a_cell_sent_again_names_its_own_input_in_tracebacks(
    mec: multiengine.MultiEngineClient,
) -> None:
    # Engines keep compiled cells by source; the traceback must still name each run's input.
    mec.reset(targets=0)
    numbers = []
    for _ in range(2):
        with pytest.raises(CompositeError) as err:
            mec.execute("1/0", targets=0)
        text = str(err.value) + "".join(str(e) for e in err.value.elist)
        tb = mec.get_result(targets=0)[0]["traceback"]["plain"]
        assert "ZeroDivisionError" in text
        numbers.append(tb)
    assert "<engine-0-input-1>" in numbers[0] and "1/0" in numbers[0]
    assert "<engine-0-input-2>" in numbers[1] and "1/0" in numbers[1]
    # a cell that defines a function: its frames name the input that defined it
    mec.execute("def boom():\n    return 1/0", targets=0)
    mec.execute("def boom():\n    return 1/0", targets=0)
    with pytest.raises(CompositeError):
        mec.execute("boom()", targets=0)
    tb = mec.get_result(targets=0)[0]["traceback"]["plain"]
    assert "<engine-0-input-4>" in tb and "return 1/0" in tb
