"""Bad values from users, on real engines: each gives a precise error, and the engine
goes on with its namespace intact (docs/reliability.md, "Hostile input").

Values whose unpickling fails (or exits) on the engine, recursion bombs in pickling,
unpickling, parsing and running, 20 MiB of code, and exceptions that cannot be shown.
"""

from __future__ import annotations

import pickle
import sys
from typing import Any

import pytest
from helpers import assert_cluster_works, error_types

import multiengine
from multiengine.engine.interpreter import MAX_CODE
from multiengine.errors import CompositeError, RemoteError, SerializationError


class FailsOnTheEngine:
    """Pickles fine; unpickling it raises (here and on the engine)."""

    def __reduce__(self) -> Any:
        return (int, ("not a number",))


class ExitsOnTheEngine:
    """Unpickling it raises SystemExit: it must not end the engine."""

    def __reduce__(self) -> Any:
        return (sys.exit, (3,))


DEPTH = 200_000  # far past the recursion limit


class DeepOnArrival:
    """Unpickles, without any recursion, into a list nested DEPTH deep."""

    def __reduce__(self) -> Any:
        deep = b"\x80\x04" + b"]" * DEPTH + b"a" * (DEPTH - 1) + b"."
        return (pickle.loads, (deep,))


def _only_error(info: pytest.ExceptionInfo[CompositeError]) -> BaseException:
    (_, error, _), *rest = info.value.elist
    assert not rest, info.value.elist
    assert isinstance(error, BaseException)
    return error


def _engine_is_fine(mec: multiengine.MultiEngineClient) -> None:
    mec.execute("after = 6 * 7", targets=0)
    assert mec.pull(["kept", "after"], targets=0) == [["before", 42]]
    assert_cluster_works(mec)


@pytest.mark.parametrize("value", [FailsOnTheEngine(), ExitsOnTheEngine()], ids=["raises", "exits"])
@pytest.mark.fault(
    section="hostile-input",
    fault="a value that pickles but whose unpickling raises on the engine (or raises `SystemExit`)",
    outcome=(
        "`SerializationError: cannot unpickle the arguments of push on engine 0: ValueError: "
        "invalid literal ...` inside a `CompositeError`; nothing of that command ran (not even "
        "the other names of the `push`)"
    ),
)
def test_a_value_that_does_not_unpickle_on_the_engine(
    mec: multiengine.MultiEngineClient, value: Any
) -> None:
    mec.push({"kept": "before"}, targets=0)
    with pytest.raises(CompositeError) as info:
        mec.push({"fine": 1, "bad": value}, targets=0)
    error = _only_error(info)
    assert isinstance(error, SerializationError)
    cause = (
        "ValueError: invalid literal" if isinstance(value, FailsOnTheEngine) else "SystemExit: 3"
    )
    assert str(error).startswith("cannot unpickle the arguments of push on engine 0: " + cause)
    assert "fine" not in mec.keys(targets=0)[0], "part of a failed push was stored"
    _engine_is_fine(mec)


@pytest.mark.fault(
    section="hostile-input",
    fault="a structure nested 200,000 deep, pushed",
    outcome=(
        "`SerializationError: cannot serialize a tuple (whose repr failed: RecursionError): Could "
        "not pickle object as excessively deep recursion required.`, locally, nothing sent"
    ),
)
@pytest.mark.fault(
    section="hostile-input",
    fault=(
        "a value that unpickles on the engine into a list nested 200,000 deep (the unpickler does "
        "not recurse), then pulled or shown"
    ),
    outcome=(
        "the pull fails with `SerializationError` (`cannot serialize a list ...`), showing it "
        "with `RecursionError`; `reset` frees it"
    ),
)
def test_deeply_nested_values(mec: multiengine.MultiEngineClient) -> None:
    mec.push({"kept": "before"}, targets=0)
    deep: list[Any] = []
    for _ in range(DEPTH):
        deep = [deep]
    # pickling on the client: a precise local error, nothing sent
    with pytest.raises(SerializationError) as local:
        mec.push({"deep": deep}, targets=0)
    assert str(local.value).startswith(
        "cannot serialize a tuple (whose repr failed: RecursionError)"
    )
    assert str(local.value).endswith("excessively deep recursion required.")
    # unpickling on the engine builds it (the unpickler does not recurse) ...
    mec.push({"deep": DeepOnArrival()}, targets=0)
    # ... and sending it back fails there, precisely
    with pytest.raises(CompositeError) as info:
        mec.pull("deep", targets=0)
    error = _only_error(info)
    assert isinstance(error, SerializationError)
    assert "cannot serialize a list (whose repr failed: RecursionError)" in str(error)
    assert "recursion" in str(error)
    # showing it fails too; freeing it (reset) does not crash the engine
    with pytest.raises(CompositeError) as info:
        mec.execute("deep", targets=0)
    assert error_types(info.value) == [RecursionError]
    _engine_is_fine(mec)
    mec.reset(targets=0)
    assert "deep" not in mec.keys(targets=0)[0]
    assert_cluster_works(mec)


@pytest.mark.fault(
    section="hostile-input",
    fault="`def f(): return f()` run",
    outcome=(
        "`RecursionError: maximum recursion depth exceeded`; the engine's recursion limit is "
        "unchanged"
    ),
)
@pytest.mark.fault(
    section="hostile-input",
    fault='code nested too deeply to parse (`"-" * 10**6 + "1"`, 100,000 parentheses)',
    outcome=(
        "`RecursionError: the code is nested too deeply for Python's parser (it gave up with "
        "MemoryError)`, `SyntaxError: too many nested parentheses`"
    ),
)
def test_runaway_recursion_and_deeply_nested_code(mec: multiengine.MultiEngineClient) -> None:
    mec.push({"kept": "before"}, targets=0)
    with pytest.raises(CompositeError) as info:
        mec.execute("def f():\n    return f()\nf()", targets=0)
    error = _only_error(info)
    assert isinstance(error, RecursionError)
    assert "maximum recursion depth exceeded" in str(error)
    with pytest.raises(CompositeError) as info:
        mec.execute("z = " + "-" * 1_000_000 + "1", targets=0)
    error = _only_error(info)
    assert isinstance(error, RecursionError)
    assert str(error).startswith("the code is nested too deeply for Python's parser")
    with pytest.raises(CompositeError) as info:
        mec.execute("z = " + "(" * 100_000 + ")" * 100_000, targets=0)
    error = _only_error(info)
    assert isinstance(error, SyntaxError)
    assert "too many nested parentheses" in str(error)
    assert mec.execute("import sys; depth = sys.getrecursionlimit()", targets=0)
    assert mec.pull("depth", targets=0) == [sys.getrecursionlimit()]
    _engine_is_fine(mec)


@pytest.mark.fault(
    section="hostile-input",
    fault="20 MiB of code sent to `execute`",
    outcome=(
        "`ValueError: the code is 20.0 MiB; an engine runs at most 1 MiB of code at a time ...`, "
        "at once and not counted in `In [n]`. Compiling 20 MiB of statements took CPython 31 s "
        "and 5 GB, holding the GIL so that the heartbeat thread could not run: the controller "
        "unregistered the engine, which then stopped"
    ),
)
def test_twenty_megabytes_of_code(mec: multiengine.MultiEngineClient) -> None:
    mec.push({"kept": "before"}, targets=0)
    numbered = mec.execute("n = 1", targets=0)[0]["number"]
    code = "x = 1\n" * (20 * 2**20 // 6)
    with pytest.raises(CompositeError) as info:
        mec.execute(code, targets=0)
    error = _only_error(info)
    assert isinstance(error, ValueError)
    assert str(error).startswith(
        f"the code is 20.0 MiB; an engine runs at most {MAX_CODE / 2**20:g} MiB of code"
    )
    assert mec.execute("n = 2", targets=0)[0]["number"] == numbered + 1, "it was counted"
    _engine_is_fine(mec)


@pytest.mark.fault(
    section="hostile-input",
    fault="a user exception whose `__str__` raises",
    outcome=(
        "`RemoteError: E: <str() of this E failed with RuntimeError>` (its pickled object is not "
        "sent: the client could not show it either). The engine used to die of it"
    ),
)
def test_exceptions_that_cannot_be_shown(mec: multiengine.MultiEngineClient) -> None:
    mec.push({"kept": "before"}, targets=0)
    code = (
        "class Mute(Exception):\n"
        "    def __str__(self):\n"
        "        raise RuntimeError('no text')\n"
        "    def __reduce__(self):\n"
        "        raise RuntimeError('no pickle')\n"
        "raise Mute()"
    )
    with pytest.raises(CompositeError) as info:
        mec.execute(code, targets=0)
    error = _only_error(info)
    assert isinstance(error, RemoteError)
    assert str(error) == "Mute: <str() of this Mute failed with RuntimeError>"
    str(info.value)  # the composite error itself can be shown
    _engine_is_fine(mec)
