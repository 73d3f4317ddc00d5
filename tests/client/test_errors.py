"""CompositeError says which engines failed and why; raise_exception() gives back the
original exception."""

from __future__ import annotations

import pytest
from helpers import assert_remote

import multiengine
from multiengine.errors import CompositeError


def test_composite_error_raise_exception(mec: multiengine.MultiEngineClient) -> None:
    # The seed's _raise_it: raise_exception() re-raises the engine's exception, with its
    # message; a bad index is an IndexError (seed §2.5).
    e = assert_remote(ZeroDivisionError, mec.execute, "1/0", targets=0)
    with pytest.raises(ZeroDivisionError, match="division by zero"):
        e.raise_exception()
    with pytest.raises(IndexError):
        e.raise_exception(5)


def test_composite_error_holds_only_the_failures(mec):
    with pytest.raises(CompositeError) as exc:
        mec.execute("x = 1 / id")  # only engine 0 divides by zero
    assert str(exc.value).split("\n") == [
        "one or more exceptions from call to method: execute",
        "[0:execute]: ZeroDivisionError: division by zero",
    ]
    assert mec.pull("x", targets=[1, 2, 3]) == [1.0, 0.5, 0.3333333333333333]


def test_a_printed_engine_error_shows_the_engine_and_its_traceback(
    mec: multiengine.MultiEngineClient,
) -> None:
    import traceback

    mec.execute("def inner():\n    return 1 / 0\n", targets=[2, 3])
    with pytest.raises(multiengine.CompositeError) as info:
        mec.execute("inner()", targets=[2, 3])
    printed = "".join(traceback.format_exception(info.value))
    assert "[2:execute]: ZeroDivisionError: division by zero" in printed
    assert "[engine 2] execute, the engine's traceback:" in printed
    assert "in inner" in printed and "return 1 / 0" in printed  # the engine's own frames
    assert "2 engines failed; e.print_tracebacks()" in printed
    # the exception raised again on its own says where it came from, too
    with pytest.raises(ZeroDivisionError) as again:
        info.value.raise_exception(1)
    origin = again.value.__cause__
    assert isinstance(origin, multiengine.errors.RemoteTraceback)
    assert (origin.engine_id, origin.method) == (3, "execute")
    assert "return 1 / 0" in (origin.traceback or "")


def test_a_failed_task_shows_its_engine_and_traceback(tc: multiengine.TaskClient) -> None:
    import traceback

    def fail() -> None:
        raise KeyError("missing")

    tid = tc.run(multiengine.MapTask(fail))
    with pytest.raises(KeyError) as info:
        tc.get_task_result(tid, block=True)
    printed = "".join(traceback.format_exception(info.value))
    assert "the engine's traceback:" in printed and "in fail" in printed
    assert "] task" in printed
