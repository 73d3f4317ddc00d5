"""push and pull: values, functions (decision 9: they travel by value and use the
engine's globals) and Serialized ones; what cannot be pickled fails clearly."""

from __future__ import annotations

import pickle
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from helpers import assert_cluster_works, assert_remote, error_types, pending
from seed_data import PUSH_PULL_OBJECTS, TESTF, TESTG

import multiengine
from multiengine.errors import CompositeError, KernelError, SerializationError


@pytest.mark.parametrize(
    "obj", [*PUSH_PULL_OBJECTS, None], ids=["int", "str", "float", "dict", "None"]
)
def test_push_pull_one_value(mec: multiengine.MultiEngineClient, obj: Any) -> None:
    # seed §A: testPushPull_0..4
    assert mec.push(dict(a=obj), targets=0) == [None]
    assert mec.pull("a", targets=0) == [obj]


def test_push_pull(mec: multiengine.MultiEngineClient) -> None:
    # seed §B: testPushPull (the seed's 1-engine case: targets=0)
    for o in PUSH_PULL_OBJECTS:
        assert mec.push(dict(key=o), targets=0) == [None]
        assert mec.pull("key", targets=0) == [o]
    mec.reset(targets=0)
    assert_remote(NameError, mec.pull, "a", targets=0)
    mec.push(dict(a=10, b=20))
    assert mec.pull(("a", "b"), targets=0) == [[10, 20]]
    # Contract decision 5: a list of one key gives a list per engine (the seed gave 10).
    assert mec.pull(["a"], targets=0) == [[10]]


def test_push_pull_all(mec: multiengine.MultiEngineClient) -> None:
    # seed §B: testPushPullAll
    mec.push(dict(a=10))
    assert mec.pull("a") == [10, 10, 10, 10]
    mec.push(dict(a=10, b=20))
    assert mec.pull(("a", "b")) == 4 * [[10, 20]]
    mec.push(dict(a=10, b=20), targets=0)
    assert mec.pull(("a", "b"), targets=0) == [[10, 20]]
    mec.push(dict(a=None, b=None), targets=0)
    assert mec.pull(("a", "b"), targets=0) == [[None, None]]
    assert mec.pull(("a", "b"), targets=[1, 0]) == [[10, 20], [None, None]]


def test_push_pull_nonblocking(mec: multiengine.MultiEngineClient) -> None:
    # seed §B: testPushPull (Synchronous). The seed's c=range(10) was a list in Python 2.
    data = dict(a=10, b=1.05, c=list(range(10)), d={"e": (1, 2), "f": "hi"})
    mec.push({"data": data}, targets=0)
    assert mec.pull("data", targets=0) == [data]
    mec.push({"data": data})
    assert mec.pull("data") == 4 * [data]
    mec.reset()
    pr = pending(mec.push({"data": data}, block=False))
    assert pr.r == 4 * [None]
    pr = pending(mec.pull("data", block=False))
    assert pr.r == 4 * [data]
    mec.push(dict(a=10, b=20))
    assert mec.pull(("a", "b")) == 4 * [[10, 20]]


def test_push_pull_array(mec: multiengine.MultiEngineClient) -> None:
    # seed §A: testPushPullArray (numpy is installed here, so it runs).
    a = np.random.random(1000)
    mec.push(dict(a=a), targets=0)
    (b,) = mec.pull("a", targets=0)
    assert isinstance(b, np.ndarray)
    assert (a == b).all()


def test_pull_of_a_list_of_one_key_gives_lists(mec):
    # contract decision 5
    mec.push(dict(a=1, b=2))
    assert mec.pull(["a"]) == [[1]] * 4
    assert mec.pull(("a",), targets=2) == [[1]]
    assert mec.pull("a") == [1] * 4


def test_pull_name_error(mec: multiengine.MultiEngineClient) -> None:
    # seed §A: testPullNameError
    mec.push(dict(a=5), targets=0)
    assert mec.pull("a", targets=0) == [5]
    mec.reset(targets=0)
    assert_remote(NameError, mec.pull, "a", targets=0)


def test_pull_of_a_missing_name_raises_composite_error_with_name_error(
    mec: multiengine.MultiEngineClient,
) -> None:
    with pytest.raises(CompositeError) as info:
        mec.pull("no_such_name")
    assert error_types(info.value) == [NameError] * 4
    assert all("no_such_name" in str(ev) for _, ev, _ in info.value.elist)
    assert "[0:pull]: NameError" in str(info.value)
    with pytest.raises(CompositeError) as info:
        mec.pull(["id", "no_such_name"], targets=1)
    assert error_types(info.value) == [NameError]
    assert_cluster_works(mec)


def test_push_pull_failures(mec: multiengine.MultiEngineClient) -> None:
    # seed §A: testPushPullFailures
    assert_remote(NameError, mec.pull, "a", targets=0)
    # Contract decision 9: lambdas travel (the seed raised PicklingError for both steps).
    mec.execute("l = lambda x: x", targets=0)
    (pulled,) = mec.pull("l", targets=0)
    assert pulled(3) == 3
    assert mec.push(dict(l2=lambda x: x + 1), targets=0) == [None]
    mec.execute("r = l2(41)", targets=0)
    assert mec.pull("r", targets=0) == [42]
    # What really cannot be pickled still fails with a PicklingError: pulled from the engine
    # (inside a CompositeError) ...
    mec.execute("import threading; lock = threading.Lock()", targets=0)
    assert_remote(pickle.PicklingError, mec.pull, "lock", targets=0)
    # ... and pushed from the client (raised right away, nothing is sent).
    with pytest.raises(pickle.PicklingError):
        mec.push(dict(lock2=threading.Lock()), targets=0)
    assert_remote(NameError, mec.pull, "lock2", targets=0)


@pytest.mark.parametrize(
    "make", [lambda: (i for i in range(3)), threading.Lock], ids=["generator", "lock"]
)
def test_pushing_an_unpicklable_value_fails_locally_and_sends_nothing(
    mec: multiengine.MultiEngineClient, make: Callable[[], Any]
) -> None:
    before = mec.status()
    with pytest.raises(SerializationError) as info:
        mec.push({"ok_value": 1, "bad": make()})
    assert isinstance(info.value, KernelError)
    with pytest.raises(SerializationError):
        mec.push({"bad": make()}, block=False)
    with pytest.raises(SerializationError):
        mec["bad"] = make()
    # nothing reached the engines: not even the picklable name
    with pytest.raises(CompositeError) as composite:
        mec.pull("ok_value")
    assert error_types(composite.value) == [NameError] * 4
    after = mec.status()
    assert after["pending_results"] == before["pending_results"]
    assert all(e["queue"] == 0 for e in after["engines"])
    assert_cluster_works(mec)


def test_pulling_an_unpicklable_engine_value_raises_composite_error(
    mec: multiengine.MultiEngineClient,
) -> None:
    mec.execute("import threading; lock = threading.Lock(); fine = 7")
    with pytest.raises(CompositeError) as info:
        mec.pull("lock")
    assert len(info.value.elist) == 4
    assert all(issubclass(t, SerializationError) for t in error_types(info.value)), info.value.elist
    # the engine and its namespace survive
    assert mec.pull("fine") == [7] * 4
    assert_cluster_works(mec)


def test_push_function_one_engine(mec: multiengine.MultiEngineClient) -> None:
    # seed §A: testPushFunction
    assert mec.push_function(dict(f=TESTF), targets=0) == [None]
    mec.execute("result = f(10)", targets=0)
    assert mec.pull("result", targets=0) == [20.0]


def test_pull_function_one_engine(mec: multiengine.MultiEngineClient) -> None:
    # seed §A: testPullFunction: a single engine gives a 1-element list holding the list (f, g).
    mec.push_function(dict(f=TESTF, g=TESTG), targets=0)
    (funcs,) = mec.pull_function(("f", "g"), targets=0)
    assert len(funcs) == 2
    assert funcs[0](10) == 20.0


def test_push_function_global(mec: multiengine.MultiEngineClient) -> None:
    # seed §A: testPushFunctionGlobal (kept by contract decision 9): the pushed function's globals
    # are the engine's namespace, so ``globala`` is the engine's 99.
    mec.push(dict(globala=99), targets=0)
    mec.push_function(dict(g=TESTG), targets=0)
    mec.execute("result = g(10)", targets=0)
    assert mec.pull("result", targets=0) == [990]
    # and a later change of the engine's global is seen by the function
    mec.push(dict(globala=3), targets=0)
    mec.execute("result = g(10)", targets=0)
    assert mec.pull("result", targets=0) == [30]


def test_push_function(mec: multiengine.MultiEngineClient) -> None:
    # seed §B: testPushFunction
    assert mec.push_function(dict(f=TESTF), targets=0) == [None]
    mec.execute("result = f(10)", targets=0)
    assert mec.pull("result", targets=0)[0] == 20.0
    mec.push(dict(globala=99), targets=0)
    mec.push_function(dict(g=TESTG), targets=0)
    mec.execute("result = g(10)", targets=0)
    assert mec.pull("result", targets=0)[0] == 990


def test_push_function_rejects_non_functions(mec: multiengine.MultiEngineClient) -> None:
    # seed §2.2: push_function's values must be functions.
    with pytest.raises(TypeError):
        mec.push_function(dict(f=abs), targets=0)


@pytest.mark.parametrize(
    "bad", [5, "def f(): pass", len, int], ids=["int", "str", "builtin", "class"]
)
def test_push_function_of_a_non_function_raises_type_error(
    mec: multiengine.MultiEngineClient, bad: Any
) -> None:
    with pytest.raises(TypeError):
        mec.push_function({"f": bad})
    with pytest.raises(CompositeError) as info:
        mec.pull("f")
    assert error_types(info.value) == [NameError] * 4
    mec.push_function({"g": lambda x: x + 1})
    mec.execute("g_result = g(1)")
    assert mec.pull("g_result") == [2] * 4


def test_pull_function(mec: multiengine.MultiEngineClient) -> None:
    # seed §B: testPullFunction
    mec.push(dict(a=99), targets=0)
    mec.push_function(dict(f=TESTF), targets=0)
    assert mec.pull_function("f", targets=0)[0](10) == 20.0
    mec.execute("def g(x): return x*x", targets=0)
    r = mec.pull_function(("f", "g"), targets=0)
    assert (r[0][0](10), r[0][1](10)) == (20.0, 100)


def test_push_function_all(mec: multiengine.MultiEngineClient) -> None:
    # seed §B: testPushFunctionAll
    mec.push_function(dict(f=TESTF))
    mec.execute("result = f(10)")
    assert mec.pull("result") == 4 * [20.0]
    mec.push(dict(globala=99))
    mec.push_function(dict(testg=TESTG))
    mec.execute("result = testg(10)")
    assert mec.pull("result") == 4 * [990]
    # globals resolve per engine: each engine's own globala
    mec.execute("globala = id")
    mec.execute("result = testg(10)")
    assert mec.pull("result") == [0, 10, 20, 30]


def test_pull_function_all(mec: multiengine.MultiEngineClient) -> None:
    # seed §B: testPullFunctionAll
    mec.push_function(dict(f=TESTF))
    assert [func(10) for func in mec.pull_function("f")] == 4 * [20.0]


def test_push_pull_function_nonblocking(mec: multiengine.MultiEngineClient) -> None:
    # seed §B: testPushPullFunction
    mec.push_function({"testf": TESTF}, targets=0)
    assert mec.pull_function("testf", targets=0)[0](1.0) == 2.0
    mec.execute("r = testf(10)", targets=0)
    assert mec.pull("r", targets=0)[0] == 20.0
    pr = pending(mec.push_function({"testf": TESTF}, block=False))
    assert pr.r == 4 * [None]
    pr = pending(mec.pull_function("testf", block=False))
    funcs = pr.r
    assert len(funcs) == 4
    assert funcs[0](1.0) == 2.0
    mec.execute("def g(x): return x*x", targets=0)
    r = mec.pull_function(("testf", "g"), targets=0)
    assert (r[0][0](10), r[0][1](10)) == (20.0, 100)


@pytest.mark.parametrize("obj", PUSH_PULL_OBJECTS, ids=["int", "str", "float", "dict"])
def test_push_pull_serialized_one_value(mec: multiengine.MultiEngineClient, obj: Any) -> None:
    # seed §A: testPushPullSerialized
    mec.push_serialized(dict(key=multiengine.serialize(obj)), targets=0)
    assert mec.pull("key", targets=0) == [obj]
    (s,) = mec.pull_serialized("key", targets=0)
    assert s.unserialize() == obj


def test_push_pull_serialized_basic(mec: multiengine.MultiEngineClient) -> None:
    # seed §B: testPushPullSerialized (Basic version)
    for o in PUSH_PULL_OBJECTS:
        mec.push_serialized(dict(key=multiengine.serialize(o)), targets=0)
        assert mec.pull_serialized("key", targets=0)[0].unserialize() == o
    # The seed's b=range(5) was a list in Python 2.
    mec.push(dict(a=10, b=list(range(5))), targets=0)
    (sers,) = mec.pull_serialized(("a", "b"), targets=0)
    assert [s.unserialize() for s in sers] == [10, [0, 1, 2, 3, 4]]
    mec.reset(targets=0)
    assert_remote(NameError, mec.pull_serialized, "a", targets=0)


@pytest.mark.parametrize("block", [True, False], ids=["block", "noblock"])
def test_push_pull_serialized_blocking_or_not(
    mec: multiengine.MultiEngineClient, block: bool
) -> None:
    # seed §B: testPushPullSerialized (Synchronous), blocking and with block=False + fetch.
    def call(method: str, *args: Any) -> Any:
        r = getattr(mec, method)(*args, targets=0, block=block)
        return r if block else pending(r).r

    dikt_ = dict(a=10, b="hi there", c=1.2345, d={"p": (1, 2)})
    sdikt = {k: multiengine.serialize(v) for k, v in dikt_.items()}
    assert call("push_serialized", dict(a=sdikt["a"])) == [None]
    assert call("pull", "a")[0] == 10
    assert call("pull_serialized", "a")[0].unserialize() == 10
    call("push_serialized", sdikt)
    keys = list(sdikt.keys())
    sers = call("pull_serialized", keys)[0]
    assert [s.unserialize() for s in sers] == list(dikt_.values())
    call("reset")
    with pytest.raises(CompositeError) as excinfo:
        call("pull_serialized", "a")
    assert isinstance(excinfo.value.elist[0][1], NameError)


def test_pull_serialized_failures(mec: multiengine.MultiEngineClient) -> None:
    # seed §A: testPullSerializedFailures
    assert_remote(NameError, mec.pull_serialized, "a", targets=0)
    # Contract decision 9: a lambda now serializes (the seed raised PicklingError).
    mec.execute("l = lambda x: x", targets=0)
    (s,) = mec.pull_serialized("l", targets=0)
    assert s.unserialize()(7) == 7
    # an unpicklable value still fails with PicklingError
    mec.execute("import threading; lock = threading.Lock()", targets=0)
    assert_remote(pickle.PicklingError, mec.pull_serialized, "lock", targets=0)
