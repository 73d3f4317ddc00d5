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
