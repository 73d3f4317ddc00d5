"""Functions are pickled once per function object and unpickled once per stream
(multiengine.wire.serialize): what the cache must never do is hand back a stale one."""

from __future__ import annotations

from typing import Any

from multiengine.wire import serialize
from multiengine.wire.serialize import dumps, loads

K = 1


def roundtrip(obj: Any) -> Any:
    content, buffers = dumps(obj)
    return loads(content, buffers)


def test_a_function_is_pickled_once_and_unpickled_once() -> None:
    def f(x: int) -> int:
        return x + 1

    first = dumps((f, [(1,)]))
    second = dumps((f, [(2,)]))
    assert first[0] != second[0]  # the arguments differ; the function's stream is shared
    stream = serialize._function_stream(f)
    assert stream in first[0] and stream in second[0]
    f1, _ = loads(*first)
    f2, _ = loads(*second)
    assert f1 is f2  # unpickled once
    assert f1(1) == 2


def test_a_redefined_function_is_pickled_afresh() -> None:
    def f() -> str:
        return "old"

    assert roundtrip(f)() == "old"

    def f() -> str:  # noqa: F811 - the redefinition is the point
        return "new"

    assert roundtrip(f)() == "new"


def test_rebound_globals_defaults_and_cells_are_seen() -> None:
    global K

    def uses_k() -> int:
        return K

    assert roundtrip(uses_k)() == 1
    K = 2
    try:
        assert roundtrip(uses_k)() == 2
    finally:
        K = 1

    def with_default(k: int = 1) -> int:
        return k

    assert roundtrip(with_default)() == 1
    with_default.__defaults__ = (3,)
    assert roundtrip(with_default)() == 3

    n = 10

    def closure() -> int:
        return n

    assert roundtrip(closure)() == 10
    n = 20
    assert roundtrip(closure)() == 20


def test_the_same_function_twice_in_one_value() -> None:
    def f() -> int:
        return 7

    a, b = roundtrip([f, f])
    assert a is b and a() == 7


def test_the_engine_side_cache_is_bounded() -> None:
    fns = []
    for i in range(serialize.FUNCTIONS_KEPT + 10):
        exec(f"def f{i}(): return {i}", globals_ := {})
        fns.append(globals_[f"f{i}"])
        assert roundtrip(fns[-1])() == i
    assert len(serialize._received) <= serialize.FUNCTIONS_KEPT
