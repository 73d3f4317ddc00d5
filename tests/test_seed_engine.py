"""The seed's engineservicetest.py (seed-tests.md §A), re-expressed against a real engine.

The seed ran these mixins against an in-process ``EngineService``. Here the engine is a
real engine process reached through the MultiEngine client with ``targets=0``; through
the client a single engine answers with a 1-element list (where the seed's engine gave a
bare value), and engine-side exceptions arrive inside a ``CompositeError``.

Interface introspection (``IEngineCore.providedBy(engine)``) becomes: the client has the
interface's methods. Where a decision of contract.md §5 changes the seed's expected value,
the test asserts the contract's value and names the decision.
"""

from __future__ import annotations

import pickle
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from helpers import Latch, assert_remote, clean_properties
from seed_data import INVALID_COMMANDS, PUSH_PULL_OBJECTS, TESTF, TESTG, VALID_COMMANDS, dikt

import multiengine
from multiengine.errors import CompositeError, InvalidProperty


def fresh(i: int) -> dict[str, Any]:
    """What a fresh engine 0 answers to VALID_COMMANDS[i]: number 1, with 'id'."""
    return {**VALID_COMMANDS[i][1], "number": 1, "id": 0}


# =============================================================================================
# IEngineCoreTestCase
# =============================================================================================
CORE_METHODS = [
    "execute",
    "push",
    "pull",
    "push_function",
    "pull_function",
    "get_result",
    "reset",
    "kill",
    "keys",
]


def test_iengine_core_interface_methods(mec: multiengine.MultiEngineClient) -> None:
    # testIEngineCoreInterface + testIEngineCoreInterfaceMethods: the client offers every
    # IEngineCore method.
    for name in CORE_METHODS:
        assert callable(getattr(mec, name, None)), name


def test_iengine_core_id_and_properties(mec: multiengine.MultiEngineClient) -> None:
    # IEngineCore's attributes ``id`` and ``properties``: an engine knows its id (it is
    # seeded into its namespace), and its properties are reachable through the client.
    assert mec.pull("id", targets=0) == [0]
    assert mec.pull("id") == [0, 1, 2, 3]
    with pytest.warns(DeprecationWarning):
        assert mec.has_properties(("nothing",), targets=0) == [[False]]


def test_iengine_core_deferreds(mec: multiengine.MultiEngineClient) -> None:
    # The chain execute -> pull -> get_result -> keys -> push completes, each with its value.
    r = mec.execute("a=5", targets=0)
    assert isinstance(r, multiengine.ResultList)
    assert r == [{"input": {"raw": "a=5", "translated": "a=5"}, "number": 1, "id": 0}]
    assert mec.pull("a", targets=0) == [5]
    assert mec.get_result(targets=0) == [
        {"input": {"raw": "a=5", "translated": "a=5"}, "number": 1, "id": 0}
    ]
    keys = mec.keys(targets=0)
    assert len(keys) == 1 and "a" in keys[0]
    assert mec.push(dict(a=10), targets=0) == [None]
    assert mec.pull("a", targets=0) == [10]


@pytest.mark.parametrize(
    "index", range(len(VALID_COMMANDS)), ids=[f"cmd{i}" for i in range(len(VALID_COMMANDS))]
)
def test_execute(mec: multiengine.MultiEngineClient, index: int) -> None:
    # testExecute_0..11: a fresh engine answers like a fresh shell (number 1), plus 'id'.
    cmd = VALID_COMMANDS[index][0]
    assert mec.execute(cmd, targets=0) == [fresh(index)]


@pytest.mark.parametrize(
    "cmd,exc_type", INVALID_COMMANDS, ids=[e.__name__ for _, e in INVALID_COMMANDS]
)
def test_execute_failures(
    mec: multiengine.MultiEngineClient, cmd: str, exc_type: type[BaseException]
) -> None:
    # testExecuteFailuresEngineService_0..6
    ev = assert_remote(exc_type, mec.execute, cmd, targets=0).elist[0][1]
    assert type(ev) is not CompositeError


def test_execute_stops_at_first_exception(mec: multiengine.MultiEngineClient) -> None:
    # Contract decision 7 (the seed ran later lines after an exception): execution stops
    # at the first exception, so ``y`` is never defined.
    assert_remote(ZeroDivisionError, mec.execute, "x=1/0\ny=2", targets=0)
    assert_remote(NameError, mec.pull, "y", targets=0)


@pytest.mark.parametrize(
    "obj", [*PUSH_PULL_OBJECTS, None], ids=["int", "str", "float", "dict", "None"]
)
def test_push_pull(mec: multiengine.MultiEngineClient, obj: Any) -> None:
    # testPushPull_0..4
    assert mec.push(dict(a=obj), targets=0) == [None]
    assert mec.pull("a", targets=0) == [obj]


def test_pull_name_error(mec: multiengine.MultiEngineClient) -> None:
    # testPullNameError
    mec.push(dict(a=5), targets=0)
    assert mec.pull("a", targets=0) == [5]
    mec.reset(targets=0)
    assert_remote(NameError, mec.pull, "a", targets=0)


def test_push_pull_failures(mec: multiengine.MultiEngineClient) -> None:
    # testPushPullFailures
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


def test_push_pull_array(mec: multiengine.MultiEngineClient) -> None:
    # testPushPullArray (numpy is installed here, so it runs).
    a = np.random.random(1000)
    mec.push(dict(a=a), targets=0)
    (b,) = mec.pull("a", targets=0)
    assert isinstance(b, np.ndarray)
    assert (a == b).all()


def test_push_function(mec: multiengine.MultiEngineClient) -> None:
    # testPushFunction
    assert mec.push_function(dict(f=TESTF), targets=0) == [None]
    mec.execute("result = f(10)", targets=0)
    assert mec.pull("result", targets=0) == [20.0]


def test_pull_function(mec: multiengine.MultiEngineClient) -> None:
    # testPullFunction: a single engine gives a 1-element list holding the list (f, g).
    mec.push_function(dict(f=TESTF, g=TESTG), targets=0)
    (funcs,) = mec.pull_function(("f", "g"), targets=0)
    assert len(funcs) == 2
    assert funcs[0](10) == 20.0


def test_push_function_global(mec: multiengine.MultiEngineClient) -> None:
    # testPushFunctionGlobal (kept by contract decision 9): the pushed function's globals
    # are the engine's namespace, so ``globala`` is the engine's 99.
    mec.push(dict(globala=99), targets=0)
    mec.push_function(dict(g=TESTG), targets=0)
    mec.execute("result = g(10)", targets=0)
    assert mec.pull("result", targets=0) == [990]
    # and a later change of the engine's global is seen by the function
    mec.push(dict(globala=3), targets=0)
    mec.execute("result = g(10)", targets=0)
    assert mec.pull("result", targets=0) == [30]


def test_get_result_failure(mec: multiengine.MultiEngineClient) -> None:
    # testGetResultFailure: nothing executed yet.
    assert_remote(IndexError, mec.get_result, None, targets=0)
    assert_remote(IndexError, mec.get_result, 10, targets=0)


@pytest.mark.parametrize(
    "index", range(len(VALID_COMMANDS)), ids=[f"cmd{i}" for i in range(len(VALID_COMMANDS))]
)
def test_get_result(mec: multiengine.MultiEngineClient, index: int) -> None:
    # testGetResult_0..11
    cmd = VALID_COMMANDS[index][0]
    (r,) = mec.execute(cmd, targets=0)
    assert mec.get_result(r["number"], targets=0) == [fresh(index)]


def test_get_result_default(mec: multiengine.MultiEngineClient) -> None:
    # testGetResultDefault
    mec.execute("a=5", targets=0)
    r = dict(mec.get_result(targets=0)[0])
    assert r.pop("id") == 0
    assert r == {"input": {"raw": "a=5", "translated": "a=5"}, "number": 1}


def test_get_result_default_includes_failures(mec: multiengine.MultiEngineClient) -> None:
    # Contract decision 8 (the seed returned the last *successful* command): get_result()
    # returns the last command, a failed one included, with its traceback.
    mec.execute("a=5", targets=0)
    assert_remote(ZeroDivisionError, mec.execute, "b=1/0", targets=0)
    (r,) = mec.get_result(targets=0)
    assert r["number"] == 2
    assert r["input"] == {"raw": "b=1/0", "translated": "b=1/0"}
    assert "ZeroDivisionError" in r["traceback"]["plain"]
    # the explicit number gives the same message
    assert mec.get_result(2, targets=0) == [r]


def test_keys(mec: multiengine.MultiEngineClient) -> None:
    # testKeys: keys() is a list (per engine); after a reset it is ['id', 'mpi'] (contract §7).
    (keys,) = mec.keys(targets=0)
    assert isinstance(keys, list)
    assert sorted(keys) == ["id", "mpi"]
    mec.push(dict(zzz=1), targets=0)
    assert sorted(mec.keys(targets=0)[0]) == ["id", "mpi", "zzz"]


# =============================================================================================
# IEngineSerializedTestCase
# =============================================================================================
def test_iengine_serialized_interface_methods(mec: multiengine.MultiEngineClient) -> None:
    # testIEngineSerializedInterface + testIEngineSerializedInterfaceMethods
    for name in ("push_serialized", "pull_serialized"):
        assert callable(getattr(mec, name, None)), name


def test_iengine_serialized_deferreds(mec: multiengine.MultiEngineClient) -> None:
    # testIEngineSerializedDeferreds
    assert mec.push_serialized(dict(key=multiengine.serialize(12345)), targets=0) == [None]
    (s,) = mec.pull_serialized("key", targets=0)
    assert isinstance(s, multiengine.Serialized)
    assert s.unserialize() == 12345


@pytest.mark.parametrize("obj", PUSH_PULL_OBJECTS, ids=["int", "str", "float", "dict"])
def test_push_pull_serialized(mec: multiengine.MultiEngineClient, obj: Any) -> None:
    # testPushPullSerialized
    mec.push_serialized(dict(key=multiengine.serialize(obj)), targets=0)
    assert mec.pull("key", targets=0) == [obj]
    (s,) = mec.pull_serialized("key", targets=0)
    assert s.unserialize() == obj


def test_pull_serialized_failures(mec: multiengine.MultiEngineClient) -> None:
    # testPullSerializedFailures
    assert_remote(NameError, mec.pull_serialized, "a", targets=0)
    # Contract decision 9: a lambda now serializes (the seed raised PicklingError).
    mec.execute("l = lambda x: x", targets=0)
    (s,) = mec.pull_serialized("l", targets=0)
    assert s.unserialize()(7) == 7
    # an unpicklable value still fails with PicklingError
    mec.execute("import threading; lock = threading.Lock()", targets=0)
    assert_remote(pickle.PicklingError, mec.pull_serialized, "lock", targets=0)


# =============================================================================================
# IEngineQueuedTestCase
# =============================================================================================
def test_iengine_queued_interface_methods(mec: multiengine.MultiEngineClient) -> None:
    # testIEngineQueuedInterface + testIEngineQueuedInterfaceMethods. The seed's
    # register_failure_observer/unregister_failure_observer were in-process Twisted hooks
    # of the engine; they have no client counterpart.
    for name in ("clear_queue", "queue_status", *CORE_METHODS):
        assert callable(getattr(mec, name, None)), name


def test_iengine_queued_deferreds(mec: multiengine.MultiEngineClient) -> None:
    # testIEngineQueuedDeferreds: both complete, non-blocking too.
    pr = mec.clear_queue(targets=0, block=False)
    assert isinstance(pr, multiengine.PendingResult)
    assert pr.r == [None]
    pr = mec.queue_status(targets=0, block=False)
    assert isinstance(pr, multiengine.PendingResult)
    assert pr.r == [(0, {"queue": [], "pending": None})]


def test_clear_queue(mec: multiengine.MultiEngineClient) -> None:
    # testClearQueue. Contract decision 12: an idle engine's 'pending' is None (the seed
    # gave the string 'None').
    assert mec.clear_queue(targets=0) == [None]
    assert mec.queue_status(targets=0) == [(0, {"queue": [], "pending": None})]


def test_clear_queue_drops_queued_commands(
    mec: multiengine.MultiEngineClient, latch: Callable[[], Latch]
) -> None:
    # What clear_queue is for: a command waiting behind a running one is dropped with
    # QueueCleared, the running one finishes.
    gate = latch()
    running = mec.execute(f"{gate.wait_code}\ndone = 1", targets=0, block=False)
    queued = mec.execute("queued = 1", targets=0, block=False)
    assert mec.clear_queue(targets=0) == [None]
    gate.set()
    assert running.r[0]["number"] == 1
    with pytest.raises(CompositeError) as excinfo:
        queued.get_result()
    assert isinstance(excinfo.value.elist[0][1], multiengine.errors.QueueCleared)
    assert mec.pull("done", targets=0) == [1]
    assert_remote(NameError, mec.pull, "queued", targets=0)


def test_queue_status(mec: multiengine.MultiEngineClient, latch: Callable[[], Latch]) -> None:
    # testQueueStatus: the dict has 'queue' and 'pending'; while a command runs, it is the
    # 'pending' one and the next waits in 'queue'.
    ((eid, status),) = mec.queue_status(targets=0)
    assert eid == 0
    assert set(status) == {"queue", "pending"}
    gate = latch()
    running = mec.execute(gate.wait_code, targets=0, block=False)
    queued = mec.execute("a=1", targets=0, block=False)
    ((eid, status),) = mec.queue_status(targets=0)
    assert eid == 0
    assert status["pending"] is not None and gate.wait_code in status["pending"]
    assert len(status["queue"]) == 1 and "a=1" in status["queue"][0]
    gate.set()
    mec.barrier([running, queued])
    assert queued.r[0]["number"] == 2
    assert mec.queue_status(targets=0) == [(0, {"queue": [], "pending": None})]


# =============================================================================================
# IEnginePropertiesTestCase (deprecated: every call warns)
# =============================================================================================
PROPERTIES_METHODS = [
    "set_properties",
    "get_properties",
    "del_properties",
    "has_properties",
    "clear_properties",
]


def test_iengine_properties_interface_methods(mec: multiengine.MultiEngineClient) -> None:
    # testIEnginePropertiesInterface + testIEnginePropertiesInterfaceMethods. The seed's
    # ``properties`` attribute of an engine is reached through get_properties.
    for name in PROPERTIES_METHODS:
        assert callable(getattr(mec, name, None)), name


@pytest.mark.parametrize("name", PROPERTIES_METHODS)
def test_properties_methods_warn(mec: multiengine.MultiEngineClient, name: str) -> None:
    # Engine properties are kept, deprecated, with a DeprecationWarning (contract §5).
    args: dict[str, tuple[Any, ...]] = {
        "set_properties": ({"w": 1},),
        "del_properties": (("w",),),
        "has_properties": (("w",),),
    }
    with pytest.warns(DeprecationWarning):
        getattr(mec, name)(*args.get(name, ()), targets=0)


def test_get_set_properties(mec: multiengine.MultiEngineClient) -> None:
    clean_properties(mec)
    # testGetSetProperties
    with pytest.warns(DeprecationWarning):
        assert mec.set_properties(dikt(), targets=0) == [None]
    with pytest.warns(DeprecationWarning):
        assert mec.get_properties(targets=0) == [dikt()]
    with pytest.warns(DeprecationWarning):
        assert mec.get_properties(("c",), targets=0) == [{"c": True}]
    with pytest.warns(DeprecationWarning):
        mec.set_properties(dict(c=False), targets=0)
    with pytest.warns(DeprecationWarning):
        assert mec.get_properties(("c", "d"), targets=0) == [{"c": False, "d": None}]


def test_clear_properties(mec: multiengine.MultiEngineClient) -> None:
    clean_properties(mec)
    # testClearProperties
    with pytest.warns(DeprecationWarning):
        mec.set_properties(dikt(), targets=0)
    with pytest.warns(DeprecationWarning):
        assert mec.get_properties(targets=0) == [dikt()]
    with pytest.warns(DeprecationWarning):
        assert mec.clear_properties(targets=0) == [None]
    with pytest.warns(DeprecationWarning):
        assert mec.get_properties(targets=0) == [{}]


def test_del_has_properties(mec: multiengine.MultiEngineClient) -> None:
    clean_properties(mec)
    # testDelHasProperties
    with pytest.warns(DeprecationWarning):
        mec.set_properties(dikt(), targets=0)
    with pytest.warns(DeprecationWarning):
        assert mec.del_properties(("b", "e"), targets=0) == [None]
    with pytest.warns(DeprecationWarning):
        assert mec.has_properties(("a", "b", "c", "d", "e"), targets=0) == [
            [True, False, True, True, False]
        ]


def test_reset_clears_properties(mec: multiengine.MultiEngineClient) -> None:
    # seed-system §1.4: reset() clears the engine's properties. (The seed's property tests
    # each ran on a fresh engine; here the fixture's reset() is what makes them fresh.)
    with pytest.warns(DeprecationWarning):
        mec.set_properties(dict(leftover=1), targets=0)
    mec.reset(targets=0)
    try:
        with pytest.warns(DeprecationWarning):
            assert mec.get_properties(targets=0) == [{}]
    finally:  # leave nothing behind for other tests on the shared cluster
        with pytest.warns(DeprecationWarning):
            mec.clear_properties()


def test_strict_dict(mec: multiengine.MultiEngineClient) -> None:
    clean_properties(mec)
    # testStrictDict, on the engine. The seed's ``lambda _: None`` was its example of an
    # unpicklable value; a lock is one under any pickler, and cannot be deep-copied either.
    mec.execute(
        "from multiengine.engine import get_engine; p = get_engine(id).properties; "
        "import threading",
        targets=0,
    )
    ev = assert_remote(InvalidProperty, mec.execute, "p['a'] = threading.Lock()", targets=0).elist[
        0
    ][1]
    assert "'a'" in str(ev)
    # values are copied in and out: mutating what one reads changes nothing stored
    mec.execute("p['a'] = list(range(5))", targets=0)
    mec.execute("p['a'].append(5)", targets=0)
    with pytest.warns(DeprecationWarning):
        assert mec.get_properties("a", targets=0) == [{"a": [0, 1, 2, 3, 4]}]
    # the same for a value set from the client: the engine only ever mutates a copy
    with pytest.warns(DeprecationWarning):
        mec.set_properties(dict(b=[1]), targets=0)
    mec.execute("p['b'].append(2)", targets=0)
    with pytest.warns(DeprecationWarning):
        assert mec.get_properties(("a", "b"), targets=0) == [{"a": [0, 1, 2, 3, 4], "b": [1]}]
